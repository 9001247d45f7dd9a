"""Output reconstruction: L1 / MSE of the student output to the teacher output or to the target.

- ``l1_teacher`` / ``mse_teacher``: ``||G_s(x) - G_t(x)||`` (GAN Compression unpaired recon,
  OMGD's ``λ_recon ||G_s(x) - G_t(x)||₁``; KD-GAN's MSE scheme Eq. (3) is ``mse_teacher``).
- ``l1_target`` / ``mse_target``: ``||G_s(x) - y||`` on paired data (pix2pix's λ_L1 = 100 term).
- ``recon``: to the target when the batch is paired, else to the teacher (GAN Compression); a recipe
  on unpaired data without a teacher is refused before anything runs.

All are means over elements, as ``nn.L1Loss`` / ``nn.MSELoss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import LossTerm, register_loss
from distill.losses.context import StepContext


def _distance(a: torch.Tensor, b: torch.Tensor, p: int) -> torch.Tensor:
    return F.l1_loss(a, b) if p == 1 else F.mse_loss(a, b)


class _Reconstruction(LossTerm):
    p = 1
    target_of = "teacher"  # the `to` option; named apart so it does not hide nn.Module.to

    def reference(self, ctx: StepContext) -> torch.Tensor:
        """G_t(x) or the real y, per ``to`` (``auto``: y on paired batches); see ``teacher_targets``."""
        from distill.losses.omgd import teacher_targets

        return teacher_targets(ctx, self.target_of, self.name)[0]

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return _distance(ctx.student_out, self.reference(ctx).detach(), self.p)


@register_loss("l1_teacher")
class L1Teacher(_Reconstruction):
    """``E ||G_s(x) - G_t(x)||₁``."""

    p, target_of = 1, "teacher"


@register_loss("mse_teacher")
class MSETeacher(_Reconstruction):
    """``E ||G_s(x) - G_t(x)||²`` (KD-GAN MSE scheme, Eq. 3)."""

    p, target_of = 2, "teacher"


@register_loss("l1_target")
class L1Target(_Reconstruction):
    """``E ||G_s(x) - y||₁`` (pix2pix L1 term, λ_L1 = 100)."""

    p, target_of = 1, "target"


@register_loss("mse_target")
class MSETarget(_Reconstruction):
    """``E ||G_s(x) - y||²``."""

    p, target_of = 2, "target"


@register_loss("recon")
class Recon(_Reconstruction):
    """L1 (``p: 1``) or MSE (``p: 2``) to the target on paired batches, else to the teacher."""

    target_of = "auto"

    def __init__(self, p: int = 1):
        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p}")
        super().__init__()
        self.p = p
