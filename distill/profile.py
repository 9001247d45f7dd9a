"""Parameter and MAC counting.

MACs come from ``torch.utils.flop_counter`` (1 MAC = 2 FLOPs). PyTorch counts a transposed
convolution by its *input* size; the GAN-compression literature (and the 56.8 G quoted for
resnet_9blocks at 256x256) counts it by its *output* size, so the convolution formula is overridden to
do the same. Everything else uses PyTorch's own formulas.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_aten = torch.ops.aten


def _conv_flops(x_shape, w_shape, out_shape, transposed: bool) -> int:
    # Every output (or, for a transposed conv, every *output* position as in the literature) costs
    # prod(w_shape) / groups-adjusted MACs: w_shape is (C_out, C_in/groups, k...) for a conv and
    # (C_in, C_out/groups, k...) for a transposed conv; both give C_out*C_in/groups*k per position.
    batch = x_shape[0]
    spatial = math.prod(out_shape[2:])
    return 2 * batch * math.prod(w_shape) * spatial


def _convolution_flop(x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, *args, out_shape=None, **kwargs):
    return _conv_flops(x_shape, w_shape, out_shape, transposed)


def _conv_backward_flop(*args, **kwargs):  # counting is for inference; backward is not asked for
    return 0


_CUSTOM = {
    _aten.convolution: _convolution_flop,
    _aten._convolution: _convolution_flop,
}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def example_input(model: nn.Module, res: int = 256, batch: int = 1) -> torch.Tensor:
    """An input of the model's real distribution: an image in its value range ([-1, 1] mostly) or a latent from N(0, 1)."""
    from distill.registry import model_info

    cfg = getattr(model, "slimgan_config", None)
    if cfg is None:
        raise ValueError("model was not built by create_model; pass an explicit input")
    info = model_info(cfg["arch"])
    kwargs = cfg["kwargs"]
    gen = torch.Generator().manual_seed(0)
    if info.input_kind == "latent":
        return torch.randn(batch, kwargs["nz"], generator=gen)
    channels = kwargs.get("input_nc", kwargs.get("nc", 3))
    if "image_size" in kwargs:
        res = kwargs["image_size"]
    lo, hi = info.value_range
    return torch.rand(batch, channels, res, res, generator=gen) * (hi - lo) + lo


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor | None = None, res: int = 256) -> int:
    """Multiply-accumulates for one forward pass of ``example`` (batch 1 at ``res`` x ``res`` by default)."""
    if example is None:
        example = example_input(model, res)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_CUSTOM)
    try:
        with counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def describe(model: nn.Module, res: int = 256) -> dict[str, Any]:
    """Architecture, arguments, parameter count and MACs at ``res`` (for ``slimgan info``)."""
    cfg = getattr(model, "slimgan_config", {"arch": type(model).__name__, "kwargs": {}})
    macs = count_macs(model, res=res)
    return {
        "arch": cfg["arch"],
        "kwargs": cfg["kwargs"],
        "res": res,
        "params": count_params(model),
        "macs": macs,
        "gmacs": round(macs / 1e9, 4),
        "mparams": round(count_params(model) / 1e6, 4),
    }


@torch.no_grad()
def list_layers(model: nn.Module, res: int = 256) -> list[dict[str, Any]]:
    """Every named module with its type, output shape at ``res`` (batch 1) and own parameter count.

    The ``path`` values are what ``feature_kd`` / ``channel_distill`` / ``kernel_alignment`` recipes
    name in ``layers`` (forward hooks are registered by module path).
    """
    shapes: dict[str, list[int] | None] = {}
    handles = []
    for path, module in model.named_modules():
        if not path:
            continue

        def hook(_m, _inp, out, path=path):
            shapes[path] = list(out.shape) if isinstance(out, torch.Tensor) else None

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(example_input(model, res=res))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    layers = []
    for path, module in model.named_modules():
        if not path:
            continue
        layers.append({"path": path, "type": type(module).__name__, "output_shape": shapes.get(path),
                       "params": sum(p.numel() for p in module.parameters(recurse=False)),
                       "leaf": not any(True for _ in module.children())})
    return layers
