"""``slimgan data synth``: write a procedural dataset."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="dataset tools (synthetic datasets)")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = data_sub.add_parser(
        "synth",
        help="write a procedural dataset (edge maps -> shaded shapes) in the pix2pix / CycleGAN layouts",
    )
    synth.add_argument("--task", choices=["paired", "unpaired", "unconditional"], required=True)
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--num", type=int, default=200, help="training samples (default 200)")
    synth.add_argument("--num-test", type=int, default=None, help="held-out samples (default max(8, num/10))")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from distill.data.synth import synthesize

    out = synthesize(args.task, args.out, num=args.num, size=args.size, seed=args.seed, num_test=args.num_test)
    print(f"wrote {args.task} dataset to {out}")
    return 0
