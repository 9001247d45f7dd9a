"""Inference backends. ``create_backend(name, bundle_dir, manifest, settings)`` picks one by name.

Each backend module is imported only when chosen, so TensorRT is never touched unless asked for.
``auto`` (the default) resolves per bundle: the bundle's preferred runtime (``manifest.json``
``preferred_runtime``, the runtime on which export measured the student fastest) when it is installed
here and the bundle has its file for ``--precision``, else ONNX Runtime.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from serve.backends.base import Backend
from slimgan.errors import ConfigError, SlimganError

if TYPE_CHECKING:
    from export.manifest import Manifest
    from serve.settings import ServeSettings

BACKENDS: dict[str, str] = {
    "onnxruntime": "serve.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "serve.backends.openvino_backend:OpenVINOBackend",
    "tensorrt": "serve.backends.tensorrt_backend:TensorRTBackend",
    "dummy": "serve.backends.dummy:DummyBackend",
}
AUTO = "auto"
FALLBACK = "onnxruntime"

__all__ = ["AUTO", "BACKENDS", "Backend", "backend_class", "create_backend", "resolve_backend"]


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``."""
    target = BACKENDS.get(name)
    if target is None:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join([AUTO, *BACKENDS])}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def resolve_backend(name: str, bundle_dir: str | Path, manifest: Manifest, settings: ServeSettings) -> str:
    """``name`` itself, or for ``auto`` the bundle's preferred runtime when it can serve here (see module doc)."""
    if name != AUTO:
        return name
    preferred = manifest.preferred_runtime
    if preferred and preferred != FALLBACK and preferred in BACKENDS:
        try:
            backend_class(preferred).check(Path(bundle_dir), manifest, settings)
            return preferred
        except SlimganError:
            pass  # not installed here, or no file for this precision: the reference runtime serves it
    return FALLBACK


def create_backend(name: str, bundle_dir: str | Path, manifest: Manifest, settings: ServeSettings) -> Backend:
    """Build (load) the backend ``name`` (or ``auto``) for one bundle."""
    name = resolve_backend(name, bundle_dir, manifest, settings)
    return backend_class(name)(Path(bundle_dir), manifest, settings)
