"""The teacher side of the ``generator`` method: what the student learns from, chosen once from ``teacher.mode``.

- :class:`NoTeacher` (``none``): teacher training, or a student trained from scratch.
- :class:`OfflineTeacher` (``offline``): a frozen G_t and/or D̄ read from checkpoints. D̄ is frozen,
  or (``teacher.train_discriminator``) updated on the steps where a student term reads it.
- :class:`OnlineTeachers` (``online``): a list of teachers trained alongside the student, each an
  :class:`OnlineTeacher` with its generator(s), discriminator(s), objective and best snapshot:
  :class:`TermsTeacher` (one generator and its loss terms: pix2pix-style, OMGD's wide and deep
  teachers) or :class:`CycleTeacher` (a CycleGAN pair on unpaired data). The first is the main
  teacher: its G_t(x) is ``ctx.teacher_out`` and its discriminator is D̄, updated with the teacher
  and frozen for the student (crd §3.3); the others' outputs reach the output-level terms through
  ``ctx.extras["extra_teacher_outs"]``.

Every side answers the same calls, so the student step never asks which one it has: ``train_step``
(online teachers learn), ``fill(ctx)`` (G_t(x), its features, D̄ into the step context),
``discriminator_step`` (an updated offline D̄), ``after_step`` (teacher selection).
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

from distill.checkpoint import load_checkpoint, read_checkpoint_config
from distill.engine.builders import adam, build_discriminator, build_generator
from distill.engine.config import DiscriminatorConfig, ModelConfig, RunConfig
from distill.engine.context import StepContext
from distill.engine.cyclegan import CycleGANPair
from distill.engine.data import Batch
from distill.engine.evaluate import evaluate_model
from distill.engine.gan import update_discriminator
from distill.engine.hooks import FeatureTaps
from distill.engine.runtime import Runtime, set_requires_grad
from distill.errors import ConfigError
from distill.losses.adversarial import check_gan_mode
from distill.losses.base import LossTerm, build_loss, format_formula, teacher_needed
from distill.losses.omgd import EXTRA_TEACHERS
from distill.metrics import psnr

log = logging.getLogger(__name__)

MODES = ("none", "offline", "online")
TARGET_MODES = ("train", "eval")


def is_paired(config: RunConfig) -> bool:
    """Whether the recipe's batches carry the ground truth for their inputs (the aligned layout)."""
    return config.data.layout == "aligned"


def eval_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in inference mode, its train/eval mode restored."""
    was_training = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was_training)


def train_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in train mode (BatchNorm on batch statistics) without moving its running statistics.

    How a kept teacher snapshot gives train-mode targets while staying the snapshot it was.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0)·running + 0·batch
    model.train()
    try:
        return model(x)
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
        model.train(was_training)


def _real(batch_real: torch.Tensor | None, what: str) -> torch.Tensor:
    if batch_real is None:
        raise ConfigError(f"{what} needs the B images of the batch (a paired or unaligned dataset)")
    return batch_real


# --------------------------------------------------------------------------------------------- #
# the strategies


class TeacherSide:
    """No teacher (``teacher.mode: none``); the base of the other sides."""

    mode = "none"

    def __init__(self, config: RunConfig, rt: Runtime) -> None:
        self.config, self.rt = config, rt
        self.gan_mode, self.conditional = "lsgan", False

    @property
    def generator(self) -> nn.Module | None:
        """The G_t the student distils from at this step (None: no teacher generator)."""
        return None

    @property
    def discriminator(self) -> nn.Module | None:
        """D̄, the teacher discriminator the student's terms may score with."""
        return None

    def terms(self) -> list[LossTerm]:
        """Loss terms the side trains its teachers with (their schedules, setup and aux optimisers)."""
        return []

    def attach_taps(self, paths: Sequence[str]) -> None:
        """Tap ``paths`` of G_t for the student terms that read teacher features."""
        if paths and self.generator is None:
            raise ConfigError(f"loss terms tap teacher layers {list(paths)} but the recipe has no teacher generator")

    def setup(self, batch: Batch) -> list[nn.Module]:
        """Size what depends on the first batch; returns the modules to broadcast under torchrun."""
        return []

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def modules(self) -> dict[str, nn.Module]:
        return {}

    def checkpoints(self) -> dict[str, nn.Module]:
        return {}

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        return {}

    def fill(self, ctx: StepContext) -> None:
        """Put G_t(x) (no grad), its tapped features and D̄ into ``ctx``."""
        ctx.teacher_discriminator = self.discriminator
        ctx.teacher_gan_mode, ctx.teacher_conditional = self.gan_mode, self.conditional

    def discriminator_step(self, ctx: StepContext, active: Sequence[LossTerm]) -> dict[str, float]:
        return {}

    def after_step(self, done: int, held_out: list[Batch]) -> dict[str, float]:
        return {}

    def clear_taps(self) -> None:
        pass

    def formula(self) -> str:
        return ""

    def provenance(self) -> dict[str, Any]:
        return {}


