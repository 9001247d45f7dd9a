"""Mobile ResNet generator: GAN Compression's student (Li et al., 2020), depthwise-separable blocks.

Same stem, downsamplers, upsamplers and head as ``ResnetGenerator``; each residual block uses
``SeparableConv2d`` = depthwise 3x3 -> norm -> pointwise 1x1. At ngf 16 and 256x256 this is about
1.4 GMACs (the OMGD / CRD horse->zebra student).
"""

from __future__ import annotations

import torch
from torch import nn

from distill.models.norm import get_norm_layer
from distill.models.resnet_generator import build_resnet_trunk
from distill.registry import register_model


class SeparableConv2d(nn.Module):
    """Depthwise k x k conv -> InstanceNorm -> pointwise 1x1 conv (keys ``conv.0``, ``conv.2``).

    As GAN Compression's ``SeparableConv2d`` is called by its generators: with its defaults, so the
    inner norm is always a parameter-free ``InstanceNorm2d`` and both convolutions always have a bias,
    whatever norm the generator around it uses.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, groups=in_channels, bias=True),
            nn.InstanceNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class MobileResnetBlock(nn.Module):
    """x + [pad, sepconv, norm, relu, dropout, pad, sepconv, norm](x)."""

    def __init__(self, dim: int, norm: str, dropout_rate: float):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            SeparableConv2d(dim, dim, 3),
            norm_layer(dim),
            nn.ReLU(True),
            nn.Dropout(dropout_rate),
            nn.ReflectionPad2d(1),
            SeparableConv2d(dim, dim, 3),
            norm_layer(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class MobileResnetGenerator(nn.Module):
    """(B, input_nc, H, W) in [-1, 1] -> (B, output_nc, H, W); H, W multiples of 4."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
        n_blocks: int = 9,
    ):
        super().__init__()
        dim = ngf * 4
        blocks = [MobileResnetBlock(dim, norm, 0.5 if use_dropout else 0.0) for _ in range(n_blocks)]
        self.model = nn.Sequential(*build_resnet_trunk(input_nc, output_nc, ngf, norm, blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@register_model(
    "mobile_resnet_9blocks",
    family="mobile_resnet",
    role="generator",
    task="translate",
    input_kind="image",
    size_multiple=4,
    reference="gan-compression models/modules/mobile_modules.py MobileResnetGenerator",
)
def mobile_resnet_9blocks(
    input_nc: int = 3,
    output_nc: int = 3,
    ngf: int = 64,
    norm: str = "instance",
    use_dropout: bool = False,
) -> MobileResnetGenerator:
    return MobileResnetGenerator(input_nc, output_nc, ngf, norm, use_dropout, n_blocks=9)
