"""``slimgan prune``: a teacher checkpoint -> a narrower student of the same family, initialised from it."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prune", help="prune a teacher checkpoint into a narrower student initialised from its kept channels",
        description="Keeps the RATIO most important channels of every prunable channel group (found by tracing "
                    "the model, so residual and U-Net skip connections keep consistent channels) and writes a "
                    "checkpoint whose config.json records, under provenance.pruned, what was kept.")
    p.add_argument("teacher", metavar="TEACHER", help="teacher checkpoint directory")
    p.add_argument("--ratio", type=float, required=True, help="fraction of the width kept, e.g. 0.5")
    p.add_argument("--method", choices=["l1", "gradient", "content"], default="l1",
                   help="channel importance: weight L1 norm, first-order output sensitivity, or that inside a "
                        "content mask (default l1)")
    p.add_argument("--calib", metavar="DIR", help="images to score gradient/content on (image-to-image teachers; "
                                                  "latent generators use their own samples)")
    p.add_argument("--masks", metavar="DIR", help="content masks (white = content) for --method content, used in "
                                                  "sorted order for the scored samples")
    p.add_argument("--batches", type=int, default=4, help="scored batches (default 4)")
    p.add_argument("--batch-size", type=int, default=8, dest="batch_size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="STUDENT", help="student checkpoint directory to write")
    p.set_defaults(func=run_prune)


def run_prune(args: argparse.Namespace) -> int:
    from distill.profile import count_params
    from distill.prune import prune_checkpoint

    result = prune_checkpoint(args.teacher, args.out, args.ratio, args.method, calib=args.calib, masks=args.masks,
                              num_batches=args.batches, batch_size=args.batch_size, seed=args.seed)
    print(json.dumps({"out": args.out, "arch": result.student.slimgan_config["arch"],
                      "kwargs": result.student.slimgan_config["kwargs"], "params": count_params(result.student),
                      "groups_pruned": len(result.kept)}))
    return 0
