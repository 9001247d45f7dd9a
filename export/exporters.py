"""Exporters by model family: how a generator of one family becomes an ONNX graph.

:func:`export.onnx_export.export_onnx` asks :func:`exporter_for` first; a family whose graph needs more
than the plain trace (StyleGAN2: the truncation ψ as a second input, the mean w inside) registers its
exporter here with a ``matches(model)`` test, so ``onnx_export`` names no family. Built-in family
modules are imported on first use; plugins register from the entry-point group ``slimgan.exporters``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from slimgan.registry import Registry

EXPORTERS: Registry[Callable[..., Any]] = Registry("exporter", group="slimgan.exporters")
_BUILTIN_MODULES = ("export.stylegan2_export",)
_loaded = False


def register_exporter(family: str, matches: Callable[[Any], bool]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``fn(model, path, example, *, opset, dynamic_batch, **options) -> OnnxExport`` exports the
    models for which ``matches(model)`` is true."""
    return EXPORTERS.register(family, matches=matches)


def exporter_for(model: Any) -> Callable[..., Any] | None:
    """The registered exporter whose family matches ``model``, or None (the plain export)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
    for family, fn in EXPORTERS.items():
        if EXPORTERS.meta(family)["matches"](model):
            return fn
    return None
