"""KD-GAN (Aguinaldo et al. 2019, §3.2): a narrow student G_s mimics a pretrained G_t on the same z.

- MSE scheme, Eq. (3): ``min_θ E_z ||G_t(z) - G_s(z)||²``.
- Joint scheme, Eq. (4): ``min_θ max_w E_x[log f_w(x)] + E_z[α log(1 - f_w(G_s(z))) + (1-α)||G_t(z) - G_s(z)||²]``.

The joint scheme needs a student discriminator f_w (the recipe's ``discriminator`` section; its
update is the engine's D step). ``saturating: true`` keeps the paper's ``log(1 - D)`` generator
term for ``vanilla`` GANs; other GAN modes use their generator loss. The paper's Celeb-A figure
uses α = 1e-4. Report Variance of Laplacian: the joint loss exists to fight MSE blur.

Stated options where the equations and common practice part ways:

- ``reduction``: ``sum`` (default) is Eqs. (3)-(4) as written: the squared norm summed over the
  pixels of each image, averaged over the batch (E_z). ``mean`` also averages over the pixels (as
  ``nn.MSELoss``); it shrinks the MSE by C·H·W, so the same α then weights the GAN term C·H·W times
  more (at 3×64×64, α = 1e-4 with ``sum`` weighs the GAN term as α ≈ 8e-9 would with ``mean``).
- ``alpha_on_discriminator``: Eq. (4) puts α in front of D's generated-image term too
  (max_w E_x[log f_w(x)] + α·E_z[log(1 - f_w(G_s(z)))]). Off by default, where D is trained by its
  usual GAN loss: at α = 1e-4 the weighted form leaves D a near-constant "real" classifier (its
  optimum is p_data / (p_data + α·p_g)). ``true`` trains D as the equation writes it.
"""

from __future__ import annotations

import torch

from distill.errors import ConfigError
from distill.losses.adversarial import generator_loss
from distill.losses.base import LossTerm, register_loss
from distill.losses.context import StepContext

SCHEMES = ("mse", "joint")
REDUCTIONS = ("sum", "mean")


def squared_error(student: torch.Tensor, teacher: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """E_z ||G_t(z) - G_s(z)||²: per-image sum of squares averaged over the batch (``sum``), or the element mean."""
    diff = (student - teacher.detach()).pow(2)  # (B, C, H, W)
    return diff.flatten(1).sum(1).mean() if reduction == "sum" else diff.mean()


@register_loss("kd_gan")
class KDGANLoss(LossTerm):
    """``mse``: ``||G_t(z) - G_s(z)||²``; ``joint``: ``α·Adv_G(D(G_s(z))) + (1-α)·||G_t(z) - G_s(z)||²``."""

    def __init__(self, scheme: str = "mse", alpha: float = 1e-4, saturating: bool = True, reduction: str = "sum",
                 alpha_on_discriminator: bool = False):
        super().__init__()
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.scheme, self.alpha, self.saturating = scheme, float(alpha), saturating
        self.reduction, self.alpha_on_discriminator = reduction, bool(alpha_on_discriminator)

    def discriminator_fake_weight(self) -> float:
        return self.alpha if self.scheme == "joint" and self.alpha_on_discriminator else 1.0

    def forward(self, ctx: StepContext) -> torch.Tensor:
        if ctx.teacher_out is None:
            raise ConfigError("loss term 'kd_gan' needs a teacher generator")
        mse = squared_error(ctx.student_out, ctx.teacher_out, self.reduction)
        if self.scheme == "mse":
            return mse
        if ctx.discriminator is None:
            raise ConfigError("kd_gan scheme 'joint' needs a discriminator section in the recipe")
        adv = generator_loss(ctx.discriminator(ctx.d_input(ctx.student_out)), ctx.gan_mode, self.saturating)
        return self.alpha * adv + (1 - self.alpha) * mse
