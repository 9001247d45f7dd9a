"""Fit a benchmark's step count to a wall-clock budget from a short calibration on the host that runs it.

A benchmark whose rows train for a fixed number of steps takes as long as the host makes it: the same
default run measured 66 minutes on one idle 2-core host and would take about 90 on a slower one. With a
budget, the run first times a few steps of every row side by side (as the real run will train them), models
each (seed, row) job as ``fixed + steps * sec_per_step + curve_evals(steps) * eval_s``, replays the worker
pool's schedule, and trains every row for the largest shared step count that fits. Every row still trains
the same steps; only the number is the host's.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class JobCost:
    """One job's measured cost: ``fixed_s`` (start, data load, final scoring, save), ``sec_per_step`` and
    ``eval_s`` (one held-out curve point)."""

    fixed_s: float
    sec_per_step: float
    eval_s: float

    def seconds(self, steps: int, eval_every: int) -> float:
        return self.fixed_s + steps * self.sec_per_step + curve_points(steps, eval_every) * self.eval_s


def curve_points(steps: int, eval_every: int) -> int:
    """Held-out evaluations of a row: one before training, every ``eval_every`` steps, and after the last."""
    return 1 + steps // eval_every + (1 if steps % eval_every else 0)


def makespan(durations: Sequence[float], workers: int) -> float:
    """Wall time of ``durations`` handed out in the given order to ``workers`` processes, each job to the first
    free worker (what ``ProcessPoolExecutor`` does with jobs submitted in that order)."""
    free = [0.0] * max(1, workers)
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def fit_steps(jobs: Sequence[JobCost], workers: int, requested: int, seconds_left: float,
              eval_every: Callable[[int], int]) -> tuple[int, float]:
    """The largest step count ``n <= requested`` whose jobs (in the given order) finish within ``seconds_left``,
    and their predicted wall time; ``(0, predicted at 1 step)`` when not even one step fits.
    ``eval_every(n)`` is the curve interval a run of ``n`` steps uses."""

    def wall(n: int) -> float:
        return makespan([j.seconds(n, eval_every(n)) for j in jobs], workers)

    if wall(requested) <= seconds_left:
        return requested, wall(requested)
    lo, hi = 0, requested  # wall(lo) fits (or lo == 0), wall(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if wall(mid) <= seconds_left:
            lo = mid
        else:
            hi = mid
    if lo >= 100:  # a round number reads better in a table and costs under 10% of the steps
        lo -= lo % 10
    return lo, wall(max(lo, 1))


def describe(costs: dict[str, JobCost]) -> str:
    return ", ".join(f"{m} {c.sec_per_step:.3f} s" for m, c in costs.items())
