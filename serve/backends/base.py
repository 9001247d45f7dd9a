"""The backend interface: a loaded model that maps a batch array to a batch array."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from export.manifest import Manifest
    from serve.settings import ServeSettings


class Backend(ABC):
    """Runs one bundle's generator.

    ``max_batch`` is the largest batch the loaded graph accepts (None: any); ``fixed_batch`` is set
    when the graph only accepts exactly that many rows. ``parallel_runs`` is how many ``run`` calls
    may overlap in separate threads (1 unless ``run`` is thread-safe).
    """

    name: str = "base"
    parallel_runs: int = 1

    def __init__(self, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        self.bundle_dir = bundle_dir
        self.manifest = manifest
        self.settings = settings
        self.max_batch: int | None = None
        self.fixed_batch: int | None = None

    @classmethod
    def check(cls, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        """Fail fast (before the server starts) on a bundle this backend cannot load."""
        return None

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """``(B, ...)`` float32 in -> ``(B, C, H, W)`` float32 out."""

    def close(self) -> None:
        """Release sessions and device memory."""
        return None
