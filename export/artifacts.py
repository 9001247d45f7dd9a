"""What an export has made so far: the bundle's files, each runtime's entry, the parity rows and notes.

:class:`ExportState` is the pipeline's one mutable record (``export.bundle`` steps fill it in order);
:meth:`ExportState.add` books a runtime's :class:`~export.runtimes.base.ConvertResult`.
:func:`write_reports` writes ``parity.json``, ``speed.json`` and last ``manifest.json``, whose
``checksums`` hold the sha256 of every file the manifest lists and of the two reports.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.manifest import file_sha256  # the one algorithm serve verifies with (folders included)
from export.parity import failed_rows

PARITY_NAME = "parity.json"
SPEED_NAME = "speed.json"
MANIFEST_NAME = "manifest.json"
FILES = {
    "fp32": "model.onnx",
    "fp16": "model.fp16.onnx",
    "int8": "model.int8.onnx",
    "plan": "model.plan",
    "openvino": "model.xml",
    "openvino-weights": "model.bin",
    "openvino-int8": "model.int8.xml",
    "openvino-int8-weights": "model.int8.bin",
}


def make_inputs(input_kind: str, shape: tuple[int, ...], batch: int, seed: int = 0,
                value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Inputs of the generator's real distribution: images uniform in ``value_range``, latents N(0, 1)."""
    rng = np.random.default_rng(seed)
    if input_kind == "latent":
        return rng.standard_normal((batch, *shape)).astype(np.float32)
    return rng.uniform(value_range[0], value_range[1], (batch, *shape)).astype(np.float32)


@dataclass
class ExportState:
    """One export in progress. ``out``: the folder being written (a temporary sibling of the bundle)."""

    out: Path
    model: Any
    info: Any
    kwargs: dict[str, Any]
    sample_shape: tuple[int, ...]
    convention: dict[str, Any]
    role: str
    x: np.ndarray | None = None  # parity inputs
    ref: np.ndarray | None = None  # PyTorch's outputs on them
    inputs_doc: dict[str, Any] = field(default_factory=dict)
    out_span: float = 2.0
    exported: Any = None  # export.onnx_export.OnnxExport of model.onnx
    samples: np.ndarray | None = None  # calibration inputs (int8)
    files: dict[str, str] = field(default_factory=dict)
    runtimes: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    teacher_model: Any = None
    teacher_info: dict[str, Any] | None = None
    macs: int = 0
    params: int = 0
    speed: dict[str, Any] = field(default_factory=lambda: {"checked": False})

    @property
    def onnx_path(self) -> Path:
        return self.out / FILES["fp32"]

    def add(self, runtime: Any, result: Any, key: str | None, rows: list[dict[str, Any]]) -> None:
        """Book ``result`` of ``runtime.convert``: its files by role, its ``runtimes`` entry under ``key``."""
        self.files.update(runtime.file_roles(result))
        if key is not None:
            self.runtimes[key] = {"precision": result.precision, "files": list(result.files)}
        self.rows += rows
        self.notes += list(result.report.get("notes", []))

    def onnxruntime_entry(self) -> dict[str, Any]:
        return {"precision": "fp32", "files": [FILES["fp32"]] + [self.files[r] for r in ("fp16", "int8") if r in self.files]}


def checksums(out: Path, names: list[str]) -> dict[str, str]:
    """{file name: sha256} for ``names`` (in ``out``), each once."""
    return {name: file_sha256(out / name) for name in dict.fromkeys(names)}


def write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_reports(state: ExportState, manifest: Any, check: bool) -> Any:
    """``parity.json``, ``speed.json``, then ``manifest.json`` with ``checksums``; returns that manifest."""
    write_json(state.out / PARITY_NAME, {
        "rows": state.rows,
        "passed": not failed_rows(state.rows),
        "checked": check,
        "inputs": state.inputs_doc,
        "notes": state.notes,
    })
    write_json(state.out / SPEED_NAME, state.speed)
    sums = checksums(state.out, [*manifest.files.values(), PARITY_NAME, SPEED_NAME])
    manifest = dataclasses.replace(manifest, checksums=sums)
    write_json(state.out / MANIFEST_NAME, manifest.to_dict())
    return manifest
