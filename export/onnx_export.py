"""PyTorch -> ONNX: eval-mode export, full ``onnx.checker`` check, verified onnxsim simplification.

The module is exported in eval mode (BatchNorm uses running statistics, Dropout is the identity),
which fixes the classic pix2pix export bug where ONNX outputs differ from PyTorch because the graph
was traced in training mode. Batch and spatial axes are dynamic where the architecture allows it:
image-to-image generators (and PatchGAN discriminators) accept any batch and any H, W that is a
multiple of ``size_multiple``; latent generators have a dynamic batch and a fixed output size.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from slimgan.errors import SlimganError

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
MIN_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"


class ExportError(SlimganError):
    """The model could not be exported or the exported graph failed its checks."""


@dataclass
class OnnxExport:
    """What :func:`export_onnx` produced and what was verified about it."""

    path: Path
    opset: int
    input_name: str
    output_name: str
    input_shape: list[int | str]
    output_shape: list[int | str]
    dynamic_batch: bool
    dynamic_spatial: bool
    simplified: bool
    notes: list[str] = field(default_factory=list)
    optimized: list[str] = field(default_factory=list)
    variants: dict[str, Path] = field(default_factory=dict)  # runtime -> graph optimised for it (export_onnx targets)


def dynamic_axes_for(input_kind: str, spatial: bool, batch: bool = True) -> dict[str, dict[int, str]]:
    """``dynamic_axes`` for ``torch.onnx.export``: batch always, H/W only for image inputs when allowed."""
    axes_in: dict[int, str] = {0: "batch"} if batch else {}
    axes_out: dict[int, str] = {0: "batch"} if batch else {}
    if spatial and input_kind == "image":
        axes_in.update({2: "height", 3: "width"})
        axes_out.update({2: "height", 3: "width"})
    return {INPUT_NAME: axes_in, OUTPUT_NAME: axes_out}


def _torch_export(model: nn.Module, example: torch.Tensor, opset: int, dynamic_axes: dict | None) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns about its own deprecation and about InstanceNorm "train=True"
        # (InstanceNorm without running stats always normalises by the input's statistics; correct).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and gives plain opset-17 graphs
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
        )
    return onnx.load_from_string(buffer.getvalue())


def run_onnx(model: onnx.ModelProto | str | Path, x: np.ndarray, threads: int = 2) -> np.ndarray:
    """Run one input through ONNX Runtime CPU (used to verify graphs; sessions: export.runtimes.onnxruntime)."""
    from export.runtimes.onnxruntime import make_session

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    sess = make_session(source, threads=threads)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def simplify_verified(
    model: onnx.ModelProto, example: np.ndarray, atol: float = 1e-5
) -> tuple[onnx.ModelProto, bool, str]:
    """onnxsim-simplify ``model`` and check the result against the unsimplified graph on ``example``.

    Returns ``(model, simplified, note)``; on any failure the unsimplified model comes back with a
    warning logged, never a silently different graph.
    """
    try:
        import onnxsim
    except ImportError:
        note = "onnxsim is not installed; graph left unsimplified"
        log.warning(note)
        return model, False, note
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:  # noqa: BLE001 - onnxsim raises many types; any failure means fall back
        note = f"onnxsim failed ({type(exc).__name__}: {exc}); graph left unsimplified"
        log.warning(note)
        return model, False, note
    if not ok:
        note = "onnxsim could not validate its result; graph left unsimplified"
        log.warning(note)
        return model, False, note
    ref = run_onnx(model, example)
    out = run_onnx(simplified, example)
    err = float(np.max(np.abs(ref - out))) if ref.size else 0.0
    if not np.isfinite(err) or err > atol + atol * float(np.max(np.abs(ref))):
        note = f"onnxsim changed the output (max abs diff {err:.3g}); graph left unsimplified"
        log.warning(note)
        return model, False, note
    return simplified, True, f"onnxsim verified (max abs diff {err:.3g} vs unsimplified)"


def _shape_of(value: onnx.ValueInfoProto) -> list[int | str]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]


def bake_parametrizations(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with weight parametrizations (spectral norm) replaced by their current value.

    In eval mode spectral norm divides W by sigma estimated from the stored power-iteration vectors;
    the exported graph should hold the resulting weight, not the estimate (``aten::vdot`` has no ONNX op).
    """
    from torch.nn.utils import parametrize

    if not any(parametrize.is_parametrized(m) for m in model.modules()):
        return model
    baked = copy.deepcopy(model).eval()
    with torch.no_grad():
        targets = [m for m in baked.modules() if parametrize.is_parametrized(m)]
        for module in targets:
            # remove_parametrizations would edit the parametrized class, which the copy shares with
            # the caller's model; swap the copy back to its plain class by hand instead.
            values = {name: getattr(module, name).detach().clone() for name in module.parametrizations}
            module.__class__ = module.__class__.__bases__[0]
            del module._modules["parametrizations"]
            for name, value in values.items():
                module.register_parameter(name, nn.Parameter(value))
    return baked


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example: torch.Tensor,
    *,
    input_kind: str = "image",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    dynamic_spatial: bool = True,
    simplify: bool = True,
    optimize: bool = True,
    targets: dict[str, str | Path] | None = None,
) -> OnnxExport:
    """Export ``model`` (switched to eval mode) to ``path`` and verify the graph.

    ``example`` is an input of the real distribution at the checked shape. The graph passes
    ``onnx.checker.check_model(full_check=True)``; when a dynamic-spatial export does not run at a second
    size in ONNX Runtime, the export is repeated with fixed spatial axes and the fallback is noted.
    A model family with its own exporter (:mod:`export.exporters`, e.g. StyleGAN2) is exported by it.
    """
    from export.exporters import exporter_for

    family_exporter = exporter_for(model)
    if family_exporter is not None:
        return family_exporter(model, path, example, opset=opset, dynamic_batch=dynamic_batch)
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset} is too old; slimgan exports opset >= {MIN_OPSET}")
    path = Path(path)
    original = model
    was_training = model.training
    model.eval()
    notes: list[str] = []
    try:
        model = bake_parametrizations(original)
        spatial = dynamic_spatial and input_kind == "image"
        try:
            proto = _torch_export(model, example, opset, dynamic_axes_for(input_kind, spatial, dynamic_batch))
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types
            raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: {exc}") from exc
        x = example.detach().cpu().numpy().astype(np.float32)
        if spatial:
            proto, spatial = _check_spatial(model, proto, example, opset, dynamic_batch, notes)
        _check(proto, "exported graph")
        simplified = False
        if simplify:
            proto, simplified, note = simplify_verified(proto, x)
            notes.append(note)
            if simplified:
                _check(proto, "simplified graph")
        optimized: list[str] = []
        variants: dict[str, Path] = {}
        if optimize:
            proto, optimized, variants = _optimize(model, proto, x, spatial, input_kind, targets or {}, notes)
    finally:
        original.train(was_training)
    proto.producer_name = "slimgan"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return OnnxExport(
        path=path, opset=opset, input_name=INPUT_NAME, output_name=OUTPUT_NAME,
        input_shape=_shape_of(proto.graph.input[0]), output_shape=_shape_of(proto.graph.output[0]),
        dynamic_batch=dynamic_batch, dynamic_spatial=spatial, simplified=simplified, notes=notes,
        optimized=[n for n in optimized if n.startswith("optimised")], variants=variants,
    )


