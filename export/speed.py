"""Teacher vs student latency, side by side in one process (``speed.json``).

Both graphs run on the same runtime (:mod:`export.runtimes`) with the same settings and thread count and
the same input. After a warm-up of each, timing alternates between the two in
``rounds`` short blocks, so that load from other processes on a shared machine hits both alike; the
reported statistics pool every timed call. ``speedup`` = teacher median / student median;
``mac_ratio`` = teacher MACs / student MACs (the two diverge: memory-bound layers do not shrink with
the channel count).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from export.runtimes.timing import summarize_times


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


def speed_row(name: str, stats: dict[str, Any], batch: int, macs: int | None, params: int | None, **extra: Any) -> dict[str, Any]:
    row = {"name": name, **stats, "throughput": stats["throughput"] * batch, "throughput_unit": "images/s"}
    row.update({"batch": batch, "macs": macs, "params": params, **extra})
    return row
