"""Teacher vs student latency, side by side in one process (``speed.json``).

Both graphs run on the same backend with the same session options (:func:`export.runtime.make_session`,
same thread count) and the same input. After a warm-up of each, timing alternates between the two in
``rounds`` short blocks, so that load from other processes on a shared machine hits both alike; the
reported statistics pool every timed call. ``speedup`` = teacher median / student median;
``mac_ratio`` = teacher MACs / student MACs (the two diverge: memory-bound layers do not shrink with
the channel count).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from export.runtime import make_session, summarize_times


def _timed_block(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def interleaved(
    fns: dict[str, Callable[[], object]], rounds: int = 5, min_time_s: float = 0.5, warmup: int = 2
) -> dict[str, dict[str, float | int]]:
    """Time several callables alternately: per round, each runs for about ``min_time_s`` (>= 1 call)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    per_call: dict[str, float] = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        per_call[name] = max(time.perf_counter() - t0, 1e-6)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            runs = max(1, int(min_time_s / per_call[name]))
            times[name].extend(_timed_block(fn, runs))
    return {name: summarize_times(t) for name, t in times.items()}


def onnx_runner(path: str | Path, x: np.ndarray, threads: int | None, providers: list[str] | None = None) -> Callable[[], object]:
    """A zero-argument callable running ``x`` through a fresh session on ``path``."""
    sess = make_session(path, threads=threads, providers=providers)
    feed = {sess.get_inputs()[0].name: x}
    return lambda: sess.run(None, feed)


def speed_row(name: str, stats: dict[str, Any], batch: int, macs: int | None, params: int | None, **extra: Any) -> dict[str, Any]:
    row = {"name": name, **stats, "throughput": stats["throughput"] * batch, "throughput_unit": "images/s"}
    row.update({"batch": batch, "macs": macs, "params": params, **extra})
    return row


def compare_onnx(
    student: str | Path,
    teacher: str | Path | None,
    x: np.ndarray,
    threads: int,
    student_info: dict[str, Any],
    teacher_info: dict[str, Any] | None,
    rounds: int = 5,
    min_time_s: float = 0.5,
    providers: list[str] | None = None,
    backend: str = "onnxruntime-cpu",
    role: str = "student",
    variants: dict[str, str | Path] | None = None,
) -> list[dict[str, Any]]:
    """Rows for the exported model (and the teacher, when given) timed side by side on one ORT backend.

    ``role`` names the exported model (``student``, or ``teacher`` when a teacher is exported on its
    own). ``variants`` (``{"int8": path}``) are other graphs of the same model timed in the same
    interleave, so that every graph is measured once and every ratio comes from one measurement.
    The first row is the exported model's, the second the teacher's (when given), then the variants.
    """
    graphs = {"model": Path(student)}
    if teacher is not None:
        graphs["teacher"] = Path(teacher)
    graphs.update({f"variant:{k}": Path(v) for k, v in (variants or {}).items()})
    stats = interleaved({k: onnx_runner(p, x, threads, providers) for k, p in graphs.items()},
                        rounds=rounds, min_time_s=min_time_s)
    rows = [
        speed_row(f"{role} {backend}", stats["model"], x.shape[0], backend=backend, threads=threads, role=role, graph=graphs["model"].name, **student_info)
    ]
    if teacher is not None and teacher_info is not None:
        rows.append(
            speed_row(f"teacher {backend}", stats["teacher"], x.shape[0], backend=backend, threads=threads, role="teacher", graph=graphs["teacher"].name, **teacher_info)
        )
    for key, path in graphs.items():
        if key.startswith("variant:"):
            variant = key.split(":", 1)[1]
            rows.append(speed_row(f"{role} {backend} {variant} ({path.name})", stats[key], x.shape[0], backend=backend,
                                  threads=threads, role=role, graph=path.name, precision=variant, **student_info))
    return rows
