"""A recipe's training method: looked up by ``method.name`` among every registered method, and built.

The built-in methods register on import: ``generator`` and ``cyclegan`` in :mod:`distill.engine.methods`,
``stylegan2`` in :mod:`distill.engine.stylegan2_method`.
"""

from __future__ import annotations

from pathlib import Path

from distill.engine import stylegan2_method  # noqa: F401  (registers method "stylegan2")
from distill.engine.config import RunConfig
from distill.engine.device import DeviceContext
from distill.engine.methods import METHODS, TrainingMethod
from distill.errors import ConfigError


def method_class(name: str) -> type[TrainingMethod]:
    return METHODS.get(name)


def check_method(config: RunConfig) -> None:
    """Refuse a recipe its method cannot run, before data is made or teachers are trained."""
    method_class(config.method.name).check(config)


def build_method(config: RunConfig, rt: DeviceContext, paths: dict[str, Path]) -> TrainingMethod:
    cls = method_class(config.method.name)
    try:
        return cls(config, rt, paths, **config.method.kwargs)
    except TypeError as exc:
        raise ConfigError(f"method {config.method.name!r}: {exc}") from exc
