"""Forward hooks managed by module path: tap intermediate activations into a dict."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import torch
from torch import nn

from distill.errors import ConfigError


def find_module(model: nn.Module, path: str) -> nn.Module:
    """``model.get_submodule(path)`` with an error that suggests the nearest valid paths."""
    model = getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(path, names, n=5, cutoff=0.3)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ConfigError(f"{type(model).__name__} has no module at path {path!r}{hint}") from None


class FeatureTaps:
    """Register forward hooks on ``paths`` of ``model``; ``taps.features`` maps path -> output.

    The hooks stay registered until :meth:`remove` (or the ``with`` block ends); ``clear()``
    drops the stored tensors between steps so no graph is kept alive.
    """

    def __init__(self, model: nn.Module, paths: Iterable[str]):
        self.features: dict[str, torch.Tensor] = {}
        self._handles = []
        for path in dict.fromkeys(paths):  # unique, in order
            module = find_module(model, path)
            self._handles.append(module.register_forward_hook(self._hook(path)))

    def _hook(self, path: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            self.features[path] = output

        return hook

    def clear(self) -> None:
        self.features = {}

    def take(self) -> dict[str, torch.Tensor]:
        feats, self.features = self.features, {}
        return feats

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> FeatureTaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
