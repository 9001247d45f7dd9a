"""Inference backends. ``create_backend(name, bundle_dir, manifest, settings)`` picks one by name.

Each backend module is imported only when chosen, so TensorRT is never touched unless asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from distill.errors import ConfigError
from serve.backends.base import Backend

if TYPE_CHECKING:
    from export.manifest import Manifest
    from serve.settings import ServeSettings

BACKENDS: dict[str, str] = {
    "onnxruntime": "serve.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "serve.backends.tensorrt_backend:TensorRTBackend",
    "dummy": "serve.backends.dummy:DummyBackend",
}

__all__ = ["BACKENDS", "Backend", "backend_class", "create_backend"]


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``."""
    target = BACKENDS.get(name)
    if target is None:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def create_backend(name: str, bundle_dir: str | Path, manifest: Manifest, settings: ServeSettings) -> Backend:
    """Build (load) the backend ``name`` for one bundle."""
    return backend_class(name)(Path(bundle_dir), manifest, settings)
