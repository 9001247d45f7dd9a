"""Model registry: ``@register_model`` on a constructor, ``create_model(name, **kwargs)`` to build one.

A new architecture is one file in ``distill/models/`` with a decorated constructor; nothing else is
edited. Each registry entry carries metadata (role, task, input kind, value range, size constraints)
that travels with the model, so export and serving know what the generator eats without guessing.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from distill.errors import ConfigError
from slimgan.registry import Registry


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


PLUGIN_GROUP = "slimgan.models"
MODELS: Registry[_Entry] = Registry("architecture", group=PLUGIN_GROUP)
# The entries by name (the same dict the registry holds), for code that reads or drops one directly.
_REGISTRY: dict[str, _Entry] = MODELS._entries


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
    options: type | None = None,
    **meta: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn(**kwargs) -> nn.Module`` under ``name`` with its metadata.

    ``value_range``: what the model's image input holds (and a translate model's output), e.g.
    ``(0, 255)`` for fast-neural-style; export and serving scale pixels to it. ``options``: a dataclass
    whose fields are the constructor's arguments, for a constructor that takes ``**kwargs``. Any other
    keyword (``exporter=``, ``pruning=``) is kept as the entry's metadata (:func:`model_meta`), so code
    that treats a family specially asks the registry instead of testing names.
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if options is not None:
            defaults = {f.name: f.default for f in dataclasses.fields(options)}
        else:
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
        MODELS.register(name, _Entry(fn=fn, info=info), **meta)
        return fn

    return decorator


def _ensure_zoo_loaded() -> None:
    import distill.models  # noqa: F401  (registers the built-in architectures)

    MODELS.load_plugins()


def list_models(role: str | None = None) -> list[str]:
    """Registered names, optionally only ``generator`` or ``discriminator`` ones."""
    _ensure_zoo_loaded()
    return [n for n, e in MODELS.items() if role is None or e.info.role == role]


def model_info(name: str) -> ModelInfo:
    _ensure_zoo_loaded()
    return MODELS.get(name).info


def model_meta(name: str) -> dict[str, Any]:
    """What ``@register_model`` recorded beyond :class:`ModelInfo` (``exporter``, ``pruning``, ...)."""
    _ensure_zoo_loaded()
    return MODELS.meta(name)


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
    model = MODELS.get(name).fn(**resolved)
    model.slimgan_config = {"arch": name, "kwargs": resolved}
    return model
