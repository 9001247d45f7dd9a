"""Held-out evaluation during training, and sample grids.

Metrics: ``psnr_teacher`` / ``ssim_teacher`` (student vs teacher on the same input), ``psnr_gt`` /
``ssim_gt`` (vs ground truth, paired data), ``vol`` / ``vol_teacher`` (Variance of Laplacian:
sharpness, KD-GAN §4.3), ``fid`` when ``eval.inception_weights`` is set (:mod:`distill.metrics.fid`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

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
def write_sample_grid(method, batch: Batch, path: Path, device: torch.device, num: int = 4) -> Path:
    """A PNG grid, one row per sample: input | teacher | student | target (columns that exist)."""
    batch = batch.to(device)
    a = batch.real_a[:num]
    out = method.predict(a)
    columns = []
    if a.ndim == 4:
        columns.append(a)
    if "teacher" in out:
        columns.append(out["teacher"])
    columns.append(out["student"])
    if batch.real_b is not None and (batch.paired or a.ndim != 4):
        columns.append(batch.real_b[: out["student"].shape[0]])
    rows = [torch.cat([c[i].float().cpu() for c in columns if c[i].shape[0] == columns[-1][i].shape[0]], dim=2)
            for i in range(out["student"].shape[0])]
    grid = torch.cat(rows, dim=1)  # (C, rows*H, cols*W)
    path.parent.mkdir(parents=True, exist_ok=True)
    img: Image.Image = to_image(grid)
    img.save(path)
    return path
