"""``slimgan bench distill``: does distillation beat training the slim student alone?

The central experiment at small scale, on the synthetic paired task (edge map -> scene):

1. **teacher**: ``configs/synth/pix2pix_teacher.yaml`` (resnet_6blocks, ngf 32, GAN + 100·L1) on all
   ``num`` training pairs.
2. **scratch**: the same architecture at 1/4 width (ngf 8), same pix2pix objective, trained alone on
   the ``labelled`` pairs it is given (the student's own labelled budget).
3. **distilled**: the same student, ``configs/synth/pix2pix_feature_kd.yaml`` (GAN + 100·|G_s - G_t|₁ +
   feature KD with 1x1 adapters): the teacher provides targets on all ``num`` training inputs; the
   student never reads a ground-truth image. Same steps, batch and seed as scratch.

This is the knowledge-distillation setting (Hinton et al.; GAN Compression's unpaired recon): the
teacher's knowledge reaches the student through its outputs on inputs the student has no labels for.
All three are evaluated on the same held-out pairs (PSNR / SSIM to ground truth, and to the teacher).
Output: ``{"scratch": {"psnr_gt", "ssim_gt", ...}, "distilled": {...}, "teacher": {...}, "setup": {...}}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "synth"
TEACHER_RECIPE = CONFIGS / "pix2pix_teacher.yaml"
SCRATCH_OVERRIDES = ["generator.ngf=8", "discriminator.ndf=16"]  # the teacher recipe at 1/4 width


@dataclass(frozen=True)
class Scale:
    """Size of the experiment: steps, training pairs, scratch's labelled pairs, image side."""

    teacher_steps: int
    student_steps: int
    num: int
    labelled: int
    size: int


SCALES = {"quick": Scale(200, 200, 200, 16, 32), "full": Scale(1500, 1500, 400, 32, 32)}


@dataclass(frozen=True)
class BenchSetup:
    """The shared experiment: data split, run options, and the teacher every student learns from.

    ``overrides()`` are the ``--set`` items every run (teacher and students) gets: the same synthetic
    data (``num`` training pairs, 16 held-out pairs), seed, batch 4, device, and the same held-out
    evaluation (16 pairs, one batch). Students are evaluated by the engine's own evaluation.
    """

    work: Path
    scale: Scale
    seed: int = 0
    device: str = "cpu"
    progress: bool = False  # training progress lines / bars (the CLI turns them on; --no-progress off)

    @property
    def teacher_dir(self) -> Path:
        return self.work / "teacher"

    @property
    def teacher_checkpoint(self) -> Path:
        return self.teacher_dir / "teacher"

    @property
    def teacher_discriminator(self) -> Path:
        return self.teacher_dir / "discriminator"

    def overrides(self) -> list[str]:
        s = self.scale
        return [f"data.root={self.work / 'data'}", "data.layout=aligned", f"data.synth.num={s.num}",
                "data.synth.num_test=16", f"data.synth.size={s.size}", "data.synth.seed=0",
                f"train.seed={self.seed}", f"train.device={self.device}", f"train.progress={str(self.progress).lower()}",
                "train.sample_every=0", "train.eval_every=0", "train.save_every=0", "eval.num=16",
                "eval.batch_size=16", "train.batch_size=4"]


def train_teacher(setup: BenchSetup) -> tuple[dict[str, float], float]:
    """Train the pix2pix teacher (``pix2pix_teacher.yaml``) on all pairs; reuse it when already trained."""
    if _same_teacher(setup):
        log.info("bench: reusing the teacher in %s", setup.teacher_dir)
        return _last_eval(setup.teacher_dir), math.nan
    log.info("bench: teacher (%d steps on %d pairs)", setup.scale.teacher_steps, setup.scale.num)
    result = run_recipe(setup, TEACHER_RECIPE, setup.teacher_dir, [f"train.steps={setup.scale.teacher_steps}"],
                        "train")
    return result["metrics"], result["seconds"]


