"""A deterministic stand-in backend for fast tests: no model file is opened.

translate: ``y = -x`` (a colour inversion after post-processing), shape preserved.
generate: ``y = tanh(z W)`` reshaped to the manifest's output shape (or 3 x 32 x 32), with ``W`` a
fixed seeded projection, so the same latent always yields the same image.
``dummy_delay_ms`` simulates compute time per batch (for queue and timeout tests).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from serve.backends.base import Backend

if TYPE_CHECKING:
    from export.manifest import Manifest
    from serve.settings import ServeSettings


class DummyBackend(Backend):
    name = "dummy"

    def __init__(self, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        super().__init__(bundle_dir, manifest, settings)
        self.delay_s = settings.dummy_delay_ms / 1000.0
        self._projection: np.ndarray | None = None
        if manifest.task == "generate":
            shape = [d if isinstance(d, int) else 32 for d in manifest.output.shape[1:]] or [3, 32, 32]
            self.out_shape = tuple(shape)
            latent = int(np.prod([d for d in manifest.input.shape[1:] if isinstance(d, int)] or [16]))
            rng = np.random.default_rng(0)
            self._projection = rng.standard_normal((latent, int(np.prod(self.out_shape))), dtype=np.float32)
            self._projection /= np.sqrt(latent)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self._projection is None:
            return -batch.astype(np.float32)
        flat = batch.reshape(batch.shape[0], -1).astype(np.float32)
        return np.tanh(flat @ self._projection).reshape(batch.shape[0], *self.out_shape)
