"""SNGAN-style ResNet generator and discriminator (Miyato et al. 2018) for hinge-loss GANs.

The discriminator has spectral norm on every conv and linear layer; the generator optionally too
(``spectral_norm=True``, as SAGAN does). ``image_size`` is a power of two >= 16; the generator starts
at 4x4 and doubles per residual up-block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from distill.errors import ConfigError
from distill.registry import register_model


def _num_blocks(image_size: int) -> int:
    blocks = int(math.log2(image_size)) - 2 if image_size > 0 else -1
    if blocks < 2 or 2 ** (blocks + 2) != image_size:
        raise ConfigError(f"image_size must be a power of two >= 16, got {image_size}")
    return blocks


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(module) if enabled else module


class GeneratorBlock(nn.Module):
    """BN-ReLU-up-conv-BN-ReLU-conv plus an upsampled 1x1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int, sn: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = _sn(nn.Conv2d(in_ch, out_ch, 3, padding=1), sn)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = _sn(nn.Conv2d(out_ch, out_ch, 3, padding=1), sn)
        self.shortcut = _sn(nn.Conv2d(in_ch, out_ch, 1), sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class SNGANGenerator(nn.Module):
    """z (B, nz) ~ N(0, 1) -> image (B, nc, S, S) in [-1, 1]."""

    def __init__(self, nz: int = 128, ngf: int = 256, nc: int = 3, image_size: int = 32, spectral_norm: bool = False):
        super().__init__()
        self.nz, self.ngf = nz, ngf
        self.linear = _sn(nn.Linear(nz, 4 * 4 * ngf), spectral_norm)
        self.blocks = nn.Sequential(*[GeneratorBlock(ngf, ngf, spectral_norm) for _ in range(_num_blocks(image_size))])
        self.bn = nn.BatchNorm2d(ngf)
        self.conv_out = _sn(nn.Conv2d(ngf, nc, 3, padding=1), spectral_norm)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, nz) -> (B, nc, S, S)
        h = self.linear(z).reshape(z.shape[0], self.ngf, 4, 4)
        h = self.blocks(h)
        return torch.tanh(self.conv_out(F.relu(self.bn(h))))


class DiscriminatorBlock(nn.Module):
    """(ReLU)-conv-ReLU-conv-avgpool plus a 1x1 (pooled) shortcut; all spectrally normalised."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, first: bool):
        super().__init__()
        self.first, self.downsample = first, downsample
        self.conv1 = spectral_norm(nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.shortcut = spectral_norm(nn.Conv2d(in_ch, out_ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        s = x
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        if self.first:
            s = self.shortcut(F.avg_pool2d(s, 2) if self.downsample else s)
        else:
            s = self.shortcut(s)
            s = F.avg_pool2d(s, 2) if self.downsample else s
        return h + s


class SNGANDiscriminator(nn.Module):
    """image (B, nc, S, S) -> logits (B,); ReLU then global sum pooling then SN linear."""

    def __init__(self, ndf: int = 128, nc: int = 3, image_size: int = 32):
        super().__init__()
        n_down = _num_blocks(image_size) - 1  # down to 8x8 for 32, then two plain blocks
        blocks: list[nn.Module] = [DiscriminatorBlock(nc, ndf, downsample=True, first=True)]
        blocks += [DiscriminatorBlock(ndf, ndf, downsample=True, first=False) for _ in range(n_down - 1)]
        blocks += [DiscriminatorBlock(ndf, ndf, downsample=False, first=False) for _ in range(2)]
        self.blocks = nn.Sequential(*blocks)
        self.linear = spectral_norm(nn.Linear(ndf, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # (B, ndf)
        return self.linear(h).flatten()


@register_model(
    "sngan", family="sngan", role="generator", task="generate", input_kind="latent",
    reference="Miyato et al. 2018, ResNet generator for hinge-loss GANs",
)
def sngan(nz: int = 128, ngf: int = 256, nc: int = 3, image_size: int = 32, spectral_norm: bool = False) -> SNGANGenerator:
    return SNGANGenerator(nz, ngf, nc, image_size, spectral_norm)


@register_model(
    "sngan_discriminator", family="sngan", role="discriminator", task="discriminate", input_kind="image",
    width_arg="ndf", reference="Miyato et al. 2018, spectrally normalised ResNet discriminator",
)
def sngan_discriminator(ndf: int = 128, nc: int = 3, image_size: int = 32) -> SNGANDiscriminator:
    return SNGANDiscriminator(ndf, nc, image_size)
