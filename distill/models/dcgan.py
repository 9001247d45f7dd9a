"""DCGAN generator and discriminator (Radford et al.), the KD-GAN paper's teacher/student family.

``ngf`` / ``ndf`` is the paper's depth scale factor d: every layer's width is a multiple of it, so a
student is the same constructor at a smaller d. ``image_size`` is a power of two >= 16.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from distill.errors import ConfigError
from distill.registry import register_model


def _num_stages(image_size: int) -> int:
    stages = int(math.log2(image_size)) - 2 if image_size > 0 else -1
    if stages < 2 or 2 ** (stages + 2) != image_size:
        raise ConfigError(f"image_size must be a power of two >= 16, got {image_size}")
    return stages


class DCGANGenerator(nn.Module):
    """z (B, nz) ~ N(0, 1) -> image (B, nc, image_size, image_size) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64):
        super().__init__()
        stages = _num_stages(image_size)
        self.nz = nz
        mult = 2 ** (stages - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, ngf * mult, 4, 1, 0, bias=False),  # (B, ngf*mult, 4, 4)
            nn.BatchNorm2d(ngf * mult),
            nn.ReLU(True),
        ]
        for _ in range(stages - 1):
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * mult // 2),
                nn.ReLU(True),
            ]
            mult //= 2
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, nz) -> (B, nc, S, S)
        return self.main(z.reshape(z.shape[0], self.nz, 1, 1))


class DCGANDiscriminator(nn.Module):
    """image (B, nc, S, S) -> logits (B,)."""

    def __init__(self, ndf: int = 64, nc: int = 3, image_size: int = 64):
        super().__init__()
        stages = _num_stages(image_size)
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        mult = 1
        for _ in range(stages - 1):
            layers += [
                nn.Conv2d(ndf * mult, ndf * mult * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * mult * 2),
                nn.LeakyReLU(0.2, True),
            ]
            mult *= 2
        layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 0, bias=False)]  # (B, 1, 1, 1)
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


@register_model(
    "dcgan", family="dcgan", role="generator", task="generate", input_kind="latent",
    reference="Radford et al. 2016; KD-GAN (Aguinaldo et al. 2019) depth scale factor",
)
def dcgan(nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64) -> DCGANGenerator:
    return DCGANGenerator(nz, ngf, nc, image_size)


@register_model(
    "dcgan_discriminator", family="dcgan", role="discriminator", task="discriminate", input_kind="image",
    width_arg="ndf", reference="Radford et al. 2016",
)
def dcgan_discriminator(ndf: int = 64, nc: int = 3, image_size: int = 64) -> DCGANDiscriminator:
    return DCGANDiscriminator(ndf, nc, image_size)
