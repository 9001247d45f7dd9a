"""OpenVINO INT8 by NNCF post-training quantisation of the bundle's IR (``model.int8.xml``).

Calibrated on the ``--calib`` inputs (one sample per NNCF step, all of them), with NNCF's defaults for
CPU: symmetric per-channel int8 weights, int8 activations, fast bias correction. ``preset="mixed"``
quantises activations asymmetrically where they are not ReLU-positive (the generators' InstanceNorm
outputs and the Tanh head input), which recovers most of the accuracy of the performance preset at
the same speed. Needs the ``openvino-int8`` extra (NNCF).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from export.library_logs import library_logs_to
from slimgan.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)

EXTRA = "openvino-int8"


def nncf_problem() -> str | None:
    """Why NNCF cannot be used here (None when it can)."""
    try:
        import nncf  # noqa: F401
    except ImportError:
        return f"OpenVINO INT8 needs NNCF (python package 'nncf' not importable): pip install 'slimgan[{EXTRA}]'"
    except Exception as exc:  # noqa: BLE001 - a broken install
        return f"OpenVINO INT8 needs NNCF (python package 'nncf' failed to import: {type(exc).__name__})"
    return None


def quantize_ir(src_xml: str | Path, dst_xml: str | Path, calib: np.ndarray | None, options: dict[str, Any] | None = None) -> list[str]:
    """Quantise ``src_xml`` to ``dst_xml`` on ``calib`` (N, ...) float32 inputs; returns the written file names."""
    problem = nncf_problem()
    if problem:
        raise MissingDependencyError(problem)
    if calib is None or len(calib) == 0:
        raise ConfigError("OpenVINO INT8 needs calibration inputs (--calib DIR)")
    os.environ.setdefault("OPENVINO_TELEMETRY_DISABLE", "1")  # no network calls from a build step
    import nncf
    import openvino as ov

    options = options or {}
    model = ov.Core().read_model(str(src_xml))
    dataset = nncf.Dataset([np.ascontiguousarray(s[None], dtype=np.float32) for s in calib])
    preset = nncf.QuantizationPreset.MIXED if options.get("int8_preset", "mixed") == "mixed" else nncf.QuantizationPreset.PERFORMANCE
    dst = Path(dst_xml)
    with library_logs_to(dst.parent / "logs" / "int8-openvino.log"):
        quantized = nncf.quantize(model, dataset, preset=preset, subset_size=len(calib), fast_bias_correction=True)
    ov.save_model(quantized, str(dst), compress_to_fp16=False)
    return [dst.name, dst.with_suffix(".bin").name]
