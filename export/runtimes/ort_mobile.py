"""ONNX Runtime Mobile: ``model.ort`` (ORT format) and ``model.required_operators_and_types.config``.

``convert`` runs ONNX Runtime's own converter (``onnxruntime.tools.convert_onnx_models_to_ort``) on the
bundle's fp32 ``model.onnx`` with the ``Fixed`` optimisation style for an ARM target (the graph is
optimised once, here, with only the optimisations that are valid on a phone's CPU, and saved that way)
and type reduction on. The config file is the reduced-operator configuration a custom minimal
ONNX Runtime build for the app takes (``build.sh --minimal_build --include_ops_by_config <config>``):
it lists exactly the operators and input types the model uses.

``load`` opens the ``.ort`` file in an ONNX Runtime CPU session with slimgan's standard options (the
full build runs ORT-format models with the same kernels a minimal build keeps).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

from export.runtimes import register_runtime
from export.runtimes.base import ConvertContext, ConvertResult
from export.runtimes.mobile import MobileRuntime, package_version, require_packages
from export.runtimes.onnxruntime import OrtSession
from slimgan.errors import SlimganError

FILES = {"ort-mobile": "model.ort", "ort-mobile-config": "model.required_operators_and_types.config"}
TARGET_PLATFORM = "arm"


class OrtMobileSession(OrtSession):
    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "runtime": "ort-mobile", "format": "ORT"}


class OrtMobileRuntime(MobileRuntime):
    name = "ort-mobile"
    extra = "ort-mobile"
    module_name = "onnxruntime"
    convert_modules = ("onnxruntime",)
    artifacts = dict(FILES)
    gates = {"ort-mobile": "fp32"}

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        self.require()
        require_packages(self, "onnxruntime.tools.convert_onnx_models_to_ort")
        from onnxruntime.tools import convert_onnx_models_to_ort as to_ort

        onnx_path = Path(ctx.onnx_path)
        if not onnx_path.is_file():
            raise SlimganError(f"ort-mobile converts the bundle's fp32 ONNX; {onnx_path} is missing")
        bundle = Path(ctx.bundle_dir)
        with tempfile.TemporaryDirectory(prefix="slimgan-ort-") as tmp:
            src = Path(tmp) / "model.onnx"
            shutil.copyfile(onnx_path, src)
            out = Path(tmp) / "out"
            log = io.StringIO()
            with contextlib.redirect_stdout(log):
                to_ort.convert_onnx_models_to_ort(src, out, optimization_styles=[to_ort.OptimizationStyle.Fixed],
                                                  target_platform=TARGET_PLATFORM, enable_type_reduction=True)
            ort_file = out / "model.ort"
            configs = sorted(out.glob("*.config"))
            if not ort_file.is_file() or not configs:
                raise SlimganError(f"ONNX Runtime's ORT-format converter wrote no model for {onnx_path}: {log.getvalue().strip()[-300:]}")
            shutil.move(str(ort_file), bundle / FILES["ort-mobile"])
            text = configs[0].read_text()
            # The generated header names the temporary folder; keep only the operator lines and our own note.
            body = "\n".join(ln for ln in text.splitlines() if ln and not ln.startswith("#"))
            (bundle / FILES["ort-mobile-config"]).write_text(
                "# Reduced-operator config for a minimal ONNX Runtime build of model.ort\n"
                "# (build.sh --minimal_build --include_ops_by_config model.required_operators_and_types.config --enable_reduced_operator_type_support)\n"
                + body + "\n"
            )
        return ConvertResult((FILES["ort-mobile"], FILES["ort-mobile-config"]), "fp32",
                             {"optimization_style": "Fixed", "target_platform": TARGET_PLATFORM})

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any) -> OrtMobileSession:
        self.require()
        if device not in ("cpu", "auto"):
            raise SlimganError(f"ort-mobile runs on the CPU here; device {device!r} is not supported")
        return OrtMobileSession(path, threads, "cpu", **opts)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": package_version("onnxruntime"), "device": "cpu", "format": "ORT",
                "optimization_style": "Fixed", "target_platform": TARGET_PLATFORM, "threads": None}


register_runtime(OrtMobileRuntime())
