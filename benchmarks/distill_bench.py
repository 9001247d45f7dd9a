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
import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "synth"
# (teacher steps, student steps, training pairs, labelled pairs for scratch, image size)
SCALES = {"quick": (200, 200, 200, 16, 32), "full": (1500, 1500, 400, 32, 32)}


def _run(recipe: Path, out: Path, overrides: list[str], kind: str) -> tuple[dict[str, float], float]:
    from distill.engine.config import load_config
    from distill.engine.loop import run_training

    cfg = load_config(recipe, overrides)
    start = time.perf_counter()
    result = run_training(cfg, out, kind=kind, config_dir=recipe.parent, distributed=False)
    seconds = time.perf_counter() - start
    metrics = {k[len("eval_"):]: v for k, v in result["metrics"].items() if k.startswith("eval_")}
    return metrics, seconds


def run_distill_bench(out_json: str | Path, quick: bool = False, work: str | Path | None = None,
                      seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Train teacher, scratch and distilled students; write and return the results."""
    out_json = Path(out_json)
    work = Path(work) if work else out_json.with_suffix("").with_name(out_json.stem + "_runs")
    t_steps, s_steps, num, labelled, size = SCALES["quick" if quick else "full"]
    data = [f"data.root={work / 'data'}", "data.layout=aligned", f"data.synth.num={num}",
            "data.synth.num_test=16", f"data.synth.size={size}", "data.synth.seed=0"]
    common = [*data, f"train.seed={seed}", f"train.device={device}", "train.progress=false",
              "train.sample_every=0", "train.eval_every=0", "eval.num=16", "eval.batch_size=16",
              "train.batch_size=4"]
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}

    log.info("bench distill: teacher (%d steps on %d pairs)", t_steps, num)
    results["teacher"], timings["teacher"] = _run(
        CONFIGS / "pix2pix_teacher.yaml", work / "teacher", [*common, f"train.steps={t_steps}"], "train")
    teacher_ckpt = work / "teacher" / "student"

    log.info("bench distill: scratch student (%d steps on %d labelled pairs)", s_steps, labelled)
    results["scratch"], timings["scratch"] = _run(
        CONFIGS / "pix2pix_teacher.yaml", work / "scratch",
        [*common, f"train.steps={s_steps}", "generator.ngf=8", "discriminator.ndf=16", f"data.max_train={labelled}"],
        "train")
    # teacher-relative metrics for scratch too: evaluate it against the teacher on the same inputs
    results["scratch"].update(_teacher_agreement(work / "scratch" / "student", teacher_ckpt, work, size))

    log.info("bench distill: distilled student (%d steps, teacher targets on %d inputs)", s_steps, num)
    results["distilled"], timings["distilled"] = _run(
        CONFIGS / "pix2pix_feature_kd.yaml", work / "distilled",
        [*common, f"train.steps={s_steps}", f"teacher.checkpoint={teacher_ckpt}", "teacher.auto=null",
         "student.ngf=8"], "distill")

    report = {k: {m: round(v, 4) for m, v in results[k].items()} for k in ("scratch", "distilled", "teacher")}
    report["setup"] = {
        "task": f"synthetic paired edges->scenes, {size} px, {num} training pairs, 16 held-out pairs",
        "teacher": "resnet_6blocks ngf 32, pix2pix GAN + 100*L1, all pairs",
        "student": "resnet_6blocks ngf 8 (1/4 width)",
        "scratch": f"pix2pix GAN + 100*L1 on {labelled} labelled pairs",
        "distilled": f"GAN + 100*L1 to teacher + feature KD (model.9/12/15, 1x1 adapters) on {num} inputs, no labels",
        "steps": {"teacher": t_steps, "student": s_steps}, "batch_size": 4, "seed": seed, "quick": quick,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _teacher_agreement(student_dir: Path, teacher_dir: Path, work: Path, size: int) -> dict[str, float]:
    import torch

    from distill.checkpoint import load_checkpoint
    from distill.data.datasets import TransformConfig, build_dataset
    from distill.metrics import psnr, ssim

    test = build_dataset("aligned", work / "data", "test", transform=TransformConfig(train=False))
    a = torch.stack([test[i]["A"] for i in range(min(16, len(test)))])
    with torch.no_grad():
        s, t = load_checkpoint(student_dir)(a), load_checkpoint(teacher_dir)(a)
    return {"psnr_teacher": psnr(s, t), "ssim_teacher": ssim(s, t)}


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
    p.set_defaults(func=run_bench_distill)


def run_bench_distill(args: argparse.Namespace) -> int:
    report = run_distill_bench(args.out, quick=args.quick, work=args.work, seed=args.seed, device=args.device)
    print(f"{'run':<10} {'psnr_gt':>8} {'ssim_gt':>8}")
    for name in ("teacher", "scratch", "distilled"):
        print(f"{name:<10} {report[name].get('psnr_gt', float('nan')):8.2f} {report[name].get('ssim_gt', float('nan')):8.4f}")
    print(f"wrote {args.out}")
    return 0
