"""``slimgan data synth`` (a procedural dataset) and ``slimgan data pairs`` (your photos -> edges | photo pairs)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="dataset tools (synthetic datasets, edge | photo pairs from photos)")
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
    pairs = data_sub.add_parser(
        "pairs", help="turn a folder of photos into the pix2pix aligned layout (edges | photo), as edges2shoes was made",
        description="Centre-crops and resizes every photo under PHOTOS (searched recursively), computes an edge map "
                    "and writes edges | photo side by side into OUT/train/ and OUT/test/, the layout "
                    "`data.layout: aligned` (slimgan train / distill) reads with the edges as the input.")
    pairs.add_argument("photos", metavar="PHOTOS", help="folder of photos (png, jpg, webp, ...)")
    pairs.add_argument("--out", required=True, help="dataset folder to write")
    pairs.add_argument("--edges", choices=["canny", "sobel", "hed-like"], default="canny",
                       help="edge detector (default canny; hed-like: soft multi-scale strokes)")
    pairs.add_argument("--size", type=int, default=256, help="side of each half in pixels (default 256)")
    pairs.add_argument("--test-fraction", type=float, default=0.1,
                       help="share of the photos held out in test/ (default 0.1, at least one)")
    pairs.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    pairs.set_defaults(func=run_pairs)


def run_synth(args: argparse.Namespace) -> int:
    from distill.data.synth import synthesize

    out = synthesize(args.task, args.out, num=args.num, size=args.size, seed=args.seed, num_test=args.num_test)
    print(f"wrote {args.task} dataset to {out}")
    return 0


def run_pairs(args: argparse.Namespace) -> int:
    from distill.data.pairs import make_pairs

    report = make_pairs(args.photos, args.out, edges=args.edges, size=args.size, test_fraction=args.test_fraction,
                        seed=args.seed)
    print(f"wrote {report.train} training and {report.test} held-out pairs ({report.edges} edges | photo, "
          f"{report.size} px) to {report.out}; train on it with data.root={report.out} data.layout=aligned")
    return 0
