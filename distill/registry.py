"""Model registry: ``@register_model`` on a constructor, ``create_model(name, **kwargs)`` to build one.

A new architecture is one file in ``distill/models/`` with a decorated constructor; nothing else is
edited. Each registry entry carries metadata (role, task, input kind, value range, size constraints)
that travels with the model, so export and serving know what the generator eats without guessing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from distill.errors import ConfigError


@dataclass(frozen=True)
class ModelInfo:
    """What a registered architecture is, independent of its weights.

    role: ``generator`` or ``discriminator``.
    task: ``translate`` (image -> image), ``generate`` (latent -> image) or ``discriminate``.
    input_kind: ``image`` (values in ``value_range``) or ``latent`` (N(0, 1) of size ``nz``).
    size_multiple: spatial sizes must be a multiple of this (image inputs).
    width_arg: the constructor argument that a ``width`` multiplier scales (``ngf`` or ``ndf``).
    """

    name: str
    family: str
    role: str
    task: str
    input_kind: str
    value_range: tuple[float, float] = (-1.0, 1.0)
    size_multiple: int = 1
    width_arg: str = "ngf"
    reference: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Entry:
    fn: Callable[..., nn.Module]
    info: ModelInfo


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str,
    *,
    family: str,
    role: str,
    task: str,
    input_kind: str,
    size_multiple: int = 1,
    width_arg: str = "ngf",
    reference: str = "",
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(**kwargs) -> nn.Module`` under ``name`` with its metadata.

    ``value_range``: what the model's image input holds (and a translate model's output), e.g.
    ``(0, 255)`` for fast-neural-style; export and serving scale pixels to it.
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        defaults = {
            k: p.default
            for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        info = ModelInfo(
            name=name,
            family=family,
            role=role,
            task=task,
            input_kind=input_kind,
            size_multiple=size_multiple,
            width_arg=width_arg,
            reference=reference,
            value_range=(float(value_range[0]), float(value_range[1])),
            defaults=defaults,
        )
        _REGISTRY[name] = _Entry(fn=fn, info=info)
        return fn

    return decorator


PLUGIN_GROUP = "slimgan.models"
_plugins_loaded = False


def _ensure_zoo_loaded() -> None:
    import distill.models  # noqa: F401  (registers the built-in architectures)

    _load_plugins()


def _load_plugins() -> None:
    """Import every ``slimgan.models`` entry point once: each names a module (or an object in one)
    whose ``@register_model`` constructors register on import."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must say which one, not break with a traceback
            _plugins_loaded = False
            raise ConfigError(
                f"model plugin {ep.name!r} ({ep.value}) from the {PLUGIN_GROUP!r} entry points failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def list_models(role: str | None = None) -> list[str]:
    """Registered names, optionally only ``generator`` or ``discriminator`` ones."""
    _ensure_zoo_loaded()
    return sorted(n for n, e in _REGISTRY.items() if role is None or e.info.role == role)


def model_info(name: str) -> ModelInfo:
    _ensure_zoo_loaded()
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError(f"unknown architecture {name!r}; choose one of: {', '.join(list_models())}")
    return entry.info


def resolve_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Full constructor arguments: defaults, the ``width`` multiplier applied, unknown keys rejected."""
    info = model_info(name)
    kwargs = dict(kwargs)
    width = kwargs.pop("width", None)
    unknown = sorted(set(kwargs) - set(info.defaults))
    if unknown:
        raise ConfigError(
            f"{name} does not take {', '.join(map(repr, unknown))}; its arguments are: "
            f"{', '.join(sorted(info.defaults))} (and width)"
        )
    resolved = {**info.defaults, **kwargs}
    if width is not None:
        width = float(width)
        if width <= 0:
            raise ConfigError(f"width must be > 0, got {width}")
        if info.width_arg in kwargs:
            raise ConfigError(f"give either width or {info.width_arg} for {name}, not both")
        if not isinstance(info.defaults.get(info.width_arg), (int, float)):
            raise ConfigError(f"{name} takes no width multiplier; give {info.width_arg} instead")
        resolved[info.width_arg] = max(1, int(round(info.defaults[info.width_arg] * width)))
    return resolved


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture.

    ``width`` scales the family's channel argument (``ngf`` or ``ndf``): ``width=0.25`` on
    ``resnet_9blocks`` is ``ngf=16``. The resolved arguments are attached to the module as
    ``module.slimgan_config = {"arch": name, "kwargs": {...}}`` so ``save_checkpoint`` can record them.
    """
    resolved = resolve_kwargs(name, kwargs)
    model = _REGISTRY[name].fn(**resolved)
    model.slimgan_config = {"arch": name, "kwargs": resolved}
    return model