def _check(proto: onnx.ModelProto, what: str) -> None:
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{what} fails onnx.checker: {exc}") from exc


def _optimize(model: nn.Module, proto: onnx.ModelProto, x: np.ndarray, spatial: bool, input_kind: str,
              targets: dict[str, str | Path], notes: list[str]) -> tuple[onnx.ModelProto, list[str], dict[str, Path]]:
    """The exact rewrites of :mod:`export.optimize`, verified on ``x`` (and a second size when the graph
    is dynamic); each of ``targets`` (runtime -> path) gets its own variant written."""
    from export.optimize import optimize_verified

    step = _size_step(model)
    probes = [x]
    if spatial:  # also a second size, as the dynamic graph must hold at every valid size
        probes.append(_probe(x, step))
    even = input_kind == "image" and step % 2 == 0
    variants: dict[str, Path] = {}
    for target, target_path in targets.items():
        variant, v_notes = optimize_verified(proto, probes, even_inputs=even, target=target)
        variant.producer_name = "slimgan"
        Path(target_path).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(variant, str(target_path))
        variants[target] = Path(target_path)
        notes += v_notes
    proto, optimized = optimize_verified(proto, probes, even_inputs=even)
    notes += optimized
    return proto, optimized, variants


def _check_spatial(
    model: nn.Module, proto: onnx.ModelProto, example: torch.Tensor, opset: int, dynamic_batch: bool, notes: list[str]
) -> tuple[onnx.ModelProto, bool]:
    """Run the dynamic graph at a second spatial size; fall back to fixed H, W if it fails or differs."""
    h, w = example.shape[-2:]
    step = _size_step(model)
    other = torch.rand(1, example.shape[1], h + step, w + 2 * step, generator=torch.Generator().manual_seed(1)) * 2 - 1
    try:
        with torch.no_grad():
            ref = model(other).numpy()
        out = run_onnx(proto, other.numpy())
        ok = out.shape == ref.shape and float(np.max(np.abs(out - ref))) <= 1e-3
    except Exception as exc:  # noqa: BLE001 - ORT or the model rejecting the size both mean "fixed"
        log.debug("dynamic spatial check failed: %s", exc)
        ok = False
    if ok:
        return proto, True
    notes.append(f"spatial axes fixed at {h}x{w}: the graph does not generalise to other sizes")
    log.warning(notes[-1])
    return _torch_export(model, example, opset, dynamic_axes_for("image", False, dynamic_batch)), False


def _probe(x: np.ndarray, step: int) -> np.ndarray:
    """An input of the same distribution as ``x`` at (H + step, W + 2 step), batch 2."""
    rng = np.random.default_rng(3)
    h, w = x.shape[-2:]
    return rng.uniform(-1.0, 1.0, (2, x.shape[1], h + step, w + 2 * step)).astype(np.float32)


def _size_step(model: nn.Module) -> int:
    cfg: dict[str, Any] = getattr(model, "slimgan_config", {}) or {}
    try:
        from distill.registry import model_info

        return max(4, model_info(cfg["arch"]).size_multiple)
    except (KeyError, SlimganError):
        return 4