NoTeacher = TeacherSide


class OfflineTeacher(TeacherSide):
    """A frozen G_t and/or D̄ from checkpoints (``teacher.checkpoint`` / ``teacher.discriminator``).

    D̄'s objective (``gan_mode``, ``conditional``) is read from its own checkpoint's record, else
    ``teacher.discriminator_gan_mode`` (an imported reference D records none).
    """

    mode = "offline"

    def __init__(self, config: RunConfig, rt: Runtime, paths: dict[str, Path]) -> None:
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


class OnlineTeachers(TeacherSide):
    """Teachers trained with the student (``teacher.mode: online``): the main one, then ``teacher.extra``."""

    mode = "online"

    def __init__(self, config: RunConfig, rt: Runtime, paths: dict[str, Path]) -> None:
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


def build_teacher_side(config: RunConfig, rt: Runtime, paths: dict[str, Path]) -> TeacherSide:
    """The side ``teacher.mode`` names."""
    mode = config.teacher.mode
    if mode not in MODES:
        raise ConfigError(f"teacher.mode must be offline, online or none, got {mode!r}")
    if mode == "none":
        return NoTeacher(config, rt)
    if mode == "offline":
        return OfflineTeacher(config, rt, paths)
    return OnlineTeachers(config, rt, paths)


def check_teacher_config(config: RunConfig, has_generator: bool | None = None) -> None:
    """What can be refused before anything is built or trained (called by the loop at start).

    ``has_generator``: whether the built side has a G_t (None: judged from the recipe alone).
    """
    tcfg = config.teacher
    if tcfg.mode not in MODES:
        raise ConfigError(f"teacher.mode must be offline, online or none, got {tcfg.mode!r}")
    online = tcfg.mode == "online"
    if not online and (tcfg.extra or tcfg.eval_every or tcfg.cyclegan is not None):
        raise ConfigError("teacher.extra, teacher.eval_every and teacher.cyclegan need teacher.mode: online (teachers "
                          f"trained with the student); teacher.mode is {tcfg.mode!r}")
    if tcfg.eval_every < 0:
        raise ConfigError(f"teacher.eval_every must be >= 0 (0: no teacher selection), got {tcfg.eval_every}")
    if tcfg.update_every < 1:
        raise ConfigError(f"teacher.update_every must be >= 1 (1: the teachers step with every student step), "
                          f"got {tcfg.update_every}")
    if online and tcfg.eval_every:
        selection_metric(config, cyclegan=tcfg.cyclegan is not None)
    has_g = has_generator if has_generator is not None else tcfg.mode != "none" and tcfg.use_generator and bool(
        tcfg.checkpoint or (tcfg.auto and tcfg.auto.recipe) or (online and tcfg.model is not None))
    paired = is_paired(config)
    for i, spec in enumerate(config.loss):
        if teacher_needed(spec, paired) and not has_g:
            data = "paired" if paired else "unpaired"
            raise ConfigError(f"loss.{i} ({spec.get('name')!r}) needs a teacher generator on {data} data "
                              f"(data.layout {config.data.layout}); set teacher.checkpoint, teacher.auto or an "
                              "online teacher.model")
    if online and tcfg.cyclegan is not None and tcfg.loss:
        raise ConfigError("teacher.cyclegan trains the teacher by the cycle objective; remove teacher.loss")
    if online and tcfg.cyclegan is None and not tcfg.loss:
        raise ConfigError("teacher.mode online needs teacher.loss terms (e.g. adv + l1_target), or teacher.cyclegan "
                          "for a CycleGAN teacher on unpaired data")
    if online:
        for i, spec in enumerate(tcfg.loss if tcfg.cyclegan is None else []):
            if teacher_needed(spec, paired):
                raise ConfigError(f"teacher.loss.{i} ({spec.get('name')!r}) compares with a teacher; an online "
                                  "teacher learns from the data (e.g. adv + l1_target)")


# --------------------------------------------------------------------------------------------- #
# online teachers


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

    def __init__(self, name: str, config: RunConfig, rt: Runtime, model_cfg: ModelConfig, init: Path | None) -> None:
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

    def __init__(self, name: str, config: RunConfig, rt: Runtime, model_cfg: ModelConfig,
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


class CycleTeacher(OnlineTeacher):
    """An online CycleGAN pair (``teacher.cyclegan``): G_A is what the student learns from, D_A its D̄.

    Trained by the cycle objective of :mod:`distill.engine.cyclegan` on the same unpaired batch as
    the student, before the student's step; D_A and D_B are updated only there (and frozen when D_A
    scores the student). Selection evaluates G_A; ``cycle_psnr`` (PSNR of G_B(G_A(a)) to a) is
    offered where FID cannot be computed.
    """

    def __init__(self, name: str, config: RunConfig, rt: Runtime, model_cfg: ModelConfig,
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
