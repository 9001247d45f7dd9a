"""Feature distillation with learned 1x1 adapters (GAN Compression, Li et al. 2020, Eq. 3).

``L_distill = Σ_ℓ ||f_ℓ(G_s,ℓ(x)) - G_t,ℓ(x)||²`` where ``f_ℓ`` is a 1x1 convolution mapping the
student's channels at layer ℓ to the teacher's. The adapters belong to this term (the distiller):
they are trained with the student's optimiser and saved in ``state.pt``, never in the student
checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from distill.losses.base import LossTerm, register_loss
from distill.losses.context import StepContext


def _pairs(layers: Sequence) -> list[tuple[str, str]]:
    pairs = []
    for item in layers:
        if isinstance(item, str):
            pairs.append((item, item))
        elif isinstance(item, Sequence) and len(item) == 2 and all(isinstance(s, str) for s in item):
            pairs.append((item[0], item[1]))
        else:
            raise ValueError(f"layers entries are 'path' or [student_path, teacher_path], got {item!r}")
    if not pairs:
        raise ValueError("layers must name at least one module path")
    return pairs


class AdaptedFeatureTerm(LossTerm):
    """A term over tapped ``layers`` with one learned 1x1 adapter f_ℓ per (student, teacher) layer pair.

    ``layers``: module paths (``model.12``) or ``[student_path, teacher_path]`` pairs. The adapters
    are built at the first batch from the channel counts seen and trained with the student; they
    belong to the distiller (``state.pt``), never to the student checkpoint.
    """

    adapter_bias = True

    def __init__(self, layers: Sequence, adapter: bool = True):
        super().__init__()
        self.pairs = _pairs(layers)
        self.use_adapter = adapter
        self.adapters = nn.ModuleList()

    def student_layers(self) -> list[str]:
        return [s for s, _ in self.pairs]

    def teacher_layers(self) -> list[str]:
        return [t for _, t in self.pairs]

    def setup(self, ctx: StepContext) -> None:
        """Build one 1x1 conv per layer pair from the channel counts seen in the first batch."""
        if not self.use_adapter or len(self.adapters):
            return
        for s, t in self.pairs:
            c_s, c_t = ctx.student_feats[s].shape[1], ctx.teacher_feats[t].shape[1]
            self.adapters.append(nn.Conv2d(c_s, c_t, kernel_size=1, bias=self.adapter_bias).to(ctx.device))


@register_loss("feature_kd")
class FeatureKD(AdaptedFeatureTerm):
    """``Σ_ℓ MSE(f_ℓ(S_ℓ), T_ℓ)`` over ``layers`` (module paths, e.g. ``model.12``); ``f_ℓ`` 1x1 conv.

    ``adapter: false`` compares the features directly (channels must match).
    """

    def forward(self, ctx: StepContext) -> torch.Tensor:
        total = ctx.student_out.new_zeros(())
        for i, (s, t) in enumerate(self.pairs):
            feat_s = ctx.student_feats[s]  # (B, C_s, H, W)
            feat_t = ctx.teacher_feats[t].detach()  # (B, C_t, H, W)
            if self.use_adapter:
                feat_s = self.adapters[i](feat_s)  # (B, C_t, H, W)
            total = total + F.mse_loss(feat_s, feat_t)
        return total
