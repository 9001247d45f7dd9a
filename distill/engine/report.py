"""The pictures of a finished run: ``loss_curves.png`` from ``metrics.csv`` and a labelled ``samples.png`` of its
final generator (and teacher) on held-out data. The training loop draws them at the end of every run, and
``slimgan plot RUN`` redraws them. The drawing itself is :mod:`distill.plots`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from distill.checkpoint import checkpoint_role, load_checkpoint
from distill.engine.builders import latent_size
from distill.engine.config import load_config, resolve_path
from distill.engine.data import build_split, eval_batches
from distill.engine.evaluate import write_sample_grid
from distill.engine.layout import trained_generator_dir
from distill.plots import LOSS_CURVES_NAME, SAMPLES_NAME, plot_loss_curves, read_metrics

log = logging.getLogger(__name__)


def _run_teacher(run: Path, config: Any) -> Path | None:
    tcfg = config.teacher
    if tcfg.mode == "online" and (run / "teacher" / "config.json").is_file():
        return run / "teacher"
    if tcfg.mode != "offline" or not tcfg.use_generator:
        return None
    if tcfg.checkpoint:
        p = resolve_path(tcfg.checkpoint, run)
    elif tcfg.auto is not None:
        p = trained_generator_dir(resolve_path(tcfg.auto.out, run))
    else:
        return None
    return p if (p / "config.json").is_file() else None


def render_run_samples(run: str | Path, path: str | Path | None = None, num: int = 4) -> Path | None:
    """A labelled grid of the run's final generator (and teacher) on the first held-out samples."""
    run = Path(run)
    config = load_config(run / "config.yaml")
    gen_dir = trained_generator_dir(run)
    if not (gen_dir / "config.json").is_file():
        return None
    generator = load_checkpoint(gen_dir)
    teacher_dir = _run_teacher(run, config)
    teacher = load_checkpoint(teacher_dir) if teacher_dir is not None and teacher_dir != gen_dir else None
    test = build_split(config.data, resolve_path(config.data.root, run), "test", config.train.seed)
    batches = eval_batches(test, num, num, latent_size(generator))
    if not batches:
        return None

    class _Pair:
        @torch.no_grad()
        def predict(self, real_a: torch.Tensor) -> dict[str, torch.Tensor]:
            out = {"student": generator(real_a)}
            if teacher is not None:
                out["teacher"] = teacher(real_a)
            return out

    step = (generator.slimgan_checkpoint["config"].get("provenance") or {}).get("step")
    rows = read_metrics(run / "metrics.csv") if (run / "metrics.csv").is_file() else []
    last_eval = next((r for r in reversed(rows) if any(k.startswith("eval_") for k in r)), {})
    return write_sample_grid(_Pair(), batches[0], Path(path or run / SAMPLES_NAME), torch.device("cpu"), num,
                             step=step, metrics=last_eval, generator_label=checkpoint_role(gen_dir),
                             title=f"{run.name}: {generator.slimgan_config['arch']}")


def plot_run(run: str | Path, samples: bool = False) -> dict[str, Path]:
    """``RUN/loss_curves.png`` from ``metrics.csv`` (and, with ``samples``, a fresh ``RUN/samples.png``)."""
    run = Path(run)
    written: dict[str, Path] = {}
    if (run / "metrics.csv").is_file():
        written["loss_curves"] = plot_loss_curves(run / "metrics.csv", run / LOSS_CURVES_NAME)
    if samples and (run / "config.yaml").is_file():
        grid = render_run_samples(run)
        if grid is not None:
            written["samples"] = grid
    return written


def write_run_plots(out: Path) -> None:
    """``loss_curves.png`` and a labelled ``samples.png`` for the finished run (``slimgan plot RUN``)."""
    try:
        plot_run(out)
    except Exception as exc:  # noqa: BLE001 - a picture that cannot be drawn must not fail a finished run
        log.warning("could not draw the run's plots (%s); `slimgan plot %s` retries", exc, out)
