"""The searchable ResNet student: every sub-network of ``slimgan search``'s supernet, as a zoo model.

One architecture family spans the latency-aware search space (``distill/search/space.py``):

- per-stage widths: stem ``stem``, first downsampler ``down``, residual trunk ``trunk``, the inner
  width of each residual block (``blocks``, one number per block, so its length is the block count),
  and the two upsamplers ``up`` (two numbers);
- ``block``: ``separable`` (GAN Compression's depthwise 3x3 -> norm -> pointwise 1x1, twice) or ``dense``
  (two plain 3x3 convolutions, the ResNet block of CycleGAN);
- ``upsample``: ``deconv`` (ConvTranspose 3x3 stride 2) or ``resize`` (nearest x2, then a 3x3 convolution);
- ``norm``: ``instance`` (per image, computed at run time) or ``batch`` (running statistics, which export
  folds into the preceding convolution, so the deployed graph has no normalisation left).

With the defaults (``stem=16, down=32, trunk=64, blocks=[64]*9, up=[32, 16]``, separable, deconv,
instance) the network computes exactly what ``mobile_resnet_9blocks`` at ngf 16 computes, layer for
layer: the search's reference lies inside its space.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distill.errors import ConfigError
from distill.registry import register_model

BLOCKS = ("separable", "dense")
UPSAMPLES = ("deconv", "resize")
NORMS = ("instance", "batch")


def parse_widths(value: str | int | Sequence[int], name: str, count: int | None = None) -> list[int]:
    """``"64_32_32"``, ``[64, 32, 32]`` or ``64`` -> a list of positive ints (of ``count`` numbers if given)."""
    try:
        if isinstance(value, str):
            widths = [int(v) for v in value.strip().split("_")]
        elif isinstance(value, int):
            widths = [value]
        else:
            widths = [int(v) for v in value]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}={value!r} must be positive ints, as a list or joined by '_' (e.g. 64_32_32)") from exc
    if not widths or any(w <= 0 for w in widths):
        raise ConfigError(f"{name}={value!r} must hold positive ints")
    if count is not None and len(widths) != count:
        raise ConfigError(f"{name}={value!r} must hold {count} numbers, got {len(widths)}")
    return widths


def make_norm(norm: str, channels: int) -> nn.Module:
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    raise ConfigError(f"norm {norm!r}: choose one of {', '.join(NORMS)}")


class SepConv(nn.Module):
    """Depthwise k x k -> norm -> pointwise 1x1 (GAN Compression's ``SeparableConv2d`` with a chosen norm)."""

    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, groups=cin, bias=True)
        self.norm = make_norm(norm, cin)
        self.pw = nn.Conv2d(cin, cout, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.norm(self.dw(x)))


class SearchBlock(nn.Module):
    """x + [pad, conv(d -> w), norm, relu, pad, conv(w -> d), norm](x); conv = SepConv or dense 3x3."""

    def __init__(self, dim: int, inner: int, block: str, norm: str):
        super().__init__()
        bias = norm == "instance"
        if block == "separable":
            conv1, conv2 = SepConv(dim, inner, norm), SepConv(inner, dim, norm)
        else:
            conv1, conv2 = nn.Conv2d(dim, inner, 3, bias=bias), nn.Conv2d(inner, dim, 3, bias=bias)
        self.pad1 = nn.ReflectionPad2d(1)
        self.conv1 = conv1
        self.norm1 = make_norm(norm, inner)
        self.act = nn.ReLU(True)
        self.pad2 = nn.ReflectionPad2d(1)
        self.conv2 = conv2
        self.norm2 = make_norm(norm, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(self.pad1(x))))
        return x + self.norm2(self.conv2(self.pad2(y)))


class UpStage(nn.Module):
    """x2 up-sampling: ConvTranspose 3x3 stride 2, or nearest resize then 3x3 conv; then norm, ReLU."""

    def __init__(self, cin: int, cout: int, upsample: str, norm: str):
        super().__init__()
        bias = norm == "instance"
        if upsample == "deconv":
            self.resize = nn.Identity()
            self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=bias)
        else:
            self.resize = nn.Upsample(scale_factor=2, mode="nearest")
            self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
        self.norm = make_norm(norm, cout)
        self.act = nn.ReLU(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.resize(x))))


class DownStage(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, norm: str):
        super().__init__()
        self.pad = nn.ReflectionPad2d(3) if kernel == 7 else nn.Identity()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=0 if kernel == 7 else 1, bias=norm == "instance")
        self.norm = make_norm(norm, cout)
        self.act = nn.ReLU(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.pad(x))))


class SearchableResnetGenerator(nn.Module):
    """(B, input_nc, H, W) in [-1, 1] -> (B, output_nc, H, W) in [-1, 1]; H, W multiples of 4."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        stem: int = 16,
        down: int = 32,
        trunk: int = 64,
        blocks: str | Sequence[int] = (64,) * 9,
        up: str | Sequence[int] = (32, 16),
        block: str = "separable",
        upsample: str = "deconv",
        norm: str = "instance",
    ):
        super().__init__()
        for name, value, choices in (("block", block, BLOCKS), ("upsample", upsample, UPSAMPLES), ("norm", norm, NORMS)):
            if value not in choices:
                raise ConfigError(f"{name} {value!r}: choose one of {', '.join(choices)}")
        inner = parse_widths(blocks, "blocks")
        up1, up2 = parse_widths(up, "up", count=2)
        stem, down, trunk = (parse_widths(v, n, count=1)[0] for n, v in (("stem", stem), ("down", down), ("trunk", trunk)))
        self.stem = DownStage(input_nc, stem, 7, 1, norm)
        self.down1 = DownStage(stem, down, 3, 2, norm)
        self.down2 = DownStage(down, trunk, 3, 2, norm)
        self.blocks = nn.Sequential(*[SearchBlock(trunk, w, block, norm) for w in inner])
        self.up1 = UpStage(trunk, up1, upsample, norm)
        self.up2 = UpStage(up1, up2, upsample, norm)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(up2, output_nc, 7), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down2(self.down1(self.stem(x)))
        x = self.blocks(x)
        return self.head(self.up2(self.up1(x)))


@register_model(
    "searchable_resnet",
    family="searchable_resnet",
    role="generator",
    task="translate",
    input_kind="image",
    size_multiple=4,
    width_arg="trunk",
    reference="slimgan search space (GAN Compression-style once-for-all ResNet student)",
)
def searchable_resnet(
    input_nc: int = 3,
    output_nc: int = 3,
    stem: int = 16,
    down: int = 32,
    trunk: int = 64,
    blocks: str | list[int] = "64_64_64_64_64_64_64_64_64",
    up: str | list[int] = "32_16",
    block: str = "separable",
    upsample: str = "deconv",
    norm: str = "instance",
) -> SearchableResnetGenerator:
    return SearchableResnetGenerator(input_nc, output_nc, stem, down, trunk, blocks, up, block, upsample, norm)
