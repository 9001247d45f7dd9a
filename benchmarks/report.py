"""One report writer and one comparison rule for the quality benchmarks (``bench distill``, the ablation,
the StyleGAN2 evidence).

- :func:`aggregate`: mean over seeds of every numeric metric, a ``_std`` twin (sample std, ddof 1) and
  the ``per_seed`` values.
- :func:`vs_baseline`: a row against the baseline on one metric, by the seeds' *paired* differences
  (same seed = same initialisation, data order and crops): ``diff`` = row - baseline in the metric's own
  units, ``ci95`` = the 95% Student-t interval of the per-seed differences, ``beats`` = the interval
  excludes 0 on the metric's good side. With one seed there is no interval and nothing beats.
- :func:`write_report`: ``FILE.json`` and the markdown beside it (``FILE.md``), written atomically.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Two-sided 95% quantiles of Student's t, t_{0.975, df}, df = 1..30 (beyond: the normal 1.96).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)

# Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER = {"swd", "fid", "fd", "fid_classifier", "kid", "lpips", "sec_per_step", "train_s", "l1_teacher"}


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER and not metric.startswith("swd")


def t_quantile(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _round(v: Any, digits: int = 6) -> Any:
    return round(float(v), digits) if _finite(v) else None


def aggregate(per_seed: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Mean over seeds of every numeric metric, its ``_std`` (ddof 1; 0 for one seed), ``seeds`` and
    ``per_seed`` (``[{seed, metric: value, ...}]``). A NaN or missing value makes that mean null."""
    row: dict[str, Any] = {}
    # A metric that is NaN or None for the first seed (FID without Inception weights) still gets its
    # key, as null: a report whose columns come and go with the data is harder to read than a null.
    keys = [k for k, v in per_seed[0].items()
            if k != "seed" and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))]
    for k in keys:
        values = [m.get(k) for m in per_seed]
        if all(_finite(v) for v in values):
            vals = [float(v) for v in values]
            row[k] = round(statistics.fmean(vals), 6)
            row[k + "_std"] = round(statistics.stdev(vals), 6) if len(vals) > 1 else 0.0
        else:
            row[k], row[k + "_std"] = None, None
    row["seeds"] = list(seeds)
    row["per_seed"] = [{"seed": s, **{k: _round(m.get(k)) for k in keys}} for s, m in zip(seeds, per_seed, strict=True)]
    return row


def paired_interval(row: Sequence[float], base: Sequence[float]) -> tuple[float, list[float] | None]:
    """(mean of row_i - base_i, 95% t-interval of that mean or None with fewer than 2 pairs)."""
    diffs = [float(a) - float(b) for a, b in zip(row, base, strict=True)]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, None
    half = t_quantile(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, [mean - half, mean + half]


def vs_baseline(row: Mapping[str, Any], base: Mapping[str, Any], metric: str,
                higher_better: bool | None = None) -> dict[str, Any] | None:
    """``{metric, diff, ci95, beats, higher_is_better, seeds}`` of ``row`` against ``base`` on ``metric``, by
    the seeds both have (paired); None when either lacks the metric."""
    better_up = higher_is_better(metric) if higher_better is None else higher_better
    a = {p["seed"]: p.get(metric) for p in row.get("per_seed", [])}
    b = {p["seed"]: p.get(metric) for p in base.get("per_seed", [])}
    seeds = [s for s in a if s in b and _finite(a[s]) and _finite(b[s])]
    if not seeds:
        return None
    diff, ci = paired_interval([a[s] for s in seeds], [b[s] for s in seeds])
    beats = bool(ci is not None and (ci[0] > 0 if better_up else ci[1] < 0))
    worse = bool(ci is not None and (ci[1] < 0 if better_up else ci[0] > 0))
    return {"metric": metric, "diff": round(diff, 6), "ci95": None if ci is None else [round(c, 6) for c in ci],
            "beats": beats, "loses": worse, "higher_is_better": better_up, "seeds": seeds}


def verdict(cmp: Mapping[str, Any] | None) -> str:
    """``better`` / ``worse`` (the interval excludes 0) / ``no difference shown`` / ``one seed: no interval``."""
    if cmp is None:
        return "-"
    if cmp["ci95"] is None:
        return "one seed: no interval"
    return "better" if cmp["beats"] else "worse" if cmp["loses"] else "no difference shown"


def format_cmp(cmp: Mapping[str, Any] | None, digits: int = 2) -> str:
    """``+0.41 [+0.12, +0.70] better`` for a markdown cell."""
    if cmp is None:
        return "-"
    ci = "" if cmp["ci95"] is None else f" [{cmp['ci95'][0]:+.{digits}f}, {cmp['ci95'][1]:+.{digits}f}]"
    return f"{cmp['diff']:+.{digits}f}{ci} {verdict(cmp)}"


def mean_std(row: Mapping[str, Any], metric: str, digits: int = 2) -> str:
    v, s = row.get(metric), row.get(metric + "_std")
    if v is None:
        return "-"
    return f"{v:.{digits}f} ± {s:.{digits}f}" if s is not None else f"{v:.{digits}f}"


def write_report(out_json: str | Path, report: Mapping[str, Any], markdown: str) -> Path:
    """Write ``out_json`` and ``out_json`` with ``.md`` (each via a temporary file, then renamed)."""
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out_json, json.dumps(report, indent=2) + "\n"), (out_json.with_suffix(".md"), markdown)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return out_json
