"""The source convention of an exported checkpoint, and the inputs parity is measured on.

An imported checkpoint records its source repository's pixel convention (``distill.conventions``);
this turns it into the manifest's pre/post-processing, and picks parity inputs: the user's ``--calib``
images when given (real photos make fp16/int8 errors show as they will in use), otherwise random inputs
of the generator's input distribution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from distill.conventions import check_convention, pixel_affine, slimgan_default

# Real images used for parity when --calib is given: enough to cover a few scenes, few enough that the
# teacher comparison stays quick at 256x256.
PARITY_CALIB_IMAGES = 4


def model_convention(model: Any, info: Any) -> dict[str, Any]:
    """The convention recorded in the checkpoint's provenance, else slimgan's own for the model's range."""
    ckpt = getattr(model, "slimgan_checkpoint", None) or {}
    conv = (ckpt.get("config") or {}).get("provenance", {}).get("convention")
    if conv is None:
        return slimgan_default(info.value_range, latent=info.input_kind == "latent")
    return check_convention(dict(conv), source=f"{ckpt.get('path', 'checkpoint')} convention")


def input_range(conv: dict[str, Any], info: Any) -> tuple[float, float]:
    rng = conv.get("input_range") or info.value_range
    return float(rng[0]), float(rng[1])


def output_range(conv: dict[str, Any]) -> tuple[float, float]:
    rng = conv.get("output_range") or (-1.0, 1.0)
    return float(rng[0]), float(rng[1])


def processing_kwargs(conv: dict[str, Any], info: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Preprocessing, Postprocessing) keyword arguments that apply ``conv``."""
    in_scale, in_offset = pixel_affine(input_range(conv, info))
    lo, hi = output_range(conv)
    out_scale, out_offset = pixel_affine((lo, hi))
    pre = {"scale": in_scale, "offset": in_offset}
    post = {"scale": out_scale, "offset": out_offset, "clip": [lo, hi], "rounding": conv.get("rounding", "round")}
    return pre, post


def parity_inputs(
    input_kind: str, shape: tuple[int, ...], batch: int, calib: str | Path | None, value_range: tuple[float, float], make_inputs
) -> tuple[np.ndarray, dict[str, Any]]:
    """(inputs, the ``parity.json`` description of them)."""
    if calib is not None and input_kind == "image":
        from export.int8 import calibration_files, load_calibration_images

        files = calibration_files(calib, PARITY_CALIB_IMAGES)
        x = load_calibration_images(calib, shape[0], shape[1], shape[2], limit=PARITY_CALIB_IMAGES, value_range=value_range)
        return x, {
            "source": "calib",
            "calib_dir": str(Path(calib)),
            "files": [str(p.relative_to(Path(calib))) for p in files],
            "batch": int(x.shape[0]),
            "shape": list(x.shape),
            "distribution": f"--calib images resized to {shape[2]}x{shape[1]}, scaled to [{value_range[0]:g}, {value_range[1]:g}]",
        }
    x = make_inputs(input_kind, shape, batch, seed=0, value_range=value_range)
    lo, hi = value_range
    return x, {
        "source": "random",
        "batch": batch,
        "shape": list(x.shape),
        "distribution": "normal(0, 1)" if input_kind == "latent" else f"uniform[{lo:g}, {hi:g}]",
        "seed": 0,
    }
