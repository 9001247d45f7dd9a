"""A serving backend over one runtime of :mod:`export.runtimes` (ONNX Runtime, OpenVINO, TensorRT, ...).

The bundle's file for ``--precision`` is looked up per runtime (:attr:`RuntimeBackend.roles`) and loaded
through the runtime's own :meth:`~export.runtimes.base.Runtime.load_from_bundle`: the settings export
checked and timed it with (``manifest.runtimes``, e.g. OpenVINO's compile precision) and the runtime's
thread and performance options live there, not here. Runtimes read the model into memory, so files
changed after start change nothing until an explicit reload.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export.runtimes import get_runtime
from serve.backends.base import Backend
from slimgan.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from export.manifest import Manifest
    from serve.settings import ServeSettings


class RuntimeBackend(Backend):
    """Runs a bundle on the runtime ``runtime``. ``roles`` maps ``--precision`` to a manifest file role."""

    runtime: str = "onnxruntime"
    roles: dict[str, str] = {"fp32": "fp32"}

    @classmethod
    def role(cls, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> str:
        role = cls.roles.get(settings.precision)
        if role is None:
            raise ConfigError(f"--backend {cls.name} serves --precision {' or '.join(cls.roles)}, not {settings.precision}")
        return role

    @classmethod
    def check(cls, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        ok, reason = get_runtime(cls.runtime).available()
        if not ok:
            raise MissingDependencyError(f"--backend {cls.name}: {reason}")
        role = cls.role(bundle_dir, manifest, settings)
        if role not in manifest.files:
            raise ConfigError(
                f"bundle {bundle_dir} has no {settings.precision} {cls.runtime} model (files: {', '.join(manifest.files)}); "
                "re-export it with this slimgan"
            )
        path = manifest.model_path(bundle_dir, role)
        if not path.is_file():
            raise ConfigError(f"bundle {bundle_dir}: {settings.precision} model {path.name} is missing")

    def __init__(self, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        super().__init__(bundle_dir, manifest, settings)
        self.check(bundle_dir, manifest, settings)
        role = self.role(bundle_dir, manifest, settings)
        # default: the cores, shared between uvicorn workers so processes do not oversubscribe them
        threads = settings.threads or max(1, (os.cpu_count() or 1) // settings.workers)
        self.session = get_runtime(self.runtime).load_from_bundle(bundle_dir, manifest, role, threads=threads, device=settings.device)
        self.parallel_runs = int(getattr(self.session, "parallel_runs", 1))
        self.fixed_batch = getattr(self.session, "fixed_batch", None)
        self.max_batch = getattr(self.session, "max_batch", None) or (int(manifest.max_batch) if manifest.max_batch else None)
        shape = getattr(self.session, "input_shape", None)
        if shape and isinstance(shape[0], int) and shape[0] > 0:
            self.fixed_batch = self.max_batch = int(shape[0])

    def describe(self) -> dict[str, Any]:
        return self.session.describe()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(batch)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = None
