"""``latency.png``: grouped bars of median latency with p90 whiskers, speedups annotated.

One group per (backend, threads, batch) setting, one bar per model; the whisker runs from the median to
p90. Students carry their speedup over the teacher (``x2.4``) above the bar; the legend gives each
model's MACs in words ("6.87 M MACs, 33x fewer than the teacher"), so the two can be compared at a
glance. Roofline predictions, when present, are drawn in a second panel below, with hatched bars
titled "predicted". The figure is sized for a screen: at most 16 x 12 inches at 100 dpi.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _setting(r: dict[str, Any]) -> str:
    threads = f"{r['threads']}t" if r.get("threads") else "gpu"
    return f"{r['backend']}\n{threads} b{r['batch']}"


MAX_WIDTH_IN = 16.0
DPI = 100


def model_label(name: str, role: str | None) -> str:
    """``teacher``, ``student``, or ``name (role)`` when the folder name does not already say it."""
    return name if not role or role in name else f"{name} ({role})"


def _macs_words(macs: float) -> str:
    return f"{macs / 1e9:.3g} G MACs" if macs >= 1e9 else f"{macs / 1e6:.3g} M MACs"


def plot_latency(report: dict[str, Any], path: str | Path) -> Path:
    """Draw the report's results (and predictions) into ``path`` (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    preds = report.get("predictions") or []
    models = list(report["models"])
    teacher = report.get("teacher")
    settings: list[str] = []
    for r in results:
        if _setting(r) not in settings:
            settings.append(_setting(r))
    panels = 2 if preds else 1
    width_in = min(MAX_WIDTH_IN, max(8.0, 0.9 * max(len(settings), 1) * max(len(models), 1) ** 0.5 + 4))
    fig, axes = plt.subplots(panels, 1, figsize=(width_in, 5.0 * panels), squeeze=False)
    ax = axes[0][0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    bar_w = 0.8 / max(len(models), 1)
    top = 0.0
    for mi, model in enumerate(models):
        xs, ys, errs, labels = [], [], [], []
        for si, setting in enumerate(settings):
            row = next((r for r in results if r["model"] == model and _setting(r) == setting), None)
            if row is None:
                continue
            xs.append(si - 0.4 + bar_w * (mi + 0.5))
            ys.append(row["median_ms"])
            p90 = row["p90_ms"] if row.get("p90_ms") is not None else row["median_ms"]  # tools that report no percentiles
            errs.append(max(p90 - row["median_ms"], 0.0))
            labels.append(row.get("speedup"))
            top = max(top, p90)
        info = report["models"][model]
        role = info.get("role") or ("teacher" if model == teacher else None)
        legend = f"{model_label(model, role)}: {_macs_words(info['macs'])}" if info.get("macs") else model_label(model, role)
        if teacher and model != teacher and info.get("macs"):
            legend += f", {report['models'][teacher]['macs'] / info['macs']:.1f}x fewer than the teacher"
        ax.bar(xs, ys, bar_w * 0.92, yerr=[[0] * len(errs), errs], capsize=3, color=colors[mi % len(colors)],
               label=legend, edgecolor="black", linewidth=0.4)
        if teacher and model != teacher:
            mac_ratio = report["models"][teacher]["macs"] / info["macs"] if info.get("macs") else None
            for x, y, e, sp in zip(xs, ys, errs, labels, strict=True):
                if sp:
                    text = (f"{sp:.1f}x faster" if sp >= 1 else f"{1 / sp:.1f}x slower") + (
                        f"\n(MACs {mac_ratio:.1f}x fewer)" if mac_ratio else "")
                    ax.annotate(text, (x, y + e), textcoords="offset points", xytext=(0, 3),
                                ha="center", fontsize=7.5, fontweight="bold")
    ax.set_xticks(range(len(settings)))
    ax.set_xticklabels(settings, fontsize=8)
    ax.set_ylabel("median latency (ms), whisker to p90")
    ax.set_ylim(0, top * 1.28 if top > 0 else 1)
    env = report["environment"]
    title = f"Measured at {report['settings']['res']}px on {env['cpu_model']}"
    if teacher:
        title += "\n(labels: speedup over the teacher on the same backend, threads and batch)"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    if not results:
        ax.text(0.5, 0.5, "no backend could run here\n(see skipped reasons in latency.md)", ha="center",
                va="center", transform=ax.transAxes)
    if preds:
        _plot_predictions(axes[1][0], preds, models, colors, report)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _plot_predictions(ax: Any, preds: list[dict[str, Any]], models: list[str], colors: list[str],
                      report: dict[str, Any]) -> None:
    keys: list[str] = []
    for p in preds:
        key = p["device"] + (f"\n{p['threads']}t" if p.get("threads") else "") + f"\n{p['precision']}"
        p["_key"] = key
        if key not in keys:
            keys.append(key)
    bar_w = 0.8 / max(len(models), 1)
    for mi, model in enumerate(models):
        xs, ys = [], []
        for ki, key in enumerate(keys):
            p = next((q for q in preds if q["model"] == model and q["_key"] == key), None)
            if p is None or p["predicted_ms"] is None:
                continue
            xs.append(ki - 0.4 + bar_w * (mi + 0.5))
            ys.append(p["predicted_ms"])
        info = report["models"].get(model, {})
        role = info.get("role") or ("teacher" if model == report.get("teacher") else None)
        ax.bar(xs, ys, bar_w * 0.92, color=colors[mi % len(colors)], hatch="//", edgecolor="black",
               linewidth=0.4, alpha=0.8, label=f"{model_label(model, role)} (predicted)")
    for p in preds:
        p.pop("_key", None)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("predicted latency (ms, log scale)")
    eff = (report.get("calibration") or {}).get("efficiency")
    ax.set_title("Roofline prediction, not measured" + (f" (efficiency {eff:.2f}, calibrated on this machine)"
                                                         if isinstance(eff, float) else ""), fontsize=10)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=8)
