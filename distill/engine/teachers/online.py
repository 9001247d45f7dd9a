"""``teacher.mode: online``: teachers trained with the student, the main one first, and their selection.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.engine.config import ModelConfig, RunConfig
from distill.engine.data import Batch
from distill.engine.device import DeviceContext
from distill.engine.teachers.base import (
    TARGET_MODES,
    TeacherSide,
    is_paired,
)
from distill.engine.teachers.cyclegan import CycleTeacher
from distill.engine.teachers.online_unit import OnlineTeacher, TermsTeacher
from distill.errors import ConfigError
from distill.losses import LossTerm
from distill.losses.context import StepContext
from distill.losses.omgd import EXTRA_TEACHERS

log = logging.getLogger(__name__)


class OnlineTeachers(TeacherSide):
    """Teachers trained with the student (``teacher.mode: online``): the main one, then ``teacher.extra``."""

    mode = "online"

    def __init__(self, config: RunConfig, rt: DeviceContext, paths: dict[str, Path]) -> None:
        super().__init__(config, rt)
        tcfg = config.teacher
        if tcfg.target_mode not in TARGET_MODES:
            raise ConfigError(f"teacher.target_mode must be train or eval, got {tcfg.target_mode!r}")
        if paths.get("teacher_discriminator") is not None:
            raise ConfigError("teacher.discriminator names a pretrained D̄, which is offline; an online D̄ is "
                              "trained from scratch from teacher.online_discriminator")
        unit = CycleTeacher if tcfg.cyclegan is not None else TermsTeacher
        if tcfg.model is None and paths.get("teacher") is None:
            raise ConfigError("teacher.mode online needs teacher.model (or teacher.checkpoint to start from)")
        main_model = tcfg.model or ModelConfig()
        self.units: list[OnlineTeacher] = [
            unit("teacher", config, rt, main_model, tcfg.online_discriminator, tcfg.loss, paths.get("teacher"))]
        for i, extra in enumerate(tcfg.extra):
            name = f"teacher_{extra.name or f'extra{i}'}"
            if extra.model is None or not extra.model.arch:
                raise ConfigError(f"teacher.extra.{i} ({name}) needs model.arch")
            if any(u.name == name for u in self.units):
                raise ConfigError(f"teacher.extra.{i}: the name {extra.name!r} is used twice")
            self.units.append(unit(name, config, rt, extra.model, extra.online_discriminator or tcfg.online_discriminator,
                                   extra.loss or tcfg.loss, None))
        self.main = self.units[0]
        if self.main.discriminator is not None:
            self.gan_mode, self.conditional = self.main.d_cfg.gan_mode, self.main.d_cfg.conditional
        self.selecting = tcfg.eval_every > 0
        if self.selecting:
            self.metric = selection_metric(config, cyclegan=tcfg.cyclegan is not None)
            for u in self.units:
                u.keep_best()

    @property
    def generator(self) -> nn.Module:
        return self.main.target_model()

    @property
    def discriminator(self) -> nn.Module | None:
        return self.main.discriminator

    def terms(self) -> list[LossTerm]:
        return [t for u in self.units for t in u.terms]

    def attach_taps(self, paths: Sequence[str]) -> None:
        self.main.attach_taps(paths)

    def setup(self, batch: Batch) -> list[nn.Module]:
        return [m for u in self.units for m in u.setup(batch)]

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {k: v for u in self.units for k, v in u.build_optimizers().items()}

    def modules(self) -> dict[str, nn.Module]:
        return {k: v for u in self.units for k, v in u.modules().items()}

    def checkpoints(self) -> dict[str, nn.Module]:
        return {k: v for u in self.units for k, v in u.checkpoints().items()}

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        logs: dict[str, float] = {}
        for u in self.units:
            if step % self.config.teacher.update_every:  # OMGD's n_dis: the student steps alone
                u.last = None
            else:
                logs.update(u.train_step(batch, step))
        return logs

    def fill(self, ctx: StepContext) -> None:
        super().fill(ctx)
        train_mode = self.config.teacher.target_mode == "train"
        with torch.no_grad():
            ctx.teacher_out, ctx.teacher_feats = self.main.target(ctx.real_a, train_mode)
            if len(self.units) > 1:  # OMGD's complementary teachers
                ctx.extras[EXTRA_TEACHERS] = [u.target(ctx.real_a, train_mode)[0] for u in self.units[1:]]
        ctx.teacher = self.main.target_model()

    def after_step(self, done: int, held_out: list[Batch]) -> dict[str, float]:
        """Teacher selection (crd §4.1): every ``teacher.eval_every`` steps (and at the last) evaluate each online
        teacher on the held-out batches and keep its weights when it beats its best so far; the student then learns from
        the kept snapshot. Runs on every rank with the same weights and data, so all ranks agree."""
        every = self.config.teacher.eval_every
        if not self.selecting or (done % every and done != self.config.train.steps) or not held_out:
            return {}  # evaluated every eval_every steps and at the last step
        logs: dict[str, float] = {}
        for u in self.units:
            logs.update(u.select(done, held_out, *self.metric))
        return logs

    def clear_taps(self) -> None:
        self.main.clear_taps()

    def formula(self) -> str:
        text = ";  ".join(u.formula() for u in self.units)
        if self.selecting:
            text += (f";  every {self.config.teacher.eval_every} steps each teacher is evaluated ({self.metric[0]}) "
                     "and the student learns from the best so far")
        return text + f";  targets from the teachers in {self.config.teacher.target_mode} mode"

    def provenance(self) -> dict[str, Any]:
        if not self.selecting:
            return {}
        return {"teacher_best_step": {u.name: int(u.selection.best_step) for u in self.units}}


def selection_metric(config: RunConfig, cyclegan: bool) -> tuple[str, str]:
    """(metric, max|min) for teacher selection, checked against what this run can compute."""
    available = (["fid"] if config.eval.inception_weights else []) + (["psnr_gt"] if is_paired(config) else []) + (
        ["cycle_psnr"] if cyclegan else [])
    name = config.teacher.eval_metric or (available[0] if available else "")
    if name == "fid" and config.eval.inception_weights and not Path(config.eval.inception_weights).expanduser().is_file():
        raise ConfigError(f"teacher selection by fid: eval.inception_weights {config.eval.inception_weights} does not "
                          "exist (a pytorch-fid Inception weight file; or choose teacher.eval_metric)")
    if name not in available:
        raise ConfigError(
            f"teacher.eval_every: the teacher metric {name or '(default)'!r} cannot be computed in this run; "
            f"available: {', '.join(available) or 'none'} (fid needs eval.inception_weights, psnr_gt paired data, "
            "cycle_psnr a CycleGAN teacher: teacher.cyclegan)")
    return name, "min" if name in ("fid", "kid") else "max"
