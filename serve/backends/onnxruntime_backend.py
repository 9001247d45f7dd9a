"""ONNX Runtime backend: CPU by default, the CUDA execution provider where this build has it.

Session options come from :func:`export.runtime.session_options` (full graph optimisation,
sequential execution, ``intra_op_num_threads = threads``), the same as export's speed checks, so a
served bundle runs the graph export measured; the one change is that idle intra-op threads do not
spin, so they leave the CPU to the HTTP side between batches.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from distill.errors import ConfigError, MissingDependencyError
from serve.backends.base import Backend

if TYPE_CHECKING:
    from export.manifest import Manifest
    from serve.settings import ServeSettings

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def providers_for(device: str) -> list[str]:
    """Execution providers for ``device`` (``auto``: CUDA when present, else CPU)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise MissingDependencyError(
            f"--device cuda needs onnxruntime-gpu with CUDAExecutionProvider; this build has {', '.join(available)}"
        )
    return ["CPUExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    parallel_runs = 2  # InferenceSession.run is thread-safe: one batch computes while another is answered

    @classmethod
    def check(cls, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        path = manifest.model_path(bundle_dir, settings.precision)
        if not path.is_file():
            raise ConfigError(f"bundle {bundle_dir}: {settings.precision} model {path.name} is missing")

    def __init__(self, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        super().__init__(bundle_dir, manifest, settings)
        import onnxruntime as ort

        from export.runtime import session_options

        self.check(bundle_dir, manifest, settings)
        # default: the cores, shared between uvicorn workers so processes do not oversubscribe them
        threads = settings.threads or max(1, (os.cpu_count() or 1) // settings.workers)
        self.providers = providers_for(settings.device)
        options = session_options(threads)
        # Idle intra-op threads would otherwise spin and take CPU from the event loop between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = manifest.model_path(bundle_dir, settings.precision)
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=self.providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = _DTYPES.get(inp.type, np.float32)
        batch_dim = inp.shape[0] if inp.shape else None
        if isinstance(batch_dim, int) and batch_dim > 0:
            self.fixed_batch = batch_dim
            self.max_batch = batch_dim
        elif manifest.max_batch:
            self.max_batch = int(manifest.max_batch)
        truncation = (manifest.controls or {}).get("truncation")
        self.truncation_input: str | None = truncation["input"] if truncation else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.truncation_input is not None:  # rows are [z, ψ] (ServedModel.latents)
            feed = {self.input_name: batch[:, :-1].astype(self.input_dtype),
                    self.truncation_input: batch[:, -1:].astype(np.float32)}
            (out,) = self.session.run(None, feed)[:1]
            return np.asarray(out, dtype=np.float32)
        feed = {self.input_name: batch.astype(self.input_dtype, copy=False)}
        (out,) = self.session.run(None, feed)[:1]
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self.session = None
