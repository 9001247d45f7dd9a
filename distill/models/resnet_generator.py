"""ResNet generator (Johnson et al.), as CycleGAN / pix2pix ``ResnetGenerator``.

State-dict compatible with pytorch-CycleGAN-and-pix2pix: keys ``model.1.weight`` (stem conv),
``model.4``/``model.7`` (downsampling), ``model.10 .. model.{9+n_blocks}`` (residual blocks with
``conv_block.1`` / ``conv_block.5`` or ``.6`` with dropout), then two ConvTranspose upsamplers and the
7x7 output conv.
"""

from __future__ import annotations

import torch
from torch import nn

from distill.models.norm import get_norm_layer, uses_bias
from distill.registry import register_model

REFERENCE = "pytorch-CycleGAN-and-pix2pix models/networks.py ResnetGenerator"


class ResnetBlock(nn.Module):
    """x + [pad, conv3x3, norm, relu, (dropout), pad, conv3x3, norm](x)."""

    def __init__(self, dim: int, norm: str, use_dropout: bool, padding_type: str = "reflect"):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        bias = uses_bias(norm)
        pad = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d}[padding_type]
        layers: list[nn.Module] = [pad(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [pad(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def build_resnet_trunk(
    input_nc: int,
    output_nc: int,
    ngf: int,
    norm: str,
    blocks: list[nn.Module],
) -> list[nn.Module]:
    """Stem, two stride-2 downsamplers, ``blocks``, two ConvTranspose upsamplers, 7x7 head, tanh."""
    norm_layer = get_norm_layer(norm)
    bias = uses_bias(norm)
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(input_nc, ngf, 7, bias=bias),
        norm_layer(ngf),
        nn.ReLU(True),
    ]
    for i in range(2):
        mult = 2**i
        layers += [
            nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
            norm_layer(ngf * mult * 2),
            nn.ReLU(True),
        ]
    layers += blocks
    for i in range(2):
        mult = 2 ** (2 - i)
        layers += [
            nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
            norm_layer(ngf * mult // 2),
            nn.ReLU(True),
        ]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
    return layers


class ResnetGenerator(nn.Module):
    """Image-to-image generator: (B, input_nc, H, W) in [-1, 1] -> (B, output_nc, H, W) in [-1, 1].

    H and W must be multiples of 4 (two stride-2 downsamplers).
    """

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
        blocks = [ResnetBlock(dim, norm, use_dropout) for _ in range(n_blocks)]
        self.model = nn.Sequential(*build_resnet_trunk(input_nc, output_nc, ngf, norm, blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C_out, H, W)
        return self.model(x)


def _register(n_blocks: int) -> None:
    @register_model(
        f"resnet_{n_blocks}blocks",
        family="resnet",
        role="generator",
        task="translate",
        input_kind="image",
        size_multiple=4,
        reference=REFERENCE,
    )
    def build(
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
    ) -> ResnetGenerator:
        return ResnetGenerator(input_nc, output_nc, ngf, norm, use_dropout, n_blocks=n_blocks)


_register(9)
_register(6)
