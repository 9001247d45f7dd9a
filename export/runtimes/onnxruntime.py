"""ONNX Runtime: the reference runtime (``model.onnx``, ``model.fp16.onnx``, ``model.int8.onnx``).

Session options used for every slimgan measurement and for serving (:func:`session_options`): full
graph optimisation (``ORT_ENABLE_ALL``), sequential execution, memory pattern and CPU arena enabled,
``intra_op_num_threads = threads`` and ``inter_op_num_threads = 1``, and idle intra-op threads that
sleep instead of spinning (``session.intra_op.allow_spinning = 0``): on a CPU shared with other
processes spinning threads burn the cores the work needs. Teacher and student always get the same
options, so a speedup compares graphs, not settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.runtimes import register_runtime
from export.runtimes.base import ConvertContext, ConvertResult, Runtime, Session
from slimgan.errors import ConfigError, MissingDependencyError

DEFAULT_THREADS = 2

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
        raise MissingDependencyError("onnxruntime is not importable; install slimgan's dependencies") from exc
    return onnxruntime


def session_options(threads: int | None = None, spinning: bool = True) -> Any:
    """The ``SessionOptions`` used for every slimgan session (see module docstring).

    ``spinning=False`` sets ``session.intra_op.allow_spinning = 0`` (:func:`make_session`'s default).
    """
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_mem_pattern = True
    opts.enable_cpu_mem_arena = True
    opts.intra_op_num_threads = int(threads) if threads else DEFAULT_THREADS
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def providers_for(device: str) -> list[str]:
    """Execution providers for ``device`` (``cpu``; ``cuda``; ``auto``: CUDA when present, else CPU)."""
    available = _ort().get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise MissingDependencyError(
            f"--device cuda needs onnxruntime-gpu with CUDAExecutionProvider; this build has {', '.join(available)}"
        )
    return ["CPUExecutionProvider"]


def make_session(
    model_path: str | Path | bytes,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    *,
    spinning: bool = False,
    options: Any = None,
) -> Any:
    """Open ``model_path`` (a file or serialized model bytes) in ONNX Runtime.

    ``threads``: intra-op threads (default 2). ``providers``: execution providers in priority order
    (default ``["CPUExecutionProvider"]``); providers this build lacks raise
    :class:`MissingDependencyError` naming the available ones. ``spinning``: let idle intra-op threads
    spin (ONNX Runtime's own default; off here). ``options``: a prepared ``SessionOptions`` instead.
    """
    ort = _ort()
    wanted = list(providers) if providers else ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    missing = [p for p in wanted if p not in available]
    if missing:
        raise MissingDependencyError(
            f"ONNX Runtime provider {missing[0]} is not available; this build has: {', '.join(available)}"
        )
    source = model_path if isinstance(model_path, bytes) else str(model_path)
    opts = options if options is not None else session_options(threads, spinning=spinning)
    return ort.InferenceSession(source, sess_options=opts, providers=wanted)


class OrtSession(Session):
    """An ``InferenceSession`` behind the :class:`Session` interface (``run`` is thread-safe).

    ``source``: a file, or the model's bytes (what :meth:`OnnxRuntime.load_from_bundle` passes, so the
    served model is in memory and a file changed after start changes nothing).
    """

    parallel_runs = 2
    runtime_name = "onnxruntime"

    def __init__(self, source: str | Path | bytes, threads: int | None, device: str, *, path: str | Path | None = None,
                 precision: str = "fp32", **opts: Any) -> None:
        self.path = Path(path if path is not None else source)
        self.threads = int(threads) if threads else DEFAULT_THREADS
        self.providers = opts.pop("providers", None) or providers_for(device)
        self.session = make_session(source, threads=self.threads, providers=self.providers, spinning=bool(opts.pop("spinning", False)))
        self.version = _ort().__version__
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self.precision = precision
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        self.input_shape = list(inp.shape)
        self.input_dtype = _DTYPES.get(inp.type, np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.run_with(x, {})

    def run_with(self, x: np.ndarray, controls: dict[str, np.ndarray]) -> np.ndarray:
        feed = {self.input_name: np.asarray(x).astype(self.input_dtype, copy=False),
                **{k: np.asarray(v, dtype=np.float32) for k, v in controls.items()}}
        out = self.session.run([self.output_name], feed)[0]
        return np.asarray(out, dtype=np.float32)

    def details(self) -> dict[str, Any]:
        return {"providers": list(self.providers)}

    def close(self) -> None:
        self.session = None


class OnnxRuntime(Runtime):
    """The reference runtime. ``convert`` writes the ONNX variants: ``options["precision"]`` ``fp32``
    (the exported ``model.onnx`` itself), ``fp16`` (:mod:`export.fp16`) or ``int8`` (static QDQ on
    ``ctx.calib``, :mod:`export.int8`)."""

    name = "onnxruntime"
    extra = None  # core dependency
    module_name = "onnxruntime"
    artifacts = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        precision = ctx.options.get("precision", "fp32")
        bundle, onnx_path = Path(ctx.bundle_dir), Path(ctx.onnx_path)
        if precision == "fp32":
            return ConvertResult(files=(onnx_path.name,) if onnx_path.parent == bundle else (), precision="fp32")
        dst = bundle / self.artifacts[precision]
        if precision == "fp16":
            from export.fp16 import convert_file

            convert_file(onnx_path, dst)
        elif precision == "int8":
            from export.int8 import quantize_int8

            if ctx.calib is None:
                raise ConfigError("ONNX Runtime INT8 needs calibration inputs (--calib DIR)")
            quantize_int8(onnx_path, dst, ctx.calib, ctx.options.get("input_name", "input"))
        else:
            raise ConfigError(f"onnxruntime precision {precision!r}: choose one of {', '.join(self.artifacts)}")
        return ConvertResult(files=(dst.name,), precision=precision)

    def row_name(self, label: str, result: ConvertResult) -> str:
        return f"{label}: torch vs onnx {result.precision}"

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any) -> OrtSession:
        self.require()
        return OrtSession(path, threads, device, **opts)

    def load_from_bundle(self, bundle_dir: str | Path, manifest: Any, role: str = "fp32", *,
                         threads: int | None = None, device: str = "cpu", **opts: Any) -> OrtSession:
        """The bundle's ONNX for ``role`` (fp32 / fp16 / int8), read into memory, with slimgan's session options."""
        self.require()
        name = manifest.files.get(role)
        if name is None:
            raise ConfigError(f"bundle {bundle_dir} has no {role} ONNX model (files: {', '.join(manifest.files)})")
        path = Path(bundle_dir) / name
        return OrtSession(path.read_bytes(), threads, device, path=path, precision=role if role in self.artifacts else "fp32", **opts)

    def describe(self) -> dict[str, Any]:
        ok, _ = self.available()
        if not ok:
            return super().describe()
        ort = _ort()
        return {"name": self.name, "version": ort.__version__, "device": "cpu", "providers": ort.get_available_providers(),
                "threads": DEFAULT_THREADS, "session_options": "ORT_ENABLE_ALL, sequential, mem pattern + CPU arena, "
                "intra_op_num_threads=threads, inter_op=1, session.intra_op.allow_spinning=0"}


register_runtime(OnnxRuntime())