def _same_teacher(setup: BenchSetup) -> bool:
    """True when ``teacher_dir`` holds a finished teacher trained with this setup's steps, data and seed."""
    import yaml

    config = setup.teacher_dir / "config.yaml"
    if not (setup.teacher_checkpoint / "model.safetensors").is_file() or not config.is_file():
        return False
    raw = yaml.safe_load(config.read_text()) or {}
    train, synth = raw.get("train") or {}, (raw.get("data") or {}).get("synth") or {}
    s = setup.scale
    return (train.get("steps"), train.get("seed"), synth.get("num"), synth.get("size")) == (
        s.teacher_steps, setup.seed, s.num, s.size) and (setup.teacher_dir / "metrics.csv").is_file()


def run_recipe(setup: BenchSetup, recipe: Path | dict[str, Any], out: Path, overrides: list[str],
               kind: str = "distill", role: str | None = None) -> dict[str, Any]:
    """One engine run of ``recipe`` (a YAML path or a raw recipe dict) with the shared overrides.

    Returns ``{"metrics": {psnr_gt, ssim_gt, psnr_teacher, ...}, "seconds", "sec_per_step"}``. A run
    without a teacher generator (scratch) gets ``psnr_teacher`` / ``ssim_teacher`` from the same
    evaluation against the bench teacher, so every row is measured the same way.
    """
    from distill.engine.config import load_config
    from distill.engine.loop import run_training

    items = [*setup.overrides(), *overrides]
    if isinstance(recipe, dict):
        cfg, config_dir = load_config(raw=recipe, overrides=items), CONFIGS
    else:
        cfg, config_dir = load_config(recipe, items), recipe.parent
    start = time.perf_counter()
    result = run_training(cfg, out, kind=kind, config_dir=config_dir, distributed=False, role=role)
    seconds = time.perf_counter() - start
    metrics = {k[len("eval_"):]: v for k, v in result["metrics"].items() if k.startswith("eval_")}
    if "psnr_teacher" not in metrics and setup.teacher_checkpoint.is_dir() and out != setup.teacher_dir:
        metrics.update(teacher_agreement(setup, out / "student"))
    return {"metrics": metrics, "seconds": seconds, "sec_per_step": sec_per_step(out, cfg.train.steps)}


def teacher_agreement(setup: BenchSetup, student_dir: Path) -> dict[str, float]:
    """``psnr_teacher`` / ``ssim_teacher`` of a student checkpoint, by the engine's evaluation on the held-out pairs."""
    import torch

    from distill.checkpoint import load_checkpoint
    from distill.data.datasets import TransformConfig, build_dataset
    from distill.engine.data import eval_batches
    from distill.engine.evaluate import evaluate

    class _Pair:
        def __init__(self, student: torch.nn.Module, teacher: torch.nn.Module):
            self.student, self.teacher = student, teacher

        def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"student": self.student(x), "teacher": self.teacher(x)}

    test = build_dataset("aligned", setup.work / "data", "test", transform=TransformConfig(train=False))
    batches = eval_batches(test, 16, 16, None)
    metrics = evaluate(_Pair(load_checkpoint(student_dir), load_checkpoint(setup.teacher_checkpoint)), batches,
                       torch.device("cpu"))
    return {k: metrics[k] for k in ("psnr_teacher", "ssim_teacher")}


def sec_per_step(run_dir: Path, steps: int) -> float:
    """Steady-state training wall time per step from ``metrics.csv``: the median over the intervals between
    consecutive logged rows of Δtime_s / Δstep, leaving out the first row (one-off costs: kernel selection
    for new shapes) and the final row (its time includes the final evaluation). The median makes the
    figure robust to a burst of load from other processes on a shared machine.
    """
    import statistics

    path = run_dir / "metrics.csv"
    if not path.is_file():
        return math.nan
    timed = [(int(r["step"]), float(r["time_s"])) for r in csv.DictReader(path.open())
             if r.get("time_s") not in (None, "")]
    before = [t for t in timed if t[0] < steps]
    rates = [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(before, before[1:], strict=False) if s1 > s0]
    if rates:
        return statistics.median(rates)
    step, seconds = (before or timed or [(1, math.nan)])[-1]
    return seconds / max(1, step)


