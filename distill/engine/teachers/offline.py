"""``teacher.mode: offline``: a frozen G_t and/or D̄ read from checkpoints (D̄ optionally updated).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.checkpoint import load_checkpoint, read_checkpoint_config
from distill.engine.builders import adam
from distill.engine.config import RunConfig
from distill.engine.data import Batch
from distill.engine.device import DeviceContext, set_requires_grad
from distill.engine.gan import update_discriminator
from distill.engine.hooks import FeatureTaps
from distill.engine.teachers.base import (
    TeacherSide,
)
from distill.errors import ConfigError
from distill.losses import LossTerm
from distill.losses.adversarial import check_gan_mode
from distill.losses.context import StepContext

log = logging.getLogger(__name__)


class OfflineTeacher(TeacherSide):
    """A frozen G_t and/or D̄ from checkpoints (``teacher.checkpoint`` / ``teacher.discriminator``).

    D̄'s objective (``gan_mode``, ``conditional``) is read from its own checkpoint's record, else
    ``teacher.discriminator_gan_mode`` (an imported reference D records none).
    """

    mode = "offline"

    def __init__(self, config: RunConfig, rt: DeviceContext, paths: dict[str, Path]) -> None:
        super().__init__(config, rt)
        tcfg, dev = config.teacher, rt.device
        self.g: nn.Module | None = None
        if tcfg.use_generator and paths.get("teacher") is not None:
            self.g = load_checkpoint(paths["teacher"], device=dev, eval_mode=True)
            set_requires_grad([self.g], False)
        self.d: nn.Module | None = None
        self.train_d = tcfg.train_discriminator
        if paths.get("teacher_discriminator") is not None:
            path = paths["teacher_discriminator"]
            self.d = load_checkpoint(path, device=dev, eval_mode=not self.train_d)
            set_requires_grad([self.d], False)  # unfrozen only inside its own update
            recorded = read_checkpoint_config(path).get("provenance", {})
            mode = recorded.get("gan_mode") or tcfg.discriminator_gan_mode
            if not mode:
                raise ConfigError(f"teacher discriminator {path} does not record its gan_mode; set "
                                  "teacher.discriminator_gan_mode (lsgan, vanilla, hinge or wgangp)")
            self.gan_mode, self.conditional = check_gan_mode(mode), bool(recorded.get("conditional", False))
        elif self.train_d:
            raise ConfigError("teacher.train_discriminator needs a teacher discriminator (teacher.discriminator)")
        self.taps: FeatureTaps | None = None
        self._opt: torch.optim.Optimizer | None = None

    @property
    def generator(self) -> nn.Module | None:
        return self.g

    @property
    def discriminator(self) -> nn.Module | None:
        return self.d

    def attach_taps(self, paths: Sequence[str]) -> None:
        super().attach_taps(paths)
        self.taps = FeatureTaps(self.g, paths) if paths else None

    def setup(self, batch: Batch) -> list[nn.Module]:
        return [self.d] if self.train_d else []

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if not self.train_d:
            return {}
        self._opt = adam(self.d.parameters(), self.config.train.lr, self.config)
        return {"D_teacher": self._opt}

    def modules(self) -> dict[str, nn.Module]:
        return {"teacher_discriminator": self.d} if self.train_d else {}

    def fill(self, ctx: StepContext) -> None:
        super().fill(ctx)
        if self.g is None:
            return
        with torch.no_grad():
            ctx.teacher_out = self.g(ctx.real_a).detach()  # (B, C, H, W)
        ctx.teacher = self.g
        ctx.teacher_feats = self.taps.take() if self.taps else {}

    def discriminator_step(self, ctx: StepContext, active: Sequence[LossTerm]) -> dict[str, float]:
        """DGL-GAN's updated D̄ (Eq. 6): trained like the student's D, only while a term reads it (stage II)."""
        if not self.train_d or not any(t.reads_teacher_discriminator for t in active):
            return {}
        gp = self.config.discriminator.gp_weight if self.config.discriminator else 10.0
        loss = update_discriminator(self.rt, self.d, self._opt, ctx.d_input(ctx.real_images(), self.conditional),
                                    ctx.d_input(ctx.student_out, self.conditional), self.gan_mode, gp)
        return {"D_teacher": loss}

    def clear_taps(self) -> None:
        if self.taps:
            self.taps.clear()

    def formula(self) -> str:
        if self.d is None:
            return ""
        return f"D̄ ({self.gan_mode}) " + ("updated on steps where a term reads it" if self.train_d else "frozen")

    def provenance(self) -> dict[str, Any]:
        info = getattr(self.g, "slimgan_checkpoint", {}) if self.g is not None else {}
        return {"teacher": info.get("path"), "teacher_sha256": info.get("sha256")} if info else {}
