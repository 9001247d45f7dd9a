"""OpenVINO: the bundle's IR (``model.xml`` / ``model.bin``) and its NNCF INT8 form (``model.int8.xml``).

``convert`` reads the fp32 ONNX with ``openvino.convert_model`` and saves the IR with fp32 weights
(``compress_to_fp16=False``: fp16-compressed weights would not pass the fp32 parity gate). With
``options["int8"]`` and calibration inputs it also writes NNCF's post-training quantisation of the IR.

``load`` compiles for ``CPU`` with ``PERFORMANCE_HINT=LATENCY``, one stream and ``INFERENCE_NUM_THREADS =
threads``. ``precision``: ``None`` keeps OpenVINO's own choice, which on CPUs with bf16 units (AVX512-BF16,
AMX) is bf16 and elsewhere f32; ``"f32"`` / ``"bf16"`` force it. Export checks both against PyTorch and
records the one it ships in the manifest (``runtimes.openvino.precision``), so a server compiles the
bundle exactly as it was checked and timed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.runtimes import register_runtime
from export.runtimes.base import ConvertContext, Runtime, Session

IR_FILES = {"openvino": "model.xml", "openvino-int8": "model.int8.xml"}


def _ov() -> Any:
    import openvino

    return openvino


def compile_config(threads: int | None, precision: str | None = None, hint: str = "LATENCY") -> dict[str, Any]:
    """The CPU compile properties slimgan uses for teacher and student alike (see module docstring)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "NUM_STREAMS": "1"}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(int(threads))
    return config


def precision_name(value: Any) -> str:
    """``<Type: 'bfloat16'>`` -> ``"bf16"`` (the names the compile hint takes)."""
    text = str(getattr(value, "get_type_name", lambda: value)()).lower()
    return {"bfloat16": "bf16", "float32": "f32", "float16": "f16"}.get(text.split("'")[-2] if "'" in text else text, text)


class OpenVINOSession(Session):
    """A compiled OpenVINO model. One infer request per calling thread (requests are not shareable)."""

    parallel_runs = 1

    def __init__(self, path: str | Path, threads: int | None, device: str, **opts: Any) -> None:
        import threading

        ov = _ov()
        self.path = Path(path)
        self.threads = int(threads) if threads else None
        self.device = "CPU" if device in ("cpu", "auto") else device.upper()
        self.config = opts.pop("config", None) or compile_config(threads, opts.pop("precision", None), opts.pop("hint", "LATENCY"))
        core = ov.Core()
        self.compiled = core.compile_model(str(self.path), self.device, self.config)
        self.input_name = self.compiled.input(0).get_any_name()
        self.output_name = self.compiled.output(0).get_any_name()
        self._local = threading.local()
        self.precision = precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def _request(self) -> Any:
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        return req

    def run(self, x: np.ndarray) -> np.ndarray:
        req = self._request()
        req.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(req.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": "openvino",
            "version": _ov().get_version(),
            "device": self.device.lower(),
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
            "precision": self.precision,
            "config": dict(self.config),
            "file": self.path.name,
        }

    def close(self) -> None:
        self._local = None
        self.compiled = None


class OpenVINORuntime(Runtime):
    name = "openvino"
    extra = None  # core dependency; NNCF INT8 needs the "openvino-int8" extra
    module_name = "openvino"
    artifacts = {"openvino": IR_FILES["openvino"], "openvino-int8": IR_FILES["openvino-int8"]}

    def convert(self, ctx: ConvertContext) -> list[str]:
        self.require()
        ov = _ov()
        bundle = Path(ctx.bundle_dir)
        # options["source_onnx"]: the graph optimised for OpenVINO (export.optimize targets), else the fp32 ONNX
        model = ov.convert_model(str(ctx.options.get("source_onnx") or ctx.onnx_path))
        xml = bundle / IR_FILES["openvino"]
        ov.save_model(model, str(xml), compress_to_fp16=False)
        written = [xml.name, xml.with_suffix(".bin").name]
        if ctx.options.get("int8"):
            from export.runtimes.openvino_int8 import quantize_ir

            written += quantize_ir(xml, bundle / IR_FILES["openvino-int8"], ctx.calib, ctx.options)
        return written

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any) -> OpenVINOSession:
        self.require()
        return OpenVINOSession(path, threads, device, **opts)

    def describe(self) -> dict[str, Any]:
        ok, _ = self.available()
        if not ok:
            return super().describe()
        ov = _ov()
        return {"name": self.name, "version": ov.get_version(), "device": "cpu", "devices": ov.Core().available_devices,
                "config": compile_config(None)}


register_runtime(OpenVINORuntime())
