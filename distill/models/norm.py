"""Normalisation layers exactly as pytorch-CycleGAN-and-pix2pix builds them (``get_norm_layer``)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from distill.errors import ConfigError

NORMS = ("instance", "batch", "none")


def get_norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """``batch``: affine BatchNorm with running stats; ``instance``: InstanceNorm without affine or stats."""
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda channels: nn.Identity()
    raise ConfigError(f"unknown norm {norm!r}; choose one of: {', '.join(NORMS)}")


def uses_bias(norm: str) -> bool:
    """The reference gives convolutions a bias only when followed by InstanceNorm (no affine).

    With ``norm=none`` its ``get_norm_layer`` returns a plain function, not a ``functools.partial`` of
    ``InstanceNorm2d``, so ``use_bias`` comes out False there too.
    """
    return norm == "instance"
