"""TensorRT backend: runs the bundle's serialized engine (``files["plan"]``, usually ``model.plan``).

The engine session lives in :mod:`export.runtimes.tensorrt` (device buffers through ``libcudart``; no
torch, cupy or pycuda). ``tensorrt`` is imported only when this backend is chosen; without it or a GPU
the server refuses to start with one line naming the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from export.runtimes import get_runtime
from serve.backends.runtime_backend import RuntimeBackend
from slimgan.errors import MissingDependencyError

if TYPE_CHECKING:
    from export.manifest import Manifest
    from serve.settings import ServeSettings


class TensorRTBackend(RuntimeBackend):
    name = "tensorrt"
    runtime = "tensorrt"
    roles = {"fp32": "plan", "fp16": "plan"}

    @classmethod
    def check(cls, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        ok, reason = get_runtime("tensorrt").available()
        if not ok:
            raise MissingDependencyError(f"--backend tensorrt: {reason} (or use the serve-tensorrt image); use --backend onnxruntime here")
        super().check(bundle_dir, manifest, settings)
