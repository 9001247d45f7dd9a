"""The step context: everything a loss term may read during one training step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class StepContext:
    """What the engine knows at one step, handed to every :class:`~distill.losses.base.LossTerm`.

    Tensors are (B, C, H, W) images in [-1, 1] unless noted. ``real_a`` is the generator input:
    an image for translation, a latent z (B, nz) ~ N(0, 1) for unconditional generators.

    Attributes:
        step: the optimisation step being taken (0-based; the first step is 0).
        real_a: generator input x (image) or z (latent).
        real_b: paired target y, or a batch of real images for unconditional GANs; None when the
            data has no target for ``real_a`` (unpaired translation without a B batch).
        paired: True when ``real_b`` is the ground truth for ``real_a`` (pix2pix layout).
        student, teacher: the *unwrapped* generators (never a DDP wrapper). ``teacher`` is None
            for teacher training and for methods that do not use the teacher generator (DGL-GAN).
        student_out: G_s(real_a), with grad.
        teacher_out: G_t(real_a), computed under ``no_grad`` for an offline teacher (detached for
            an online one); None when there is no teacher generator.
        student_feats / teacher_feats: module path -> activation, tapped by the managed hooks
            for the paths the loss terms asked for (student ones carry grad, teacher ones do not).
        discriminator: the student's own discriminator D (unwrapped), or None.
        teacher_discriminator: the teacher's discriminator D̄ (frozen or online), or None. Its
            weights are frozen whenever the student's terms run (crd §3.3: sg(D̄)).
        gan_mode: the GAN objective of ``discriminator``: lsgan | vanilla | hinge | wgangp.
        conditional: True when D sees ``cat(real_a, image)`` on channels (pix2pix D).
        teacher_gan_mode / teacher_conditional: the same for D̄ (recorded in its checkpoint, or
            its ``online_discriminator`` section).
        device: the torch device of the step.
        extras: a scratch dict shared by the terms within one step (e.g. MCMC negatives that an
            ``aux_step`` computes and ``forward`` reuses).
        optimize: ``optimize(loss, optimizer)`` -- zero_grad, backward (AMP-scaled when enabled),
            gradient all-reduce under DDP for the optimizer's parameters, step. Use it in
            ``aux_step`` instead of calling ``backward`` yourself.
    """

    step: int
    real_a: torch.Tensor
    real_b: torch.Tensor | None
    paired: bool
    student: nn.Module
    teacher: nn.Module | None = None
    student_out: torch.Tensor | None = None
    teacher_out: torch.Tensor | None = None
    student_feats: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_feats: dict[str, torch.Tensor] = field(default_factory=dict)
    discriminator: nn.Module | None = None
    teacher_discriminator: nn.Module | None = None
    gan_mode: str = "lsgan"
    conditional: bool = False
    teacher_gan_mode: str = "lsgan"
    teacher_conditional: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    extras: dict[str, Any] = field(default_factory=dict)
    optimize: Callable[[torch.Tensor, torch.optim.Optimizer], None] | None = None

    def d_input(self, image: torch.Tensor, conditional: bool | None = None) -> torch.Tensor:
        """What a discriminator sees for ``image``: ``cat(real_a, image)`` when conditional
        (``conditional`` None: the student's D's setting)."""
        if self.conditional if conditional is None else conditional:
            return torch.cat([self.real_a, image], dim=1)  # (B, C_a + C_b, H, W)
        return image

    def real_images(self) -> torch.Tensor:
        """What a discriminator is shown as real: the B images, else the teacher's output."""
        real = self.real_b if self.real_b is not None else self.teacher_out
        if real is None:
            from distill.errors import ConfigError

            raise ConfigError("the discriminator needs real images: use a dataset with B images or a teacher")
        return real
