"""``slimgan export --targets LIST``: which artifacts a bundle gets, and the phone runtimes' part of export.

Targets: ``onnx`` (always written), ``fp16``, ``int8``, ``openvino``, ``tensorrt`` (the bundle's server /
GPU artifacts, also reachable as ``--fp16``, ``--int8``, ``--trt``) and the phone runtimes ``tflite``,
``coreml``, ``ncnn``, ``executorch``, ``ort-mobile`` (each a runtime of :mod:`export.runtimes`).

For every phone target, export converts the student (:meth:`Runtime.convert`), lists each file it
wrote in ``manifest.json`` ``files`` under the runtime's role names, and adds a parity row per artifact
(:func:`phone_parity_rows`): the runtimes that execute on this machine run it against PyTorch under
the runtime's gate; Core ML, which predicts only on macOS, gets its converted program validated
instead, in a row that says why numbers are unavailable. The speed check converts the teacher the
same way into a temporary folder and times both on each phone runtime that executes here
(:func:`phone_speed_targets`); those entries in ``speed.json`` ``by_runtime`` are labelled as host
measurements (CPU model, threads) and never become the bundle's preferred (serving) runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slimgan.errors import ConfigError

SERVER_TARGETS = ("onnx", "fp16", "int8", "openvino", "tensorrt")
PHONE_TARGETS = ("tflite", "coreml", "ncnn", "executorch", "ort-mobile")
TARGETS = SERVER_TARGETS + PHONE_TARGETS
HOST_NOTE = ("host measurement: the runtime's x86 build on this machine's CPU, with the same thread count for teacher "
             "and student; not a phone latency (see benchmarks/android, benchmarks/ios)")


def parse_targets(spec: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"tflite,ncnn"`` -> ``["onnx", "tflite", "ncnn"]`` (``onnx`` first, duplicates dropped, order kept)."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [t.strip().lower() for t in items if t and t.strip()]
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        raise ConfigError(f"--targets: unknown target {unknown[0]!r}; choose from {', '.join(TARGETS)}")
    out = ["onnx"]
    for t in names:
        if t not in out:
            out.append(t)
    return out


def phone_targets(targets: list[str]) -> list[str]:
    return [t for t in targets if t in PHONE_TARGETS]


def require_phone_targets(targets: list[str]) -> None:
    """Fail in one line, before any work, when a phone target's runtime or converter is not installed."""
    from export.runtimes import get_runtime

    for name in phone_targets(targets):
        get_runtime(name).require_convert()


def convert_phone_targets(
    targets: list[str], out: Path, onnx_path: Path, model: Any, sample_shape: tuple[int, ...], calib: np.ndarray | None,
    files: dict[str, str], runtimes: dict[str, Any],
) -> dict[str, list[str]]:
    """Convert the student for each phone target into ``out``; fill ``files`` (role -> name) and
    ``runtimes`` (name -> {"files", "input_shape"}). Returns target -> files written."""
    from export.runtimes import ConvertContext, get_runtime

    written: dict[str, list[str]] = {}
    for name in phone_targets(targets):
        rt = get_runtime(name)
        names = rt.convert(ConvertContext(out, onnx_path, model, (1, *sample_shape), calib, {}))
        written[name] = names
        for role, fname in rt.artifacts.items():
            if fname in names:
                files[role] = fname
        runtimes[name] = {"files": list(names), "input_shape": [1, *(int(d) for d in sample_shape)],
                          "precision": "fp16" if name == "coreml" else "fp32"}
    return written


def phone_parity_rows(written: dict[str, list[str]], out: Path, model: Any, x: np.ndarray, ref: np.ndarray,
                      threads: int) -> list[dict[str, Any]]:
    """One parity row per phone artifact (see module docstring)."""
    from export.parity import compare
    from export.runtimes import get_runtime

    rows = []
    for name, names in written.items():
        rt = get_runtime(name)
        for role, gate in rt.gates.items():
            fname = rt.artifacts[role]
            if fname not in names:
                continue
            label = f"student: torch vs {name} ({fname})"
            runs, reason = rt.runs_here()
            if not runs:
                rows.append(_validation_row(label, rt, out / fname, model, x.shape, reason))
                continue
            session = rt.load(out / fname, threads=threads)
            try:
                row = compare(label, session.run(x), ref, gate)
            finally:
                session.close()
            row["runtime"] = name
            rows.append(row)
    return rows


def _validation_row(label: str, rt: Any, path: Path, model: Any, shape: tuple[int, ...], reason: str) -> dict[str, Any]:
    report = rt.validate(path, model, (1, *shape[1:]))
    row: dict[str, Any] = {
        "name": label,
        "runtime": rt.name,
        "gate": "validate",
        "passed": bool(report["ok"]),
        "criterion": "converted program validated (package loads, ML Program, input/output descriptions, program re-parsed "
                     "with type inference to the generator's output shape, convolution weights equal PyTorch's within fp16 "
                     "rounding); numeric parity not measured",
        "numbers": f"unavailable: {reason}",
        "validation": report,
    }
    if not report["ok"]:
        row["error"] = report.get("error", "validation failed")
    return row


def phone_speed_targets(out: Path, files: dict[str, str], runtimes: dict[str, Any], teacher_model: Any,
                        teacher_graph: Path | None, sample_shape: tuple[int, ...], tmp: Path) -> list[dict[str, Any]]:
    """speed.json targets for each phone runtime that executes here: the student's artifact and the
    teacher converted the same way (same converter, same settings) into ``tmp``."""
    from export.runtimes import ConvertContext, get_runtime

    targets = []
    for name in [n for n in PHONE_TARGETS if n in runtimes]:
        rt = get_runtime(name)
        if not rt.runs_here()[0] or not rt.gates:
            continue
        role = next(iter(rt.gates))
        label = f"{name}-cpu"
        targets.append({"runtime": name, "label": label, "role": "student", "path": out / files[role], "opts": {}})
        if teacher_model is not None:
            t_dir = tmp / f"teacher-{name}"
            t_dir.mkdir()
            onnx = teacher_graph if teacher_graph is not None else out / files["fp32"]
            rt.convert(ConvertContext(t_dir, onnx, teacher_model, (1, *sample_shape), None, {"tflite_fp16": False}))
            targets.append({"runtime": name, "label": label, "role": "teacher", "path": t_dir / rt.artifacts[role], "opts": {}})
    return targets


def label_phone_entries(by_runtime: dict[str, dict[str, Any]], threads: int) -> None:
    """Mark the phone runtimes' ``by_runtime`` entries as host measurements (CPU model, cores, threads)."""
    from export.runtimes.mobile import host_description

    for name, entry in by_runtime.items():
        if name in PHONE_TARGETS:
            entry["measured_on"] = host_description(entry.get("threads", threads))
            entry["note"] = HOST_NOTE
            entry["preferred_candidate"] = False


def serving_runtimes(by_runtime: dict[str, dict[str, Any]]) -> list[str]:
    """Runtimes that may become the bundle's preferred runtime (phone runtimes never do)."""
    return [k for k, e in by_runtime.items() if "student_median_ms" in e and k not in PHONE_TARGETS]
