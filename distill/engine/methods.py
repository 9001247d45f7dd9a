"""Training methods: what one step does. The loop (``loop.py``) drives any registered method.

- ``generator`` (default): one generator G_s trained by composable loss terms, with an optional
  teacher (offline/frozen or online), its own discriminator D and a teacher discriminator D̄.
  pix2pix and unconditional teachers are this method without a teacher; every distiller is this
  method with a teacher and its terms.
- ``cyclegan``: two generators and two discriminators (Zhu et al. 2017), for teacher training.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.checkpoint import load_checkpoint, read_checkpoint_config
from distill.engine.config import DiscriminatorConfig, ModelConfig, RunConfig
from distill.engine.context import StepContext
from distill.engine.data import Batch
from distill.engine.evaluate import evaluate_model
from distill.engine.hooks import FeatureTaps
from distill.engine.runtime import Runtime, set_requires_grad
from distill.errors import ConfigError
from distill.losses.adversarial import check_gan_mode, discriminator_loss, generator_loss, gradient_penalty
from distill.losses.base import build_loss, format_formula
from distill.losses.omgd import EXTRA_TEACHERS
from distill.registry import create_model, model_info

log = logging.getLogger(__name__)

_METHODS: dict[str, type[TrainingMethod]] = {}


def register_method(name: str) -> Callable[[type[TrainingMethod]], type[TrainingMethod]]:
    def decorator(cls: type[TrainingMethod]) -> type[TrainingMethod]:
        _METHODS[name] = cls
        return cls

    return decorator


def build_method(config: RunConfig, rt: Runtime, paths: dict[str, Path]) -> TrainingMethod:
    cls = _METHODS.get(config.method.name)
    if cls is None:
        raise ConfigError(f"unknown method {config.method.name!r}; choose one of: {', '.join(sorted(_METHODS))}")
    try:
        return cls(config, rt, paths, **config.method.kwargs)
    except TypeError as exc:
        raise ConfigError(f"method {config.method.name!r}: {exc}") from exc


def build_generator(cfg: ModelConfig, init: Path | None = None) -> nn.Module:
    """A generator from its config (``arch`` + ``ngf`` or ``width`` + ``kwargs``), optionally initialised from a checkpoint."""
    if not cfg.arch:
        raise ConfigError("a generator section needs arch; choose a registered generator")
    return _create(cfg.arch, dict(cfg.kwargs), cfg.width, "ngf", cfg.ngf, init)


def build_discriminator(cfg: DiscriminatorConfig, generator: nn.Module, init: Path | None = None) -> nn.Module:
    """D for ``generator``: ``input_nc`` / ``nc`` / ``image_size`` follow the generator unless given."""
    if not cfg.arch:
        raise ConfigError("discriminator.arch is missing; choose a registered discriminator")
    check_gan_mode(cfg.gan_mode)
    info = model_info(cfg.arch)
    gkw = generator.slimgan_config["kwargs"]
    out_nc = gkw.get("output_nc", gkw.get("nc", 3))
    kwargs = dict(cfg.kwargs)
    if "input_nc" in info.defaults and "input_nc" not in kwargs:
        kwargs["input_nc"] = out_nc + (gkw.get("input_nc", 3) if cfg.conditional else 0)
    if "nc" in info.defaults and "nc" not in kwargs:
        kwargs["nc"] = out_nc
    if "image_size" in info.defaults and "image_size" not in kwargs and "image_size" in gkw:
        kwargs["image_size"] = gkw["image_size"]
    return _create(cfg.arch, kwargs, cfg.width, "ndf", cfg.ndf, init)


def _create(arch: str, kwargs: dict, width: float | None, channels_arg: str, channels: int | None,
            init: Path | None) -> nn.Module:
    """``create_model`` with the section's ``width`` or ``ngf``/``ndf``, then weights from ``init``."""
    if width is not None:
        kwargs["width"] = width
    if channels is not None:
        kwargs[channels_arg] = channels
    model = create_model(arch, **kwargs)
    if init is not None:
        model.load_state_dict(load_checkpoint(init).state_dict())
    return model


