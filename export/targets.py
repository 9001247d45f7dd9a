"""``slimgan export --targets LIST``: which artifacts a bundle gets, and the phone runtimes' part of export.

Targets: ``onnx`` (always written), ``fp16``, ``int8``, ``openvino``, ``tensorrt`` (the bundle's server /
GPU artifacts, also reachable as ``--fp16``, ``--int8``, ``--trt``) and the phone runtimes ``tflite``,
``coreml``, ``ncnn``, ``executorch``, ``ort-mobile`` (each a runtime of :mod:`export.runtimes`).

Every phone target is converted and checked in a child process (:mod:`export.isolation`): a
third-party converter or runtime that crashes, hangs or is killed by a signal costs that target one
failed parity row (naming the signal and ``logs/<runtime>.log``), never the export; their log output
goes to that file, not to the terminal. A target whose extra is not installed gets a failed row with
the install hint; the rest of the bundle is still written.

:func:`export_phone_targets` is the entry point: it converts the model for each phone target, lists
each file written in ``manifest.json`` ``files`` (under the runtime's role names) and ``runtimes``
(files, input shape, the precision the runtime reports), and returns a parity row per artifact: the
runtimes that execute here run it against PyTorch under the runtime's gate; Core ML, which predicts
only on macOS, gets its converted program validated instead, in a row that says why numbers are
unavailable. :func:`convert_phone_targets` + :func:`phone_parity_rows` are the same in two steps (two
child processes per runtime). The speed check converts the teacher the same way, in a child too
(:func:`phone_speed_targets`), and times both on each phone runtime that executes here and passed its
check; those entries in ``speed.json`` ``by_runtime`` are labelled as host measurements (CPU model,
threads) and never become the bundle's preferred (serving) runtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.isolation import LOG_DIR, IsolatedJob, IsolatedRun, ParityJob, failure_row, run_isolated
from export.runtimes.base import ConvertResult
from slimgan.errors import ConfigError

log = logging.getLogger(__name__)

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


def require_phone_targets(targets: list[str]) -> list[str]:
    """The one-line problems (missing extras) of the phone targets. They do not stop the export any more:
    each becomes that target's failed parity row (see :func:`export_phone_targets`)."""
    return [problem for problem in (_missing(name) for name in phone_targets(targets)) if problem]


def _missing(name: str) -> str | None:
    from export.runtimes import get_runtime

    ok, reason = get_runtime(name).available()
    return None if ok else reason


@dataclass
class PhoneExport:
    """What :func:`export_phone_targets` did: manifest ``files`` (role -> name) and ``runtimes`` entries for
    the targets that converted and ran, the parity rows of every target (failed rows included), and
    each child run (``runs``; absent for a target whose extra is missing)."""

    files: dict[str, str] = field(default_factory=dict)
    runtimes: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, IsolatedRun] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [r["runtime"] for r in self.rows if r.get("gate") == "run" and r.get("passed") is False]


def export_phone_targets(targets: list[str], out: Path, onnx_path: Path, model: Any, sample_shape: tuple[int, ...],
                         calib: np.ndarray | None = None, check: ParityJob | None = None,
                         timeout_s: float | None = None) -> PhoneExport:
    """Convert ``model`` for each phone target in ``targets`` into ``out``, each in a child process, and
    (with ``check``) compare each artifact with ``check.reference`` there too. ``sample_shape``: one
    sample's shape (C, H, W) or (nz,). Never raises for a runtime's failure: that is its failed row."""
    done = PhoneExport()
    label = check.label if check is not None else "student"
    for name in phone_targets(targets):
        problem = _missing(name)
        if problem:
            done.rows.append(failure_row(name, label, problem))
            continue
        run = run_isolated(IsolatedJob(name, Path(out), onnx_path, model, (1, *sample_shape), calib, parity=check,
                                       timeout_s=timeout_s))
        done.runs[name] = run
        done.rows += [dict(r) for r in run.rows]
        if run.ok:
            _record(name, run.result, sample_shape, done.files, done.runtimes)
        else:
            _remove_artifacts(name, Path(out))
    return done


def _record(name: str, result: ConvertResult, sample_shape: tuple[int, ...], files: dict[str, str],
            runtimes: dict[str, Any]) -> None:
    """Manifest entries for a converted phone target: its files by role, and its ``runtimes`` entry."""
    from export.runtimes import get_runtime

    rt = get_runtime(name)
    for role, fname in rt.artifacts.items():
        if fname in result.files:
            files[role] = fname
    runtimes[name] = {"files": list(result.files), "input_shape": [1, *(int(d) for d in sample_shape)],
                      "precision": result.precision}


