"""A CycleGAN pair as an online teacher (``teacher.cyclegan``) on unpaired data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.engine.config import DiscriminatorConfig, ModelConfig, RunConfig
from distill.engine.cyclegan import CycleGANPair
from distill.engine.data import Batch
from distill.engine.device import DeviceContext
from distill.engine.teachers.base import (
    _real,
    eval_forward,
)
from distill.engine.teachers.online_unit import OnlineTeacher
from distill.errors import ConfigError
from distill.metrics import psnr

log = logging.getLogger(__name__)


class CycleTeacher(OnlineTeacher):
    """An online CycleGAN pair (``teacher.cyclegan``): G_A is what the student learns from, D_A its D̄.

    Trained by the cycle objective of :mod:`distill.engine.cyclegan` on the same unpaired batch as
    the student, before the student's step; D_A and D_B are updated only there (and frozen when D_A
    scores the student). Selection evaluates G_A; ``cycle_psnr`` (PSNR of G_B(G_A(a)) to a) is
    offered where FID cannot be computed.
    """

    def __init__(self, name: str, config: RunConfig, rt: DeviceContext, model_cfg: ModelConfig,
                 d_cfg: DiscriminatorConfig | None, loss: list[dict[str, Any]], init: Path | None) -> None:
        super().__init__(name, config, rt, model_cfg, init)
        if loss and name == "teacher":
            raise ConfigError("teacher.cyclegan trains the teacher by the cycle objective; remove teacher.loss")
        if d_cfg is None:
            raise ConfigError("teacher.cyclegan needs teacher.online_discriminator (D_A and D_B are built from it)")
        self.pair = CycleGANPair(self.model, d_cfg, config.teacher.cyclegan).to(rt.device)
        self.d_cfg, self.discriminator = d_cfg, self.pair.d_a

    def setup(self, batch: Batch) -> list[nn.Module]:
        self.pair.allocate_pools(batch.real_a.to(self.rt.device), _real(batch.real_b, "a CycleGAN teacher").to(
            self.rt.device))
        return [self.pair]

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        g, d = self.pair.optimizers(self.config)
        self._optimizers = {f"G_teacher{self.suffix}": g, f"D_teacher{self.suffix}": d}
        return self._optimizers

    def _train(self, batch: Batch, step: int) -> dict[str, float]:
        logs, _ = self.pair.step(self.rt, batch.real_a, batch.real_b, *self._optimizers.values(),
                                 on_fake_b=self._collect)
        return {f"{self.name}.{k}": v for k, v in logs.items()}

    def evaluate(self, held_out: list[Batch]) -> dict[str, float]:
        metrics = super().evaluate(held_out)
        with torch.no_grad():
            scores = []
            for b in held_out:
                a = b.real_a.to(self.rt.device)
                rec = eval_forward(self.pair.g_b, eval_forward(self.pair.g_a, a)).float().clamp(-1, 1)
                scores.append((min(psnr(rec, a), 100.0), a.shape[0]))
        metrics["cycle_psnr"] = sum(v * n for v, n in scores) / max(1, sum(n for _, n in scores))
        return metrics

    def modules(self) -> dict[str, nn.Module]:
        mods = super().modules()
        mods[self.name] = self.pair  # G_A, G_B, D_A, D_B and the pools in one state dict
        return mods

    def checkpoints(self) -> dict[str, nn.Module]:
        out = super().checkpoints()
        out.update({f"{self.name}_generator_b": self.pair.g_b, f"{self.name}_discriminator_b": self.pair.d_b})
        return out

    def formula(self) -> str:
        return self.pair.formula(f"_{self.name}")
