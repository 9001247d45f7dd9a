"""Core ML: ``model.mlpackage``, an ML Program (fp16 compute precision by default) for iOS / macOS.

``convert``: ``torch.export.export`` of the eval-mode generator at the export shape (batch 1), then
``coremltools.convert(..., convert_to="mlprogram", compute_precision=FLOAT16,
minimum_deployment_target=iOS16)``. An image-to-image generator's input is described as an image
(``ImageType``: RGB or grayscale, ``scale = 1/127.5`` and ``bias = -1`` so the app passes a
``CVPixelBuffer`` and the model sees [-1, 1], as slimgan's preprocessing does); a latent generator's
input stays a tensor. The output is a float32 multi-array in [-1, 1]. ``options["coreml_precision"] =
"fp32"`` keeps fp32 compute. The precision is the runtime's to say: it is the
:class:`~export.runtimes.base.ConvertResult` ``precision`` that export records in the manifest.

Core ML's predictions need macOS (``coremltools`` ships no Linux runtime), so here :meth:`validate`
checks the converted program instead of running it: the package loads, it is an ML Program, its
input / output descriptions match the generator, the program parses back into MIL with type inference
(every op's output type re-derived) and its inferred output shape is the generator's, and every
convolution weight in the package equals the PyTorch generator's within fp16 rounding.
On macOS ``load`` returns a session that predicts. :meth:`CoreMLRuntime.parity_rows` gives the
validation row off macOS, and on macOS compares predictions under the fp16 gate (the image input is
8-bit, so even fp32 compute is not held to the fp32 gate).
"""

from __future__ import annotations

import platform
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from export.runtimes import register_runtime
from export.runtimes.base import ConvertContext, ConvertResult, Session
from export.runtimes.mobile import (
    MobileRuntime,
    eval_copy,
    example_input,
    package_version,
    require_packages,
    static_shape,
)
from slimgan.errors import SlimganError

FILES = {"coreml": "model.mlpackage"}
UNAVAILABLE = "Core ML predictions need macOS (coremltools has no Linux runtime)"
# Relative tolerance for a weight stored in fp16 (10 mantissa bits) against its fp32 original.
FP16_WEIGHT_RTOL = 2.0**-10


def _ct() -> Any:
    import coremltools

    return coremltools


def runs_here() -> tuple[bool, str]:
    """Whether Core ML can execute a model on this machine (macOS only)."""
    if platform.system() != "Darwin":
        return False, UNAVAILABLE
    return True, "ok"


class CoreMLSession(Session):
    """macOS only: ``MLModel.predict`` on images made from the [-1, 1] input (8-bit, as an app passes)."""

    parallel_runs = 1

    def __init__(self, path: str | Path, compute_units: str = "CPU_ONLY") -> None:
        ct = _ct()
        self.path = Path(path)
        self.model = ct.models.MLModel(str(self.path), compute_units=getattr(ct.ComputeUnit, compute_units))
        spec = self.model.get_spec()
        self.input_name = spec.description.input[0].name
        self.output_name = spec.description.output[0].name
        self.image_input = spec.description.input[0].type.WhichOneof("Type") == "imageType"
        self.compute_units = compute_units

    def run(self, x: np.ndarray) -> np.ndarray:
        from PIL import Image

        outs = []
        for sample in np.asarray(x, dtype=np.float32):
            if self.image_input:
                pixels = np.clip(np.rint((sample + 1.0) * 127.5), 0, 255).astype(np.uint8)
                feed = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
            else:
                feed = sample[None]
            outs.append(np.asarray(self.model.predict({self.input_name: feed})[self.output_name], dtype=np.float32))
        return np.concatenate(outs)

    def describe(self) -> dict[str, Any]:
        return {"runtime": "coreml", "version": package_version("coremltools"), "device": self.compute_units.lower(),
                "threads": None, "file": self.path.name}


