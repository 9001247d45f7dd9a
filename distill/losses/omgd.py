"""OMGD's student objective (Ren et al. 2021), as written in the vem paper, appendix A.2.1 (Eqs. 12-15):

    L_algo    = L_OMGD-KD + λ_CD·L_CD + λ_TV·L_TV                                   (Eq. 12)
    L_OMGD-KD = λ_SSIM·L_SSIM + λ_PL·L_PL + λ_recon·|G_s(x) - G_t(x)|_1             (Eq. 15)
    L_CD      = Σ_ℓ (1/C_ℓ)·||GAP(G_t,ℓ(x)) - GAP(f_ℓ(G_s,ℓ(x)))||²                  (Eqs. 13-14)

with f_ℓ a 1×1 adapter from student to teacher channels (owned by the distiller, never exported).
With two online teachers (OMGD's wide and deep teachers) the output terms are summed over both
teachers and L_CD uses the wide teacher.

Choices: L_SSIM = 1 - SSIM (Gaussian window 11, σ 1.5, as :func:`distill.metrics.ssim_map`);
|·|_{1,1} is taken as a mean rather than a sum so λ_recon does not depend on the image size;
L_TV = Σ |x[..., 1:] - x[..., :-1]| + Σ |x[..., 1:, :] - x[..., :-1, :]| (a sum, as in the OMGD
reference, whose λ_TV = 1e-5 is calibrated to it). The perceptual term lives in
:mod:`distill.losses.perceptual`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import ConfigError
from distill.losses.base import LossTerm, register_loss
from distill.losses.context import StepContext
from distill.losses.feature_kd import AdaptedFeatureTerm
from distill.metrics import ssim_map

EXTRA_TEACHERS = "extra_teacher_outs"  # ctx.extras key: outputs of additional (e.g. deep) online teachers


def ssim_loss(student: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """L_SSIM = 1 - mean SSIM(G_s(x), t) (differentiable). Images in [-1, 1] → ``data_range`` 2."""
    return 1.0 - ssim_map(student, target.detach(), data_range).mean()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """L_TV: sum of absolute horizontal and vertical neighbour differences of x (B, C, H, W)."""
    return (x[..., :, 1:] - x[..., :, :-1]).abs().sum() + (x[..., 1:, :] - x[..., :-1, :]).abs().sum()


def recon_l1(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference |G_s(x) - t| (target detached)."""
    return F.l1_loss(student, target.detach())


def attention_loss(teacher_feat: torch.Tensor, student_feat: torch.Tensor) -> torch.Tensor:
    """L_atten(p, q) = (1/C)·||GAP(p) - GAP(q)||² (Eq. 14), averaged over the batch.

    ``student_feat`` must already be mapped to the teacher's channel count by f_ℓ.
    """
    if teacher_feat.shape[1] != student_feat.shape[1]:
        raise ValueError(f"channel mismatch {teacher_feat.shape[1]} vs {student_feat.shape[1]}: adapt the student")
    p = teacher_feat.detach().mean(dim=(2, 3))  # (B, C)
    q = student_feat.mean(dim=(2, 3))  # (B, C)
    return (p - q).pow(2).mean()


def channel_distillation(
    teacher_feats: Sequence[torch.Tensor],
    student_feats: Sequence[torch.Tensor],
    adapters: Sequence[nn.Module] | None = None,
) -> torch.Tensor:
    """L_CD = Σ_ℓ L_atten(G_t,ℓ, f_ℓ(G_s,ℓ)) (Eq. 13). ``adapters`` f_ℓ (1×1 convs) or identity."""
    if len(teacher_feats) != len(student_feats):
        raise ValueError(f"{len(teacher_feats)} teacher features but {len(student_feats)} student features")
    adapters = adapters if adapters is not None else [nn.Identity()] * len(student_feats)
    total = student_feats[0].new_zeros(())
    for t, s, f in zip(teacher_feats, student_feats, adapters, strict=True):
        total = total + attention_loss(t, f(s))
    return total


def make_adapter(student_channels: int, teacher_channels: int) -> nn.Module:
    """f_ℓ: a 1×1 convolution from student to teacher channels (vem A.2.1)."""
    return nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)


def teacher_targets(ctx: StepContext, to: str = "teacher", name: str = "term") -> list[torch.Tensor]:
    """What an output-level term compares G_s(x) with.

    ``teacher``: G_t(x) plus any extra online teachers' outputs in ``ctx.extras["extra_teacher_outs"]``
    (OMGD sums its output terms over the wide and the deep teacher); ``target``: the real y (paired);
    ``auto``: y when the data is paired, else the teachers.
    """
    if to not in ("teacher", "target", "auto"):
        raise ConfigError(f"loss term {name!r}: to must be teacher, target or auto, got {to!r}")
    if to == "target" or (to == "auto" and ctx.paired and ctx.real_b is not None):
        if ctx.real_b is None or not ctx.paired:
            raise ConfigError(f"loss term {name!r} with to: target needs paired data (an aligned dataset)")
        return [ctx.real_b]
    if ctx.teacher_out is None:
        raise ConfigError(f"loss term {name!r} needs a teacher generator")
    return [ctx.teacher_out, *ctx.extras.get(EXTRA_TEACHERS, [])]


class _OutputTerm(LossTerm):
    """Σ over targets t of ``distance(G_s(x), t)``."""

    def __init__(self, to: str = "teacher") -> None:
        super().__init__()
        self.target_of = to

    def distance(self, student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, ctx: StepContext) -> torch.Tensor:
        targets = teacher_targets(ctx, self.target_of, self.name)
        total = ctx.student_out.new_zeros(())
        for t in targets:
            total = total + self.distance(ctx.student_out, t.detach())
        return total


@register_loss("ssim")
class SSIMLoss(_OutputTerm):
    """λ_SSIM·L_SSIM (vem Eq. 15): 1 - SSIM(G_s(x), G_t(x)); OMGD's λ_SSIM is 10."""

    def distance(self, student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(student.device.type, enabled=False):
            return ssim_loss(student.float(), target.float())


@register_loss("l1_teachers")
class L1Teachers(_OutputTerm):
    """λ_recon·|G_s(x) - G_t(x)|₁ summed over the online teachers (vem Eq. 15)."""

    def distance(self, student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return recon_l1(student, target)


@register_loss("tv")
class TotalVariation(LossTerm):
    """λ_TV·L_TV (vem Eq. 12) on G_s(x); OMGD's λ_TV is 1e-5 (L_TV is a sum over pixels)."""

    needs_teacher = False

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return total_variation(ctx.student_out)


@register_loss("channel_distill")
class ChannelDistillation(AdaptedFeatureTerm):
    """λ_CD·L_CD (vem Eqs. 13-14): GAP'd features of G_s through 1×1 adapters f_ℓ vs G_t's.

    ``layers``: module paths (``model.12``) or ``[student_path, teacher_path]`` pairs. The adapters are
    built at the first batch from the channel counts and trained with the student.
    """

    adapter_bias = False  # f_ℓ as in vem A.2.1

    def __init__(self, layers: Sequence) -> None:
        super().__init__(layers, adapter=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return channel_distillation([ctx.teacher_feats[t] for _, t in self.pairs],
                                    [ctx.student_feats[s] for s, _ in self.pairs], list(self.adapters))
