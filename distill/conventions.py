"""Pre- and post-processing conventions of the repositories slimgan imports from.

Each source repository turns pixels into tensors and back in its own way; an imported checkpoint records
its source's convention (``config.json`` provenance ``convention``), the exported manifest carries it,
and ``slimgan serve`` applies it, so served pixels match what the source's own test script writes.

A convention is a plain dict (JSON, torch-free)::

    {"name": "pix2pix", "channel_order": "RGB",
     "input_range": [-1, 1],            # uint8 0..255 maps linearly onto this
     "output_range": [-1, 1],           # this maps linearly back onto 0..255 (clipped)
     "rounding": "truncate" | "round",  # how the scaled output becomes uint8
     "source": "..."}                   # the code that defines it
"""

from __future__ import annotations

from typing import Any

from distill.errors import ConfigError

ROUNDINGS = ("round", "truncate")

CONVENTIONS: dict[str, dict[str, Any]] = {
    # pix2pix / CycleGAN and its forks (GAN Compression, CAT, OMGD, CRD): ToTensor + Normalize(0.5, 0.5)
    # in, util.tensor2im out: (y + 1) / 2 * 255, clipped to [0, 255], then astype(uint8), which truncates.
    "pix2pix": {
        "name": "pix2pix",
        "channel_order": "RGB",
        "input_range": [-1.0, 1.0],
        "output_range": [-1.0, 1.0],
        "rounding": "truncate",
        "source": "pytorch-CycleGAN-and-pix2pix util/util.py tensor2im",
    },
    # fast-neural-style: ToTensor then mul(255) in; save_image clamps to [0, 255] and truncates.
    "fast_neural_style": {
        "name": "fast_neural_style",
        "channel_order": "RGB",
        "input_range": [0.0, 255.0],
        "output_range": [0.0, 255.0],
        "rounding": "truncate",
        "source": "pytorch/examples fast_neural_style/neural_style/utils.py save_image",
    },
    # DCGAN: torchvision save_image rounds (mul(255).add_(0.5)); with normalize=True it also min-max
    # scales the whole grid, which depends on the batch and is not reproduced per image.
    "dcgan_examples": {
        "name": "dcgan_examples",
        "channel_order": "RGB",
        "input_range": None,
        "output_range": [-1.0, 1.0],
        "rounding": "round",
        "source": "pytorch/examples dcgan/main.py vutils.save_image(normalize=True)",
    },
}

# Which convention an imported family's source repository uses.
FAMILY_CONVENTION = {
    "resnet": "pix2pix",
    "unet": "pix2pix",
    "patchgan": "pix2pix",
    "mobile_resnet": "pix2pix",
    "sub_mobile_resnet": "pix2pix",
    "inception": "pix2pix",
    "unet_deepest": "pix2pix",
    "mobile_resnet_deepest": "pix2pix",
    "transformer_net": "fast_neural_style",
    "dcgan": "dcgan_examples",
}


def slimgan_default(value_range: tuple[float, float] | list[float] | None, latent: bool = False) -> dict[str, Any]:
    """slimgan's own convention for a model whose input holds ``value_range``: round to nearest."""
    rng = [float(v) for v in (value_range or (-1.0, 1.0))]
    return {
        "name": "slimgan",
        "channel_order": "RGB",
        "input_range": None if latent else rng,
        "output_range": rng if not latent else [-1.0, 1.0],
        "rounding": "round",
        "source": "slimgan",
    }


def convention_for_family(family: str, value_range: tuple[float, float] | None = None) -> dict[str, Any]:
    name = FAMILY_CONVENTION.get(family)
    return dict(CONVENTIONS[name]) if name else slimgan_default(value_range)


def check_convention(conv: Any, source: str = "convention") -> dict[str, Any]:
    """Validate a convention dict (from a checkpoint or a manifest); returns it."""
    if not isinstance(conv, dict):
        raise ConfigError(f"{source}: expected an object, got {conv!r}")
    if conv.get("rounding", "round") not in ROUNDINGS:
        raise ConfigError(f"{source}: rounding must be one of {', '.join(ROUNDINGS)}, got {conv.get('rounding')!r}")
    if conv.get("channel_order", "RGB") != "RGB":
        raise ConfigError(f"{source}: channel_order {conv.get('channel_order')!r} is not supported (RGB only)")
    for key in ("input_range", "output_range"):
        rng = conv.get(key)
        if rng is not None and (not isinstance(rng, (list, tuple)) or len(rng) != 2 or not float(rng[1]) > float(rng[0])):
            raise ConfigError(f"{source}: {key} must be [low, high] with low < high, got {rng!r}")
    return conv


def pixel_affine(value_range: list[float] | tuple[float, float]) -> tuple[float, float]:
    """(scale, offset) with ``value = uint8 * scale + offset`` mapping 0..255 onto ``value_range``."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return (hi - lo) / 255.0, lo
