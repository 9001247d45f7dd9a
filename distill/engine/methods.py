"""Training methods: what one step does. The loop (``loop.py``) drives any registered method.

- ``generator`` (default): one generator G_s trained by composable loss terms, with its own
  discriminator D and a teacher side chosen once from ``teacher.mode`` (:mod:`distill.engine.teachers`:
  none, offline G_t / D̄, or a list of online teachers, CycleGAN pairs included). pix2pix and
  unconditional teachers are this method without a teacher; every distiller is this method with a
  teacher and its terms.
- ``cyclegan``: two generators and two discriminators (Zhu et al. 2017), for teacher training.

The networks are built by :mod:`distill.engine.builders`; a recipe's method is looked up and built by
:mod:`distill.engine.factory`, which also loads the methods that live in their own modules (``stylegan2``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.engine.builders import adam, build_discriminator, build_generator, checkpoint_arch, latent_size
from distill.engine.config import CycleConfig, RunConfig
from distill.engine.cyclegan import CycleGANPair
from distill.engine.data import Batch
from distill.engine.device import DeviceContext, set_requires_grad
from distill.engine.gan import update_discriminator
from distill.engine.hooks import FeatureTaps
from distill.engine.teachers import TeacherSide, build_teacher_side, check_teacher_config, eval_forward
from distill.errors import ConfigError
from distill.losses import build_loss, format_formula
from distill.losses.context import StepContext
from slimgan.registry import Registry

__all__ = ["METHODS", "CycleGANMethod", "GeneratorMethod", "TrainingMethod", "register_method",
           "build_discriminator", "build_generator", "checkpoint_arch", "latent_size"]

METHODS: Registry[type[TrainingMethod]] = Registry("method")


def register_method(name: str) -> Callable[[type[TrainingMethod]], type[TrainingMethod]]:
    """Class decorator: make ``name`` a recipe's ``method.name``. A name registered twice is an error."""
    return METHODS.register(name)


class TrainingMethod:
    """Base class of a method. The loop calls, in order: ``setup(batch)``, ``build_optimizers()``,
    then per step ``train_step(batch, step)``; ``predict`` for evaluation and sample grids.

    ``modules()`` / ``optimizers()`` are what ``state.pt`` holds; ``checkpoints()`` what is written
    as checkpoint directories (``student`` is the exported model); ``formula()`` is logged.
    """

    generator: nn.Module

    def __init__(self, config: RunConfig, rt: DeviceContext, paths: dict[str, Path]):
        self.config, self.rt, self.paths = config, rt, paths

    @classmethod
    def check(cls, config: RunConfig) -> None:
        """Config-time checks (nothing built yet); raise :class:`ConfigError`. Default: none."""

    def setup(self, batch: Batch) -> None:
        pass

    def build_optimizers(self) -> None:
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def fixed_lr(self) -> set[str]:
        """Names in :meth:`optimizers` whose learning rate stays as built (no ``train.lr_policy``)."""
        return set()

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


