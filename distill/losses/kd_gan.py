"""KD-GAN (Aguinaldo et al. 2019, §3.2): a narrow student G_s mimics a pretrained G_t on the same z.

- MSE scheme, Eq. (3): ``min_θ E_z ||G_t(z) - G_s(z)||²``.
- Joint scheme, Eq. (4): ``min_θ max_w E_x[log f_w(x)] + E_z[α log(1 - f_w(G_s(z))) + (1-α)||G_t(z) - G_s(z)||²]``.

The joint scheme needs a student discriminator f_w (the recipe's ``discriminator`` section; its
update is the engine's D step). ``saturating: true`` keeps the paper's ``log(1 - D)`` generator
term for ``vanilla`` GANs; other GAN modes use their generator loss. The paper's Celeb-A figure
uses α = 1e-4. Report Variance of Laplacian: the joint loss exists to fight MSE blur.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.engine.context import StepContext
from distill.errors import ConfigError
from distill.losses.adversarial import generator_loss
from distill.losses.base import LossTerm, register_loss

SCHEMES = ("mse", "joint")


@register_loss("kd_gan")
class KDGANLoss(LossTerm):
    """``mse``: ``||G_t(z) - G_s(z)||²``; ``joint``: ``α·Adv_G(D(G_s(z))) + (1-α)·||G_t(z) - G_s(z)||²``."""

    def __init__(self, scheme: str = "mse", alpha: float = 1e-4, saturating: bool = True):
        super().__init__()
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.scheme, self.alpha, self.saturating = scheme, float(alpha), saturating

    def forward(self, ctx: StepContext) -> torch.Tensor:
        if ctx.teacher_out is None:
            raise ConfigError("loss term 'kd_gan' needs a teacher generator")
        mse = F.mse_loss(ctx.student_out, ctx.teacher_out.detach())
        if self.scheme == "mse":
            return mse
        if ctx.discriminator is None:
            raise ConfigError("kd_gan scheme 'joint' needs a discriminator section in the recipe")
        adv = generator_loss(ctx.discriminator(ctx.d_input(ctx.student_out)), ctx.gan_mode, self.saturating)
        return self.alpha * adv + (1 - self.alpha) * mse
