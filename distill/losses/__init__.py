"""Loss terms for distillation and GAN training, each a registered :class:`LossTerm`.

Importing this package imports every module in ``distill/losses/``, so a new term is one file with
an ``@register_loss("name")`` class: nothing else is edited. See :mod:`distill.losses.base`. The lookups
(:func:`build_loss`, :func:`list_losses`, ...) live here, after every term has registered.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from typing import Any

from distill.errors import ConfigError
from distill.losses.base import LOSSES, LossTerm, format_formula, register_loss

__all__ = ["LOSSES", "LossTerm", "build_loss", "format_formula", "list_losses", "loss_class", "register_loss",
           "teacher_needed"]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in ("base", "context"):
        importlib.import_module(f"{__name__}.{_module}")


def list_losses() -> list[str]:
    return LOSSES.names()


def loss_class(name: Any) -> type[LossTerm]:
    """The registered class of term ``name``; an unknown name is an error listing the choices."""
    return LOSSES.get(name)


def teacher_needed(spec: Mapping[str, Any], paired: bool) -> bool:
    """Whether the term ``spec`` (a recipe's loss entry) reads G_t(x) on this data; checked before building."""
    return loss_class(spec.get("name")).teacher_needed(spec, paired)


def build_loss(spec: Mapping[str, Any]) -> LossTerm:
    """Build one term from ``{name, weight, start?, stop?, **kwargs}``; errors name the bad key."""
    spec = dict(spec)
    name = spec.pop("name", None)
    cls = loss_class(name)
    weight = float(spec.pop("weight", 1.0))
    start = spec.pop("start", 0) or 0
    if not isinstance(start, int | float) or start < 0:
        raise ConfigError(f"loss term {name!r}: start must be a step (int) or a fraction of train.steps, got {start!r}")
    stop = spec.pop("stop", None)
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [k for k in params if k != "self" and params[k].kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = sorted(set(spec) - set(allowed))
    if unknown and not accepts_any:
        raise ConfigError(
            f"loss term {name!r} does not take {', '.join(map(repr, unknown))}; it takes: "
            f"name, weight, start, stop{''.join(', ' + a for a in allowed)}"
        )
    try:
        term = cls(**spec)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"loss term {name!r}: {exc}") from exc
    term.name, term.weight, term.start = name, weight, start
    term.stop = None if stop is None else int(stop)
    return term