def latent_size(generator: nn.Module) -> int | None:
    """``nz`` of a latent generator, None for image-to-image ones."""
    cfg = generator.slimgan_config
    return cfg["kwargs"].get("nz") if model_info(cfg["arch"]).input_kind == "latent" else None


def adam(params, lr: float, cfg: RunConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(list(params), lr=lr, betas=(cfg.train.beta1, cfg.train.beta2))


class TrainingMethod:
    """Base class of a method. The loop calls, in order: ``setup(batch)``, ``build_optimizers()``,
    then per step ``train_step(batch, step)``; ``predict`` for evaluation and sample grids.

    ``modules()`` / ``optimizers()`` are what ``state.pt`` holds; ``checkpoints()`` what is written
    as checkpoint directories (``student`` is the exported model); ``formula()`` is logged.
    """

    generator: nn.Module

    def __init__(self, config: RunConfig, rt: Runtime, paths: dict[str, Path]):
        self.config, self.rt, self.paths = config, rt, paths

    def setup(self, batch: Batch) -> None:
        pass

    def build_optimizers(self) -> None:
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def checkpoints(self) -> dict[str, nn.Module]:
        return {"student": self.generator}

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        raise NotImplementedError

    def after_step(self, done: int, held_out: list[Batch]) -> dict[str, float]:
        """Called on every rank after step ``done`` (1-based count) with the held-out batches; returns logs.

        Default: nothing. The generator method evaluates and selects its online teachers here.
        """
        return {}

    @torch.no_grad()
    def predict(self, real_a: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def formula(self) -> str:
        return ""

    def provenance(self) -> dict[str, Any]:
        return {}


def _eval_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = model(x)
    model.train(was_training)
    return out


@dataclass
class OnlineTeacher:
    """One online teacher: G_t, its discriminator, its objective and, with selection, its best snapshot.

    ``best`` is a frozen copy of ``model`` holding the best weights found by the periodic evaluation
    (crd §4.1); the student distils from it once it has been filled (:meth:`distill_model`).
    """

    name: str  # "teacher" (the main one) or "teacher_<name>" (extra)
    model: nn.Module
    discriminator: nn.Module | None
    d_cfg: DiscriminatorConfig | None
    terms: nn.ModuleList
    best: nn.Module | None = None
    index: int = 0

    def distill_model(self, selection: _TeacherSelection | None) -> nn.Module:
        if self.best is not None and selection is not None and int(selection.best_step[self.index]) >= 0:
            return self.best
        return self.model


class _TeacherSelection(nn.Module):
    """Best score and step per online teacher, as buffers (so ``state.pt`` restores them on resume)."""

    def __init__(self, num: int):
        super().__init__()
        self.register_buffer("best_value", torch.full((num,), math.nan, dtype=torch.float64))
        self.register_buffer("best_step", torch.full((num,), -1, dtype=torch.long))


@register_method("generator")
class GeneratorMethod(TrainingMethod):
    """G_s trained by ``L_G = Σ w_i·term_i``; D by its GAN loss; optional teacher G_t and D̄.

    Step: [online teacher step] -> G_t(x) (no grad) and G_s(x) with taps -> D step (and D̄ step when
    ``teacher.train_discriminator``) -> terms' ``aux_step`` -> student step.
    """

    def __init__(self, config: RunConfig, rt: Runtime, paths: dict[str, Path]):
        super().__init__(config, rt, paths)
        dev = rt.device
        tcfg = config.teacher
        if tcfg.mode not in ("offline", "online", "none"):
            raise ConfigError(f"teacher.mode must be offline, online or none, got {tcfg.mode!r}")
        self.student = build_generator(config.student, paths.get("student_init")).to(dev).train()
        self.generator = self.student

        # teacher generator G_t
        self.teacher: nn.Module | None = None
        self.online = tcfg.mode == "online"
        if tcfg.mode != "none" and tcfg.use_generator:
            if paths.get("teacher") is not None:
                self.teacher = load_checkpoint(paths["teacher"], device=dev, eval_mode=not self.online)
            elif self.online and tcfg.model is not None:
                self.teacher = build_generator(tcfg.model).to(dev)
            if self.teacher is not None and not self.online:
                set_requires_grad([self.teacher], False)
        # discriminators
        self.d_cfg = config.discriminator
        self.discriminator = None
        if self.d_cfg is not None:
            self.discriminator = build_discriminator(self.d_cfg, self.student, paths.get("discriminator_init")).to(dev)
        self.teacher_d: nn.Module | None = None
        if tcfg.mode != "none" and paths.get("teacher_discriminator") is not None:
            self.teacher_d = load_checkpoint(paths["teacher_discriminator"], device=dev,
                                             eval_mode=not tcfg.train_discriminator)
            set_requires_grad([self.teacher_d], tcfg.train_discriminator)
        self.teacher_d_mode = self.d_cfg.gan_mode if self.d_cfg else "hinge"
        if self.teacher_d is not None and paths["teacher_discriminator"].parent.joinpath("config.yaml").is_file():
            import yaml

            run = yaml.safe_load(paths["teacher_discriminator"].parent.joinpath("config.yaml").read_text()) or {}
            self.teacher_d_mode = ((run.get("discriminator") or {}).get("gan_mode")) or self.teacher_d_mode
        # online teachers: the main one (+ OMGD's complementary ones), each with its D and terms
        self.online_d: nn.Module | None = None
        self.online_terms = nn.ModuleList()
        self.online_teachers: list[OnlineTeacher] = []
        self.selection: _TeacherSelection | None = None
        if not self.online and (tcfg.extra or tcfg.eval_every):
            raise ConfigError("teacher.extra and teacher.eval_every need teacher.mode: online (teachers trained "
                              f"with the student); teacher.mode is {tcfg.mode!r}")
        if tcfg.eval_every < 0:
            raise ConfigError(f"teacher.eval_every must be >= 0 (0: no teacher selection), got {tcfg.eval_every}")
        if self.online:
            if self.teacher is None:
                raise ConfigError("teacher.mode online needs teacher.model (or teacher.checkpoint to start from)")
            self.teacher.train()
            if tcfg.online_discriminator is not None:
                self.online_d = build_discriminator(tcfg.online_discriminator, self.teacher).to(dev)
            self.online_terms = nn.ModuleList(build_loss(s) for s in tcfg.loss)
            if not len(self.online_terms):
                raise ConfigError("teacher.mode online needs teacher.loss terms (e.g. adv + l1_target)")
            self.online_teachers.append(OnlineTeacher("teacher", self.teacher, self.online_d,
                                                      tcfg.online_discriminator, self.online_terms))
            for i, extra in enumerate(tcfg.extra):
                name = f"teacher_{extra.name or f'extra{i}'}"
                if extra.model is None or not extra.model.arch:
                    raise ConfigError(f"teacher.extra.{i} ({name}) needs model.arch")
                if any(o.name == name for o in self.online_teachers):
                    raise ConfigError(f"teacher.extra.{i}: the name {extra.name!r} is used twice")
                model = build_generator(extra.model).to(dev).train()
                d_cfg = extra.online_discriminator or tcfg.online_discriminator
                d = build_discriminator(d_cfg, model).to(dev) if d_cfg is not None else None
                terms = nn.ModuleList(build_loss(s) for s in (extra.loss or tcfg.loss))
                self.online_teachers.append(OnlineTeacher(name, model, d, d_cfg, terms))
            if tcfg.eval_every:
                self.selection = _TeacherSelection(len(self.online_teachers)).to(dev)
                for i, ot in enumerate(self.online_teachers):
                    ot.index = i
                    ot.best = copy.deepcopy(ot.model).eval()
                    set_requires_grad([ot.best], False)
        # the student's terms
        self.terms = nn.ModuleList(build_loss(s) for s in config.loss)
        if not len(self.terms):
            raise ConfigError("the recipe has no loss terms; add a loss: list (e.g. [{name: l1_target, weight: 100}])")
        for t in self.terms:
            if t.needs_teacher and self.teacher is None:
                raise ConfigError(f"loss term {t.name!r} needs a teacher generator; set teacher.checkpoint or teacher.auto")
        for t in list(self.terms) + [t for ot in self.online_teachers for t in ot.terms]:
            t.resolve_schedule(config.train.steps)
        self.terms.to(dev)
        self.student_taps = FeatureTaps(self.student, [p for t in self.terms for p in t.student_layers()])
        teacher_paths = [p for t in self.terms for p in t.teacher_layers()]
        self.teacher_taps = FeatureTaps(self.teacher, teacher_paths) if self.teacher is not None else None
        main_best = self.online_teachers[0].best if self.online_teachers else None
        self.best_taps = FeatureTaps(main_best, teacher_paths) if main_best is not None else None
        self.student_ddp = self.student
        self._optimizers: dict[str, torch.optim.Optimizer] = {}

    # -- plumbing ------------------------------------------------------------------------------
    def _context(self, batch: Batch, step: int) -> StepContext:
        return StepContext(
            step=step, real_a=batch.real_a, real_b=batch.real_b, paired=batch.paired,
            student=self.student, teacher=self.teacher, discriminator=self.discriminator,
            teacher_discriminator=self.teacher_d if self.teacher_d is not None else self.online_d,
            gan_mode=self.d_cfg.gan_mode if self.d_cfg else self.teacher_d_mode,
            conditional=bool(self.d_cfg and self.d_cfg.conditional), device=self.rt.device,
            optimize=self.rt.optimize,
        )

    def distill_teacher(self) -> nn.Module | None:
        """The G_t the student learns from: the best snapshot once teacher selection has one, else the teacher."""
        if self.online_teachers:
            return self.online_teachers[0].distill_model(self.selection)
        return self.teacher

    def _forward(self, ctx: StepContext, student: nn.Module) -> None:
        if self.teacher is not None:
            teacher = self.distill_teacher()
            taps = self.best_taps if teacher is not self.teacher else self.teacher_taps
            if self.teacher_taps:
                self.teacher_taps.clear()
            with torch.no_grad():
                ctx.teacher_out = teacher(ctx.real_a).detach()  # (B, C, H, W)
                if len(self.online_teachers) > 1:  # OMGD's complementary teachers, in inference mode
                    ctx.extras[EXTRA_TEACHERS] = [
                        _eval_forward(ot.distill_model(self.selection), ctx.real_a).detach()
                        for ot in self.online_teachers[1:]]
            ctx.teacher_feats = taps.take() if taps else {}
        ctx.student_out = student(ctx.real_a)  # (B, C, H, W), with grad
        ctx.student_feats = self.student_taps.take()

    def setup(self, batch: Batch) -> None:
        """One forward on the first batch (eval mode, no grad) so terms can size their adapters."""
        batch = batch.to(self.rt.device)
        ctx = self._context(batch, 0)
        was = self.student.training
        self.student.eval()
        with torch.no_grad():
            self._forward(ctx, self.student)
        self.student.train(was)
        for t in list(self.terms) + [t for ot in self.online_teachers for t in ot.terms]:
            t.setup(ctx)
        self.terms.to(self.rt.device)
        extra = [m for ot in self.online_teachers[1:] for m in (ot.model, ot.discriminator, ot.terms) if m is not None]
        self.rt.broadcast_parameters([self.terms, *(m for m in (self.discriminator, self.online_d) if m is not None),
                                      *extra])
        self.student_ddp = self.rt.wrap(self.student)

    def build_optimizers(self) -> None:
        cfg = self.config
        owned = {id(p) for t in self.terms for o in t.aux_optimizers().values() for g in o.param_groups for p in g["params"]}
        g_params = list(self.student.parameters()) + [p for t in self.terms for p in t.student_parameters() if id(p) not in owned]
        self._optimizers["G"] = adam(g_params, cfg.train.lr, cfg)
        if self.discriminator is not None:
            self._optimizers["D"] = adam(self.discriminator.parameters(), self.d_cfg.lr or cfg.train.lr, cfg)
        if self.teacher_d is not None and cfg.teacher.train_discriminator:
            self._optimizers["D_teacher"] = adam(self.teacher_d.parameters(), cfg.train.lr, cfg)
        for ot in self.online_teachers:
            suffix = ot.name[len("teacher"):]  # "" for the main teacher, "_deep" for teacher_deep
            self._optimizers[f"G_teacher{suffix}"] = adam(
                list(ot.model.parameters()) + [p for t in ot.terms for p in t.student_parameters()], cfg.train.lr, cfg)
            if ot.discriminator is not None:
                self._optimizers[f"D_teacher{suffix}"] = adam(ot.discriminator.parameters(),
                                                              ot.d_cfg.lr or cfg.train.lr, cfg)
        for t in list(self.terms) + [t for ot in self.online_teachers for t in ot.terms]:
            for name, opt in t.aux_optimizers().items():
                self._optimizers[f"{t.name}.{name}"] = opt

    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"student": self.student, "terms": self.terms}
        if self.discriminator is not None:
            mods["discriminator"] = self.discriminator
        if self.teacher_d is not None and self.config.teacher.train_discriminator:
            mods["teacher_discriminator"] = self.teacher_d
        if self.online:
            mods.update(teacher=self.teacher, teacher_terms=self.online_terms)
            if self.online_d is not None:
                mods["teacher_discriminator"] = self.online_d
        for ot in self.online_teachers[1:]:
            mods.update({ot.name: ot.model, f"{ot.name}_terms": ot.terms})
            if ot.discriminator is not None:
                mods[f"{ot.name}_discriminator"] = ot.discriminator
        if self.selection is not None:
            mods["teacher_selection"] = self.selection
            mods.update({f"{ot.name}_best": ot.best for ot in self.online_teachers})
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._optimizers

    def checkpoints(self) -> dict[str, nn.Module]:
        out = {"student": self.student}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator
        for ot in self.online_teachers:
            out[ot.name] = ot.model
            if self.selection is not None and int(self.selection.best_step[ot.index]) >= 0:
                out[f"{ot.name}_best"] = ot.best
        return out

    def formula(self) -> str:
        text = format_formula(list(self.terms), "L_G")
        if self.discriminator is not None:
            text += f";  L_D = {self.d_cfg.gan_mode}(D(real), D(G_s(x)))" + (
                f" + {self.d_cfg.gp_weight:g}·GP" if self.d_cfg.gan_mode == "wgangp" else "")
        for ot in self.online_teachers:
            text += ";  " + format_formula(list(ot.terms), f"L_G_{ot.name}")
        if self.selection is not None:
            text += (f";  every {self.config.teacher.eval_every} steps the student switches to the best "
                     "evaluated teacher")
        return text

    # -- the step ------------------------------------------------------------------------------
    def _d_step(self, d: nn.Module, ctx: StepContext, fake: torch.Tensor, mode: str, gp_weight: float,
                opt: torch.optim.Optimizer) -> float:
        real = ctx.real_b if ctx.real_b is not None else ctx.teacher_out
        if real is None:
            raise ConfigError("the discriminator needs real images: use a dataset with B images or a teacher")
        set_requires_grad([d], True)
        with self.rt.autocast():
            loss = discriminator_loss(d(ctx.d_input(real)), d(ctx.d_input(fake.detach())), mode)
            if mode == "wgangp":
                loss = loss + gp_weight * gradient_penalty(d, ctx.d_input(real), ctx.d_input(fake.detach()))
        self.rt.optimize(loss, opt)
        set_requires_grad([d], False)
        return float(loss.detach())

    def _teacher_step(self, batch: Batch, step: int, ot: OnlineTeacher | None = None) -> dict[str, float]:
        """Online teacher (OMGD / CRD): G_t and its D trained by ``teacher.loss`` on the same batch."""
        ot = ot or self.online_teachers[0]
        suffix = ot.name[len("teacher"):]
        ctx = self._context(batch, step)
        ctx.student, ctx.teacher, ctx.discriminator = ot.model, None, ot.discriminator
        od = ot.d_cfg
        ctx.teacher_discriminator = ot.discriminator
        ctx.gan_mode = od.gan_mode if od else ctx.gan_mode
        ctx.conditional = bool(od and od.conditional)
        with self.rt.autocast():
            ctx.student_out = ot.model(ctx.real_a)
        logs = {}
        if ot.discriminator is not None:
            logs[f"{ot.name}.D"] = self._d_step(ot.discriminator, ctx, ctx.student_out, od.gan_mode,
                                                      od.gp_weight, self._optimizers[f"D_teacher{suffix}"])
        with self.rt.autocast():
            values = {t.name: t(ctx) for t in ot.terms if t.active(step)}
            total = sum(t.weight * values[t.name] for t in ot.terms if t.name in values)
        self.rt.optimize(total, self._optimizers[f"G_teacher{suffix}"])
        logs.update({f"{ot.name}.G_{k}": float(v.detach()) for k, v in values.items()})
        return logs

    def after_step(self, done: int, held_out: list[Batch]) -> dict[str, float]:
        """Teacher selection (crd §4.1): every ``teacher.eval_every`` steps evaluate each online teacher on
        the held-out batches and copy its weights into its best snapshot when it beats the best so far.

        Runs on every rank with the same weights and data, so all ranks select the same teacher.
        """
        every = self.config.teacher.eval_every
        if self.selection is None or not every or done % every or not held_out:
            return {}
        logs: dict[str, float] = {}
        weights = self.config.eval.inception_weights
        for ot in self.online_teachers:
            metrics = evaluate_model(ot.model, held_out, self.rt.device, weights)
            name, mode = self._teacher_metric(metrics)
            value = float(metrics[name])
            best = float(self.selection.best_value[ot.index])
            better = math.isfinite(value) and (math.isnan(best) or (value > best if mode == "max" else value < best))
            if better:
                ot.best.load_state_dict(ot.model.state_dict())
                self.selection.best_value[ot.index] = value
                self.selection.best_step[ot.index] = done
                log.info("step %d: %s %s = %.4g is the best so far; the student now distils from it",
                         done, ot.name, name, value)
            logs[f"{ot.name}_eval_{name}"] = value
            logs[f"{ot.name}_best_{name}"] = float(self.selection.best_value[ot.index])
            logs[f"{ot.name}_best_step"] = float(self.selection.best_step[ot.index])
        return logs

    def _teacher_metric(self, metrics: dict[str, float]) -> tuple[str, str]:
        """(name, max|min): ``teacher.eval_metric``, else fid when computed (the crd paper's), else psnr_gt."""
        requested = self.config.teacher.eval_metric
        name = requested or next((m for m in ("fid", "psnr_gt") if m in metrics), "")
        if name not in metrics:
            have = ", ".join(sorted(metrics)) or "none"
            raise ConfigError(
                f"teacher.eval_every: the teacher metric {name or '(default)'!r} is not available; metrics computed on "
                f"the held-out split: {have} (psnr_gt needs paired data, fid needs eval.inception_weights)")
        return name, "min" if name in ("fid", "kid") else "max"

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        batch = batch.to(self.rt.device)
        logs: dict[str, float] = {}
        if self.online:
            for ot in self.online_teachers:
                logs.update(self._teacher_step(batch, step, ot))
            self.teacher.eval()  # the student learns from the current teacher in inference mode
        ctx = self._context(batch, step)
        with self.rt.autocast():
            self._forward(ctx, self.student_ddp)
        if self.online:
            self.teacher.train()
        active = [t for t in self.terms if t.active(step)]
        if self.discriminator is not None:
            logs["D"] = self._d_step(self.discriminator, ctx, ctx.student_out, self.d_cfg.gan_mode,
                                     self.d_cfg.gp_weight, self._optimizers["D"])
        if self.teacher_d is not None and self.config.teacher.train_discriminator:
            logs["D_teacher"] = self._d_step(self.teacher_d, ctx, ctx.student_out, self.teacher_d_mode,
                                             self.d_cfg.gp_weight if self.d_cfg else 10.0,
                                             self._optimizers["D_teacher"])
        for t in active:
            logs.update({f"{t.name}.{k}": v for k, v in t.aux_step(ctx).items()})
        with self.rt.autocast():
            values = {t.name: t(ctx) for t in active}
            total = sum((t.weight * values[t.name] for t in active), ctx.student_out.new_zeros(()))
        self.rt.optimize(total, self._optimizers["G"])
        logs.update({f"G_{k}": float(v.detach()) for k, v in values.items()})
        logs["G_total"] = float(total.detach())
        return logs

    @torch.no_grad()
    def predict(self, real_a: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"student": _eval_forward(self.student, real_a)}
        self.student_taps.clear()
        if self.teacher is not None:
            out["teacher"] = _eval_forward(self.distill_teacher(), real_a)
            for taps in (self.teacher_taps, self.best_taps):
                if taps:
                    taps.clear()
        return out

    def provenance(self) -> dict[str, Any]:
        prov: dict[str, Any] = {"method": "generator", "loss": self.formula()}
        if self.teacher is not None and not self.online:
            info = getattr(self.teacher, "slimgan_checkpoint", {})
            prov.update(teacher=info.get("path"), teacher_sha256=info.get("sha256"))
        if self.selection is not None:
            prov["teacher_best_step"] = {ot.name: int(self.selection.best_step[ot.index]) for ot in self.online_teachers}
        return prov


@register_method("cyclegan")
class CycleGANMethod(TrainingMethod):
    """CycleGAN (Zhu et al. 2017): G_A: A->B (saved as ``student``), G_B: B->A, D_A on B, D_B on A.

    ``L_G = GAN(D_A(G_A(a))) + GAN(D_B(G_B(b))) + λ_cyc(|G_B(G_A(a)) - a|₁ + |G_A(G_B(b)) - b|₁)
    + λ_id·λ_cyc(|G_A(b) - b|₁ + |G_B(a) - a|₁)``, λ_cyc = 10, λ_id = 0.5, LSGAN by default.
    The reference's 50-image history pool is not used.
    """

    def __init__(self, config: RunConfig, rt: Runtime, paths: dict[str, Path],
                 lambda_cycle: float = 10.0, lambda_identity: float = 0.5):
        super().__init__(config, rt, paths)
        if config.discriminator is None:
            raise ConfigError("method cyclegan needs a discriminator section")
        dev = rt.device
        self.lambda_cycle, self.lambda_identity = float(lambda_cycle), float(lambda_identity)
        self.g_a = build_generator(config.student, paths.get("student_init")).to(dev)
        kw = dict(config.student.kwargs)
        kw["input_nc"], kw["output_nc"] = kw.get("output_nc", 3), kw.get("input_nc", 3)
        self.g_b = build_generator(ModelConfig(arch=config.student.arch, width=config.student.width,
                                               ngf=config.student.ngf, kwargs=kw)).to(dev)
        self.generator = self.g_a
        self.d_cfg = config.discriminator
        self.d_a = build_discriminator(self.d_cfg, self.g_a).to(dev)
        self.d_b = build_discriminator(self.d_cfg, self.g_b).to(dev)
        self._optimizers: dict[str, torch.optim.Optimizer] = {}

    def setup(self, batch: Batch) -> None:
        self.rt.broadcast_parameters([self.g_a, self.g_b, self.d_a, self.d_b])

    def build_optimizers(self) -> None:
        cfg = self.config
        self._optimizers["G"] = adam(list(self.g_a.parameters()) + list(self.g_b.parameters()), cfg.train.lr, cfg)
        self._optimizers["D"] = adam(list(self.d_a.parameters()) + list(self.d_b.parameters()),
                                     self.d_cfg.lr or cfg.train.lr, cfg)

    def modules(self) -> dict[str, nn.Module]:
        return {"student": self.g_a, "generator_b": self.g_b, "discriminator": self.d_a, "discriminator_b": self.d_b}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._optimizers

    def checkpoints(self) -> dict[str, nn.Module]:
        return self.modules()

    def formula(self) -> str:
        lc, li = self.lambda_cycle, self.lambda_identity
        return (f"L_G = GAN_A + GAN_B + {lc:g}·(cycle_A + cycle_B) + {lc * li:g}·(idt_A + idt_B);  "
                f"L_D = {self.d_cfg.gan_mode}(D_A) + {self.d_cfg.gan_mode}(D_B)")

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        batch = batch.to(self.rt.device)
        a, b = batch.real_a, batch.real_b
        if b is None:
            raise ConfigError("method cyclegan needs an unaligned (A and B) dataset")
        mode = self.d_cfg.gan_mode
        l1 = nn.functional.l1_loss
        with self.rt.autocast():
            fake_b, fake_a = self.g_a(a), self.g_b(b)  # (B, C, H, W)
            rec_a, rec_b = self.g_b(fake_b), self.g_a(fake_a)
            terms = {
                "GAN_A": generator_loss(self.d_a(fake_b), mode),
                "GAN_B": generator_loss(self.d_b(fake_a), mode),
                "cycle_A": l1(rec_a, a),
                "cycle_B": l1(rec_b, b),
            }
            if self.lambda_identity > 0:
                terms["idt_A"] = l1(self.g_a(b), b)
                terms["idt_B"] = l1(self.g_b(a), a)
            lc, li = self.lambda_cycle, self.lambda_identity
            total = (terms["GAN_A"] + terms["GAN_B"] + lc * (terms["cycle_A"] + terms["cycle_B"])
                     + (lc * li * (terms["idt_A"] + terms["idt_B"]) if li > 0 else 0))
        set_requires_grad([self.d_a, self.d_b], False)
        self.rt.optimize(total, self._optimizers["G"])
        set_requires_grad([self.d_a, self.d_b], True)
        with self.rt.autocast():
            loss_d = (discriminator_loss(self.d_a(b), self.d_a(fake_b.detach()), mode)
                      + discriminator_loss(self.d_b(a), self.d_b(fake_a.detach()), mode))
            if mode == "wgangp":
                loss_d = loss_d + self.d_cfg.gp_weight * (gradient_penalty(self.d_a, b, fake_b)
                                                          + gradient_penalty(self.d_b, a, fake_a))
        self.rt.optimize(loss_d, self._optimizers["D"])
        logs = {f"G_{k}": float(v.detach()) for k, v in terms.items()}
        logs.update(G_total=float(total.detach()), D=float(loss_d.detach()))
        return logs

    @torch.no_grad()
    def predict(self, real_a: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"student": _eval_forward(self.g_a, real_a)}

    def provenance(self) -> dict[str, Any]:
        return {"method": "cyclegan", "loss": self.formula()}


def checkpoint_arch(path: Path) -> str:
    return read_checkpoint_config(path)["arch"]
