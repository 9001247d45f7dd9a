"""slimgan distillation side: the model zoo, checkpoints, datasets, losses and the training engine.

The public names are imported lazily so that light consumers (the CLI's ``--help``, the torch-free
server) can import ``slimgan.errors`` or ``slimgan.cli`` without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from slimgan import __version__  # noqa: F401  (one version for every package)

_LAZY = {
    "create_model": "distill.registry",
    "register_model": "distill.registry",
    "list_models": "distill.registry",
    "model_info": "distill.registry",
    "save_checkpoint": "distill.checkpoint",
    "load_checkpoint": "distill.checkpoint",
    "import_reference": "distill.importers",
    "count_macs": "distill.profile",
    "count_params": "distill.profile",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'distill' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
