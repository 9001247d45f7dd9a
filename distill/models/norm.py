"""Normalisation layers exactly as pytorch-CycleGAN-and-pix2pix builds them (``get_norm_layer``).

``instance_affine`` is InstanceNorm with a learned per-channel scale and shift (and, like ``instance``, no
running statistics): the reference's code with ``affine=True``, which some published CycleGAN generators
were trained with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from distill.errors import ConfigError

NORMS = ("instance", "instance_affine", "batch", "none")


def get_norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """``batch``: affine BatchNorm with running stats; ``instance``: InstanceNorm without affine or stats;
    ``instance_affine``: InstanceNorm with affine weight and bias, no stats."""
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "instance_affine":
        return functools.partial(nn.InstanceNorm2d, affine=True, track_running_stats=False)
    if norm == "none":
        return lambda channels: nn.Identity()
    raise ConfigError(f"unknown norm {norm!r}; choose one of: {', '.join(NORMS)}")


def uses_bias(norm: str) -> bool:
    """The reference gives convolutions a bias only when followed by InstanceNorm (affine or not: it tests
    ``norm_layer.func == nn.InstanceNorm2d``).

    With ``norm=none`` its ``get_norm_layer`` returns a plain function, not a ``functools.partial`` of
    ``InstanceNorm2d``, so ``use_bias`` comes out False there too.
    """
    return norm in ("instance", "instance_affine")
