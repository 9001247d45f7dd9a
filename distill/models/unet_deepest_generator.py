"""OMGD's deep U-Net teacher (``unet_deepest_256``): the pix2pix U-Net with two residual bottleneck
blocks on each side of every skip level but the innermost (Ren et al. 2021, the "deeper" of its two
complementary online teachers; the wide one is ``unet_256`` at ngf 64, the deep one this at ngf 16).

Residual block (inner width 4·dim): pad → 1×1 conv (dim→4dim) → norm → ReLU → 3×3 conv → norm →
ReLU → 1×1 conv (4dim→dim) → norm → ReLU → dropout → pad → 3×3 conv → norm, added to its input.
Skip levels are nested as in :mod:`distill.models.unet_generator` (``model.model.1...`` keys).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from distill.models.norm import get_norm_layer, uses_bias
from distill.models.unet_generator import SkipBlock, nest_levels
from distill.registry import register_model

REFERENCE = "bytedance/OMGD models/modules/unet_architecture/unet_deepest_generator.py UnetDeepestGenerator"


class BottleneckBlock(nn.Module):
    """x + block(x), block widening to 4·dim inside (1×1, 3×3, 1×1), then a 3×3 at dim."""

    def __init__(self, dim: int, norm: str, dropout: float = 0.0) -> None:
        super().__init__()
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, 4 * dim, 1, bias=bias), norm_layer(4 * dim), nn.ReLU(True),
            nn.Conv2d(4 * dim, 4 * dim, 3, bias=bias), norm_layer(4 * dim), nn.ReLU(True),
            nn.Conv2d(4 * dim, dim, 1, bias=bias), norm_layer(dim), nn.ReLU(True),
            nn.Dropout(dropout),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class DeepSkipBlock(SkipBlock):
    """|-- down -- [2 blocks] -- |submodule| -- up -- [2 blocks] --| with the input concatenated to the output."""

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None, submodule: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        self.outermost = outermost
        norm_layer, bias = get_norm_layer(norm), uses_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        blocks = lambda dim: [BottleneckBlock(dim, norm, dropout) for _ in range(2)]  # noqa: E731
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [downconv, *blocks(inner_nc), submodule, *blocks(inner_nc * 2), nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True), upconv, norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), downconv, norm_layer(inner_nc), *blocks(inner_nc), submodule,
                      nn.ReLU(True), upconv, norm_layer(outer_nc), *blocks(outer_nc), nn.Dropout(dropout)]
        self.model = nn.Sequential(*layers)


class UnetDeepestGenerator(nn.Module):
    """(B, input_nc, H, W) -> (B, output_nc, H, W); H and W must be multiples of 2**num_downs."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, num_downs: int = 8, ngf: int = 16, norm: str = "batch",
                 dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.model = nest_levels(functools.partial(DeepSkipBlock, norm=norm), input_nc, output_nc, num_downs, ngf,
                                 {"dropout": dropout_rate})

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C_out, H, W)
        return self.model(x)


@register_model("unet_deepest_256", family="unet", role="generator", task="translate", input_kind="image",
                size_multiple=256, reference=REFERENCE)
def unet_deepest_256(input_nc: int = 3, output_nc: int = 3, ngf: int = 16, norm: str = "batch",
                     dropout_rate: float = 0.0) -> UnetDeepestGenerator:
    return UnetDeepestGenerator(input_nc, output_nc, 8, ngf, norm, dropout_rate)
