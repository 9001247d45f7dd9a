"""Perceptual loss: VGG-16 feature reconstruction + Gram-matrix style (Johnson et al. 2016).

Used by OMGD (``λ_style·L_style + λ_feature·L_feature`` inside ``L_OMGD-KD``, VEM paper Eq. 15) and by
CRD (crd paper Eq. 13, ``λ_PL = 1``, "following OMGD"):

    L_PL(s, t) = λ_feature · |φ_f(s) - φ_f(t)|_1  +  λ_style · Σ_l |Gram(φ_l(s)) - Gram(φ_l(t))|_1
    Gram(F)    = F Fᵀ / (C·H·W)          for F reshaped to (B, C, H·W)

with φ_l the VGG-16 activations relu1_2, relu2_2, relu3_3, relu4_3 and φ_f = relu2_2.

Choices (the papers give no numbers inside L_PL): λ_feature = 10 and λ_style = 1e4, the values of the
OMGD reference recipes (``AGD_weights 1e1,1e4,1e1,1e-5`` = SSIM, style, feature, TV); L1 distances
(means) as in that reference. Both are configurable.

The VGG-16 must come from a weights file (:func:`distill.vgg.load_vgg16`); a recipe without one must
say ``perceptual: off``, see :func:`build_perceptual`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import ConfigError
from distill.losses.base import LossTerm, register_loss
from distill.losses.context import StepContext
from distill.vgg import VGG16Features, load_vgg16

DEFAULT_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """Gram(F) = F Fᵀ / (C·H·W) for F = x reshaped to (B, C, H·W); returns (B, C, C)."""
    b, c, h, w = x.shape
    f = x.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def perceptual_distance(
    feats_s: list[torch.Tensor],
    feats_t: list[torch.Tensor],
    feature_index: int = 1,
    feature_weight: float = 10.0,
    style_weight: float = 1e4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted feature term, weighted style term) from two lists of VGG activations.

    ``feats_t`` is treated as a target (detached).
    """
    feats_t = [f.detach() for f in feats_t]
    feature = feature_weight * F.l1_loss(feats_s[feature_index], feats_t[feature_index])
    style = feats_s[0].new_zeros(())
    for fs, ft in zip(feats_s, feats_t, strict=True):
        style = style + F.l1_loss(gram_matrix(fs), gram_matrix(ft))
    return feature, style_weight * style


class PerceptualLoss(nn.Module):
    """``L_PL(s, t)``: VGG-16 feature (relu2_2) L1 + Gram L1 over relu1_2..relu4_3. Returns a scalar.

    The VGG is frozen and excluded from any optimiser (its parameters have ``requires_grad=False``).
    """

    def __init__(self, vgg: VGG16Features, feature_layer: str = "relu2_2", feature_weight: float = 10.0,
                 style_weight: float = 1e4) -> None:
        super().__init__()
        if feature_layer not in vgg.layers:
            raise ConfigError(f"feature_layer {feature_layer!r} is not among the VGG layers {vgg.layers}")
        self.vgg = vgg
        self.feature_index = vgg.layers.index(feature_layer)
        self.feature_weight = feature_weight
        self.style_weight = style_weight

    def forward(self, student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ft = self.vgg(target.detach())
        fs = self.vgg(student)
        feature, style = perceptual_distance(fs, ft, self.feature_index, self.feature_weight, self.style_weight)
        return feature + style


def build_perceptual(setting: Any, **kwargs: Any) -> PerceptualLoss | None:
    """Resolve a recipe's ``perceptual`` value: ``"off"`` → None, a path (str or ``{vgg16: PATH, ...}``) → loss.

    Anything else (``None``, empty string, an unknown word) is a :class:`ConfigError`: a VGG path or an
    explicit ``off`` is required, so a random-weight VGG is never used silently.
    """
    if setting is False or (isinstance(setting, str) and setting.strip().lower() == "off"):
        return None
    options: dict[str, Any] = dict(kwargs)
    if isinstance(setting, dict):
        options.update({k: v for k, v in setting.items() if k != "vgg16"})
        setting = setting.get("vgg16")
    if not isinstance(setting, (str, Path)) or not str(setting).strip():
        raise ConfigError(
            f"perceptual must be a path to torchvision vgg16 weights or the word 'off', got {setting!r}")
    unknown = sorted(set(options) - {"feature_layer", "feature_weight", "style_weight"})
    if unknown:
        raise ConfigError(f"unknown perceptual option(s) {unknown}; valid: feature_layer, feature_weight, "
                          "style_weight, vgg16")
    return PerceptualLoss(load_vgg16(Path(str(setting)).expanduser()), **options)


@register_loss("perceptual")
class PerceptualTerm(LossTerm):
    """λ_PL·L_PL(G_s(x), t) (crd Eq. 13, vem Eq. 15), summed over the targets (see ``to``).

    ``vgg16`` is required: a torchvision-format VGG-16 weights file, or ``off``. With ``off`` the term
    is a constant 0 (and says so in the log): a random-weight VGG is never used. ``input_norm``:
    ``imagenet`` (the statistics torchvision's VGG was trained with) or ``raw`` ((x+1)/2 unnormalised,
    as the OMGD and CRD code feed it; their λ_feature / λ_style were tuned on that).
    """

    def __init__(self, vgg16: Any = None, to: str = "teacher", feature_layer: str = "relu2_2",
                 feature_weight: float = 10.0, style_weight: float = 1e4, input_norm: str = "imagenet") -> None:
        super().__init__()
        if input_norm not in ("imagenet", "raw"):
            raise ValueError(f"input_norm must be imagenet or raw ((x+1)/2 as OMGD / CRD), got {input_norm!r}")
        self.target_of = to
        self.loss = build_perceptual(vgg16, feature_layer=feature_layer, feature_weight=feature_weight,
                                     style_weight=style_weight)
        self.enabled = self.loss is not None
        if self.loss is not None:
            self.loss.vgg.imagenet_norm = input_norm == "imagenet"

    def student_parameters(self):  # the VGG is frozen
        return iter(())

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.enabled else ", vgg16=off")

    def forward(self, ctx: StepContext) -> torch.Tensor:
        if self.loss is None:
            return ctx.student_out.new_zeros(())
        from distill.losses.omgd import teacher_targets

        total = ctx.student_out.new_zeros(())
        with torch.autocast(ctx.student_out.device.type, enabled=False):
            for t in teacher_targets(ctx, self.target_of, self.name):
                total = total + self.loss(ctx.student_out.float(), t.float())
        return total
