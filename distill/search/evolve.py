"""Evolutionary search for the latency / ``psnr_teacher`` Pareto front, and the final choice.

The search is generic: ``score(genes)`` returns a dict with at least ``latency`` (lower is better;
``benchmarks/search.py`` passes latency relative to the reference timed beside it) and
``psnr_teacher`` (higher is better), or None when the architecture cannot be used (it is then skipped).
Each architecture is scored once (by ``arch_key``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from distill.search.space import SearchSpace, arch_key


def pareto_front(rows: list[dict[str, Any]], latency: str = "latency", fidelity: str = "psnr_teacher") -> list[dict[str, Any]]:
    """Rows no other row beats on both (faster or equal and at least as faithful, one strictly), by latency."""
    front = []
    for r in rows:
        dominated = any(
            o is not r and o[latency] <= r[latency] and o[fidelity] >= r[fidelity]
            and (o[latency] < r[latency] or o[fidelity] > r[fidelity]) for o in rows)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r[latency])


def choose(rows: list[dict[str, Any]], reference: dict[str, Any], tolerance_db: float = 0.3,
           budget: float | None = None, latency: str = "latency") -> dict[str, Any]:
    """The fastest row within ``tolerance_db`` of the reference's fidelity; with ``budget``, the most
    faithful row at or under it (the fastest row when none fits)."""
    if budget is not None:
        fits = [r for r in rows if r[latency] <= budget]
        if fits:
            return max(fits, key=lambda r: (r["psnr_teacher"], -r[latency]))
        return min(rows, key=lambda r: r[latency])
    ok = [r for r in rows if r["psnr_teacher"] >= reference["psnr_teacher"] - tolerance_db]
    return min(ok or [reference], key=lambda r: (r[latency], -r["psnr_teacher"]))


def evolve(space: SearchSpace, score: Callable[[dict[str, Any]], dict[str, Any] | None], *, population: int,
           generations: int, rng: random.Random, seeds: list[dict[str, Any]] | None = None,
           feasible: Callable[[dict[str, Any]], bool] | None = None,
           on_generation: Callable[[int, list[dict[str, Any]]], None] | None = None,
           should_stop: Callable[[], bool] | None = None) -> list[dict[str, Any]]:
    """Score ``population`` architectures (``seeds`` first, then random), then ``generations`` rounds of
    ``population`` children bred from the Pareto front and the fastest ``feasible`` rows (crossover, then
    mutation). ``should_stop()`` true ends the search early (the first ``population`` are always scored). Returns every
    scored row (each with its ``genes`` and ``key``)."""
    stop = should_stop or (lambda: False)
    scored: dict[str, dict[str, Any]] = {}
    failed: set[str] = set()

    def add(genes: dict[str, Any]) -> bool:
        key = arch_key(genes, space.max_depth)
        if key in scored or key in failed or not space.contains(genes):
            return False
        row = score(genes)
        if row is None:  # the scorer could not use this architecture (it says why); never retried
            failed.add(key)
            return False
        scored[key] = {**row, "genes": genes, "key": key}
        return True

    for genes in seeds or []:
        add(genes)
    _fill(add, lambda: space.sample(rng), population - len(scored), lambda: False)
    if on_generation:
        on_generation(0, list(scored.values()))
    for gen in range(1, generations + 1):
        if stop():
            break
        rows = list(scored.values())
        fast_ok = sorted((r for r in rows if feasible is None or feasible(r)), key=lambda r: r["latency"])
        parents = _unique(pareto_front(rows) + fast_ok[: max(2, population // 2)])

        def child(parents: list[dict[str, Any]] = parents) -> dict[str, Any]:
            a, b = rng.choice(parents)["genes"], rng.choice(parents)["genes"]
            return space.mutate(space.crossover(a, b, rng), rng)

        _fill(add, child, population, stop)
        if on_generation:
            on_generation(gen, list(scored.values()))
    return list(scored.values())


def _fill(add: Callable[[dict[str, Any]], bool], make: Callable[[], dict[str, Any]], count: int,
          stop: Callable[[], bool]) -> None:
    added, tries = 0, 0
    while added < count and tries < 50 * max(count, 1) and not stop():
        tries += 1
        added += add(make())


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for r in rows:
        if r["key"] not in seen:
            seen.add(r["key"])
            out.append(r)
    return out
