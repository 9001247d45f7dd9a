"""CAT's inception ResNet generator ``inception_9blocks`` (Jin et al., 2021), teacher and pruned students.

Key for key with snap-research/CAT ``InceptionGenerator`` / ``InvertedResidualChannels``:
``down_sampling`` (7x7 stem and two stride-2 convs), ``features`` (nine inception residual blocks),
``up_sampling`` (two ConvTranspose, 7x7 head, tanh). Each block sums, for every kernel size ``k``, a
*res* branch ``pad, k x k conv -> c, norm, act, dropout, pad, k x k conv -> d`` and a *dw* branch
``1x1 conv -> c, norm, act, pad, depthwise k x k, norm, act, dropout, 1x1 conv -> d``, then adds the
input after one more norm (``pw_bn``). A branch of width 0 is left out, as CAT does after pruning.

Two ways to give the widths:

- as CAT's options: ``ngf``, ``channels`` (None: the trunk width ``4*ngf``; an int or one per kernel
  size), ``channels_reduction_factor`` (branch width = channels // factor), ``kernel_sizes``;
- as the pruned layout CAT's ``shrink`` produces, which no option string describes: ``config =
  {"down": [c0, c1, c2], "blocks": [{"res": [[k, c], ...], "dw": [[k, c], ...]}, ... 9], "up": [u0, u1]}``.
  ``slimgan import`` reads it off the weights.

``norm`` / ``norm_affine`` / ``norm_track_running_stats`` are CAT's ``--norm``, ``--norm_affine`` and
``--norm_track_running_stats`` (its horse->zebra teacher and students use instance norm with affine).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from distill.errors import ConfigError
from distill.registry import register_model

REFERENCE = "CAT models/modules/inception_architecture/inception_generator.py InceptionGenerator"
ACTIVATIONS = {
    "nn.ReLU": functools.partial(nn.ReLU, inplace=True),
    "nn.ReLU6": functools.partial(nn.ReLU6, inplace=True),
    "nn.LeakyReLU": functools.partial(nn.LeakyReLU, inplace=True),
}


def _norm_layer(norm: str, affine: bool, track: bool):
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=affine, track_running_stats=track)
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=affine, track_running_stats=track)
    raise ConfigError(f"inception_9blocks norm must be instance or batch, got {norm!r}")


def default_layout(ngf: int, channels: int | Sequence[int] | None, reduction: int, kernel_sizes: Sequence[int],
                   n_blocks: int = 9) -> dict[str, Any]:
    """The unpruned layout CAT's options describe."""
    d = 4 * ngf
    ks = [int(k) for k in kernel_sizes]
    if channels is None:
        widths = [d // reduction for _ in ks]
    elif isinstance(channels, int):
        widths = [channels // reduction for _ in ks]
    else:
        if len(channels) != len(ks):
            raise ConfigError(f"channels {list(channels)} needs one entry per kernel size {ks}")
        widths = [int(c) // reduction for c in channels]
    branches = [[k, w] for k, w in zip(ks, widths, strict=True)]
    return {"down": [ngf, 2 * ngf, d], "blocks": [{"res": branches, "dw": branches} for _ in range(n_blocks)], "up": [2 * ngf, ngf]}


def check_layout(config: Any) -> dict[str, Any]:
    """Validate a pruned layout; returns it with ints."""
    try:
        down = [int(c) for c in config["down"]]
        up = [int(c) for c in config["up"]]
        blocks = [
            {kind: [[int(k), int(c)] for k, c in block.get(kind, [])] for kind in ("res", "dw")}
            for block in config["blocks"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"inception_9blocks config must be {{'down': [3 ints], 'blocks': [{{'res': [[k, c], ...], 'dw': [...]}}, ...], "
            f"'up': [2 ints]}}, got {config!r}"
        ) from exc
    if len(down) != 3 or len(up) != 2 or not blocks:
        raise ConfigError(f"inception_9blocks config needs 3 'down' widths, 2 'up' widths and the blocks; got {config!r}")
    return {"down": down, "blocks": blocks, "up": up}


class ConvNormAct(nn.Sequential):
    """CAT ``ConvBNReLU``: conv (no padding), norm, activation (keys ``0``, ``1``)."""

    def __init__(self, cin: int, cout: int, k: int, groups: int, bias: bool, norm_layer, act):
        super().__init__(nn.Conv2d(cin, cout, k, 1, 0, groups=groups, bias=bias), norm_layer(cout), act())


class InceptionBlock(nn.Module):
    """CAT ``InvertedResidualChannels``: x + pw_bn(sum of res and dw branches)."""

    def __init__(self, dim: int, res: list[list[int]], dw: list[list[int]], bias: bool, norm_layer, act, dropout_rate: float):
        super().__init__()
        self.res_ops = nn.ModuleList()
        for k, c in res:
            if c == 0:
                continue
            p = (k - 1) // 2
            self.res_ops.append(nn.Sequential(
                nn.ReflectionPad2d(p),
                ConvNormAct(dim, c, k, 1, bias, norm_layer, act),
                nn.Dropout(dropout_rate),
                nn.ReflectionPad2d(p),
                nn.Conv2d(c, dim, k, 1, 0, bias=bias),
            ))
        self.dw_ops = nn.ModuleList()
        for k, c in dw:
            if c == 0:
                continue
            self.dw_ops.append(nn.Sequential(
                ConvNormAct(dim, c, 1, 1, bias, norm_layer, act),
                nn.ReflectionPad2d((k - 1) // 2),
                ConvNormAct(c, c, k, c, bias, norm_layer, act),
                nn.Dropout(dropout_rate),
                nn.Conv2d(c, dim, 1, 1, 0, bias=bias),
            ))
        self.pw_bn = norm_layer(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = [*self.res_ops, *self.dw_ops]
        if not ops:
            return x
        return x + self.pw_bn(sum(op(x) for op in ops))


class InceptionGenerator(nn.Module):
    """(B, input_nc, H, W) in [-1, 1] -> (B, output_nc, H, W); H, W multiples of 4."""

    def __init__(self, input_nc: int, output_nc: int, layout: dict[str, Any], norm: str = "instance", norm_affine: bool = False,
                 norm_track_running_stats: bool = False, norm_epsilon: float = 1e-5, dropout_rate: float = 0.0,
                 active_fn: str = "nn.ReLU"):
        super().__init__()
        if active_fn not in ACTIVATIONS:
            raise ConfigError(f"active_fn must be one of {', '.join(ACTIVATIONS)}, got {active_fn!r}")
        act = ACTIVATIONS[active_fn]
        outer_norm = _norm_layer(norm, norm_affine, norm_track_running_stats)
        block_norm = functools.partial(outer_norm, eps=norm_epsilon)
        bias = norm == "instance"
        c0, c1, c2 = layout["down"]
        u0, u1 = layout["up"]
        self.down_sampling = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(input_nc, c0, 7, bias=bias), outer_norm(c0), nn.ReLU(True),
            nn.Conv2d(c0, c1, 3, stride=2, padding=1, bias=bias), outer_norm(c1), nn.ReLU(True),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=bias), outer_norm(c2), nn.ReLU(True),
        )
        self.features = nn.Sequential(*[
            InceptionBlock(c2, b["res"], b["dw"], bias, block_norm, act, dropout_rate) for b in layout["blocks"]
        ])
        self.up_sampling = nn.Sequential(
            nn.ConvTranspose2d(c2, u0, 3, stride=2, padding=1, output_padding=1, bias=bias), outer_norm(u0), nn.ReLU(True),
            nn.ConvTranspose2d(u0, u1, 3, stride=2, padding=1, output_padding=1, bias=bias), outer_norm(u1), nn.ReLU(True),
            nn.ReflectionPad2d(3), nn.Conv2d(u1, output_nc, 7), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up_sampling(self.features(self.down_sampling(x)))


@dataclass(frozen=True)
class InceptionOptions:
    """The arguments of ``inception_9blocks``: CAT's InceptionGenerator options. ``config`` (a layout from a
    pruned checkpoint) overrides ``ngf`` / ``channels`` / ``channels_reduction_factor`` / ``kernel_sizes``."""

    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    channels: int | list[int] | None = None
    channels_reduction_factor: int = 1
    kernel_sizes: tuple[int, ...] | list[int] = (3, 5, 7)
    norm: str = "instance"
    norm_affine: bool = False
    norm_track_running_stats: bool = False
    norm_epsilon: float = 1e-5
    dropout_rate: float = 0.0
    active_fn: str = "nn.ReLU"
    config: dict[str, Any] | None = None


@register_model(
    "inception_9blocks",
    family="inception",
    role="generator",
    task="translate",
    input_kind="image",
    size_multiple=4,
    reference=REFERENCE,
    options=InceptionOptions,
)
def inception_9blocks(**kwargs: Any) -> InceptionGenerator:
    o = InceptionOptions(**kwargs)
    if len(set(o.kernel_sizes)) != len(o.kernel_sizes):
        raise ConfigError(f"kernel_sizes {list(o.kernel_sizes)} has duplicates (CAT does not allow them)")
    layout = (check_layout(o.config) if o.config is not None
              else default_layout(o.ngf, o.channels, o.channels_reduction_factor, o.kernel_sizes))
    return InceptionGenerator(o.input_nc, o.output_nc, layout, o.norm, o.norm_affine, o.norm_track_running_stats,
                              o.norm_epsilon, o.dropout_rate, o.active_fn)
