"""``slimgan bench distill``: the command line of the distillation benchmarks.

- ``--task paired`` / ``--task unconditional --data DIR``: :mod:`benchmarks.distill_bench` (slimgan trains the teacher);
- ``--task unconditional --teacher DIR``: :mod:`benchmarks.uncond_teacher_bench` (a user's generator, its samples
  as the data);
- ``--task translation --teacher DIR --photos DIR``: :mod:`benchmarks.translation_bench` (a user's translation
  generator on real photos).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from benchmarks.distill_bench import (
    SCALES,
    TASKS,
    UNCOND_SCALES,
    default_work,
    format_table,
    run_distill_bench,
)
from distill.errors import ConfigError, DatasetError


def register_distill(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser(
        "distill", help="teacher vs slim student trained alone vs distilled, same data, steps and seeds",
        description="paired (default): pix2pix teacher, a 1/4-width student trained alone (scratch) and the same "
                    "student distilled with feature KD, on the same training pairs (synthetic, or --data DIR, an "
                    "aligned folder with train/ and test/); psnr_gt/ssim_gt on held-out pairs. unconditional "
                    "(--data DIR with train/<label>/, test/<label>/, e.g. MNIST): DCGAN teacher, the slim DCGAN "
                    "alone, KD-GAN and DGL-GAN students; fid_classifier. Mean ± std over --seeds.")
    p.add_argument("--task", default="paired", choices=TASKS)
    p.add_argument("--data", default=None, help="paired: aligned folder (train/, test/); unconditional: class folders")
    p.add_argument("--teacher", default=None, metavar="DIR",
                   help="translation / unconditional: the teacher checkpoint directory (e.g. from slimgan import)")
    p.add_argument("--teacher-discriminator", default=None, metavar="DIR",
                   help="unconditional with --teacher: the teacher's discriminator (adds the dgl_gan row)")
    p.add_argument("--photos", default=None, metavar="DIR",
                   help="translation: a folder of photos (train/ and test/, or trainA/ and testA/, are used as given, else split)")
    p.add_argument("--methods", default=None,
                   help="translation: comma list of rows (default l1,feature,vem; also crd, mse); l1 is the baseline")
    p.add_argument("--res", type=int, default=None, help="translation: photos' short side in pixels (default 256)")
    p.add_argument("--crop", type=int, default=None, help="translation: training crop side (default 64)")
    p.add_argument("--batch", type=int, default=None, help="translation: crops per training step (default 16)")
    p.add_argument("--student-norm", default=None, choices=("batch", "instance"),
                   help="translation: the student's norm layers (default batch, as GAN Compression's pix2pix students)")
    p.add_argument("--max-train-photos", type=int, default=None,
                   help="translation: at most this many training photos, a fixed sample (default 200)")
    p.add_argument("--max-test-photos", type=int, default=None,
                   help="translation: at most this many held-out photos, a fixed sample (default 50)")
    p.add_argument("--jobs", type=int, default=None,
                   help="translation: rows trained at once, each in its own process with one torch thread "
                        "(default: one per CPU core, at most 4)")
    p.add_argument("--quick", action="store_true", help="small scale: a smoke test, labelled so (minutes on 2 CPU cores)")
    p.add_argument("--seeds", type=int, nargs="+", default=[3],
                   help="one number N: seeds 0..N-1; several: those seeds (default 3; also with --quick)")
    p.add_argument("--steps", type=int, default=None, help="student steps per row (default: the scale's)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="translation: minutes the whole run may take; a short calibration measures this host's "
                        "seconds a step and every row trains the largest shared step count that fits (default 70 "
                        "at the full scale without --steps; 0: no budget)")
    p.add_argument("--teacher-steps", type=int, default=None, help="teacher steps (default: the scale's)")
    p.add_argument("--out", required=True, help="result JSON file (a .md table is written beside it)")
    p.add_argument("--work", default=None, help="folder for data and runs (default: next to --out)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no training progress display")
    p.set_defaults(func=run_bench_distill)


def seed_list(values: list[int]) -> list[int]:
    """``--seeds N`` (one number): seeds 0..N-1; several numbers: exactly those seeds."""
    if len(values) == 1:
        if values[0] < 1:
            raise ConfigError(f"--seeds {values[0]}: one number is a count of seeds (0..N-1) and must be at least 1; "
                              "`--seeds 1` trains seed 0 alone")
        return list(range(values[0]))
    if len(set(values)) != len(values) or min(values) < 0:
        raise ConfigError(f"--seeds lists each seed once, none negative; got {values}")
    return list(values)


def run_bench_distill(args: argparse.Namespace) -> int:
    seeds = seed_list(args.seeds)
    if args.task == "translation":
        from benchmarks.translation_bench import run_translation_cli

        return run_translation_cli(args, seeds)
    if args.task == "unconditional" and args.teacher:
        return run_samples_cli(args, seeds)
    size = "quick" if args.quick else "full"
    scale = (SCALES if args.task == "paired" else UNCOND_SCALES)[size]
    for flag, field in ((args.steps, "student_steps"), (args.teacher_steps, "teacher_steps")):
        if flag is not None:
            if flag < 1:
                raise ConfigError(f"--{field.replace('student_', '').replace('_', '-')} must be at least 1, got {flag}")
            scale = replace(scale, **{field: flag})
    report = run_distill_bench(args.out, quick=args.quick, work=args.work, seeds=seeds, device=args.device,
                               task=args.task, data=args.data, scale=scale)
    print(format_table(report), end="")
    print(f"wrote {args.out}")
    return 0


def run_samples_cli(args: argparse.Namespace, seeds: list[int]) -> int:
    """``--task unconditional --teacher DIR``: students from the teacher's samples (``--data`` adds fid_classifier)."""
    from benchmarks.uncond_teacher_bench import SAMPLE_SCALES, format_samples_table, run_teacher_samples_bench

    scale = SAMPLE_SCALES["quick" if args.quick else "full"]
    if args.steps is not None:
        if args.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {args.steps}")
        scale = replace(scale, steps=args.steps)
    classifier = None
    work = Path(args.work) if args.work else default_work(Path(args.out))
    if args.data:
        from distill.metrics import ClassifierConfig, fit_folder_classifier

        data = Path(args.data).expanduser()
        if not data.is_dir():
            raise DatasetError(f"--data {data} is not a folder")
        classifier = fit_folder_classifier(data, ClassifierConfig(image_size=32, epochs=5), cache_dir=work / "classifier",
                                           device=args.device)
    if not args.progress:
        logging.getLogger("benchmarks.uncond_teacher_bench").setLevel(logging.WARNING)
    report = run_teacher_samples_bench(args.out, args.teacher, seeds, scale, work=work, device=args.device,
                                       teacher_disc=args.teacher_discriminator, quick=args.quick, classifier=classifier)
    print(format_samples_table(report), end="")
    print(f"wrote {args.out}")
    return 0
