"""``slimgan bench ablation``: distillation methods side by side on the synthetic paired task.

One teacher (the engine's ``configs/synth/pix2pix_teacher.yaml``, resnet_6blocks ngf 32, trained once
through ``teacher.auto`` into ``<work>/teacher``), one student (the same architecture at 1/4 width,
ngf 8), the same data, steps and seed for every row. Each row is an ordinary engine run
(:func:`distill.engine.loop.run_training`) whose recipe differs only in its ``loss`` list, so the
numbers come from the same loop, evaluation and metrics as ``slimgan distill``:

==========  ===================================================================================
scratch     no teacher: pix2pix objective, adv + 100·|G_s(x) - y|₁
l1          adv + 10·|G_s(x) - G_t(x)|₁
feature     GAN Compression: adv + 10·|G_s - G_t|₁ + Σ_ℓ ||f_ℓ(G_s,ℓ) - G_t,ℓ||² (1x1 adapters)
omgd        OMGD terms: 10·(1-SSIM) + 10·|G_s - G_t|₁ + 10·L_CD + 1e-5·TV (perceptual off: no weights)
vid         omgd + 0.1·L_VID (factorised Gaussian, y as the positive)
vem         omgd - 0.1·Ĩ(T;S) (energy net C = 8, K = 10 Langevin steps of size 100, noise 0.005)
crd         2.5·L_CRD + Adv(G_s, sg(D̄)) (perceptual off)
==========  ===================================================================================

Deviation kept for comparability: every row shares the one offline teacher, so CRD's D̄ is the
teacher's pretrained discriminator, frozen (crd Table 6 "pre-trained (freezing)"), and OMGD / VEM / VID
use no online teacher. Each row reports ``psnr_gt``, ``ssim_gt``, ``psnr_teacher`` (held-out set),
``fid`` (only with ``--inception-weights``, else null) and ``sec_per_step`` (training wall time over
steps, evaluation excluded). Results: ``--out FILE.json`` plus ``FILE.md`` (a markdown table).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METHODS = ("scratch", "l1", "feature", "omgd", "vid", "vem", "crd")

_OMGD = [
    {"name": "ssim", "weight": 10.0},
    {"name": "perceptual", "weight": 1.0, "vgg16": "off"},
    {"name": "l1_teachers", "weight": 10.0},
    {"name": "channel_distill", "weight": 10.0, "layers": ["model.9", "model.12", "model.15"]},
    {"name": "tv", "weight": 1.0e-5},
]
_ADV = {"name": "adv", "weight": 1.0}

LOSSES: dict[str, list[dict[str, Any]]] = {
    "scratch": [_ADV, {"name": "l1_target", "weight": 100.0}],
    "l1": [_ADV, {"name": "l1_teacher", "weight": 10.0}],
    "feature": [_ADV, {"name": "l1_teacher", "weight": 10.0},
                {"name": "feature_kd", "weight": 1.0, "layers": ["model.9", "model.12", "model.15"]}],
    "omgd": _OMGD,
    "vid": [*_OMGD, {"name": "vid", "weight": 0.1, "to": "auto"}],
    "vem": [*_OMGD, {"name": "vem", "weight": 0.1, "to": "auto", "channels": 8, "langevin_steps": 10,
                     "step_size": 100.0, "noise_std": 0.005, "lr": 1.0e-4}],
    "crd": [{"name": "crd", "weight": 2.5}, {"name": "perceptual", "weight": 1.0, "vgg16": "off"},
            {"name": "teacher_adv", "weight": 1.0, "gan_mode": "lsgan", "conditional": True}],
}
USES_D = {"scratch", "l1", "feature"}


def recipe(method: str, work: Path, steps: int, teacher_steps: int, seed: int, size: int,
           inception_weights: str = "") -> dict[str, Any]:
    """The raw recipe of one row (a dict ``load_config(raw=...)`` accepts)."""
    from distill.engine.config import RunConfig  # noqa: F401  (fail early if the engine is absent)

    configs = Path(__file__).resolve().parent.parent / "configs" / "synth"
    raw: dict[str, Any] = {
        "description": f"ablation row {method}",
        "data": {"root": str(work / "data"), "layout": "aligned",
                 "synth": {"task": "paired", "num": 200, "num_test": 16, "size": size, "seed": 0}},
        "student": {"arch": "resnet_6blocks", "ngf": 8},
        "loss": LOSSES[method],
        "train": {"steps": steps, "batch_size": 4, "lr": 2e-4, "beta1": 0.5, "log_every": max(1, steps // 10),
                  "sample_every": 0, "eval_every": 0, "save_every": 0, "seed": seed, "progress": False},
        "eval": {"num": 16, "inception_weights": inception_weights},
    }
    if method in USES_D:
        raw["discriminator"] = {"arch": "basic", "ndf": 16, "gan_mode": "lsgan", "conditional": True}
    if method == "scratch":
        raw["teacher"] = {"mode": "none"}
    else:
        teacher = {"mode": "offline", "checkpoint": str(work / "teacher" / "student"),
                   "auto": {"recipe": str(configs / "pix2pix_teacher.yaml"), "steps": teacher_steps,
                            "out": str(work / "teacher")}}
        if method == "crd":
            teacher["discriminator"] = str(work / "teacher" / "discriminator")
        raw["teacher"] = teacher
    return raw


def _sec_per_step(run_dir: Path, steps: int) -> float:
    """Training wall time per step from the run's metrics.csv (``time_s`` of the last logged row)."""
    import csv

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    timed = [(int(r["step"]), float(r["time_s"])) for r in rows if r.get("time_s") not in (None, "")]
    if not timed:
        return math.nan
    step, seconds = timed[-1]
    return seconds / max(1, step)


