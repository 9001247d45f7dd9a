"""``slimgan bench ablation``: distillation methods side by side on the synthetic paired task.

Built on :mod:`benchmarks.distill_bench`: the same teacher (``configs/synth/pix2pix_teacher.yaml``,
resnet_6blocks ngf 32, trained once into ``<work>/teacher``), the same data split (``num`` training
pairs, 16 held-out pairs), the same run options and the same evaluation
(:func:`benchmarks.distill_bench.run_recipe`). One student (the same architecture at 1/4 width,
ngf 8), the same steps and seed for every row; every row sees all training pairs with their targets
(the papers' paired setting; ``slimgan bench distill`` is the one that limits scratch's labels).
Rows differ only in their recipe:

==========  ===================================================================================
scratch     no teacher: the teacher recipe at 1/4 width (pix2pix: adv + 100·|G_s(x) - y|₁)
l1          ``pix2pix_feature_kd.yaml`` without its feature term: adv + 100·|G_s(x) - G_t(x)|₁
feature     ``pix2pix_feature_kd.yaml`` (GAN Compression): adv + 100·|G_s - G_t|₁ + Σ_ℓ ||f_ℓ(G_s,ℓ) - G_t,ℓ||²
omgd        OMGD terms: 10·(1-SSIM) + 10·|G_s - G_t|₁ + 10·L_CD + 1e-5·TV (perceptual off: no weights)
vid         omgd + 0.1·L_VID (factorised Gaussian, y as the positive)
vem         omgd - 0.1·Ĩ(T;S) (energy net C = 8, K = 10 Langevin steps of size 100, noise 0.005)
crd         2.5·L_CRD + Adv(G_s, sg(D̄)) (perceptual off)
==========  ===================================================================================

Deviation kept for comparability: every row shares the one offline teacher, so CRD's D̄ is the
teacher's pretrained discriminator, frozen (crd Table 6 "pre-trained (freezing)"), CRD's teacher
selection has nothing to select (the teacher does not change), and OMGD / VEM / VID use no online
(wide + deep) teachers. Each row reports ``psnr_gt``, ``ssim_gt``, ``psnr_teacher`` (held-out set),
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

from benchmarks.distill_bench import CONFIGS, SCALES, SCRATCH_OVERRIDES, TEACHER_RECIPE, BenchSetup, Scale

log = logging.getLogger(__name__)

METHODS = ("scratch", "l1", "feature", "omgd", "vid", "vem", "crd")
FEATURE_RECIPE = CONFIGS / "pix2pix_feature_kd.yaml"

_OMGD = [
    {"name": "ssim", "weight": 10.0},
    {"name": "perceptual", "weight": 1.0, "vgg16": "off"},
    {"name": "l1_teachers", "weight": 10.0},
    {"name": "channel_distill", "weight": 10.0, "layers": ["model.9", "model.12", "model.15"]},
    {"name": "tv", "weight": 1.0e-5},
]

# rows whose recipe is a raw loss list on the shared student (no discriminator of its own)
LOSSES: dict[str, list[dict[str, Any]]] = {
    "omgd": _OMGD,
    "vid": [*_OMGD, {"name": "vid", "weight": 0.1, "to": "auto"}],
    "vem": [*_OMGD, {"name": "vem", "weight": 0.1, "to": "auto", "channels": 8, "langevin_steps": 10,
                     "step_size": 100.0, "noise_std": 0.005, "lr": 1.0e-4}],
    "crd": [{"name": "crd", "weight": 2.5}, {"name": "perceptual", "weight": 1.0, "vgg16": "off"},
            {"name": "teacher_adv", "weight": 1.0, "gan_mode": "lsgan", "conditional": True}],
}


def row_recipe(method: str, setup: BenchSetup, steps: int) -> tuple[Path | dict[str, Any], list[str], str]:
    """(recipe, extra overrides, kind) of one row; the shared overrides come from ``setup``."""
    if method not in METHODS:
        from distill.errors import ConfigError

        raise ConfigError(f"unknown ablation method {method!r}; choose from {', '.join(METHODS)}")
    common = [f"train.steps={steps}", f"train.log_every={max(1, steps // 10)}"]
    teacher = [f"teacher.checkpoint={setup.teacher_checkpoint}", "teacher.auto=null", "student.ngf=8"]
    if method == "scratch":
        return TEACHER_RECIPE, [*common, *SCRATCH_OVERRIDES], "train"
    if method == "feature":
        return FEATURE_RECIPE, [*common, *teacher], "distill"
    if method == "l1":
        import yaml

        raw = yaml.safe_load(FEATURE_RECIPE.read_text())
        raw["loss"] = [t for t in raw["loss"] if t["name"] != "feature_kd"]
        raw["description"] = "ablation row l1: the feature-KD recipe without its feature term"
        return raw, [*common, *teacher], "distill"
    raw: dict[str, Any] = {
        "description": f"ablation row {method}",
        "student": {"arch": "resnet_6blocks", "ngf": 8},
        "teacher": {"mode": "offline", "checkpoint": str(setup.teacher_checkpoint)},
        "loss": LOSSES[method],
        "train": {"lr": 2e-4, "beta1": 0.5},
    }
    if method == "crd":
        raw["teacher"]["discriminator"] = str(setup.teacher_discriminator)
    return raw, common, "distill"


def run_ablation(out: str | Path, methods: tuple[str, ...] = METHODS, scale: Scale = SCALES["quick"],
                 seed: int = 0, work: str | Path | None = None, inception_weights: str = "",
                 device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Train one student per method from the shared bench teacher; writes ``out`` (JSON) and ``out``.md."""
    from benchmarks.distill_bench import run_recipe, train_teacher
    from distill.errors import ConfigError

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown ablation method(s) {unknown}; choose from {', '.join(METHODS)}")
    out = Path(out)
    setup = BenchSetup(Path(work) if work else out.with_suffix("").parent / (out.stem + "_runs"), scale, seed, device,
                       progress)
    t0 = time.perf_counter()
    teacher_metrics, _ = train_teacher(setup)
    fid = [f"eval.inception_weights={inception_weights}"] if inception_weights else []
    rows = []
    for method in methods:
        recipe, overrides, kind = row_recipe(method, setup, scale.student_steps)
        log.info("ablation: %s (%d steps)", method, scale.student_steps)
        # every row trains a student, the scratch baseline included (run by the teacher recipe)
        run = run_recipe(setup, recipe, setup.work / method, [*overrides, *fid], kind, role="student")
        m = run["metrics"]
        rows.append({
            "method": method,
            "psnr_gt": m.get("psnr_gt"),
            "ssim_gt": m.get("ssim_gt"),
            "psnr_teacher": m.get("psnr_teacher"),
            "fid": m.get("fid") if inception_weights else None,
            "sec_per_step": run["sec_per_step"],
            "wall_s": run["seconds"],
            "steps": scale.student_steps,
        })
    report = {"task": "synthetic paired", "size": scale.size, "train_pairs": scale.num, "test_pairs": 16,
              "student": "resnet_6blocks ngf 8", "teacher": "resnet_6blocks ngf 32",
              "steps": scale.student_steps, "teacher_steps": scale.teacher_steps, "batch_size": 4, "seed": seed,
              "teacher_metrics": teacher_metrics, "total_wall_s": time.perf_counter() - t0, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(format_table(rows, report))
    return report


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
        lines.append(f"{report['task']}, {report['size']} px, {report.get('train_pairs')} training / "
                     f"{report.get('test_pairs')} held-out pairs; student {report['student']}, teacher "
                     f"{report['teacher']} ({report.get('teacher_steps')} steps, psnr_gt {_fmt(tm.get('psnr_gt'))}); "
                     f"{report['steps']} student steps, batch {report.get('batch_size')}, seed {report['seed']}; "
                     f"total wall {_fmt(report.get('total_wall_s'), 0)} s.")
    return "\n".join(lines) + "\n"


def register_ablation(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser(
        "ablation", help="distillation methods side by side (scratch, l1, feature, omgd, vid, vem, crd)",
        description="Trains one 1/4-width student per method from one teacher on the synthetic paired task, "
                    "same steps and seed; writes rows (psnr_gt, ssim_gt, psnr_teacher, fid, sec_per_step) "
                    "to --out and a markdown table next to it.")
    p.add_argument("--out", required=True, help="result JSON (a .md table is written beside it)")
    p.add_argument("--quick", action="store_true", help="the quick scale of slimgan bench distill (minutes on 2 CPU cores)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--steps", type=int, default=None,
                   help=f"student steps per row (default {SCALES['full'].student_steps}; --quick {SCALES['quick'].student_steps})")
    p.add_argument("--teacher-steps", type=int, default=None,
                   help=f"teacher steps (default {SCALES['full'].teacher_steps}; --quick {SCALES['quick'].teacher_steps})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help="folder for the runs (default: next to --out)")
    p.add_argument("--inception-weights", default="", help="pytorch-fid Inception weights: adds FID")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no training progress display")
    p.set_defaults(func=run_ablation_cli)


def run_ablation_cli(args: argparse.Namespace) -> int:
    from dataclasses import replace

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    scale = SCALES["quick" if args.quick else "full"]
    if args.steps:
        scale = replace(scale, student_steps=args.steps)
    if args.teacher_steps:
        scale = replace(scale, teacher_steps=args.teacher_steps)
    report = run_ablation(args.out, methods, scale, args.seed, work=args.work,
                          inception_weights=args.inception_weights, device=args.device, progress=args.progress)
    print(format_table(report["rows"], report), end="")
    return 0
