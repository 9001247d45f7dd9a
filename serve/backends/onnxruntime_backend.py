"""ONNX Runtime backend: CPU by default, the CUDA execution provider where this build has it.

The session comes from :meth:`export.runtimes.onnxruntime.OnnxRuntime.load_from_bundle` (the model read
into memory, with the session options of export's checks), so a served bundle runs the graph export
measured. ``InferenceSession.run`` is thread-safe, so two micro-batches may compute at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export.manifest import Manifest
from export.runtimes.onnxruntime import providers_for
from serve.backends.runtime_backend import RuntimeBackend
from serve.settings import ServeSettings

__all__ = ["OnnxRuntimeBackend", "providers_for"]


class OnnxRuntimeBackend(RuntimeBackend):
    name = "onnxruntime"
    runtime = "onnxruntime"
    roles = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}

    def __init__(self, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        super().__init__(bundle_dir, manifest, settings)
        truncation = (manifest.controls or {}).get("truncation")
        self.truncation_input: str | None = truncation["input"] if truncation else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.truncation_input is None:
            return super().run(batch)
        # Rows are [z, ψ] (ServedModel.latents): ψ feeds the graph's truncation input.
        return self.session.run_with(batch[:, :-1], {self.truncation_input: batch[:, -1:]})
