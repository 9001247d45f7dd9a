"""PatchGAN discriminator, as pix2pix ``NLayerDiscriminator`` (``basic`` = 3 layers, 70x70 receptive field)."""

from __future__ import annotations

import torch
from torch import nn

from distill.models.norm import get_norm_layer, uses_bias
from distill.registry import register_model

REFERENCE = "pytorch-CycleGAN-and-pix2pix models/networks.py NLayerDiscriminator"


class NLayerDiscriminator(nn.Module):
    """(B, input_nc, H, W) -> (B, 1, H', W') patch logits."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        bias = uses_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias),
                norm_layer(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias),
            norm_layer(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@register_model(
    "basic", family="patchgan", role="discriminator", task="discriminate", input_kind="image",
    width_arg="ndf", reference=REFERENCE,
)
def basic(input_nc: int = 3, ndf: int = 64, norm: str = "batch") -> NLayerDiscriminator:
    return NLayerDiscriminator(input_nc, ndf, 3, norm)


@register_model(
    "n_layers", family="patchgan", role="discriminator", task="discriminate", input_kind="image",
    width_arg="ndf", reference=REFERENCE,
)
def n_layers(input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> NLayerDiscriminator:
    return NLayerDiscriminator(input_nc, ndf, n_layers, norm)
