"""Held-out evaluation during training, and sample grids.

Metrics: ``psnr_teacher`` / ``ssim_teacher`` (student vs teacher on the same input), ``psnr_gt`` /
``ssim_gt`` (vs ground truth, paired data), ``vol`` / ``vol_teacher`` (Variance of Laplacian:
sharpness, KD-GAN §4.3), ``fid`` when ``eval.inception_weights`` is set (:mod:`distill.metrics.fid`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from distill.data.datasets import to_image
from distill.engine.data import Batch
from distill.metrics import psnr, ssim, variance_of_laplacian


def _mean_weighted(pairs: list[tuple[float, int]]) -> float:
    n = sum(k for _, k in pairs)
    return sum(v * k for v, k in pairs) / max(n, 1)


@torch.no_grad()
def evaluate(method, batches: list[Batch], device: torch.device, inception_weights: str = "") -> dict[str, float]:
    """Average the metrics over the held-out batches (per-image means, like the metric functions)."""
    acc: dict[str, list[tuple[float, int]]] = {}
    fakes, reals = [], []

    def add(name: str, value: float, n: int) -> None:
        acc.setdefault(name, []).append((value, n))

    for batch in batches:
        batch = batch.to(device)
        out = method.predict(batch.real_a)
        s = out["student"].float().clamp(-1, 1)
        n = s.shape[0]
        add("vol", variance_of_laplacian(s), n)
        if "teacher" in out:
            t = out["teacher"].float().clamp(-1, 1)
            add("psnr_teacher", min(psnr(s, t), 100.0), n)
            add("ssim_teacher", ssim(s, t), n)
            add("vol_teacher", variance_of_laplacian(t), n)
        if batch.paired and batch.real_b is not None:
            add("psnr_gt", min(psnr(s, batch.real_b), 100.0), n)
            add("ssim_gt", ssim(s, batch.real_b), n)
        if inception_weights:
            fakes.append(s.cpu())
            if batch.real_b is not None:
                reals.append(batch.real_b.float().cpu())
    metrics = {k: _mean_weighted(v) for k, v in acc.items()}
    if inception_weights and fakes and reals:
        from distill.metrics.fid import compute_fid

        metrics["fid"] = float(compute_fid(torch.cat(reals), torch.cat(fakes), inception_weights))
    return metrics


class _ModelPredictor:
    """``predict`` for a bare generator (evaluated in inference mode, its train/eval mode restored)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def predict(self, real_a: torch.Tensor) -> dict[str, torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        try:
            return {"student": self.model(real_a)}
        finally:
            self.model.train(was_training)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, batches: list[Batch], device: torch.device,
                   inception_weights: str = "") -> dict[str, float]:
    """:func:`evaluate` for one generator on its own: ``psnr_gt`` / ``ssim_gt`` / ``vol`` (and ``fid``)."""
    return evaluate(_ModelPredictor(model), batches, device, inception_weights)


def pick_best_metric(requested: str, metrics: dict[str, float]) -> tuple[str, str]:
    """(metric, "max"|"min"): the requested one, else psnr_gt, psnr_teacher, fid, in that order."""
    name = requested or next((m for m in ("psnr_gt", "psnr_teacher", "fid") if m in metrics), "")
    return name, "min" if name in ("fid", "kid") or name.startswith("lpips") else "max"


@torch.no_grad()
def write_sample_grid(method, batch: Batch, path: Path, device: torch.device, num: int = 4, *,
                      step: int | None = None, metrics: dict[str, float] | None = None,
                      generator_label: str = "student", title: str = "") -> Path:
    """A labelled PNG grid, one row per sample: input | teacher | student | target (the columns that exist).

    The header names the columns, the title line gives the step and the held-out metrics; tiles are
    enlarged to a readable size (:func:`distill.plots.labelled_grid`). ``generator_label`` names the
    generator being trained (``teacher`` in a teacher run).
    """
    from distill.plots import format_metrics, labelled_grid

    batch = batch.to(device)
    a = batch.real_a[:num]
    out = method.predict(a)
    n = out["student"].shape[0]
    columns: list[tuple[str, torch.Tensor]] = []
    if a.ndim == 4:
        columns.append(("input", a))
    if "teacher" in out:
        columns.append(("teacher", out["teacher"]))
    columns.append((generator_label, out["student"]))
    if batch.real_b is not None and (batch.paired or a.ndim != 4):
        columns.append(("target" if batch.paired else "real", batch.real_b[:n]))
    size = out["student"].shape[1:]
    columns = [(name, c) for name, c in columns if tuple(c.shape[1:]) == tuple(size)]
    lines = [title] if title else []
    head = f"step {step}" if step is not None else ""
    scores = format_metrics(metrics or {})
    if head or scores:
        lines.append(", ".join(x for x in (head, scores) if x))
    grid = labelled_grid([(name, [to_image(c[i]) for i in range(n)]) for name, c in columns], "\n".join(lines))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