class CoreMLRuntime(MobileRuntime):
    name = "coreml"
    extra = "coreml"
    module_name = "coremltools"
    convert_modules = ("coremltools",)
    artifacts = dict(FILES)
    gates = {"coreml": "fp16"}

    def runs_here(self) -> tuple[bool, str]:
        return runs_here()

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        self.require()
        require_packages(self, "coremltools.converters.mil")
        import torch

        ct = _ct()
        shape = static_shape(ctx.example_shape)
        module = eval_copy(ctx.module)
        with torch.no_grad():
            exported = torch.export.export(module, (example_input(shape),)).run_decompositions({})
        if len(shape) == 4 and shape[1] in (1, 3):
            layout = ct.colorlayout.RGB if shape[1] == 3 else ct.colorlayout.GRAYSCALE
            inp = ct.ImageType(name="input", shape=shape, scale=1 / 127.5, bias=[-1.0] * shape[1], color_layout=layout)
        else:
            inp = ct.TensorType(name="input", shape=shape, dtype=np.float32)
        fp32 = ctx.options.get("coreml_precision") == "fp32"
        mlmodel = ct.convert(exported, inputs=[inp], outputs=[ct.TensorType(name="output", dtype=np.float32)],
                             convert_to="mlprogram", compute_precision=ct.precision.FLOAT32 if fp32 else ct.precision.FLOAT16,
                             minimum_deployment_target=ct.target.iOS16)
        mlmodel.short_description = "slimgan generator: input image or latent, output in [-1, 1]"
        out = Path(ctx.bundle_dir) / FILES["coreml"]
        if out.exists():
            import shutil

            shutil.rmtree(out)
        mlmodel.save(str(out))
        return ConvertResult((FILES["coreml"],), "fp32" if fp32 else "fp16",
                             {"input": "image" if isinstance(inp, ct.ImageType) else "tensor", "minimum_deployment_target": "iOS16"})

    def parity_rows(self, bundle_dir: Path, result: ConvertResult, reference: Any, inputs: np.ndarray, *,
                    threads: int = 1, data_range: float = 2.0, label: str = "student", module: Any = None) -> list[dict[str, Any]]:
        """Off macOS: one ``validate`` row (:meth:`validate`, with ``module``'s weights); on macOS, predictions."""
        ok, reason = runs_here()
        if ok:
            return super().parity_rows(bundle_dir, result, reference, inputs, threads=threads, data_range=data_range,
                                       label=label, module=module)
        path = Path(bundle_dir) / FILES["coreml"]
        report = self.validate(path, module, (1, *np.asarray(inputs).shape[1:]))
        row: dict[str, Any] = {
            "name": f"{label}: torch vs {self.name} ({path.name})",
            "runtime": self.name,
            "gate": "validate",
            "passed": bool(report["ok"]),
            "criterion": "converted program validated (package loads, ML Program, input/output descriptions, program re-parsed "
                         "with type inference to the generator's output shape, convolution weights equal PyTorch's within fp16 "
                         "rounding); numeric parity not measured",
            "numbers": f"unavailable: {reason}",
            "validation": report,
        }
        if not report["ok"]:
            row["error"] = report.get("error", "validation failed")
        return [row]

    def validate(self, path: str | Path, module: Any = None, shape: tuple[int, ...] | None = None) -> dict[str, Any]:
        """Check the converted package without running it (see module docstring). Returns a report dict
        with ``ok`` and, when not ok, ``error`` (one line)."""
        self.require()
        ct = _ct()
        from coremltools.converters.mil.frontend.milproto.load import load as load_mil

        path = Path(path)
        report: dict[str, Any] = {"ok": False, "file": path.name}
        try:
            model = ct.models.MLModel(str(path), skip_model_load=True)
            spec = model.get_spec()
            report["model_type"] = spec.WhichOneof("Type")
            report["specification_version"] = int(spec.specificationVersion)
            if report["model_type"] != "mlProgram":
                raise SlimganError(f"{path.name} is a {report['model_type']}, not an ML Program")
            inp, out = spec.description.input[0], spec.description.output[0]
            kind = inp.type.WhichOneof("Type")
            report["input"] = {"name": inp.name, "type": kind}
            if kind == "imageType":
                report["input"].update(width=int(inp.type.imageType.width), height=int(inp.type.imageType.height),
                                       color_space=ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(inp.type.imageType.colorSpace))
            out_shape = [int(d) for d in out.type.multiArrayType.shape]
            report["output"] = {"name": out.name, "shape": out_shape,
                                "dtype": ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(out.type.multiArrayType.dataType)}
            program = load_mil(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir)
            main = program.functions["main"]
            inferred = [int(d) for d in main.outputs[0].shape]
            report["inferred_output_shape"] = inferred
            report["ops"] = dict(Counter(op.op_type for op in main.operations))
            if shape is not None:
                expect = [1, *[int(d) for d in shape[1:]]]
                if kind == "imageType" and [int(inp.type.imageType.height), int(inp.type.imageType.width)] != expect[2:]:
                    raise SlimganError(f"{path.name}: image input {report['input']} does not match the generator's input {expect}")
                if inferred[0] != 1 or inferred[2:] != expect[2:]:
                    raise SlimganError(f"{path.name}: the program's inferred output shape {inferred} does not match {expect}")
            if module is not None:
                report["weights"] = _compare_conv_weights(main, module)
                if report["weights"]["mismatched"]:
                    raise SlimganError(f"{path.name}: {report['weights']['mismatched']} convolution weight(s) differ from the PyTorch generator")
        except SlimganError as exc:
            report["error"] = str(exc)
            return report
        except Exception as exc:  # noqa: BLE001 - any failure to read the package is a failed validation
            report["error"] = f"{path.name} did not validate: {type(exc).__name__}: {exc}".splitlines()[0]
            return report
        report["ok"] = True
        return report

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any) -> CoreMLSession:
        self.require()
        ok, reason = runs_here()
        if not ok:
            raise SlimganError(f"runtime coreml: {reason}; the package was validated, not run")
        units = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "ane": "CPU_AND_NE", "auto": "ALL"}.get(device, "CPU_ONLY")
        return CoreMLSession(path, units)

    def describe(self) -> dict[str, Any]:
        ok, reason = runs_here()
        return {"name": self.name, "version": package_version("coremltools"), "device": "cpu" if ok else None,
                "threads": None, "runs_here": ok, "reason": None if ok else reason}


