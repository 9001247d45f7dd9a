"""``slimgan search``: latency-aware once-for-all search for a student that is fast on the runtime that ships.

The torch side (space, supernet, training, evolution) is :mod:`distill.search`; this package adds what
needs the export path (latency measured on the runtime), the run's orchestration and its report. This
module imports nothing heavy, so ``slimgan --help`` stays light.
"""

from __future__ import annotations

import argparse

RUNTIMES = ("openvino", "onnxruntime", "tflite", "ncnn")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search", help="latency-aware once-for-all search: the student that is fast on your runtime",
        description="Distil a once-for-all supernet from the teacher on the photos, score sub-networks without "
                    "retraining (psnr_teacher on held-out photos), time each one exported on --runtime beside "
                    "mobile_resnet_9blocks ngf 16, search the latency / fidelity Pareto front, fine-tune the chosen "
                    "student. Writes OUT/pareto.json, OUT/pareto.png, OUT/best/ (a checkpoint for slimgan export).",
    )
    p.add_argument("--teacher", required=True, metavar="DIR", help="teacher checkpoint (image-to-image generator)")
    p.add_argument("--photos", required=True, metavar="DIR", help="folder of photos (searched recursively)")
    p.add_argument("--runtime", required=True, choices=RUNTIMES, help="runtime the latency is measured on")
    p.add_argument("--threads", type=int, default=1, help="runtime threads for the timings (default 1)")
    p.add_argument("--res", type=int, default=256, help="side of the timed input and of the held-out crops (default 256)")
    p.add_argument("--budget-ms", type=float, default=None,
                   help="pick the most faithful candidate at or under this latency instead of the fastest within "
                        "0.3 dB of the reference")
    p.add_argument("--quick", action="store_true", help="a smoke test in minutes (labelled so in pareto.json)")
    p.add_argument("--config", metavar="YAML", help="search recipe (configs/search/*.yaml) on top of the defaults")
    p.add_argument("--latency-cache", metavar="JSON", help="latency cache shared across runs (default OUT/latency_cache.json)")
    p.add_argument("--latency-table", metavar="JSON",
                   help="device latency table standing in for host timings where it has an entry")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from slimgan.errors import ConfigError

    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: give 1 or more")
    if args.res < 16 or args.res % 4:
        raise ConfigError(f"--res {args.res}: give a multiple of 4, at least 16")
    if args.budget_ms is not None and args.budget_ms <= 0:
        raise ConfigError(f"--budget-ms {args.budget_ms}: give a positive number of milliseconds")
    from benchmarks.search.run import main

    return main(args)