def _remove_artifacts(name: str, out: Path) -> None:
    """Drop what a failed target left behind, so the bundle holds only what the manifest lists."""
    import shutil

    from export.runtimes import get_runtime

    for fname in get_runtime(name).artifacts.values():
        path = out / fname
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()


class PhoneWritten(dict):
    """:func:`convert_phone_targets`' answer: target -> files written (a plain dict to read), plus each
    target's :class:`ConvertResult` and, for a target that failed, its failed row."""

    def __init__(self) -> None:
        super().__init__()
        self.results: dict[str, ConvertResult] = {}
        self.failures: dict[str, list[dict[str, Any]]] = {}
        self.manifest_files: dict[str, str] = {}
        self.manifest_runtimes: dict[str, Any] = {}


def convert_phone_targets(
    targets: list[str], out: Path, onnx_path: Path, model: Any, sample_shape: tuple[int, ...], calib: np.ndarray | None,
    files: dict[str, str], runtimes: dict[str, Any],
) -> PhoneWritten:
    """Step one of :func:`export_phone_targets`: convert only (each in a child process); fill ``files``
    (role -> name) and ``runtimes`` (name -> {"files", "input_shape", "precision"}) for the targets that
    converted. Returns target -> files written ([] for a failed target; its row waits in ``failures``)."""
    written = PhoneWritten()
    written.manifest_files, written.manifest_runtimes = files, runtimes
    for name in phone_targets(targets):
        problem = _missing(name)
        run = None if problem else run_isolated(IsolatedJob(name, Path(out), onnx_path, model, (1, *sample_shape), calib))
        written[name] = list(run.result.files) if run is not None and run.ok else []
        if run is not None and run.ok:
            written.results[name] = run.result
            _record(name, run.result, sample_shape, files, runtimes)
        else:
            written.failures[name] = [failure_row(name, "student", problem)] if problem else [dict(r) for r in run.rows]
            _remove_artifacts(name, Path(out))
    return written


def phone_parity_rows(written: dict[str, list[str]], out: Path, model: Any, x: np.ndarray, ref: np.ndarray,
                      threads: int, *, data_range: float = 2.0, label: str | None = None) -> list[dict[str, Any]]:
    """Step two of :func:`export_phone_targets`: one parity row per phone artifact, each runtime checked in
    a child process; a target that failed to convert (or crashes now) gets its failed row instead, and
    one that crashes now is taken out of the manifest entries step one filled. ``label``: what the rows
    call the model (default: the role its checkpoint records)."""
    from export.runtimes import get_runtime

    label = label or model_role(model)
    failures = getattr(written, "failures", {})
    rows: list[dict[str, Any]] = []
    for name, names in written.items():
        if name in failures:
            rows += [{**r, "name": r["name"].replace("student:", f"{label}:", 1)} for r in failures[name]]
            continue
        result = getattr(written, "results", {}).get(name) or ConvertResult(tuple(names))
        run = run_isolated(IsolatedJob(name, Path(out), module=model, example_shape=(1, *x.shape[1:]), convert=False,
                                       converted=result, parity=ParityJob(x, ref, threads, data_range, label)))
        rows += [dict(r) for r in run.rows]
        if not run.ok and isinstance(written, PhoneWritten):
            for role in get_runtime(name).artifacts:
                written.manifest_files.pop(role, None)
            written.manifest_runtimes.pop(name, None)
            _remove_artifacts(name, Path(out))
    return rows


def model_role(model: Any) -> str:
    """The role a loaded checkpoint records (``student``, ``teacher``; ``model`` when none)."""
    from distill.checkpoint import checkpoint_role

    config = (getattr(model, "slimgan_checkpoint", None) or {}).get("config")
    return checkpoint_role(config) if config else "model"


def phone_speed_targets(out: Path, files: dict[str, str], runtimes: dict[str, Any], teacher_model: Any,
                        teacher_graph: Path | None, sample_shape: tuple[int, ...], tmp: Path) -> list[dict[str, Any]]:
    """speed.json targets for each phone runtime that executes here and passed its checks: the student's
    artifact and the teacher converted the same way (same converter, same settings, in a child process
    logging to the runtime's ``logs/`` file) into ``tmp``. A teacher that fails to convert is left out."""
    from export.runtimes import get_runtime

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
            run = run_isolated(IsolatedJob(name, t_dir, onnx, teacher_model, (1, *sample_shape), None, {"tflite_fp16": False},
                                           log_dir=out / LOG_DIR))
            if run.ok:
                targets.append({"runtime": name, "label": label, "role": "teacher", "path": t_dir / rt.artifacts[role], "opts": {}})
            else:
                log.warning("speed: the teacher did not convert for %s (%s); timing the student only", name, run.error)
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
