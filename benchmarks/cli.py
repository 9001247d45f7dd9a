"""``slimgan bench``: latency and quality benchmarks (and more subcommands registered the same way).

Adding a subcommand is two lines: a ``register_<name>(bench_subparsers)`` function in some module and
its entry in :data:`BENCH_COMMANDS`. Nothing heavy is imported at module level.

    slimgan bench latency BUNDLE [BUNDLE ...] --teacher BUNDLE --backends torch,ort --threads 1,2,4 \\
        --batch 1,4 --res 256 --predict orin-nano,phone-cpu --out DIR
    slimgan bench quality CKPT_OR_BUNDLE [...] --data ROOT --inception-weights PATH --out DIR
"""

from __future__ import annotations

import argparse
import importlib

# "module:function" registering a ``bench`` subcommand on the bench subparsers.
BENCH_COMMANDS = [
    "benchmarks.cli:register_latency",
    "benchmarks.cli:register_quality",
    "benchmarks.ablation:register_ablation",
    "benchmarks.distill_cli:register_distill",
]


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _str_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="latency and quality benchmarks",
                                  description="Benchmark exported bundles and checkpoints.")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND")
    bench.set_defaults(func=lambda args: bench.print_help() or 2)
    for spec in BENCH_COMMANDS:
        module, _, fn = spec.partition(":")
        getattr(importlib.import_module(module), fn)(bench_sub)


def register_latency(bench_sub: argparse._SubParsersAction) -> None:
    from benchmarks.devices import DEVICES, PROFILES

    p = bench_sub.add_parser(
        "latency", help="trtexec-style latency of bundles per backend/threads/batch",
        description="Timed warm-up, then >= --min-runs and >= --min-time seconds of timed runs per cell; "
                    "median first, then mean/p90/p95/p99 and throughput. Writes latency.json, latency.md "
                    "and latency.png. Backends that cannot run here are skipped with a reason.",
    )
    p.add_argument("models", nargs="*", metavar="BUNDLE", help="bundle directories (manifest.json)")
    p.add_argument("--models", dest="models_opt", nargs="+", default=[], metavar="BUNDLE",
                   help="bundle directories (same as the positional arguments)")
    p.add_argument("--teacher", metavar="BUNDLE", help="teacher bundle: students get speedup and MAC ratio")
    p.add_argument("--profile", choices=sorted(PROFILES),
                   help="device profile filling --backends/--threads: " +
                        "; ".join(f"{k}: {v['description']}" for k, v in PROFILES.items()))
    p.add_argument("--backends", type=_str_list, help="comma list of torch,ort,ort-fp16,ort-int8,openvino,openvino-int8,cuda,trt, "
                   "and the phone runtimes tflite,tflite-fp16,ncnn,executorch,ort-mobile,coreml (host measurements of their "
                   "own kernels) (default torch,ort)")
    p.add_argument("--threads", type=_int_list,
                   help="comma list of CPU threads, 0 = all cores (default 1,2,4); counts above this machine's "
                        "cores are measured at the cores, and the report says so")
    p.add_argument("--batch", type=_int_list, default=[1], help="comma list of batch sizes (default 1)")
    p.add_argument("--res", type=int, default=None,
                   help="input height = width (default: the side the first bundle was exported and checked at, "
                        "else 256)")
    p.add_argument("--warmup", type=float, default=0.2, help="warm-up seconds (default 0.2)")
    p.add_argument("--min-runs", type=int, default=10, help="minimum timed runs per cell (default 10)")
    p.add_argument("--min-time", type=float, default=1.0, help="minimum timed seconds per cell (default 1.0)")
    p.add_argument("--max-runs", type=int, default=1000, help="stop after this many timed runs (default 1000)")
    p.add_argument("--predict", type=_str_list, default=[],
                   help=f"roofline predictions (labelled 'predicted') for: {', '.join(DEVICES)}")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no per-cell progress lines (the table is still printed)")
    p.set_defaults(func=run_latency)


