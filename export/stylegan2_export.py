"""StyleGAN2 -> ONNX with the truncation ψ as a second graph input and the tracked mean w inside.

The graph computes ``synthesis(w̄ + ψ (mapping(z) - w̄))`` with:

- inputs ``input`` (B, nz) ~ N(0, 1) and ``truncation`` (B, 1), one ψ per sample. ``truncation`` also
  has an initializer of 1.0 (ONNX's default for an input), so a caller that feeds only ``input``
  (the parity, speed and INT8 code paths, a plain ONNX Runtime session) gets untruncated images;
- w̄ (``mean_w``) a constant of the graph;
- the noise inputs fixed: the checkpoint's ``noises.noise_N`` buffers are constants, so one (seed, ψ)
  gives one image on every runtime (the manifest says so under ``controls.noise``);
- modulated convolutions in the model's own exact form, ``conv(x ⊙ s)·d`` with the demodulation
  coefficients ``d`` computed from the style (no grouped convolution, so the batch axis stays dynamic).

onnxsim and the graph rewrites of :mod:`export.optimize` are not applied (they would treat the
overridable ``truncation`` initializer as a constant); the graph passes ``onnx.checker``'s full check.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from export.exporters import register_exporter
from export.onnx_export import (
    DEFAULT_OPSET,
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_NAME,
    ExportError,
    OnnxExport,
    _shape_of,
)

TRUNCATION_NAME = "truncation"
PARITY_TRUNCATIONS = (0.7, 0.5)


class TruncatedGenerator(nn.Module):
    """``(z, ψ) -> G(z, truncation=ψ)`` in eval mode (fixed noise)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:  # (B, nz), (B, 1) -> (B, C, S, S)
        return self.generator(z, truncation=truncation)


def is_stylegan2(model: nn.Module) -> bool:
    return hasattr(model, "truncate") and hasattr(model, "mean_w") and hasattr(model, "synthesis")


@dataclass
class StyleGAN2Export(OnnxExport):
    """An :class:`OnnxExport` with the ``truncation`` input; ``controls`` goes to the manifest."""

    controls: dict[str, Any] = field(default_factory=dict)

    def parity_rows(self, model: nn.Module, z: np.ndarray, threads: int) -> list[dict[str, Any]]:
        """torch vs ONNX fp32 at ψ < 1, where the mean w inside the graph matters (ψ = 1 is the plain row)."""
        from export.parity import compare
        from export.runtimes.onnxruntime import make_session

        sess = make_session(self.path, threads=threads)
        rows = []
        for psi in PARITY_TRUNCATIONS:
            t = np.full((z.shape[0], 1), psi, dtype=np.float32)
            with torch.no_grad():
                ref = model(torch.from_numpy(z), truncation=torch.from_numpy(t)).numpy()
            out = sess.run(None, {INPUT_NAME: z, TRUNCATION_NAME: t})[0]
            rows.append(compare(f"student: torch vs onnx fp32, truncation {psi:g}", out, ref, "fp32"))
        return rows


@register_exporter("stylegan2", matches=is_stylegan2)
def export_stylegan2(model: nn.Module, path: str | Path, example: torch.Tensor, *, opset: int = DEFAULT_OPSET,
                     dynamic_batch: bool = True, **_: Any) -> StyleGAN2Export:
    """Export a StyleGAN2 generator (eval mode) to ``path``; see the module docstring."""
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset} is too old; slimgan exports opset >= {MIN_OPSET}")
    path = Path(path)
    was_training = model.training
    model.eval()
    wrapper = TruncatedGenerator(model).eval()
    psi = torch.ones(example.shape[0], 1)
    axes = {INPUT_NAME: {0: "batch"}, TRUNCATION_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (example, psi), buffer, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME, TRUNCATION_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=axes, do_constant_folding=True,
                              training=torch.onnx.TrainingMode.EVAL)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    # ψ = 1 when the caller feeds only the latent: an initializer with the input's name is its default
    proto.graph.initializer.append(numpy_helper.from_array(np.ones((1, 1), dtype=np.float32), TRUNCATION_NAME))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported StyleGAN2 graph fails onnx.checker: {exc}") from exc
    proto.producer_name = "slimgan"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    inputs = {i.name: i for i in proto.graph.input}
    controls = {
        "truncation": {"input": TRUNCATION_NAME, "shape": _shape_of(inputs[TRUNCATION_NAME]), "default": 1.0,
                       "mean_w": "inside the graph (the checkpoint's tracked mean w)",
                       "formula": "w = mean_w + truncation * (mapping(z) - mean_w)"},
        "noise": "fixed: the checkpoint's per-layer noise buffers are constants of the graph",
    }
    return StyleGAN2Export(
        path=path, opset=opset, input_name=INPUT_NAME, output_name=OUTPUT_NAME,
        input_shape=_shape_of(inputs[INPUT_NAME]), output_shape=_shape_of(proto.graph.output[0]),
        dynamic_batch=dynamic_batch, dynamic_spatial=False, simplified=False,
        notes=["stylegan2: truncation is a graph input (default 1.0), mean w and the noise are constants; "
               "onnxsim and graph rewrites not applied"],
        controls=controls,
    )
