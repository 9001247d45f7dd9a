"""Registry of inference runtimes (ONNX Runtime, OpenVINO, TensorRT and the phone runtimes).

``get_runtime(name)`` returns the registered :class:`Runtime`; ``runtime_names()`` lists every name;
``available_runtimes()`` the ones installed here. Runtime modules are imported when the registry is
first used; none of them imports its engine (or torch) at module level, so listing runtimes is cheap
and safe in the server.
"""

from __future__ import annotations

import importlib

from export.runtimes.base import BundleFiles, ConvertContext, ConvertResult, Runtime, Session
from slimgan.registry import Registry

__all__ = [
    "BundleFiles",
    "ConvertContext",
    "ConvertResult",
    "Runtime",
    "Session",
    "available_runtimes",
    "get_runtime",
    "register_runtime",
    "runtime_names",
]

# Plugins register more runtimes from the entry-point group ``slimgan.runtimes``.
RUNTIMES: Registry[Runtime] = Registry("runtime", group="slimgan.runtimes")

# Modules that register built-in runtimes when imported (a module missing here is skipped, so a
# runtime can be added by dropping in its module and naming it).
_BUILTIN_MODULES = (
    "export.runtimes.onnxruntime",
    "export.runtimes.openvino",
    "export.runtimes.tensorrt",
    "export.runtimes.tflite",
    "export.runtimes.coreml",
    "export.runtimes.ncnn",
    "export.runtimes.executorch",
    "export.runtimes.ort_mobile",
)
_loaded = False


def register_runtime(runtime: Runtime, *, replace: bool = False) -> Runtime:
    """Register ``runtime`` under ``runtime.name``; a name registered twice raises unless ``replace``."""
    return RUNTIMES.register(runtime.name, runtime, replace=replace)


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module exists but something it imports at top level is missing
                raise


def runtime_names() -> list[str]:
    """Every registered runtime name, installed or not."""
    _load_builtins()
    return RUNTIMES.names()


def get_runtime(name: str) -> Runtime:
    """The runtime registered as ``name``; an unknown name raises :class:`ConfigError` listing the choices."""
    _load_builtins()
    return RUNTIMES.get(name)


def available_runtimes() -> list[str]:
    """Names of the registered runtimes that are installed and usable here."""
    return [name for name in runtime_names() if RUNTIMES.get(name).available()[0]]
