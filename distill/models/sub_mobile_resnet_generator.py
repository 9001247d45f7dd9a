"""GAN Compression's searched student ``sub_mobile_resnet_9blocks`` (Li et al., 2020), key for key.

The per-stage widths come from GAN Compression's configuration string (``--config_str``), e.g.
``16_16_32_16_32_32_16_16`` for its horse->zebra student. With channels ``c`` (8 numbers):

- stem 7x7 conv -> ``c[0]``; downsamplers -> ``2*c[1]`` and ``4*c[2]`` (the trunk width ``d = 4*c[2]``);
- residual blocks 0-2 / 3-5 / 6-8 expand ``d`` to ``4*c[3]`` / ``4*c[4]`` / ``4*c[5]`` inside the block
  (separable conv ``d -> 4*c[k]``, then ``4*c[k] -> d``);
- upsamplers ``d -> 2*c[6]`` and ``2*c[6] -> c[7]``; 7x7 head ``c[7] -> output_nc``; tanh.

A 6-number configuration (GAN Compression's older format) uses ``c[3]`` for all nine blocks and
``c[4]``, ``c[5]`` for the upsamplers. ``legacy_sub_mobile_resnet_9blocks`` is the older searched layout
(GAN Compression's "legacy" horse->zebra student, ``24_24_24_32_20_16``). The forward clamps its input to [-1, 1] first, as the reference
does. Only InstanceNorm (the reference's default and what its students are trained with) or no norm:
the reference sizes some of its norm layers by the *input* configuration, which only a parameter-free
norm tolerates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distill.errors import ConfigError
from distill.models.mobile_resnet_generator import SeparableConv2d
from distill.models.norm import get_norm_layer, uses_bias
from distill.registry import register_model

REFERENCE = "gan-compression models/modules/resnet_architecture/sub_mobile_resnet_generator.py SubMobileResnetGenerator"


def parse_config(config: str | Sequence[int]) -> list[int]:
    """``"16_16_32_16_32_32_16_16"`` or a list of ints -> 8 (or 6) positive ints."""
    if isinstance(config, str):
        try:
            channels = [int(c) for c in config.strip().split("_")]
        except ValueError as exc:
            raise ConfigError(f"config {config!r} is not a GAN Compression configuration string like 16_16_32_16_32_32_16_16") from exc
    else:
        try:
            channels = [int(c) for c in config]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config {config!r} must be a string like 16_16_32_16_32_32_16_16 or a list of ints") from exc
    if len(channels) not in (6, 8) or any(c <= 0 for c in channels):
        raise ConfigError(f"config {config!r}: expected 8 (or 6) positive channel numbers, got {len(channels)}")
    return channels


def config_string(channels: Sequence[int]) -> str:
    return "_".join(str(int(c)) for c in channels)


def block_widths(channels: Sequence[int], n_blocks: int = 9, legacy: bool = False) -> list[int]:
    """The configuration entry each residual block's inner width comes from (before the x4).

    ``legacy`` (GAN Compression's ``LegacySubMobileResnetGenerator``): only the first block of each
    group of three takes the searched width; the other two keep the trunk width ``c[2]``.
    """
    widths = []
    for i in range(n_blocks):
        searched = channels[3] if len(channels) == 6 else channels[3 + i // 3]
        widths.append(channels[2] if legacy and i % 3 else searched)
    return widths


def up_widths(channels: Sequence[int]) -> tuple[int, int]:
    return (channels[4], channels[5]) if len(channels) == 6 else (channels[6], channels[7])


class SubMobileResnetBlock(nn.Module):
    """x + [pad, sep(ic->oc), norm, relu, dropout, pad, sep(oc->ic), norm](x)."""

    def __init__(self, ic: int, oc: int, norm: str, dropout_rate: float):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            SeparableConv2d(ic, oc, 3),
            norm_layer(oc),
            nn.ReLU(True),
            nn.Dropout(dropout_rate),
            nn.ReflectionPad2d(1),
            SeparableConv2d(oc, ic, 3),
            norm_layer(ic),  # the reference writes norm_layer(oc) here; parameter-free, so the count is moot
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class SubMobileResnetGenerator(nn.Module):
    """(B, input_nc, H, W) in [-1, 1] -> (B, output_nc, H, W); H, W multiples of 4."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        config: str | Sequence[int] = "16_16_32_16_32_32_16_16",
        norm: str = "instance",
        dropout_rate: float = 0.0,
        n_blocks: int = 9,
        legacy: bool = False,
    ):
        super().__init__()
        if norm not in ("instance", "none"):
            raise ConfigError(f"sub_mobile_resnet_9blocks supports norm instance or none (as the reference can run), not {norm!r}")
        c = parse_config(config)
        self.channels = c
        norm_layer = get_norm_layer(norm)
        bias = uses_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, c[0], 7, bias=bias),
            norm_layer(c[0]),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            layers += [
                nn.Conv2d(c[i] * mult, c[i + 1] * mult * 2, 3, stride=2, padding=1, bias=bias),
                norm_layer(c[i + 1] * mult * 2),
                nn.ReLU(True),
            ]
        ic = c[2]
        layers += [SubMobileResnetBlock(ic * 4, oc * 4, norm, dropout_rate) for oc in block_widths(c, n_blocks, legacy)]
        for i, oc in enumerate(up_widths(c)):
            mult = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(ic * mult, oc * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                norm_layer(oc * mult // 2),
                nn.ReLU(True),
            ]
            ic = oc
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ic, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.clamp(-1, 1))


@register_model(
    "sub_mobile_resnet_9blocks",
    family="sub_mobile_resnet",
    role="generator",
    task="translate",
    input_kind="image",
    size_multiple=4,
    width_arg="config",
    reference=REFERENCE,
)
def sub_mobile_resnet_9blocks(
    input_nc: int = 3,
    output_nc: int = 3,
    config: str | list[int] = "16_16_32_16_32_32_16_16",
    norm: str = "instance",
    dropout_rate: float = 0.0,
) -> SubMobileResnetGenerator:
    return SubMobileResnetGenerator(input_nc, output_nc, config, norm, dropout_rate, n_blocks=9)


@register_model(
    "legacy_sub_mobile_resnet_9blocks",
    family="sub_mobile_resnet",
    role="generator",
    task="translate",
    input_kind="image",
    size_multiple=4,
    width_arg="config",
    reference="gan-compression models/modules/resnet_architecture/legacy_sub_mobile_resnet_generator.py",
)
def legacy_sub_mobile_resnet_9blocks(
    input_nc: int = 3,
    output_nc: int = 3,
    config: str | list[int] = "24_24_24_32_20_16",
    norm: str = "instance",
    dropout_rate: float = 0.0,
) -> SubMobileResnetGenerator:
    return SubMobileResnetGenerator(input_nc, output_nc, config, norm, dropout_rate, n_blocks=9, legacy=True)
