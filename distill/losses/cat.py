"""CAT's kernel-alignment distillation (Jin et al. 2021), as in the vem paper, appendix A.2.4 (Eq. 23):

    L_KA = -Σ_ℓ ||ρ(S_ℓ)ᵀ ρ(T_ℓ)||²_F / (||ρ(S_ℓ)ᵀ ρ(S_ℓ)||_F · ||ρ(T_ℓ)ᵀ ρ(T_ℓ)||_F)

with ρ reshaping an (n, c, h, w) feature map to an (n, c·h·w) matrix. Student and teacher may have
different channel counts; no adapter is needed.

Computed through the n×n Gram matrices (identical value, far less memory):
||SᵀT||²_F = tr(SSᵀ·TTᵀ) = <K_S, K_T>_F and ||SᵀS||_F = ||SSᵀ||_F, with K_S = SSᵀ, K_T = TTᵀ.

Note (as written in the paper): the alignment is over the n samples of the batch, so with a batch of 1
it is identically 1 and gives no gradient; the recipes that use CAT keep a batch of at least 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from distill.losses.base import LossTerm, register_loss
from distill.losses.context import StepContext


def kernel_alignment(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """KA(S, T) ∈ [0, 1] for feature maps (n, c_s, h, w) and (n, c_t, h', w'); 1 when S = T."""
    s = student.reshape(student.shape[0], -1)  # (n, c·h·w)
    t = teacher.detach().reshape(teacher.shape[0], -1)
    k_s, k_t = s @ s.T, t @ t.T  # (n, n)
    return (k_s * k_t).sum() / (k_s.norm() * k_t.norm()).clamp(min=eps)


def kernel_alignment_loss(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]
                          ) -> torch.Tensor:
    """L_KA = -Σ_ℓ KA(S_ℓ, T_ℓ) (Eq. 23)."""
    if len(student_feats) != len(teacher_feats):
        raise ValueError(f"{len(student_feats)} student features but {len(teacher_feats)} teacher features")
    total = student_feats[0].new_zeros(())
    for s, t in zip(student_feats, teacher_feats, strict=True):
        total = total - kernel_alignment(s, t)
    return total


@register_loss("kernel_alignment")
class KernelAlignment(LossTerm):
    """λ_KA·L_KA (vem Eq. 23) over ``layers`` (paths or ``[student_path, teacher_path]``); no adapters."""

    def __init__(self, layers: Sequence) -> None:
        super().__init__()
        from distill.losses.feature_kd import _pairs

        self.pairs = _pairs(layers)

    def student_layers(self) -> list[str]:
        return [s for s, _ in self.pairs]

    def teacher_layers(self) -> list[str]:
        return [t for _, t in self.pairs]

    def forward(self, ctx: StepContext) -> torch.Tensor:
        with torch.autocast(ctx.student_out.device.type, enabled=False):
            return kernel_alignment_loss([ctx.student_feats[s].float() for s, _ in self.pairs],
                                         [ctx.teacher_feats[t].float() for _, t in self.pairs])
