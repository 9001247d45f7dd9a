"""Loss terms as named, weighted, composable modules, and the registry that builds them from YAML.

A recipe's ``loss:`` list, e.g.::

    loss:
      - {name: l1_teacher, weight: 1.0}
      - {name: feature_kd, weight: 1.0, layers: [["model.12", "model.12"]]}
      - {name: adv, weight: 0.1}

builds one :class:`LossTerm` per entry through :func:`build_loss`; ``name`` and ``weight`` (and the
optional ``start`` / ``stop`` steps) are the engine's, every other key goes to the term's constructor.
The student's objective is ``L = Σ weight_i · term_i(ctx)`` over the active terms, printed by
:func:`format_formula`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimgan.registry import Registry

if TYPE_CHECKING:
    from distill.losses.context import StepContext


class LossTerm(nn.Module):
    """One named term of the student objective. Subclass, decorate with ``@register_loss(name)``.

    Being an ``nn.Module``, a term can own parameters (1x1 adapters, an energy network); they are
    moved to the device with the models, saved in ``state.pt``, and never in the student checkpoint.

    Override:
        ``forward(ctx) -> Tensor``: the *unweighted* scalar; the engine multiplies by ``weight``.
        ``student_layers()`` / ``teacher_layers()``: module paths to tap with forward hooks; their
            outputs arrive in ``ctx.student_feats`` / ``ctx.teacher_feats``.
        ``setup(ctx)``: called once, before the optimisers are built, with a context from the first
            batch (features included, no grad). Create shape-dependent parameters (adapters) here.
        ``student_parameters()``: parameters trained by the student's optimiser together with
            G_s (default: all of this term's parameters, e.g. GAN Compression adapters).
        ``aux_optimizers()``: ``{name: optimizer}`` for parameters trained by their own step
            (an energy network, a critic); saved in and restored from ``state.pt``, decayed by the
            same LR schedule. Parameters listed here must not be in ``student_parameters()``.
        ``aux_step(ctx) -> dict``: called each step after the discriminator step and before the
            student step (``ctx.student_out`` is live; detach it yourself). Use ``ctx.optimize``.
            Return scalars to log.
        ``needs_teacher``: True when the term reads ``ctx.teacher_out`` (the default); the engine
            refuses a recipe that has such a term but no teacher generator, before anything runs.
            A term that compares with a ``to`` (``teacher`` | ``target`` | ``auto``: the real y on
            paired data, else G_t(x)) needs the teacher per that value and the data
            (:meth:`teacher_needed`).
        ``reads_teacher_discriminator``: True when the term scores G_s(x) with D̄; an updated
            offline D̄ (``teacher.train_discriminator``) is trained only on steps where such a term
            is active (DGL-GAN stage II).
        ``aux_lr_schedule``: ``train`` (the aux optimisers follow ``train.lr_policy``) or ``fixed``
            (their learning rate stays as built, e.g. VEM's energy network at Adam 1e-4).
        ``discriminator_fake_weight()``: a factor on the generated-image part of the student D's
            loss while the term is active (KD-GAN Eq. 4's α); 1 by default.

    ``active(step)`` gates the term to ``start <= step < stop`` (e.g. DGL-GAN's stage II); a
    ``start`` in (0, 1) is a fraction of ``train.steps`` (the engine resolves it with
    :meth:`resolve_schedule`).
    """

    needs_teacher: bool = True
    reads_teacher_discriminator: bool = False
    aux_lr_schedule: str = "train"

    def __init__(self) -> None:
        super().__init__()
        self.name: str = type(self).__name__
        self.weight: float = 1.0
        self.start: int | float = 0  # a float in (0, 1) is a fraction of train.steps until resolved
        self.stop: int | None = None

    def forward(self, ctx: StepContext) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def student_layers(self) -> Sequence[str]:
        return ()

    def teacher_layers(self) -> Sequence[str]:
        return ()

    def setup(self, ctx: StepContext) -> None:
        """Create parameters that depend on shapes seen in the first batch. Default: nothing."""

    def student_parameters(self) -> Iterable[nn.Parameter]:
        return self.parameters()

    def aux_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def aux_step(self, ctx: StepContext) -> dict[str, float]:
        return {}

    def discriminator_fake_weight(self) -> float:
        return 1.0

    @classmethod
    def teacher_needed(cls, options: Mapping[str, Any], paired: bool) -> bool:
        """Whether a term built from ``options`` reads G_t(x) on paired (or unpaired) data; nothing is built."""
        init = inspect.signature(cls.__init__).parameters
        to = options.get("to", init["to"].default if "to" in init else getattr(cls, "target_of", None))
        if to is None:
            return cls.needs_teacher
        return to == "teacher" or (to == "auto" and not paired)

    def resolve_schedule(self, total_steps: int) -> None:
        if isinstance(self.start, float) and 0 < self.start < 1:
            self.start = int(round(self.start * total_steps))
        self.start = int(self.start)

    def active(self, step: int) -> bool:
        return step >= self.start and (self.stop is None or step < self.stop)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weight={self.weight}"


LOSSES: Registry[type[LossTerm]] = Registry("loss term")


def register_loss(name: str) -> Callable[[type[LossTerm]], type[LossTerm]]:
    """Class decorator: make ``name`` usable in a recipe's ``loss:`` list."""

    def decorator(cls: type[LossTerm]) -> type[LossTerm]:
        if not (isinstance(cls, type) and issubclass(cls, LossTerm)):
            raise TypeError(f"@register_loss({name!r}) needs a LossTerm subclass, got {cls!r}")
        cls.registry_name = name
        # Re-running the same class definition (a module imported twice) is no duplicate.
        LOSSES.register(name, cls, replace=name in LOSSES and LOSSES.get(name) is cls)
        return cls

    return decorator


def format_formula(terms: Sequence[LossTerm], lhs: str = "L_G") -> str:
    """``L_G = 1·l1_teacher + 0.1·adv[step>=100]``: the student objective as the engine sums it."""
    if not terms:
        return f"{lhs} = 0"
    parts = []
    for t in terms:
        gate = ""
        if t.start or t.stop is not None:
            gate = f"[{t.start}<=step" + (f"<{t.stop}]" if t.stop is not None else "]")
        parts.append(f"{t.weight:g}·{t.name}{gate}")
    return f"{lhs} = " + " + ".join(parts)
