"""``pareto.json`` and ``pareto.png`` of a search run."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

FIELDS = ("config", "macs", "params", "latency_ms", "reference_ms_window", "relative_latency", "latency_source",
          "psnr_teacher")


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in FIELDS if k in row}


def write_summary(out: Path, args: Any, recipe: Any, run: dict[str, Any]) -> dict[str, Any]:
    """Everything a reader needs to judge the run; written to ``out/pareto.json`` and returned.

    ``run``: ``rows``, ``ref_row``, ``chosen_row``, ``finals``, ``meter``, ``supernet`` (training report),
    ``pairs``, ``times`` and ``t0`` (the run's start, ``time.perf_counter``).
    """
    from distill.search.evolve import pareto_front

    rows, ref_row, chosen_row, finals = run["rows"], run["ref_row"], run["chosen_row"], run["finals"]
    meter, pairs = run["meter"], run["pairs"]

    front = {r["key"] for r in pareto_front(rows)}
    candidates = sorted(({**_row(r), "pareto": r["key"] in front} for r in rows), key=lambda r: r["relative_latency"])
    ref_ms = meter.reference_ms()
    reference = {
        **_row(ref_row), "arch": "mobile_resnet_9blocks", "kwargs": {"ngf": 16},
        "latency_ms": round(ref_ms, 3), "relative_latency": 1.0,
        "psnr_teacher_supernet": ref_row["psnr_teacher"], "psnr_teacher": finals["reference"]["psnr_teacher"],
        "trained_as": "sub-network of the same supernet (searchable_resnet with the reference's layers), "
                      "then fine-tuned with the same steps, data and seed as the chosen student",
        "checkpoint": "reference" if (out / "reference").is_dir() else None,
    }
    chosen = {
        **_row(chosen_row), "arch": "searchable_resnet", "checkpoint": "best",
        "psnr_teacher_supernet": chosen_row["psnr_teacher"], "psnr_teacher": finals["chosen"]["psnr_teacher"],
        "speedup_vs_reference": round(1 / chosen_row["relative_latency"], 3),
        "psnr_gap_db": round(finals["chosen"]["psnr_teacher"] - finals["reference"]["psnr_teacher"], 3),
        "rule": (f"best psnr_teacher under --budget-ms {args.budget_ms}" if args.budget_ms is not None else
                 f"fastest within {recipe.search.tolerance_db} dB of the reference (supernet weights)"),
    }
    times = {**run["times"], "total_s": round(time.perf_counter() - run["t0"], 1)}
    report = {
        "smoke_test": recipe.smoke_test,
        "note": ("--quick: a smoke test of the pipeline (few photos and steps); its numbers say nothing about "
                 "the method" if recipe.smoke_test else "default scale"),
        "runtime": args.runtime, "threads": args.threads, "res": args.res, "host": meter.host,
        "command": " ".join(["slimgan", "search", *sys.argv[2:]]) if "search" in sys.argv[1:2] else None,
        "teacher": str(args.teacher), "photos": {"root": str(args.photos), "train": len(pairs.train_x),
                                                   "held_out": len(pairs.val_x)},
        "psnr_teacher": ("dB between student and teacher outputs on the held-out photos (centre crops at --res); "
                         "candidates: supernet weights, norm statistics re-calibrated, no retraining; reference and "
                         "chosen: after fine-tuning (the supernet-weight value is psnr_teacher_supernet)"),
        "latency": ("median ms of the exported graph on the runtime at --threads, timed in blocks alternating with "
                    "mobile_resnet_9blocks ngf 16 (reference_ms_window); candidates are ranked by relative_latency"),
        "candidates": candidates, "reference": reference, "chosen": chosen,
        "pareto_front": [r["config"] for r in candidates if r["pareto"]],
        "plain_onnx_check": run.get("plain"),
        "supernet_training": run["supernet"],
        "finetune": {k: finals[k]["report"] for k in ("chosen", "reference")},
        "finetune_attempts": finals["attempts"],
        "latency_measurements": meter.measured, "dropped": meter.failures, "timings": times,
        "recipe": recipe.to_dict(), "python": platform.python_version(),
    }
    (out / "pareto.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def plot_pareto(report: dict[str, Any], path: Path) -> Path | None:
    """Latency (ms) vs psnr_teacher: every candidate, the front joined, reference and chosen marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cands = report["candidates"]
    ref_ms = report["reference"]["latency_ms"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([c["relative_latency"] * ref_ms for c in cands], [c["psnr_teacher"] for c in cands], s=18,
               color="#888", label="candidates (supernet weights)")
    front = [c for c in cands if c["pareto"]]
    ax.plot([c["relative_latency"] * ref_ms for c in front], [c["psnr_teacher"] for c in front], "-o", ms=4,
            color="#1f77b4", label="Pareto front")
    for key, marker, color in (("reference", "s", "#d62728"), ("chosen", "*", "#2ca02c")):
        r = report[key]
        x = r["relative_latency"] * ref_ms
        ax.scatter([x], [r["psnr_teacher_supernet"]], marker=marker, s=90, facecolors="none", edgecolors=color,
                   label=f"{key} (supernet weights)")
        ax.scatter([x], [r["psnr_teacher"]], marker=marker, s=110, color=color, label=f"{key} (fine-tuned)")
    ax.set_xlabel(f"latency, ms ({report['runtime']}, {report['threads']} thread(s), {report['res']}², "
                  "scaled to the reference's median)")
    ax.set_ylabel("psnr_teacher, dB (held-out photos)")
    title = "latency-aware search" + (" — SMOKE TEST (--quick)" if report["smoke_test"] else "")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cfg(c: dict[str, Any]) -> str:
    return (f"{c['block'][:3]}/{c['upsample']}/{c['norm'][:5]} stem {c['stem']} down {c['down']} trunk {c['trunk']} "
            f"blocks {len(c['blocks'])}x{'/'.join(str(w) for w in sorted(set(c['blocks']), reverse=True))} "
            f"up {c['up'][0]}/{c['up'][1]}")


def format_markdown(report: dict[str, Any]) -> str:
    """The run as a markdown table (``python -m benchmarks.search.report S/pareto.json``)."""
    ref, chosen = report["reference"], report["chosen"]
    lines = [f"runtime {report['runtime']}, {report['threads']} thread(s), {report['res']}², {report['host']}"
             + (" — SMOKE TEST (--quick)" if report["smoke_test"] else ""), "",
             "| | architecture | GMACs | params | latency ms | x ref (same window) | psnr_teacher dB | Pareto |",
             "|---|---|---|---|---|---|---|---|"]
    for i, c in enumerate(report["candidates"]):
        lines.append(f"| {i + 1} | {_cfg(c['config'])} | {c['macs'] / 1e9:.3f} | {c['params']:,} | {c['latency_ms']:.2f} | "
                     f"{1 / c['relative_latency']:.2f} | {c['psnr_teacher']:.2f} | {'yes' if c['pareto'] else ''} |")
    lines += ["", "| | architecture | GMACs | latency ms | speedup | psnr_teacher dB (supernet → fine-tuned) |",
              "|---|---|---|---|---|---|",
              f"| reference | mobile_resnet_9blocks ngf 16 | {ref['macs'] / 1e9:.3f} | {ref['latency_ms']:.2f} | 1.00 | "
              f"{ref['psnr_teacher_supernet']:.2f} → {ref['psnr_teacher']:.2f} |",
              f"| chosen | {_cfg(chosen['config'])} | {chosen['macs'] / 1e9:.3f} | {chosen['latency_ms']:.2f} | "
              f"{chosen['speedup_vs_reference']:.2f} | {chosen['psnr_teacher_supernet']:.2f} → {chosen['psnr_teacher']:.2f} |"]
    plain = report.get("plain_onnx_check")
    if plain:
        lines += ["", f"Plain ONNX check ({plain['method']}): chosen {plain['chosen']['median_ms']:.2f} ms, reference "
                      f"{plain['reference']['median_ms']:.2f} ms, **x{plain['speedup']:.2f}**."]
    t = report["timings"]
    lines += ["", "Timings (s): " + ", ".join(f"{k.removesuffix('_s')} {v}" for k, v in t.items())
              + f"; supernet steps {report['supernet_training']['steps']}, fine-tune steps "
              + ", ".join(f"{k} {v['steps']}" for k, v in report["finetune"].items()) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(format_markdown(json.loads(Path(sys.argv[1]).read_text())), end="")
