"""One online teacher (:class:`OnlineTeacher`): its networks, objective and best snapshot; and
:class:`TermsTeacher`, one generator trained by its loss terms (pix2pix-style, OMGD's wide and deep teachers).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.checkpoint import load_checkpoint
from distill.engine.builders import adam, build_discriminator, build_generator
from distill.engine.config import DiscriminatorConfig, ModelConfig, RunConfig
from distill.engine.data import Batch
from distill.engine.device import DeviceContext, set_requires_grad
from distill.engine.evaluate import evaluate_model
from distill.engine.gan import update_discriminator
from distill.engine.hooks import FeatureTaps
from distill.engine.teachers.base import (
    _real,
    eval_forward,
    train_forward,
)
from distill.errors import ConfigError
from distill.losses import build_loss, format_formula
from distill.losses.context import StepContext

log = logging.getLogger(__name__)


class _Selection(nn.Module):
    """Best score and step of one online teacher, as buffers (so ``state.pt`` restores them on resume)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("best_value", torch.tensor(math.nan, dtype=torch.float64))
        self.register_buffer("best_step", torch.tensor(-1, dtype=torch.long))


class OnlineTeacher:
    """One online teacher: its generator G_t (A→B, what the student learns from), the discriminator the
    student sees as D̄, its objective, and with selection its best snapshot (crd §4.1).

    ``name`` is ``teacher`` (the main one) or ``teacher_<name>``; its checkpoints are ``<name>/``
    (G_t), ``<name>_discriminator/`` and, once selected, ``<name>_best/``. Subclasses implement
    :meth:`_train` (one teacher iteration, returning G_t(x) of that iteration) and may add metrics.
    """

    def __init__(self, name: str, config: RunConfig, rt: DeviceContext, model_cfg: ModelConfig, init: Path | None) -> None:
        self.name, self.config, self.rt = name, config, rt
        self.suffix = name[len("teacher"):]  # "" for the main teacher, "_deep" for teacher_deep
        if init is not None:
            self.model = load_checkpoint(init, device=rt.device, eval_mode=False)
        else:
            self.model = build_generator(model_cfg).to(rt.device)
        self.model.train()
        self.discriminator: nn.Module | None = None
        self.d_cfg: DiscriminatorConfig | None = None
        self.terms = nn.ModuleList()
        self.best: nn.Module | None = None
        self.selection: _Selection | None = None
        self.taps: FeatureTaps | None = None
        self.best_taps: FeatureTaps | None = None
        self.last: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None  # this step's G_t(x), features
        self._optimizers: dict[str, torch.optim.Optimizer] = {}

    # -- selection
    def keep_best(self) -> None:
        self.best = copy.deepcopy(self.model).eval()
        set_requires_grad([self.best], False)
        self.selection = _Selection().to(self.rt.device)

    @property
    def selected(self) -> bool:
        return self.selection is not None and int(self.selection.best_step) >= 0

    def target_model(self) -> nn.Module:
        """The best snapshot once selection has kept one, else the teacher as it trains."""
        return self.best if self.selected else self.model

    def evaluate(self, held_out: list[Batch]) -> dict[str, float]:
        return evaluate_model(self.model, held_out, self.rt.device, self.config.eval.inception_weights)

    def select(self, done: int, held_out: list[Batch], metric: str, mode: str) -> dict[str, float]:
        value = float(self.evaluate(held_out)[metric])
        best = float(self.selection.best_value)
        if math.isfinite(value) and (math.isnan(best) or (value > best if mode == "max" else value < best)):
            self.best.load_state_dict(self.model.state_dict())
            self.selection.best_value.fill_(value)
            self.selection.best_step.fill_(done)
            log.info("step %d: %s %s = %.4g is the best so far; the student now learns from it", done, self.name,
                     metric, value)
        return {f"{self.name}_eval_{metric}": value, f"{self.name}_best_{metric}": float(self.selection.best_value),
                f"{self.name}_best_step": float(self.selection.best_step)}

    # -- targets
    def attach_taps(self, paths: Sequence[str]) -> None:
        if paths:
            self.taps = FeatureTaps(self.model, paths)
            self.best_taps = FeatureTaps(self.best, paths) if self.best is not None else None

    def clear_taps(self) -> None:
        for taps in (self.taps, self.best_taps):
            if taps:
                taps.clear()

    def _collect(self, output: torch.Tensor) -> None:
        """Keep G_t(x) of the teacher step and the features tapped from that very forward."""
        feats = self.taps.take() if self.taps else {}
        self.last = output.detach(), {k: v.detach() for k, v in feats.items()}

    def target(self, x: torch.Tensor, train_mode: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(G_t(x), features) for the student: train mode reuses this step's teacher forward (OMGD / CRD code);
        a kept snapshot runs in train mode without moving its statistics; ``eval`` runs inference mode."""
        model = self.target_model()
        taps = self.best_taps if model is self.best else self.taps
        if taps:
            taps.clear()
        if train_mode and model is self.model and self.last is not None and self.last[0].shape[0] == x.shape[0]:
            out, feats = self.last
        else:
            out = (train_forward if train_mode else eval_forward)(model, x).detach()
            feats = {k: v.detach() for k, v in taps.take().items()} if taps else {}
        return out, feats

    # -- training
    def setup(self, batch: Batch) -> list[nn.Module]:
        return [self.model, *(m for m in (self.discriminator, self.terms) if m is not None)]

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        self.last = None
        logs = self._train(batch, step)
        if self.taps:
            self.taps.clear()  # later forwards of G_t in the step (CycleGAN's cycle) are not targets
        return logs

    def _train(self, batch: Batch, step: int) -> dict[str, float]:
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        mods = {self.name: self.model}
        if self.selection is not None:
            mods.update({f"{self.name}_selection": self.selection, f"{self.name}_best": self.best})
        return mods

    def checkpoints(self) -> dict[str, nn.Module]:
        out = {self.name: self.model}
        if self.discriminator is not None:
            out[f"{self.name}_discriminator"] = self.discriminator
        if self.selected:
            out[f"{self.name}_best"] = self.best
        return out

    def formula(self) -> str:
        raise NotImplementedError


class TermsTeacher(OnlineTeacher):
    """One generator trained by ``teacher.loss`` terms with its own discriminator (pix2pix-style:
    OMGD's wide and deep teachers, CRD's pix2pix teacher). Its D is D̄ for the student."""

    def __init__(self, name: str, config: RunConfig, rt: DeviceContext, model_cfg: ModelConfig,
                 d_cfg: DiscriminatorConfig | None, loss: list[dict[str, Any]], init: Path | None) -> None:
        super().__init__(name, config, rt, model_cfg, init)
        self.d_cfg = d_cfg
        if d_cfg is not None:
            self.discriminator = build_discriminator(d_cfg, self.model).to(rt.device)
            set_requires_grad([self.discriminator], False)  # unfrozen only inside its own update
        self.terms = nn.ModuleList(build_loss(s) for s in loss).to(rt.device)
        if not len(self.terms):
            raise ConfigError(f"the online teacher {name!r} needs teacher.loss terms (e.g. adv + l1_target), "
                              "or teacher.cyclegan for a CycleGAN teacher")

    def _context(self, batch: Batch, step: int) -> StepContext:
        od = self.d_cfg
        return StepContext(step=step, real_a=batch.real_a, real_b=batch.real_b, paired=batch.paired, student=self.model,
                           discriminator=self.discriminator, teacher_discriminator=self.discriminator,
                           gan_mode=od.gan_mode if od else "lsgan", conditional=bool(od and od.conditional),
                           device=self.rt.device, optimize=self.rt.optimize)

    def setup(self, batch: Batch) -> list[nn.Module]:
        ctx = self._context(batch, 0)
        with torch.no_grad():
            ctx.student_out = eval_forward(self.model, batch.real_a)
        for t in self.terms:
            t.setup(ctx)
        self.terms.to(self.rt.device)
        if self.taps:
            self.taps.clear()
        return super().setup(batch)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        opts = {f"G_teacher{self.suffix}": adam(
            list(self.model.parameters()) + [p for t in self.terms for p in t.student_parameters()], cfg.train.lr, cfg)}
        if self.discriminator is not None:
            opts[f"D_teacher{self.suffix}"] = adam(self.discriminator.parameters(), self.d_cfg.lr or cfg.train.lr, cfg)
        self._optimizers = opts
        return opts

    def _train(self, batch: Batch, step: int) -> dict[str, float]:
        """D step on real vs G_t(x), then G_t's step on its terms, from the same forward (as OMGD's code)."""
        ctx = self._context(batch, step)
        with self.rt.autocast():
            ctx.student_out = self.model(ctx.real_a)  # (B, C, H, W)
        self._collect(ctx.student_out)
        logs = {}
        if self.discriminator is not None:
            real = _real(ctx.real_b, f"the online teacher's discriminator ({self.name})")
            logs[f"{self.name}.D"] = update_discriminator(
                self.rt, self.discriminator, self._optimizers[f"D_teacher{self.suffix}"], ctx.d_input(real),
                ctx.d_input(ctx.student_out), self.d_cfg.gan_mode, self.d_cfg.gp_weight)
        with self.rt.autocast():
            values = {t.name: t(ctx) for t in self.terms if t.active(step)}
            total = sum((t.weight * values[t.name] for t in self.terms if t.name in values),
                        ctx.student_out.new_zeros(()))
        self.rt.optimize(total, self._optimizers[f"G_teacher{self.suffix}"])
        logs.update({f"{self.name}.G_{k}": float(v.detach()) for k, v in values.items()})
        return logs

    def modules(self) -> dict[str, nn.Module]:
        mods = {**super().modules(), f"{self.name}_terms": self.terms}
        if self.discriminator is not None:
            mods[f"{self.name}_discriminator"] = self.discriminator
        return mods

    def formula(self) -> str:
        text = format_formula(list(self.terms), f"L_G_{self.name}")
        if self.discriminator is not None:
            text += f";  L_D_{self.name} = {self.d_cfg.gan_mode}(D(real), D(G_t(x)))"
        return text
