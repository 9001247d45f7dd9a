"""DGL-GAN (discriminator-guided learning, §3.3-3.4, Algorithm 1): the teacher *discriminator* guides G.

``min_G max_D V(G, D) = Adv(G, D) + λ·Adv(G, D̄)`` with λ = 0.1. This term is ``Adv(G, D̄)``, the
generator side of the GAN loss against the pretrained teacher discriminator D̄; with hinge loss
``Adv(G, D̄) = -D̄(G(z))``. ``Adv(G, D)`` is the ``adv`` term, and λ is this term's ``weight``.

Two stages: stage I trains the narrow student GAN without this term for T steps, stage II adds it
for S steps: give the term ``start: T`` and ``train.steps: T + S`` (the paper's T/(T+S) is 0.19-0.33:
15000 of 80000 kimg for StyleGAN2 ×1/2 and ×1/4 on FFHQ, 15000 of 45000 on LSUN-church). The
learning rate stays constant (``train.lr_policy: constant``, StyleGAN2's and BigGAN's schedule).
D̄ is frozen unless ``teacher.train_discriminator`` is set, and then it is updated only in stage II,
on the steps where this term is active (Eq. 6). The teacher generator is not used
(``teacher.use_generator: false``).
"""

from __future__ import annotations

import torch

from distill.errors import ConfigError
from distill.losses.adversarial import check_gan_mode, generator_loss
from distill.losses.base import LossTerm, register_loss
from distill.losses.context import StepContext
from distill.losses.crd import frozen


@register_loss("dgl_gan")
class DGLGANLoss(LossTerm):
    """``Adv(G, D̄) = g(D̄(G_s(z)))``; ``gan_mode`` is D̄'s objective (None: the one D̄'s checkpoint
    records; hinge: ``-D̄(G_s(z))``). D̄'s weights stay frozen while it scores the student."""

    needs_teacher = False
    reads_teacher_discriminator = True

    def __init__(self, gan_mode: str | None = None):
        super().__init__()
        self.gan_mode = None if gan_mode is None else check_gan_mode(gan_mode)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        if ctx.teacher_discriminator is None:
            raise ConfigError("loss term 'dgl_gan' needs teacher.discriminator (a checkpoint or teacher.auto)")
        with frozen(ctx.teacher_discriminator) as d_bar:
            logits = d_bar(ctx.d_input(ctx.student_out, ctx.teacher_conditional))
        return generator_loss(logits, self.gan_mode or ctx.teacher_gan_mode)
