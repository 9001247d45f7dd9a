"""TensorRT backend: runs the bundle's serialized engine (``files["plan"]``, usually ``model.plan``).

``tensorrt`` is imported only when this backend is chosen; without it the server refuses to start
with one line naming the fix. Device memory and the stream go through ``libcudart`` via ctypes, so
no torch / cupy / pycuda is needed. Buffers are sized once for the largest shape of optimisation
profile 0 (TensorRT 10 name-based I/O: ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``). An engine is tied to the GPU and TensorRT version that built it.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distill.errors import ConfigError, MissingDependencyError
from serve.backends.base import Backend

if TYPE_CHECKING:
    from export.manifest import Manifest
    from serve.settings import ServeSettings

_H2D, _D2H = 1, 2  # cudaMemcpyKind


def import_tensorrt() -> Any:
    """``tensorrt``, or a :class:`MissingDependencyError` that says what to do."""
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependencyError(
            "--backend tensorrt needs the tensorrt Python package and a CUDA GPU "
            "(pip install 'slimgan[trt]' or use the serve-tensorrt image); use --backend onnxruntime here"
        ) from exc
    return tensorrt


class _CudaRuntime:
    """The few libcudart calls the backend needs."""

    def __init__(self) -> None:
        lib = None
        for name in ("libcudart.so", "libcudart.so.12", "libcudart.so.11.0"):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise MissingDependencyError(
                "--backend tensorrt needs the CUDA runtime (libcudart.so) on the library path"
            )
        self.lib = lib

    def _check(self, code: int, what: str) -> None:
        if code != 0:
            raise RuntimeError(f"CUDA {what} failed with error {code}")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(1, nbytes))), "cudaMalloc")
        return int(ptr.value)

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(ptr))

    def stream(self) -> int:
        handle = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        return int(handle.value or 0)

    def copy(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        code = self.lib.cudaMemcpyAsync(
            ctypes.c_void_p(dst),
            ctypes.c_void_p(src),
            ctypes.c_size_t(nbytes),
            ctypes.c_int(kind),
            ctypes.c_void_p(stream),
        )
        self._check(code, "cudaMemcpyAsync")

    def sync(self, stream: int) -> None:
        self._check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")


class TensorRTBackend(Backend):
    name = "tensorrt"

    @classmethod
    def check(cls, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        import_tensorrt()
        if "plan" not in manifest.files:
            raise ConfigError(
                f"bundle {bundle_dir} has no TensorRT engine (files: {', '.join(manifest.files)}); "
                "export it with --tensorrt on the target GPU"
            )
        if not manifest.model_path(bundle_dir, "plan").is_file():
            raise ConfigError(f"bundle {bundle_dir}: engine {manifest.files['plan']} is missing")

    def __init__(self, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        super().__init__(bundle_dir, manifest, settings)
        self.check(bundle_dir, manifest, settings)
        trt = import_tensorrt()
        self.trt = trt
        self.cuda = _CudaRuntime()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(
            manifest.model_path(bundle_dir, "plan").read_bytes()
        )
        if self.engine is None:
            raise ConfigError(
                f"bundle {bundle_dir}: TensorRT could not deserialize the engine (other GPU or version?)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        if -1 in shape:
            max_shape = tuple(self.engine.get_tensor_profile_shape(self.input_name, 0)[2])
        else:
            max_shape = shape
            self.fixed_batch = int(shape[0])
        self.max_batch = int(max_shape[0])
        self.context.set_input_shape(self.input_name, max_shape)
        max_out = tuple(self.context.get_tensor_shape(self.output_name))
        self.stream = self.cuda.stream()
        self.d_input = self.cuda.malloc(int(np.prod(max_shape)) * self.input_dtype.itemsize)
        self.d_output = self.cuda.malloc(int(np.prod(max_out)) * self.output_dtype.itemsize)
        self.context.set_tensor_address(self.input_name, self.d_input)
        self.context.set_tensor_address(self.output_name, self.d_output)

    def run(self, batch: np.ndarray) -> np.ndarray:
        host_in = np.ascontiguousarray(batch, dtype=self.input_dtype)
        self.context.set_input_shape(self.input_name, tuple(host_in.shape))
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        host_out = np.empty(out_shape, dtype=self.output_dtype)
        self.cuda.copy(self.d_input, host_in.ctypes.data, host_in.nbytes, _H2D, self.stream)
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execution failed")
        self.cuda.copy(host_out.ctypes.data, self.d_output, host_out.nbytes, _D2H, self.stream)
        self.cuda.sync(self.stream)
        return host_out.astype(np.float32, copy=False)

    def close(self) -> None:
        for ptr in (getattr(self, "d_input", 0), getattr(self, "d_output", 0)):
            if ptr:
                self.cuda.free(ptr)
        self.d_input = self.d_output = 0