def run_ablation(out: str | Path, methods: tuple[str, ...] = METHODS, steps: int = 1000, teacher_steps: int = 300,
                 seed: int = 0, size: int = 32, work: str | Path | None = None,
                 inception_weights: str = "") -> list[dict[str, Any]]:
    """Train one student per method and return the rows; writes ``out`` (JSON) and ``out``.md."""
    from distill.engine.config import load_config
    from distill.engine.loop import run_training
    from distill.errors import ConfigError

    unknown = [m for m in methods if m not in LOSSES]
    if unknown:
        raise ConfigError(f"unknown ablation method(s) {unknown}; choose from {', '.join(METHODS)}")
    out = Path(out)
    work = Path(work) if work else out.with_suffix("").parent / (out.stem + "_runs")
    rows = []
    for method in methods:
        config = load_config(raw=recipe(method, work, steps, teacher_steps, seed, size, inception_weights))
        run_dir = work / method
        log.info("ablation: %s (%d steps)", method, steps)
        t0 = time.perf_counter()
        result = run_training(config, run_dir, kind="train" if method == "scratch" else "distill",
                              distributed=False)
        m = result["metrics"]
        rows.append({
            "method": method,
            "psnr_gt": m.get("eval_psnr_gt"),
            "ssim_gt": m.get("eval_ssim_gt"),
            "psnr_teacher": m.get("eval_psnr_teacher"),
            "fid": m.get("eval_fid") if inception_weights else None,
            "sec_per_step": _sec_per_step(run_dir, steps),
            "wall_s": time.perf_counter() - t0,
            "steps": steps,
        })
    # the teacher itself, for reference (its psnr to the ground truth)
    teacher_metrics = _teacher_reference(work)
    report = {"task": "synthetic paired", "size": size, "student": "resnet_6blocks ngf 8",
              "teacher": "resnet_6blocks ngf 32", "steps": steps, "teacher_steps": teacher_steps, "seed": seed,
              "teacher_metrics": teacher_metrics, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(format_table(rows, report))
    return rows


def _teacher_reference(work: Path) -> dict[str, float]:
    import csv

    path = work / "teacher" / "metrics.csv"
    if not path.is_file():
        return {}
    rows = list(csv.DictReader(path.open()))
    last = next((r for r in reversed(rows) if r.get("eval_psnr_gt")), {})
    return {k[5:]: float(v) for k, v in last.items() if k.startswith("eval_") and v not in ("", None)}


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def format_table(rows: list[dict[str, Any]], report: dict[str, Any] | None = None) -> str:
    """Markdown table of the rows; ``x l1`` is the step-time ratio to the ``l1`` row."""
    base = next((r["sec_per_step"] for r in rows if r["method"] == "l1"), None)
    lines = ["| method | psnr_gt | ssim_gt | psnr_teacher | fid | sec/step | x l1 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["sec_per_step"] / base if base else None
        lines.append(f"| {r['method']} | {_fmt(r['psnr_gt'])} | {_fmt(r['ssim_gt'], 3)} | {_fmt(r['psnr_teacher'])} | "
                     f"{_fmt(r['fid'])} | {_fmt(r['sec_per_step'], 3)} | {_fmt(ratio)} |")
    if report:
        tm = report.get("teacher_metrics") or {}
        lines.append("")
        lines.append(f"{report['task']}, {report['size']} px; student {report['student']}, teacher {report['teacher']}"
                     f" (psnr_gt {_fmt(tm.get('psnr_gt'))}); {report['steps']} steps, seed {report['seed']}.")
    return "\n".join(lines) + "\n"


def register_ablation(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser(
        "ablation", help="distillation methods side by side (scratch, l1, feature, omgd, vid, vem, crd)",
        description="Trains one 1/4-width student per method from one teacher on the synthetic paired task, "
                    "same steps and seed; writes rows (psnr_gt, ssim_gt, psnr_teacher, fid, sec_per_step) "
                    "to --out and a markdown table next to it.")
    p.add_argument("--out", required=True, help="result JSON (a .md table is written beside it)")
    p.add_argument("--quick", action="store_true", help="few steps: minutes on a laptop CPU")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--steps", type=int, default=None, help="student steps per row (default 1000; --quick 100)")
    p.add_argument("--teacher-steps", type=int, default=None, help="teacher steps (default 600; --quick 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help="folder for the runs (default: next to --out)")
    p.add_argument("--inception-weights", default="", help="pytorch-fid Inception weights: adds FID")
    p.set_defaults(func=run_ablation_cli)


def run_ablation_cli(args: argparse.Namespace) -> int:
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    steps = args.steps or (100 if args.quick else 1000)
    teacher_steps = args.teacher_steps or (200 if args.quick else 600)
    rows = run_ablation(args.out, methods, steps, teacher_steps, args.seed, work=args.work,
                        inception_weights=args.inception_weights)
    report = json.loads(Path(args.out).read_text())
    print(format_table(rows, report), end="")
    return 0
