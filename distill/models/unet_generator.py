"""U-Net generator, as pix2pix ``UnetGenerator`` / ``UnetSkipConnectionBlock``.

State-dict compatible with pytorch-CycleGAN-and-pix2pix: nested ``model.model.1.model.1.weight``
keys, one ``.model`` level per skip block, outermost first.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from distill.models.norm import get_norm_layer, uses_bias
from distill.registry import register_model

REFERENCE = "pytorch-CycleGAN-and-pix2pix models/networks.py UnetGenerator"


class SkipBlock(nn.Module):
    """One U-Net level: the outermost returns ``model(x)``, the others ``cat([x, model(x)])``."""

    outermost = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


def nest_levels(block, input_nc: int, output_nc: int, num_downs: int, ngf: int, inner_kw: dict) -> SkipBlock:
    """The U-Net from the innermost level out: ``block(outer_nc, inner_nc, ...)`` per level, ngf·8 at the
    bottom, ``num_downs`` levels in all; ``inner_kw`` (e.g. dropout) goes to the ngf·8 middle levels."""
    level = block(ngf * 8, ngf * 8, innermost=True)
    for _ in range(num_downs - 5):
        level = block(ngf * 8, ngf * 8, submodule=level, **inner_kw)
    level = block(ngf * 4, ngf * 8, submodule=level)
    level = block(ngf * 2, ngf * 4, submodule=level)
    level = block(ngf, ngf * 2, submodule=level)
    return block(output_nc, ngf, input_nc=input_nc, submodule=level, outermost=True)


class UnetSkipConnectionBlock(SkipBlock):
    """|-- downsampling -- |submodule| -- upsampling --| with the input concatenated to the output."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ):
        super().__init__()
        self.outermost = outermost
        norm_layer = get_norm_layer(norm)
        bias = uses_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, norm_layer(inner_nc), submodule, uprelu, upconv, norm_layer(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)


class UnetGenerator(nn.Module):
    """(B, input_nc, H, W) -> (B, output_nc, H, W); H and W must be multiples of 2**num_downs."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = False,
    ):
        super().__init__()
        self.model = nest_levels(functools.partial(UnetSkipConnectionBlock, norm=norm), input_nc, output_nc,
                                 num_downs, ngf, {"use_dropout": use_dropout})

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C_out, H, W)
        return self.model(x)


def _register(num_downs: int) -> None:
    size = 2**num_downs

    @register_model(
        f"unet_{size}",
        family="unet",
        role="generator",
        task="translate",
        input_kind="image",
        size_multiple=size,
        reference=REFERENCE,
    )
    def build(
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> UnetGenerator:
        return UnetGenerator(input_nc, output_nc, num_downs, ngf, norm, use_dropout)


_register(8)
_register(7)
