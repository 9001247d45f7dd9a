"""``slimgan train`` (teachers) and ``slimgan distill`` (teacher -> slim student): the same engine."""

from __future__ import annotations

import argparse
import json


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML recipe (see configs/)")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe field, e.g. --set train.steps=200 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/state.pt at the same step")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda[:N] (default: the recipe's train.device)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar or per-log_every progress lines (same as --set train.progress=false)")


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train a teacher (pix2pix, CycleGAN, unconditional GAN) from a recipe",
        description="Runs the training engine on a teacher recipe; writes config.yaml, metrics.csv, samples/, "
                    "teacher/ (the trained generator), discriminator/, best/ and state.pt into --out.")
    _add_common(train)
    train.add_argument("--role", choices=["teacher", "student"], default="teacher",
                       help="what the trained generator is (default teacher; student for a small model trained "
                            "from scratch as a baseline): names RUN/<role>/ and is recorded in its provenance")
    train.set_defaults(func=run_train)
    distill = subparsers.add_parser(
        "distill", help="distill a teacher into a slim student from a recipe",
        description="Composes the recipe's loss terms on one training loop; writes config.yaml, metrics.csv, "
                    "samples/, student/ (checkpoint), best/, state.pt and loss_curves.png into --out. Works under "
                    "torchrun. A second run on an --out that a live run holds (RUN/.slimgan.lock) stops at once.")
    _add_common(distill)
    distill.set_defaults(func=run_distill)


def _run(args: argparse.Namespace, kind: str) -> int:
    from pathlib import Path

    from distill.engine.config import load_config
    from distill.engine.loop import run_training

    overrides = list(args.overrides) + ([] if args.progress else ["train.progress=false"])
    config = load_config(args.config, overrides)
    result = run_training(config, args.out, resume=args.resume, device=args.device, kind=kind,
                          config_dir=Path(args.config).resolve().parent, role=getattr(args, "role", None))
    if result.get("metrics"):
        summary = {k: round(v, 4) for k, v in result["metrics"].items() if k.startswith("eval_")}
        print(json.dumps({"out": result["out"], "step": result["step"], **summary}))
    return 0


def run_train(args: argparse.Namespace) -> int:
    return _run(args, "train")


def run_distill(args: argparse.Namespace) -> int:
    return _run(args, "distill")
