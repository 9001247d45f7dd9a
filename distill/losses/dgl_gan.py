"""DGL-GAN (discriminator-guided learning, §3.3-3.4, Algorithm 1): the teacher *discriminator* guides G.

``min_G max_D V(G, D) = Adv(G, D) + λ·Adv(G, D̄)`` with λ = 0.1. This term is ``Adv(G, D̄)``, the
generator side of the GAN loss against the pretrained teacher discriminator D̄; with hinge loss
``Adv(G, D̄) = -D̄(G(z))``. ``Adv(G, D)`` is the ``adv`` term, and λ is this term's ``weight``.

Two stages: stage I trains the narrow student GAN without this term for T steps, stage II adds it
for S steps: give the term ``start: T`` and ``train.steps: T + S``. D̄ is frozen unless
``teacher.train_discriminator`` is set. The teacher generator is not used
(``teacher.use_generator: false``).
"""

from __future__ import annotations

import torch

from distill.engine.context import StepContext
from distill.errors import ConfigError
from distill.losses.adversarial import check_gan_mode, generator_loss
from distill.losses.base import LossTerm, register_loss


@register_loss("dgl_gan")
class DGLGANLoss(LossTerm):
    """``Adv(G, D̄) = g(D̄(G_s(z)))``; ``gan_mode`` is D̄'s objective (hinge: ``-D̄(G_s(z))``)."""

    needs_teacher = False

    def __init__(self, gan_mode: str = "hinge"):
        super().__init__()
        self.gan_mode = check_gan_mode(gan_mode)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        if ctx.teacher_discriminator is None:
            raise ConfigError("loss term 'dgl_gan' needs teacher.discriminator (a checkpoint or teacher.auto)")
        logits = ctx.teacher_discriminator(ctx.d_input(ctx.student_out))
        return generator_loss(logits, self.gan_mode)
