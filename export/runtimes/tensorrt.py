"""TensorRT: ``model.plan`` built from the bundle's ONNX (see :mod:`export.tensorrt_engine` for the two
builder paths: TensorRT 10's FP16 flag, TensorRT 11's strongly typed network from ``model.fp16.onnx``).

``available`` needs the ``tensorrt`` package and a CUDA GPU; it answers in one line when either is
missing and never raises. Loading and running use ``torch`` for device buffers (inside the call, not at
import), so the server imports torch only when TensorRT is chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.runtimes import register_runtime
from export.runtimes.base import ConvertContext, Runtime, Session


class TensorRTSession(Session):
    parallel_runs = 1

    def __init__(self, path: str | Path, **opts: Any) -> None:
        from export.tensorrt_engine import EngineRunner

        self.path = Path(path)
        self.runner = EngineRunner(self.path)
        self.input_name = self.runner.inputs[0]
        self.output_name = self.runner.outputs[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.runner(x), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        import tensorrt as trt

        return {"runtime": "tensorrt", "version": str(trt.__version__), "device": "cuda", "threads": None, "file": self.path.name}

    def close(self) -> None:
        self.runner = None


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

    def convert(self, ctx: ConvertContext) -> list[str]:
        """Build ``model.plan``. ``options``: ``fp16`` (bool), ``batch`` ``(min, opt, max)``, ``input_name``."""
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
        ctx.options["engine"] = info
        return [self.artifacts["plan"]]

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cuda", **opts: Any) -> TensorRTSession:
        self.require()
        return TensorRTSession(path, **opts)

    def describe(self) -> dict[str, Any]:
        ok, reason = self.available()
        if not ok:
            return {"name": self.name, "version": None, "reason": reason}
        import tensorrt as trt

        return {"name": self.name, "version": str(trt.__version__), "device": "cuda"}


register_runtime(TensorRTRuntime())
