"""``slimgan plot RUN``: redraw a run's loss curves and a labelled sample grid."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plot", help="draw a run's loss curves (from metrics.csv) and a labelled sample grid as PNGs",
        description="Writes RUN/loss_curves.png (every metrics.csv column against the step) and RUN/samples.png "
                    "(input | teacher | generator | target on held-out samples, titled with the step and metrics). "
                    "Runs draw both at their end; this redraws them, e.g. for a run made by an older slimgan.")
    p.add_argument("run", metavar="RUN", nargs="+", help="run directory (as written by slimgan train / distill)")
    p.add_argument("--no-samples", dest="samples", action="store_false",
                   help="only the loss curves (no model is loaded)")
    p.set_defaults(func=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from distill.engine.report import plot_run
    from distill.errors import ConfigError

    for run in args.run:
        if not (Path(run) / "metrics.csv").is_file():
            raise ConfigError(f"{run} is not a run directory: metrics.csv is missing")
        for name, path in plot_run(run, samples=args.samples).items():
            print(f"{name}: {path}")
    return 0