def _compare_conv_weights(main: Any, module: Any) -> dict[str, Any]:
    """Every conv / conv_transpose weight of the MIL program against the module's, in graph order."""
    import torch

    torch_weights = [m.weight.detach().float().numpy() for m in module.modules()
                     if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    mil_weights = []
    for op in main.operations:
        if op.op_type in ("conv", "conv_transpose"):
            w = op.inputs["weight"]
            value = w.val if w.val is not None else (w.op.inputs["x"].val if w.op is not None and "x" in w.op.inputs else None)
            if value is not None:
                mil_weights.append(np.asarray(value, dtype=np.float32))
    pool = list(torch_weights)
    mismatched, worst = 0, 0.0
    for w in mil_weights:
        match = next((i for i, t in enumerate(pool) if t.shape == w.shape), None)
        if match is None:
            mismatched += 1
            continue
        t = pool.pop(match)
        err = float(np.max(np.abs(w - t) / np.maximum(np.abs(t), 1e-3))) if w.size else 0.0
        worst = max(worst, err)
        if err > FP16_WEIGHT_RTOL * 2:
            mismatched += 1
    return {"program_convs": len(mil_weights), "torch_convs": len(torch_weights), "unmatched_torch": len(pool),
            "mismatched": mismatched + len(pool), "max_rel_err": worst}


register_runtime(CoreMLRuntime())
