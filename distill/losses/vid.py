"""VID: variational information distillation (Ahn et al. 2019), the vem paper's ablation baseline (§5.5).

The variational distribution is a fully factorised Gaussian (vem §3):

    q(t | s) = Π_{c,h,w} N(t_{c,h,w}; μ_{c,h,w}(s), σ_c²),    σ_c² = softplus(α_c) + ε

and the student minimises -E[log q(t|s)] up to a constant:

    L_VID = mean_{b,c,h,w} [ log σ_c + (t - μ(s))² / (2σ_c²) ]

μ(·) is a small regressor of 1×1 convolutions (as in VID): conv1×1 → ReLU → conv1×1 → ReLU → conv1×1.
μ and α are trained with the student (they belong to the distiller and are never exported). As an
add-on to L_algo it replaces VEM's -λ_MI·Ĩ with λ_MI·L_VID. t is G_t(x), or the real target y for
paired data, exactly as for VEM.

Choices: hidden width = 2·max(C_s, C_t) (at least 16); ε = 1e-6; α initialised so σ² starts at 1
(VID initialises it at a chosen value; 1 is the unit variance of the [-1, 1] image range's scale).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from distill.losses.base import LossTerm, register_loss
from distill.losses.context import StepContext


class VIDLoss(nn.Module):
    """-log q(t | s) per element for a factorised Gaussian q; returns a scalar (batch mean)."""

    def __init__(self, student_channels: int = 3, teacher_channels: int = 3, hidden: int | None = None,
                 init_var: float = 1.0, eps: float = 1e-6) -> None:
        super().__init__()
        hidden = hidden or max(16, 2 * max(student_channels, teacher_channels))
        self.mean = nn.Sequential(
            nn.Conv2d(student_channels, hidden, 1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
            nn.Conv2d(hidden, teacher_channels, 1),
        )
        # softplus(alpha) = init_var - eps
        self.alpha = nn.Parameter(torch.full((teacher_channels,), math.log(math.expm1(init_var - eps))))
        self.eps = eps

    def variance(self) -> torch.Tensor:
        """σ_c² (C_t,)."""
        return F.softplus(self.alpha) + self.eps

    def forward(self, student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mu = self.mean(student)  # (B, C_t, H, W)
        var = self.variance().view(1, -1, 1, 1)
        nll = 0.5 * torch.log(var) + (target.detach() - mu).pow(2) / (2 * var)
        return nll.mean()


@register_loss("vid")
class VIDTerm(LossTerm):
    """λ·L_VID(G_s(x), t): VID on the generator outputs, the VEM ablation's baseline (vem Table 4).

    ``to``: ``auto`` (real y for paired data, as VEM does; G_t(x) otherwise), ``teacher`` or ``target``.
    The regressor μ and the variances are built at the first batch and trained with the student.
    """

    def __init__(self, to: str = "auto", hidden: int | None = None, init_var: float = 1.0) -> None:
        super().__init__()
        self.target_of = to
        self.hidden, self.init_var = hidden, init_var
        self.vid: VIDLoss | None = None

    def setup(self, ctx: StepContext) -> None:
        if self.vid is None:
            from distill.losses.omgd import teacher_targets

            t = teacher_targets(ctx, self.target_of, self.name)[0]
            self.vid = VIDLoss(ctx.student_out.shape[1], t.shape[1], self.hidden, self.init_var).to(ctx.device)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        from distill.losses.omgd import teacher_targets

        t = teacher_targets(ctx, self.target_of, self.name)[0]
        with torch.autocast(ctx.student_out.device.type, enabled=False):
            return self.vid(ctx.student_out.float(), t.float())
