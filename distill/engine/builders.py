"""Model builders: generators, discriminators and their optimisers from a recipe's sections.

Every method and every teacher side builds its networks here, so a section (``student``,
``discriminator``, ``teacher.model`` ...) means the same thing wherever it appears.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from distill.checkpoint import load_checkpoint, read_checkpoint_config
from distill.engine.config import DiscriminatorConfig, ModelConfig, RunConfig
from distill.errors import ConfigError
from distill.losses.adversarial import check_gan_mode
from distill.registry import create_model, model_info


def build_generator(cfg: ModelConfig, init: Path | None = None) -> nn.Module:
    """A generator from its config (``arch`` + ``ngf`` or ``width`` + ``kwargs``), optionally initialised from a checkpoint."""
    if not cfg.arch:
        raise ConfigError("a generator section needs arch; choose a registered generator")
    return _create(cfg.arch, dict(cfg.kwargs), cfg.width, "ngf", cfg.ngf, init)


def mirrored(cfg: ModelConfig) -> ModelConfig:
    """The same generator with input and output channels swapped (CycleGAN's G_B for a G_A)."""
    kw = dict(cfg.kwargs)
    kw["input_nc"], kw["output_nc"] = kw.get("output_nc", 3), kw.get("input_nc", 3)
    return ModelConfig(arch=cfg.arch, width=cfg.width, ngf=cfg.ngf, kwargs=kw)


def generator_config(model: nn.Module) -> ModelConfig:
    """The :class:`ModelConfig` that rebuilds ``model`` (an architecture made by ``create_model``)."""
    cfg = model.slimgan_config
    return ModelConfig(arch=cfg["arch"], kwargs=dict(cfg["kwargs"]))


def build_discriminator(cfg: DiscriminatorConfig, generator: nn.Module, init: Path | None = None) -> nn.Module:
    """D for ``generator``: ``input_nc`` / ``nc`` / ``image_size`` follow the generator unless given.

    The objective (``gan_mode``, ``conditional``) travels with the module as ``slimgan_provenance``,
    so its checkpoint records how to score with it.
    """
    if not cfg.arch:
        raise ConfigError("discriminator.arch is missing; choose a registered discriminator")
    check_gan_mode(cfg.gan_mode)
    info = model_info(cfg.arch)
    gkw = generator.slimgan_config["kwargs"]
    out_nc = gkw.get("output_nc", gkw.get("nc", 3))
    kwargs = dict(cfg.kwargs)
    if "input_nc" in info.defaults and "input_nc" not in kwargs:
        kwargs["input_nc"] = out_nc + (gkw.get("input_nc", 3) if cfg.conditional else 0)
    if "nc" in info.defaults and "nc" not in kwargs:
        kwargs["nc"] = out_nc
    if "image_size" in info.defaults and "image_size" not in kwargs and "image_size" in gkw:
        kwargs["image_size"] = gkw["image_size"]
    model = _create(cfg.arch, kwargs, cfg.width, "ndf", cfg.ndf, init)
    model.slimgan_provenance = {"gan_mode": cfg.gan_mode, "conditional": cfg.conditional}
    return model


def _create(arch: str, kwargs: dict, width: float | None, channels_arg: str, channels: int | None,
            init: Path | None) -> nn.Module:
    """``create_model`` with the section's ``width`` or ``ngf``/``ndf``, then weights from ``init``."""
    if width is not None:
        kwargs["width"] = width
    if channels is not None:
        kwargs[channels_arg] = channels
    model = create_model(arch, **kwargs)
    if init is not None:
        model.load_state_dict(load_checkpoint(init).state_dict())
    return model


def latent_size(generator: nn.Module) -> int | None:
    """``nz`` of a latent generator, None for image-to-image ones."""
    cfg = generator.slimgan_config
    return cfg["kwargs"].get("nz") if model_info(cfg["arch"]).input_kind == "latent" else None


def adam(params: Iterable, lr: float, cfg: RunConfig) -> torch.optim.Optimizer:
    """Adam with the recipe's betas (``train.beta1``, ``train.beta2``)."""
    return torch.optim.Adam(list(params), lr=lr, betas=(cfg.train.beta1, cfg.train.beta2))


def checkpoint_arch(path: Path) -> str:
    return read_checkpoint_config(path)["arch"]