def register_quality(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser(
        "quality", help="FID, KID, IS, Variance of Laplacian, PSNR/SSIM (to ground truth and teacher), mIoU",
        description="Each model is a checkpoint directory (torch) or a bundle (ONNX Runtime). Without the "
                    "Inception weight file FID/KID/IS are reported as unavailable.",
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="checkpoint or bundle directories")
    p.add_argument("--models", dest="models_opt", nargs="+", default=[], metavar="MODEL")
    p.add_argument("--teacher", metavar="MODEL", help="teacher: students also get PSNR/SSIM to its outputs")
    p.add_argument("--data", required=True, help="dataset root (aligned, unaligned or folder layout)")
    p.add_argument("--layout", default="aligned", choices=["aligned", "unaligned", "folder"])
    p.add_argument("--phase", default="test")
    p.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"])
    p.add_argument("--res", type=int, default=None,
                   help="resize images to this side (default: the data's own size, recorded in quality.json)")
    p.add_argument("--num", type=int, help="use the first N images (default all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--inception-weights", metavar="PATH",
                   help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or $SLIMGAN_INCEPTION_WEIGHTS)")
    p.add_argument("--stats-cache", metavar="DIR", help="reference-statistics cache (default ~/.cache/slimgan)")
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--seg-model", metavar="MODULE:FUNCTION",
                   help="segmenter: images (B,3,H,W) in [-1,1] -> class map (B,H,W) or logits (B,K,H,W)")
    p.add_argument("--num-classes", type=int, help="classes of --seg-model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress lines")
    p.set_defaults(func=run_quality)


def _models(args: argparse.Namespace) -> list[str]:
    from distill.errors import ConfigError

    models = list(args.models) + list(args.models_opt)
    if not models and not args.teacher:
        raise ConfigError("give at least one model directory (positional or --models)")
    return models


def _quiet_unless(progress: bool, logger: str) -> None:
    import logging

    if not progress:
        logging.getLogger(logger).setLevel(logging.WARNING)


def _export_res(models: list[str], teacher: str | None) -> int:
    """The side the first bundle's MACs (and parity) were counted at, so a 64 px model is timed at 64 px."""
    from export.manifest import Manifest

    for path in [*models, *([teacher] if teacher else [])]:
        try:
            shape = Manifest.load(path).macs_input_shape
        except Exception:  # noqa: BLE001 - an unreadable bundle fails later with its own message
            continue
        if shape and len(shape) == 4:
            return int(shape[2])
    return 256


def run_latency(args: argparse.Namespace) -> int:
    from benchmarks.devices import PROFILES
    from benchmarks.latency import LatencyConfig, benchmark_latency, format_latency_table

    _quiet_unless(args.progress, "benchmarks.latency")
    profile = PROFILES[args.profile] if args.profile else {}
    models = _models(args)
    cfg = LatencyConfig(
        backends=args.backends or profile.get("backends", ["torch", "ort"]),
        threads=args.threads or profile.get("threads", [1, 2, 4]),
        batches=args.batch, res=args.res or _export_res(models, args.teacher), warmup_s=args.warmup, min_runs=args.min_runs,
        min_time_s=args.min_time, max_runs=args.max_runs, predict=args.predict,
    )
    report = benchmark_latency(models, args.out, cfg, teacher=args.teacher)
    print(format_latency_table(report), end="")
    print(f"wrote {args.out}/latency.json, latency.md, latency.png")
    return 0


def run_quality(args: argparse.Namespace) -> int:
    from benchmarks.quality import evaluate_models, format_quality_table

    _quiet_unless(args.progress, "benchmarks.quality")

    report = evaluate_models(
        _models(args), args.data, args.out, layout=args.layout, phase=args.phase, direction=args.direction,
        teacher=args.teacher, res=args.res, num=args.num, batch_size=args.batch_size,
        weights_path=args.inception_weights, cache_dir=args.stats_cache, seg_model=args.seg_model,
        num_classes=args.num_classes, seed=args.seed, kid_subset_size=args.kid_subset_size,
    )
    print(format_quality_table(report), end="")
    print(f"wrote {args.out}/quality.json, quality.md")
    return 0
