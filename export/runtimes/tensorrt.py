"""TensorRT: ``model.plan`` built from the bundle's ONNX and run through ``libcudart`` (no torch).

Two builder paths (:func:`export.tensorrt_engine.build_engine`), picked from ``tensorrt.__version__``:
TensorRT 10 parses ``model.onnx`` weakly typed and sets ``BuilderFlag.FP16``; TensorRT 11, which
removed that flag, builds a strongly typed network from ``model.fp16.onnx`` (explicit casts keep
InstanceNorm and reductions in fp32).

``available`` needs the ``tensorrt`` package and a CUDA GPU (asked through ``libcuda``); it answers in
one line when either is missing and never raises. A session allocates device buffers once for the
largest shape of optimisation profile 0 and runs with TensorRT 10+'s name-based I/O
(``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``). An engine is tied to the GPU and
TensorRT version that built it.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from export.runtimes import register_runtime
from export.runtimes.base import ConvertContext, ConvertResult, Runtime, Session
from slimgan.errors import ConfigError, MissingDependencyError

_H2D, _D2H = 1, 2  # cudaMemcpyKind


class _CudaRuntime:
    """The few libcudart calls a session needs."""

    def __init__(self) -> None:
        lib = None
        for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise MissingDependencyError("runtime tensorrt needs the CUDA runtime (libcudart.so) on the library path")
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
        code = self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes), ctypes.c_int(kind),
                                        ctypes.c_void_p(stream))
        self._check(code, "cudaMemcpyAsync")

    def sync(self, stream: int) -> None:
        self._check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")


class TensorRTSession(Session):
    """A deserialized engine with device buffers for the largest profile shape."""

    parallel_runs = 1
    runtime_name = "tensorrt"
    device = "cuda"

    def __init__(self, path: str | Path) -> None:
        import tensorrt as trt

        self.trt = trt
        self.path = Path(path)
        self.version = str(trt.__version__)
        self.cuda = _CudaRuntime()
        self.d_input = self.d_output = 0
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ConfigError(f"TensorRT could not deserialize {self.path} (built on another GPU or TensorRT version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.precision = str(self.input_dtype)
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        self.fixed_batch: int | None = None
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

    def run(self, x: np.ndarray) -> np.ndarray:
        host_in = np.ascontiguousarray(x, dtype=self.input_dtype)
        if host_in.shape[0] > self.max_batch:
            raise ConfigError(f"batch {host_in.shape[0]} exceeds the engine's profile maximum {self.max_batch}")
        self.context.set_input_shape(self.input_name, tuple(host_in.shape))
        host_out = np.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=self.output_dtype)
        self.cuda.copy(self.d_input, host_in.ctypes.data, host_in.nbytes, _H2D, self.stream)
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execution failed")
        self.cuda.copy(host_out.ctypes.data, self.d_output, host_out.nbytes, _D2H, self.stream)
        self.cuda.sync(self.stream)
        return host_out.astype(np.float32, copy=False)

    def close(self) -> None:
        for ptr in (self.d_input, self.d_output):
            if ptr:
                self.cuda.free(ptr)
        self.d_input = self.d_output = 0


class TensorRTRuntime(Runtime):
    name = "tensorrt"
    extra = "trt"
    module_name = "tensorrt"
    artifacts = {"plan": "model.plan"}

    def available(self) -> tuple[bool, str]:
        from export.tensorrt_engine import missing_requirements

        reasons = missing_requirements()
        if reasons:
            return False, self.install_hint(f"needs {' and '.join(reasons)}")
        return True, "ok"

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        """Build ``model.plan``. ``options``: ``fp16`` (bool), ``batch`` ``(min, opt, max)``, ``input_name``,
        ``fp16_onnx`` (the strongly typed source for TensorRT 11). The engine's build facts are the
        result's ``report["engine"]``; its precision is the build mode."""
        self.require()
        from export.tensorrt_engine import build_engine

        bundle = Path(ctx.bundle_dir)
        bmin, bopt, bmax = ctx.options.get("batch", (1, 1, 8))
        sample = tuple(ctx.example_shape[1:])
        fp16 = bool(ctx.options.get("fp16", False))
        fp16_onnx = ctx.options.get("fp16_onnx") or (bundle / "model.fp16.onnx" if fp16 else None)
        info = build_engine(
            ctx.onnx_path, bundle / self.artifacts["plan"], ctx.options.get("input_name", "input"),
            (bmin, *sample), (bopt, *sample), (bmax, *sample), fp16=fp16, fp16_onnx_path=fp16_onnx,
        )
        report = {"engine": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(info).items()}, "batch": [bmin, bopt, bmax]}
        return ConvertResult(files=(self.artifacts["plan"],), precision=info.mode, report=report)

    def gate(self, precision: str) -> str:
        return "fp32" if precision in ("fp32", "tf32") else "fp16"

    def row_name(self, label: str, result: ConvertResult) -> str:
        return f"{label}: torch vs tensorrt ({result.precision})"

    def parity_rows(self, bundle_dir: Path, result: ConvertResult, reference: Any, inputs: np.ndarray, *,
                    label: str = "student", threads: int = 1, data_range: float = 2.0) -> list[dict[str, Any]]:
        """As the default, on as many rows of ``inputs`` as the engine's batch profile allows."""
        bmin, _, bmax = result.report.get("batch", (1, 1, 8))
        n = max(bmin, min(len(inputs), bmax))
        return super().parity_rows(bundle_dir, result, reference[:n], inputs[:n], label=label, threads=threads, data_range=data_range)

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cuda", **opts: Any) -> TensorRTSession:
        self.require()
        return TensorRTSession(path)

    def describe(self) -> dict[str, Any]:
        ok, reason = self.available()
        if not ok:
            return {"name": self.name, "version": None, "reason": reason}
        import tensorrt as trt

        return {"name": self.name, "version": str(trt.__version__), "device": "cuda"}


register_runtime(TensorRTRuntime())