@register_method("generator")
class GeneratorMethod(TrainingMethod):
    """G_s trained by ``L_G = Σ w_i·term_i``; D by its GAN loss; the teacher side (:mod:`distill.engine.teachers`)
    chosen once from ``teacher.mode``: none, offline (frozen G_t / D̄) or online (a list of teachers).
    """

    def __init__(self, config: RunConfig, rt: DeviceContext, paths: dict[str, Path]):
        super().__init__(config, rt, paths)
        dev = rt.device
        self.student = build_generator(config.student, paths.get("student_init")).to(dev).train()
        self.generator = self.student_ddp = self.student
        self.d_cfg = config.discriminator
        self.discriminator = None
        if self.d_cfg is not None:
            self.discriminator = build_discriminator(self.d_cfg, self.student, paths.get("discriminator_init")).to(dev)
            set_requires_grad([self.discriminator], False)  # unfrozen only inside its own update
        self.teacher: TeacherSide = build_teacher_side(config, rt, paths)
        if not config.loss:
            raise ConfigError("the recipe has no loss terms; add a loss: list (e.g. [{name: l1_target, weight: 100}])")
        check_teacher_config(config, has_generator=self.teacher.generator is not None)
        self.terms = nn.ModuleList(build_loss(s) for s in config.loss).to(dev)
        for t in [*self.terms, *self.teacher.terms()]:
            t.resolve_schedule(config.train.steps)
        self.student_taps = FeatureTaps(self.student, [p for t in self.terms for p in t.student_layers()])
        self.teacher.attach_taps([p for t in self.terms for p in t.teacher_layers()])
        self._optimizers: dict[str, torch.optim.Optimizer] = {}
        self._fixed: set[str] = set()

    @classmethod
    def check(cls, config: RunConfig) -> None:
        if not config.loss:
            raise ConfigError("the recipe has no loss terms; add a loss: list (e.g. [{name: l1_target, weight: 100}])")
        check_teacher_config(config)

    def _context(self, batch: Batch, step: int) -> StepContext:
        d = self.d_cfg
        return StepContext(step=step, real_a=batch.real_a, real_b=batch.real_b, paired=batch.paired,
                           student=self.student, discriminator=self.discriminator,
                           gan_mode=d.gan_mode if d else self.teacher.gan_mode, conditional=bool(d and d.conditional),
                           device=self.rt.device, optimize=self.rt.optimize)

    def forward(self, ctx: StepContext, student: nn.Module) -> None:
        """G_t(x), its features and D̄ from the teacher side; then G_s(x) (with grad) and its features."""
        self.teacher.fill(ctx)
        ctx.student_out = student(ctx.real_a)  # (B, C, H, W)
        ctx.student_feats = self.student_taps.take()

    def setup(self, batch: Batch) -> None:
        """One forward on the first batch (eval mode, no grad) so terms can size their adapters."""
        batch = batch.to(self.rt.device)
        broadcast = self.teacher.setup(batch)
        ctx = self._context(batch, 0)
        with torch.no_grad():
            self.teacher.fill(ctx)
            ctx.student_out = eval_forward(self.student, ctx.real_a)
            ctx.student_feats = self.student_taps.take()
        for t in self.terms:
            t.setup(ctx)
        self.terms.to(self.rt.device)
        self.rt.broadcast_parameters([self.terms, *broadcast, *([self.discriminator] if self.discriminator else [])])
        self.student_ddp = self.rt.wrap(self.student)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg, terms = self.config, [*self.terms, *self.teacher.terms()]
        owned = {id(p) for t in self.terms for o in t.aux_optimizers().values() for g in o.param_groups for p in g["params"]}
        g_params = list(self.student.parameters()) + [p for t in self.terms for p in t.student_parameters() if id(p) not in owned]
        self._optimizers["G"] = adam(g_params, cfg.train.lr, cfg)
        if self.discriminator is not None:
            self._optimizers["D"] = adam(self.discriminator.parameters(), self.d_cfg.lr or cfg.train.lr, cfg)
        self._optimizers.update(self.teacher.build_optimizers())
        for t in terms:
            for name, opt in t.aux_optimizers().items():
                self._optimizers[f"{t.name}.{name}"] = opt
                if t.aux_lr_schedule == "fixed":
                    self._fixed.add(f"{t.name}.{name}")
        return self._optimizers

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._optimizers

    def fixed_lr(self) -> set[str]:
        return set(self._fixed)

    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"student": self.student, "terms": self.terms, **self.teacher.modules()}
        if self.discriminator is not None:
            mods["discriminator"] = self.discriminator
        return mods

    def checkpoints(self) -> dict[str, nn.Module]:
        out = {"student": self.student, **self.teacher.checkpoints()}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator
        return out

    def formula(self) -> str:
        text = format_formula(list(self.terms), "L_G")
        if self.discriminator is not None:
            text += f";  L_D = {self.d_cfg.gan_mode}(D(real), D(G_s(x)))" + (
                f" + {self.d_cfg.gp_weight:g}·GP" if self.d_cfg.gan_mode == "wgangp" else "")
        teacher = self.teacher.formula()
        return text + (f";  {teacher}" if teacher else "")

    def after_step(self, done: int, held_out: list[Batch]) -> dict[str, float]:
        return self.teacher.after_step(done, held_out)

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        """[online teachers' step] -> G_t(x), G_s(x) -> D step (and an updated D̄'s) -> aux steps -> student step."""
        batch = batch.to(self.rt.device)
        logs = self.teacher.train_step(batch, step)
        ctx = self._context(batch, step)
        with self.rt.autocast():
            self.forward(ctx, self.student_ddp)
        active = [t for t in self.terms if t.active(step)]
        if self.discriminator is not None:
            fake_weight = math.prod(t.discriminator_fake_weight() for t in active)
            logs["D"] = update_discriminator(self.rt, self.discriminator, self._optimizers["D"],
                                             ctx.d_input(ctx.real_images()), ctx.d_input(ctx.student_out),
                                             self.d_cfg.gan_mode, self.d_cfg.gp_weight, fake_weight)
        logs.update(self.teacher.discriminator_step(ctx, active))
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
        out = {"student": eval_forward(self.student, real_a)}
        self.student_taps.clear()
        if self.teacher.generator is not None:
            out["teacher"] = eval_forward(self.teacher.generator, real_a)
        self.teacher.clear_taps()
        return out

    def provenance(self) -> dict[str, Any]:
        return {"method": "generator", "loss": self.formula(), **self.teacher.provenance()}