def _last_eval(run_dir: Path) -> dict[str, float]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    last = next((r for r in reversed(rows) if r.get("eval_psnr_gt")), {})
    return {k[5:]: float(v) for k, v in last.items() if k.startswith("eval_") and v not in ("", None)}


def default_work(out_json: Path) -> Path:
    return out_json.with_suffix("").with_name(out_json.stem + "_runs")


def run_distill_bench(out_json: str | Path, quick: bool = False, work: str | Path | None = None,
                      seed: int = 0, device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Train teacher, scratch and distilled students; write and return the results."""
    out_json = Path(out_json)
    scale = SCALES["quick" if quick else "full"]
    setup = BenchSetup(Path(work) if work else default_work(out_json), scale, seed, device, progress)
    steps = f"train.steps={scale.student_steps}"
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    results["teacher"], timings["teacher"] = train_teacher(setup)

    log.info("bench distill: scratch student (%d steps on %d labelled pairs)", scale.student_steps, scale.labelled)
    run = run_recipe(setup, TEACHER_RECIPE, setup.work / "scratch",
                     [steps, *SCRATCH_OVERRIDES, f"data.max_train={scale.labelled}"], "train", role="student")
    results["scratch"], timings["scratch"] = run["metrics"], run["seconds"]

    log.info("bench distill: distilled student (%d steps, teacher targets on %d inputs)", scale.student_steps, scale.num)
    run = run_recipe(setup, CONFIGS / "pix2pix_feature_kd.yaml", setup.work / "distilled",
                     [steps, f"teacher.checkpoint={setup.teacher_checkpoint}", "teacher.auto=null", "student.ngf=8"])
    results["distilled"], timings["distilled"] = run["metrics"], run["seconds"]

    report = {k: {m: round(v, 4) for m, v in results[k].items()} for k in ("scratch", "distilled", "teacher")}
    report["setup"] = {
        "task": f"synthetic paired edges->scenes, {scale.size} px, {scale.num} training pairs, 16 held-out pairs",
        "teacher": "resnet_6blocks ngf 32, pix2pix GAN + 100*L1, all pairs",
        "student": "resnet_6blocks ngf 8 (1/4 width)",
        "scratch": f"pix2pix GAN + 100*L1 on {scale.labelled} labelled pairs",
        "distilled": f"GAN + 100*L1 to teacher + feature KD (model.9/12/15, 1x1 adapters) on {scale.num} inputs, "
                     "no labels",
        "steps": {"teacher": scale.teacher_steps, "student": scale.student_steps}, "batch_size": 4, "seed": seed,
        "quick": quick, "seconds": {k: round(v, 1) if math.isfinite(v) else None for k, v in timings.items()},
    }
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    return report


def register_distill(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser(
        "distill", help="teacher vs slim student trained alone vs distilled, on the synthetic paired task",
        description="Trains a pix2pix teacher, a 1/4-width student alone on a few labelled pairs (scratch), and the "
                    "same student distilled with the feature-KD recipe from teacher outputs on all inputs "
                    "(distilled), same steps and seed; reports PSNR/SSIM on held-out pairs.")
    p.add_argument("--quick", action="store_true", help="small scale (a few minutes on 2 CPU cores)")
    p.add_argument("--out", required=True, help="result JSON file")
    p.add_argument("--work", default=None, help="folder for data and runs (default: next to --out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no training progress display")
    p.set_defaults(func=run_bench_distill)


def run_bench_distill(args: argparse.Namespace) -> int:
    report = run_distill_bench(args.out, quick=args.quick, work=args.work, seed=args.seed, device=args.device,
                               progress=args.progress)
    print(f"{'run':<10} {'psnr_gt':>8} {'ssim_gt':>8}")
    for name in ("teacher", "scratch", "distilled"):
        print(f"{name:<10} {report[name].get('psnr_gt', float('nan')):8.2f} {report[name].get('ssim_gt', float('nan')):8.4f}")
    print(f"wrote {args.out}")
    return 0
