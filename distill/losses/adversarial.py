"""GAN objectives (LSGAN, vanilla/non-saturating, hinge, WGAN-GP) and the student's adversarial term.

Conventions (D outputs raw logits/scores, patch maps are averaged):

- ``lsgan`` (Mao et al.; pix2pix/CycleGAN default): D: ``½[(D(x)-1)² + D(G(z))²]``, G: ``(D(G(z))-1)²``.
- ``vanilla`` (Goodfellow et al., non-saturating G): D: ``-log σ(D(x)) - log(1-σ(D(G(z))))``,
  G: ``-log σ(D(G(z)))``.
- ``hinge`` (Miyato et al.; DGL-GAN): D: ``relu(1-D(x)) + relu(1+D(G(z)))``, G: ``-D(G(z))``.
- ``wgangp`` (Gulrajani et al.): D: ``D(G(z)) - D(x) + λ_gp (||∇D(x̂)||₂ - 1)²``, G: ``-D(G(z))``.

For ``lsgan`` and ``vanilla`` the D loss is halved, as pix2pix does (``loss_D = (real + fake) * 0.5``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import ConfigError
from distill.losses.base import LossTerm, register_loss
from distill.losses.context import StepContext

GAN_MODES = ("lsgan", "vanilla", "hinge", "wgangp")


def check_gan_mode(mode: str) -> str:
    if mode not in GAN_MODES:
        raise ConfigError(f"unknown gan_mode {mode!r}; choose one of: {', '.join(GAN_MODES)}")
    return mode


def generator_loss(fake_logits: torch.Tensor, mode: str, saturating: bool = False) -> torch.Tensor:
    """The generator's adversarial loss on D's output for generated images.

    ``saturating=True`` (vanilla only) is the original minimax form ``log(1 - σ(D(G(z))))``, as in
    the KD-GAN joint loss Eq. (4).
    """
    check_gan_mode(mode)
    if mode == "lsgan":
        return ((fake_logits - 1) ** 2).mean()
    if mode == "vanilla":
        if saturating:
            return -F.softplus(fake_logits).mean()  # log(1 - σ(l)) = -softplus(l)
        return F.softplus(-fake_logits).mean()  # -log σ(l) = softplus(-l)
    return -fake_logits.mean()  # hinge, wgangp


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, mode: str,
                       fake_weight: float = 1.0) -> torch.Tensor:
    """The discriminator's loss on real and (detached) generated logits (no gradient penalty).

    ``fake_weight`` scales the generated-image part (KD-GAN Eq. 4 writes α in front of it).
    """
    check_gan_mode(mode)
    if mode == "lsgan":
        return 0.5 * (((real_logits - 1) ** 2).mean() + fake_weight * (fake_logits**2).mean())
    if mode == "vanilla":
        return 0.5 * (F.softplus(-real_logits).mean() + fake_weight * F.softplus(fake_logits).mean())
    if mode == "hinge":
        return F.relu(1 - real_logits).mean() + fake_weight * F.relu(1 + fake_logits).mean()
    return fake_weight * fake_logits.mean() - real_logits.mean()


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: ``E[(||∇_x̂ D(x̂)||₂ - 1)²]`` at ``x̂ = ε·real + (1-ε)·fake``, ε ~ U(0, 1) per sample."""
    eps = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype,
                     generator=generator)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = discriminator(mixed)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


@register_loss("adv")
class AdversarialLoss(LossTerm):
    """The student's adversarial term against its own discriminator D: ``generator_loss(D(G_s(x)))``.

    ``gan_mode`` defaults to the discriminator's (``ctx.gan_mode``). D's parameters get no gradient
    from this term (the engine freezes D during the student step).
    """

    needs_teacher = False

    def __init__(self, gan_mode: str | None = None, saturating: bool = False):
        super().__init__()
        self.gan_mode = None if gan_mode is None else check_gan_mode(gan_mode)
        self.saturating = saturating

    def forward(self, ctx: StepContext) -> torch.Tensor:
        if ctx.discriminator is None:
            raise ConfigError("loss term 'adv' needs a discriminator section in the recipe")
        logits = ctx.discriminator(ctx.d_input(ctx.student_out))
        return generator_loss(logits, self.gan_mode or ctx.gan_mode, self.saturating)