@register_method("cyclegan")
class CycleGANMethod(TrainingMethod):
    """CycleGAN teacher training (:class:`~distill.engine.cyclegan.CycleGANPair`): G_A: A->B (saved as
    ``student``), G_B: B->A (``generator_b``), D_A on B (``discriminator``), D_B on A (``discriminator_b``).

    λ_cyc = 10, λ_id = 0.5 and the 50-image history pool by default (``lambda_cycle``,
    ``lambda_identity``, ``pool_size`` under ``method``); LSGAN unless the discriminator says otherwise.
    """

    def __init__(self, config: RunConfig, rt: DeviceContext, paths: dict[str, Path],
                 lambda_cycle: float = 10.0, lambda_identity: float = 0.5, pool_size: int = 50):
        super().__init__(config, rt, paths)
        self.check(config)
        weights = CycleConfig(float(lambda_cycle), float(lambda_identity), int(pool_size))
        g_a = build_generator(config.student, paths.get("student_init"))
        self.pair = CycleGANPair(g_a, config.discriminator, weights).to(rt.device)
        self.generator = self.pair.g_a
        self._optimizers: dict[str, torch.optim.Optimizer] = {}

    @classmethod
    def check(cls, config: RunConfig) -> None:
        if config.discriminator is None:
            raise ConfigError("method cyclegan needs a discriminator section")

    def setup(self, batch: Batch) -> None:
        batch = batch.to(self.rt.device)
        if batch.real_b is None:
            raise ConfigError("method cyclegan needs an unaligned (A and B) dataset")
        self.pair.allocate_pools(batch.real_a, batch.real_b)
        self.rt.broadcast_parameters([self.pair])

    def build_optimizers(self) -> None:
        g, d = self.pair.optimizers(self.config)
        self._optimizers.update(G=g, D=d)

    def modules(self) -> dict[str, nn.Module]:
        p = self.pair
        return {"student": p.g_a, "generator_b": p.g_b, "discriminator": p.d_a, "discriminator_b": p.d_b,
                "pools": nn.ModuleList([p.pool_b, p.pool_a])}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._optimizers

    def checkpoints(self) -> dict[str, nn.Module]:
        p = self.pair
        return {"student": p.g_a, "generator_b": p.g_b, "discriminator": p.d_a, "discriminator_b": p.d_b}

    def formula(self) -> str:
        return self.pair.formula()

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        batch = batch.to(self.rt.device)
        logs, _ = self.pair.step(self.rt, batch.real_a, batch.real_b, self._optimizers["G"], self._optimizers["D"])
        return {("D" if k == "D" else f"G_{k}"): v for k, v in logs.items()}

    @torch.no_grad()
    def predict(self, real_a: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"student": eval_forward(self.pair.g_a, real_a)}

    def provenance(self) -> dict[str, Any]:
        return {"method": "cyclegan", "loss": self.formula()}

