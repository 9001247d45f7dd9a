"""ONNX Runtime session creation and trtexec-style timing, shared by export, benchmarks and the demo.

This module must not import torch. Two public helpers:

``make_session(model_path, threads=None, providers=None, *, spinning=False)``
    An ``onnxruntime.InferenceSession`` with the options every slimgan measurement uses:
    full graph optimisation (``ORT_ENABLE_ALL``), sequential execution, memory-pattern and CPU arena
    enabled, ``intra_op_num_threads = threads`` and ``inter_op_num_threads = 1``, and idle intra-op
    threads that sleep instead of spinning (``session.intra_op.allow_spinning = 0``, as the server runs):
    on a CPU shared with other processes spinning threads burn the cores the work needs (measured on
    a 2-core machine at load 7: the ngf-16 mobile student 146 -> 94 ms median, the ngf-64 ResNet
    teacher 2215 -> 2087 ms). The teacher and the student are always given the same options, so a
    speedup compares graphs, not settings.

``time_session(run_fn, warmup_s=0.2, min_runs=10, min_time_s=1.0, max_runs=1000)``
    Calls ``run_fn()`` repeatedly like ``trtexec``: warm-up for ``warmup_s`` seconds (at least one call),
    then at least ``min_runs`` timed calls and at least ``min_time_s`` seconds of them, stopping at
    ``max_runs``. Returns ``median_ms, mean_ms, p90_ms, p95_ms, p99_ms, min_ms, max_ms, runs, throughput``.
    ``throughput`` is calls per second (1000 / mean_ms); multiply by the batch size for images/s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distill.errors import MissingDependencyError

DEFAULT_THREADS = 2


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
        raise MissingDependencyError("onnxruntime is not importable; install slimgan's dependencies") from exc
    return onnxruntime


def session_options(threads: int | None = None, spinning: bool = True) -> Any:
    """The ``SessionOptions`` used for every slimgan session (see module docstring).

    ``spinning=False`` sets ``session.intra_op.allow_spinning = 0`` (:func:`make_session`'s default).
    """
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_mem_pattern = True
    opts.enable_cpu_mem_arena = True
    opts.intra_op_num_threads = int(threads) if threads else DEFAULT_THREADS
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def make_session(
    model_path: str | Path | bytes,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    *,
    spinning: bool = False,
) -> Any:
    """Open ``model_path`` (a file or serialized model bytes) in ONNX Runtime.

    ``threads``: intra-op threads (default 2, the mobile-class CPU profile). ``providers``: ORT
    execution providers in priority order (default ``["CPUExecutionProvider"]``); providers that this
    ONNX Runtime build lacks raise :class:`MissingDependencyError` naming the available ones.
    ``spinning``: let idle intra-op threads spin (ONNX Runtime's own default; off here).
    """
    ort = _ort()
    wanted = list(providers) if providers else ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    missing = [p for p in wanted if p not in available]
    if missing:
        raise MissingDependencyError(
            f"ONNX Runtime provider {missing[0]} is not available; this build has: {', '.join(available)}"
        )
    source = model_path if isinstance(model_path, bytes) else str(model_path)
    return ort.InferenceSession(source, sess_options=session_options(threads, spinning=spinning), providers=wanted)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of an ascending list."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize_times(times_ms: Sequence[float]) -> dict[str, float | int]:
    """Statistics of a list of per-call latencies in milliseconds (same keys as :func:`time_session`)."""
    if not times_ms:
        raise ValueError("summarize_times needs at least one measurement")
    ordered = sorted(float(t) for t in times_ms)
    mean = sum(ordered) / len(ordered)
    return {
        "median_ms": _percentile(ordered, 50),
        "mean_ms": mean,
        "p90_ms": _percentile(ordered, 90),
        "p95_ms": _percentile(ordered, 95),
        "p99_ms": _percentile(ordered, 99),
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
        "runs": len(ordered),
        "throughput": 1000.0 / mean if mean > 0 else float("inf"),
    }


def time_session(
    run_fn: Callable[[], object],
    warmup_s: float = 0.2,
    min_runs: int = 10,
    min_time_s: float = 1.0,
    max_runs: int = 1000,
) -> dict[str, float | int]:
    """Time ``run_fn`` trtexec-style (see module docstring). Throughput is calls/s; times batch for images/s."""
    start = time.perf_counter()
    run_fn()
    while time.perf_counter() - start < warmup_s:
        run_fn()
    times: list[float] = []
    t_begin = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - t_begin < min_time_s):
        t0 = time.perf_counter()
        run_fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return summarize_times(times)
