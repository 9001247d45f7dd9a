"""``slimgan bench ablation``: distillation methods side by side on the synthetic paired task.

Built on :mod:`benchmarks.distill_bench`: the same data split (``num`` training pairs, 16 held-out
pairs), run options and evaluation (:func:`benchmarks.distill_bench.run_recipe`). Each seed is an
independent replicate: its own teacher (``configs/synth/pix2pix_teacher.yaml``, resnet_6blocks ngf 32,
trained into ``<work>/seed<s>/teacher``) and one student per row (the same architecture at 1/4 width,
ngf 8), the same steps, batch and seed for every row; every row sees all training pairs. Rows differ
only in their recipe; the loss terms of omgd / vid / vem are read from their recipes:

==========  ===================================================================================
scratch     no teacher: the teacher recipe at 1/4 width (pix2pix: adv + 100·|G_s(x) - y|₁)
l1          ``pix2pix_feature_kd.yaml`` without its feature term: adv + 100·|G_s(x) - G_t(x)|₁
feature     ``pix2pix_feature_kd.yaml`` (GAN Compression): adv + 100·|G_s - G_t|₁ + Σ_ℓ ||f_ℓ(G_s,ℓ) - G_t,ℓ||²
omgd        the student terms of ``omgd.yaml`` (SSIM, perceptual (off: no weights), channel distillation, TV, ...)
vid         omgd + 0.1·L_VID (factorised Gaussian, y as the positive)
vem         the student terms of ``vem.yaml``: omgd - 0.1·Ĩ(T;S) (energy net, Langevin steps)
crd         ``crd.yaml`` as the crd paper runs it: an online teacher G_t and D̄ trained from scratch beside
            the student (D̄ updated with G_t, frozen for the student), teacher selection;
            2.5·L_CRD + Adv(G_s, sg(D̄)) (perceptual off: no weights)
==========  ===================================================================================

Deviation kept for comparability: omgd / vid / vem distil from the seed's offline teacher, not from
OMGD's two online (wide + deep) teachers; the crd row's online teacher trains for the student's steps
from scratch, the offline teachers for ``teacher_steps``. Each row reports the mean and standard
deviation over seeds of ``psnr_gt``, ``ssim_gt``, ``psnr_teacher`` (held-out set; crd: to its own
online teacher, the one it learns from), ``fid`` (only with ``--inception-weights``, else null),
``sec_per_step`` (training wall time over steps, evaluation excluded) and ``wall_s``.
Results: ``--out FILE.json`` plus ``FILE.md`` (a markdown table).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

from benchmarks.distill_bench import (
    CONFIGS,
    FEATURE_RECIPE,
    SCALES,
    SCRATCH_OVERRIDES,
    TEACHER_RECIPE,
    BenchSetup,
    Scale,
    aggregate,
)
from benchmarks.report import format_cmp, vs_baseline, write_report

log = logging.getLogger(__name__)

METHODS = ("scratch", "l1", "feature", "omgd", "vid", "vem", "crd")
METRICS = ("psnr_gt", "ssim_gt", "psnr_teacher", "fid", "sec_per_step", "wall_s")
# the terms of each method as its recipe gives them (so a recipe fix reaches the ablation)
LOSS_RECIPES = {"omgd": CONFIGS / "omgd.yaml", "vid": CONFIGS / "omgd.yaml", "vem": CONFIGS / "vem.yaml"}
CRD_RECIPE = CONFIGS / "crd.yaml"
VID_TERM = {"name": "vid", "weight": 0.1, "to": "auto"}


def _recipe_losses(method: str) -> list[dict[str, Any]]:
    import yaml

    losses = list(yaml.safe_load(LOSS_RECIPES[method].read_text())["loss"])
    return [*losses, VID_TERM] if method == "vid" else losses


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
    if method == "crd":
        # as the crd paper runs it: an online teacher G_t and D̄ trained from scratch beside the student
        # (D̄ updated with G_t, frozen for the student), teacher selection every teacher.eval_every steps
        return CRD_RECIPE, [*common, "student.ngf=8"], "distill"
    raw: dict[str, Any] = {
        "description": f"ablation row {method}",
        "student": {"arch": "resnet_6blocks", "ngf": 8},
        "teacher": {"mode": "offline", "checkpoint": str(setup.teacher_checkpoint)},
        "loss": _recipe_losses(method),
        "train": {"lr": 2e-4, "beta1": 0.5},
    }
    return raw, common, "distill"


def run_ablation(out: str | Path, methods: tuple[str, ...] = METHODS, scale: Scale = SCALES["quick"],
                 seeds: int | list[int] = 3, work: str | Path | None = None, inception_weights: str = "",
                 device: str = "cpu") -> dict[str, Any]:
    """Train one student per method and seed (each seed with its own offline teacher, the CRD row with its
    own online one); writes ``out`` (JSON, mean ± std over seeds per row) and ``out``.md."""
    from benchmarks.distill_bench import run_recipe, train_teacher
    from distill.errors import ConfigError

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown ablation method(s) {unknown}; choose from {', '.join(METHODS)}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("--seeds must be at least 1")
    out = Path(out)
    work_dir = Path(work) if work else out.with_suffix("").parent / (out.stem + "_runs")
    t0 = time.perf_counter()
    fid = [f"eval.inception_weights={inception_weights}"] if inception_weights else []
    per: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    teachers = []
    for seed in seed_list:
        setup = BenchSetup(work_dir, scale, seed, device)
        teachers.append(train_teacher(setup)[0])
        for method in methods:
            recipe, overrides, kind = row_recipe(method, setup, scale.student_steps)
            log.info("ablation: seed %d %s (%d steps)", seed, method, scale.student_steps)
            run = run_recipe(setup, recipe, setup.seed_dir / method, [*overrides, *fid], kind)
            m = run["metrics"]
            per[method].append({"psnr_gt": m.get("psnr_gt", math.nan), "ssim_gt": m.get("ssim_gt", math.nan),
                                "psnr_teacher": m.get("psnr_teacher", math.nan),
                                "fid": m.get("fid", math.nan) if inception_weights else math.nan,
                                "sec_per_step": run["sec_per_step"], "wall_s": run["seconds"]})
    rows = [{"method": m, **aggregate(per[m], seed_list), "steps": scale.student_steps} for m in methods]
    report = {"task": "synthetic paired", "size": scale.size, "train_pairs": scale.num, "test_pairs": 16,
              "student": "resnet_6blocks ngf 8", "teacher": "resnet_6blocks ngf 32 (one per seed; crd: its own online one)",
              "steps": scale.student_steps, "teacher_steps": scale.teacher_steps, "batch_size": 4, "seeds": seed_list,
              "std": "sample standard deviation over seeds (ddof 1)",
              "teacher_metrics": aggregate(teachers, seed_list), "total_wall_s": time.perf_counter() - t0,
              "rows": rows}
    base = next((r for r in rows if r["method"] == "scratch"), None)
    for r in rows:
        if base is not None and r is not base:  # paired by seed: the same data, init seed and teacher
            r["vs_baseline"] = {m: vs_baseline(r, base, m) for m in ("psnr_gt", "psnr_teacher")}
    write_report(out, report, format_table(rows, report))
    return report


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _pm(r: dict[str, Any], key: str, digits: int = 2) -> str:
    v = r.get(key)
    return "-" if v is None else f"{v:.{digits}f} ± {r.get(key + '_std') or 0.0:.{digits}f}"


def format_table(rows: list[dict[str, Any]], report: dict[str, Any] | None = None) -> str:
    """Markdown table of the rows, ``mean ± std`` over seeds; ``x l1`` is the mean step-time ratio to ``l1``."""
    base = next((r["sec_per_step"] for r in rows if r["method"] == "l1"), None)
    lines = ["| method | psnr_gt | ssim_gt | psnr_teacher | fid | vs scratch: psnr_gt | sec/step | x l1 | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["sec_per_step"] / base if base and r.get("sec_per_step") is not None else None
        cmp = format_cmp((r.get("vs_baseline") or {}).get("psnr_gt"))
        lines.append(f"| {r['method']} | {_pm(r, 'psnr_gt')} | {_pm(r, 'ssim_gt', 3)} | {_pm(r, 'psnr_teacher')} | "
                     f"{_pm(r, 'fid')} | {cmp} | {_fmt(r.get('sec_per_step'), 3)} | {_fmt(ratio)} | {len(r['seeds'])} |")
    if report:
        tm = report.get("teacher_metrics") or {}
        lines.append("")
        lines.append(f"{report['task']}, {report['size']} px, {report.get('train_pairs')} training / "
                     f"{report.get('test_pairs')} held-out pairs; student {report['student']}, teacher "
                     f"{report['teacher']} ({report.get('teacher_steps')} steps, psnr_gt {_pm(tm, 'psnr_gt')}); "
                     f"{report['steps']} student steps, batch {report.get('batch_size')}, seeds {report['seeds']}; "
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
    p.add_argument("--seeds", type=int, default=3, help="independent seeds per row (default 3, also with --quick)")
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
    if args.seeds < 1:
        from distill.errors import ConfigError

        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    report = run_ablation(args.out, methods, scale, args.seeds, work=args.work,
                          inception_weights=args.inception_weights, device=args.device)
    print(format_table(report["rows"], report), end="")
    return 0
