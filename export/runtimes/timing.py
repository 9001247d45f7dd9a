"""trtexec-style timing shared by every runtime (no torch, no runtime imports).

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
