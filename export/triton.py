"""A Triton Inference Server model repository for a bundle (``--triton DIR``).

Layout::

    DIR/<name>/config.pbtxt
    DIR/<name>/1/model.onnx   (platform onnxruntime_onnx)   or   1/model.plan (tensorrt_plan)

Dynamic batching is on; ``max_batch_size`` is the bundle's maximum batch and the dims exclude the
batch axis (``-1`` for dynamic spatial axes), as Triton expects when ``max_batch_size > 0``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from export.manifest import Manifest

_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


def _dims(shape: list[int | str]) -> str:
    return "[ " + ", ".join(str(d) if isinstance(d, int) else "-1" for d in shape[1:]) + " ]"


def triton_config(manifest: Manifest, model_name: str, platform: str, max_batch: int) -> str:
    """The ``config.pbtxt`` text for the bundle's model."""
    inp, out = manifest.input, manifest.output
    preferred = sorted({b for b in (1, max(1, max_batch // 2), max_batch) if b >= 1})
    return (
        f'name: "{model_name}"\n'
        f'platform: "{platform}"\n'
        f"max_batch_size: {max_batch}\n"
        "input [\n"
        f'  {{ name: "{inp.name}" data_type: {_DTYPES[inp.dtype]} dims: {_dims(inp.shape)} }}\n'
        "]\n"
        "output [\n"
        f'  {{ name: "{out.name}" data_type: {_DTYPES[out.dtype]} dims: {_dims(out.shape)} }}\n'
        "]\n"
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
        "  max_queue_delay_microseconds: 2000\n"
        "}\n"
        'instance_group [ { count: 1 kind: KIND_AUTO } ]\n'
    )


def write_triton_repository(bundle_dir: str | Path, repo_dir: str | Path, manifest: Manifest, prefer_plan: bool = True) -> Path:
    """Copy the bundle's engine (or fp32 ONNX) into a Triton repository; returns the model folder."""
    bundle_dir, repo_dir = Path(bundle_dir), Path(repo_dir)
    model_name = re.sub(r"[^A-Za-z0-9_.-]", "_", manifest.name) or "slimgan"
    use_plan = prefer_plan and "plan" in manifest.files
    platform = "tensorrt_plan" if use_plan else "onnxruntime_onnx"
    src = manifest.model_path(bundle_dir, "plan" if use_plan else "fp32")
    model_dir = repo_dir / model_name
    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, version_dir / ("model.plan" if use_plan else "model.onnx"))
    max_batch = manifest.max_batch or 8
    (model_dir / "config.pbtxt").write_text(triton_config(manifest, model_name, platform, max_batch))
    return model_dir
