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
from export.runtimes.base import ConvertContext, ConvertResult, Runtime, Session

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


def read_ir(core: Any, xml: Path) -> tuple[Any, Any]:
    """The IR ``xml`` (and its ``.bin`` weights) read into memory: (model, the weights tensor to keep alive).

    ``compile_model(path)`` memory-maps ``model.bin``; a file truncated under a server would then kill it
    with SIGBUS. The bytes read here are the process's own.
    """
    ov = _ov()
    xml_bytes = xml.read_bytes()
    bin_path = xml.with_suffix(".bin")
    weights = ov.Tensor(np.frombuffer(bin_path.read_bytes(), dtype=np.uint8).copy()) if bin_path.is_file() else ov.Tensor(np.zeros(0, np.uint8))
    return core.read_model(model=xml_bytes, weights=weights), weights


class OpenVINOSession(Session):
    """A compiled OpenVINO model, read into memory. One infer request per calling thread (requests are
    not shareable)."""

    parallel_runs = 1
    runtime_name = "openvino"

    def __init__(self, path: str | Path, threads: int | None, device: str, **opts: Any) -> None:
        import threading

        ov = _ov()
        self.path = Path(path)
        self.device = "CPU" if device in ("cpu", "auto") else device.upper()
        self.config = opts.pop("config", None) or compile_config(threads, opts.pop("precision", None), opts.pop("hint", "LATENCY"))
        core = ov.Core()
        model, self._weights = read_ir(core, self.path)
        self.compiled = core.compile_model(model, self.device, self.config)
        self.input_name = self.compiled.input(0).get_any_name()
        self.output_name = self.compiled.output(0).get_any_name()
        self._local = threading.local()
        self.precision = precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self.version = ov.get_version()

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
        return {**super().describe(), "device": self.device.lower()}

    def details(self) -> dict[str, Any]:
        return {"config": dict(self.config)}

    def close(self) -> None:
        self._local = None
        self.compiled = None
        self._weights = None


class OpenVINORuntime(Runtime):
    """The IR and, with ``options["int8"]``, NNCF's INT8 IR quantised from the bundle's ``model.xml``.

    Precision policy (``options["precision"]``, ``--openvino-precision``): ``auto`` checks f32 and, where
    the CPU defaults to a reduced precision (bf16), that one too, and ships the reduced one when it
    passes its gate (PSNR >= 40 dB, as fp16); ``f32`` / ``bf16`` force one. Without a parity check
    (``ctx.reference`` None) ``auto`` ships f32.
    """

    name = "openvino"
    extra = None  # core dependency; NNCF INT8 needs the "openvino-int8" extra
    module_name = "openvino"
    artifacts = {"openvino": IR_FILES["openvino"], "openvino-int8": IR_FILES["openvino-int8"]}

    def convert_problem(self, options: dict[str, Any]) -> str | None:
        problem = super().convert_problem(options)
        if problem is None and options.get("int8"):
            from export.runtimes.openvino_int8 import nncf_problem

            missing = nncf_problem()
            problem = f"openvino-int8 skipped: {missing}" if missing else None
        return problem

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        self.require()
        ov = _ov()
        bundle = Path(ctx.bundle_dir)
        int8 = bool(ctx.options.get("int8"))
        xml = bundle / IR_FILES["openvino-int8" if int8 else "openvino"]
        if int8:
            from export.runtimes.openvino_int8 import quantize_ir

            quantize_ir(bundle / IR_FILES["openvino"], xml, ctx.calib, ctx.options)
        else:
            # options["source_onnx"]: the graph optimised for OpenVINO (export.optimize targets), else the fp32 ONNX
            model = ov.convert_model(str(ctx.options.get("source_onnx") or ctx.onnx_path))
            ov.save_model(model, str(xml), compress_to_fp16=False)
        files = (xml.name, xml.with_suffix(".bin").name)
        asked = ctx.options.get("precision", "auto")
        if ctx.reference is None or ctx.inputs is None:
            return ConvertResult(files=files, precision="f32" if asked == "auto" else asked)
        rows, precision, notes = self._precision_rows(xml, ctx, asked, "int8" if int8 else "fp32")
        return ConvertResult(files=files, precision=precision, rows=tuple(rows), report={"notes": notes})

    def _precision_rows(self, xml: Path, ctx: ConvertContext, asked: str, gate: str) -> tuple[list[dict[str, Any]], str, list[str]]:
        """Parity rows of the IR at f32 and at the CPU's reduced precision, and the precision to ship."""
        from export.parity import compare

        label = " int8" if gate == "int8" else ""
        name = f"{ctx.label}: torch vs openvino{label}"
        native = self.load(xml, threads=ctx.threads).precision if asked == "auto" else asked
        rows, notes = [], []
        if asked in ("auto", "f32") or native == "f32":
            rows.append(compare(f"{name} f32", self._run(xml, ctx, "f32"), ctx.reference, gate, data_range=ctx.data_range))
        if native == "f32":
            return rows, "f32", notes
        row = compare(f"{name} {native}", self._run(xml, ctx, native), ctx.reference, "int8" if gate == "int8" else "bf16",
                      data_range=ctx.data_range)
        rows.append(row)
        if asked == "auto" and row["passed"] is False:
            # Not shipped, so not a deployment failure: keep the numbers, run the bundle in f32.
            row["passed"] = None
            row["criterion"] = f"not shipped: {row['criterion']} failed, OpenVINO runs this bundle in f32"
            notes.append(f"openvino{label}: {native} below its parity gate (PSNR {row.get('psnr_db')}); shipping f32")
            return rows, "f32", notes
        return rows, native, notes

    def parity_rows(self, bundle_dir: Path, result: ConvertResult, reference: Any, inputs: np.ndarray, *,
                    label: str = "student", threads: int = 1, data_range: float = 2.0) -> list[dict[str, Any]]:
        """The rows of an IR at the precision ``result`` ships (an INT8 IR under the int8 gate)."""
        xml = Path(bundle_dir) / result.files[0]
        ctx = ConvertContext(Path(bundle_dir), xml, reference=reference, inputs=inputs, threads=threads, label=label, data_range=data_range)
        gate = "int8" if xml.name == IR_FILES["openvino-int8"] else "fp32"
        return self._precision_rows(xml, ctx, result.precision, gate)[0]

    def _run(self, xml: Path, ctx: ConvertContext, precision: str) -> np.ndarray:
        session = self.load(xml, threads=ctx.threads, precision=precision)
        try:
            return session.run(ctx.inputs)
        finally:
            session.close()

    def file_roles(self, result: ConvertResult) -> dict[str, str]:
        roles = super().file_roles(result)
        return {**roles, **{f"{role}-weights": Path(name).with_suffix(".bin").name for role, name in roles.items()}}

    def bundle_options(self, manifest: Any, role: str) -> dict[str, Any]:
        """The compile precision export checked and timed (``manifest.runtimes[role].precision``)."""
        precision = ((getattr(manifest, "runtimes", None) or {}).get(role) or {}).get("precision")
        return {"precision": precision} if precision in ("f32", "bf16", "f16") else {}

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
