"""Supernet distillation, norm re-calibration, ``psnr_teacher`` and fine-tuning of one sub-network.

The student learns the teacher's outputs on the photos (L1, as GAN Compression's reconstruction term
for unpaired data: ``||G_s(x) - G_t(x)||_1``). Each supernet step trains the largest sub-network (its
categorical genes drawn at random) and one sampled sub-network, and applies their summed gradients:
GAN Compression's channel sampling with the largest network always trained, which keeps the shared
first channels good for every width.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distill.metrics.image import psnr
from distill.search.data import PhotoPairs
from distill.search.supernet import Supernet


@dataclass
class TrainSettings:
    """``steps`` optimiser steps of ``batch`` random ``crop`` x ``crop`` crops, Adam at ``lr`` with warm-up
    and cosine decay; ``time_limit_s`` stops early (the steps done are reported), and the schedule then
    follows the clock so that the rate has decayed when the limit is reached."""

    steps: int = 1000
    batch: int = 4
    crop: int = 128
    lr: float = 1e-3
    seed: int = 0
    time_limit_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _schedule(opt: torch.optim.Optimizer, base: float, progress: float) -> None:
    """Linear warm-up over the first 5 % (fresh Adam steps are full-size, which would jolt weights the
    supernet already trained), then a cosine decay to zero at ``progress`` = 1."""
    progress = min(max(progress, 0.0), 1.0)
    factor = min(0.1 + 0.9 * progress / 0.05, 0.5 * (1 + math.cos(math.pi * progress)))
    for group in opt.param_groups:
        group["lr"] = base * factor


def _loop(params, step_fn: Callable[[random.Random], float], settings: TrainSettings,
          progress: Callable[[int, int, float], None] | None) -> dict[str, Any]:
    opt = torch.optim.Adam(params, lr=settings.lr, betas=(0.5, 0.999))
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    start, done, losses = time.perf_counter(), 0, []
    for step in range(settings.steps):
        elapsed = time.perf_counter() - start
        if settings.time_limit_s is not None and elapsed > settings.time_limit_s:
            break
        # progress by steps or by the wall-clock limit, whichever is further: the decay ends either way
        _schedule(opt, settings.lr, max(step / settings.steps, elapsed / (settings.time_limit_s or math.inf)))
        opt.zero_grad(set_to_none=True)
        losses.append(step_fn(rng))
        opt.step()
        done = step + 1
        if progress:
            progress(done, settings.steps, losses[-1])
    tail = losses[-max(1, len(losses) // 10):] if losses else [float("nan")]
    return {"steps": done, "seconds": round(time.perf_counter() - start, 1), "final_l1": round(sum(tail) / len(tail), 5),
            "stopped_by_time_limit": done < settings.steps}


def train_supernet(supernet: Supernet, pairs: PhotoPairs, settings: TrainSettings,
                   progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Distil the teacher into every sub-network at once (largest + one sampled per step)."""
    supernet.train()
    space = supernet.space

    def step(rng: random.Random) -> float:
        x, y = pairs.batch(rng, settings.batch, settings.crop)
        total = 0.0
        for genes in (space.largest(rng), space.sample(rng)):
            loss = F.l1_loss(supernet(x, genes), y)
            loss.backward()
            total += loss.item()
        return total / 2

    return _loop(supernet.parameters(), step, settings, progress)


def finetune(model: nn.Module, pairs: PhotoPairs, settings: TrainSettings,
             progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Train one extracted sub-network further on the same objective (GAN Compression's fine-tuning)."""
    model.train()

    def step(rng: random.Random) -> float:
        x, y = pairs.batch(rng, settings.batch, settings.crop)
        loss = F.l1_loss(model(x), y)
        loss.backward()
        return float(loss)

    report = _loop(model.parameters(), step, settings, progress)
    recalibrate(model, pairs, seed=settings.seed)
    return report


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@torch.no_grad()
def recalibrate(model: nn.Module, pairs: PhotoPairs, batches: int = 8, batch: int = 4, crop: int = 128,
                seed: int = 0) -> nn.Module:
    """Recompute BatchNorm running statistics on training crops (a cumulative average over ``batches``).

    A sub-network's statistics differ from every other's, and the supernet tracks none, so an extracted
    batch-norm model is calibrated before it is scored or saved. Models without BatchNorm are unchanged.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if bns:
        rng = random.Random(seed)
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        for _ in range(batches):
            model(pairs.batch(rng, batch, crop)[0])
        for bn in bns:
            bn.momentum = 0.1
    return model.eval()


@torch.no_grad()
def psnr_teacher(model: nn.Module, pairs: PhotoPairs, batch: int = 4) -> float:
    """Mean PSNR (dB, images in [-1, 1]) between the model's and the teacher's outputs on the held-out photos."""
    model.eval()
    outs = [model(pairs.val_x[i : i + batch]).clamp(-1, 1) for i in range(0, len(pairs.val_x), batch)]
    return min(psnr(torch.cat(outs), pairs.val_y), 100.0)


def score_subnet(supernet: Supernet, genes: dict[str, Any], pairs: PhotoPairs, seed: int = 0) -> tuple[nn.Module, float]:
    """Extract ``genes`` with the supernet's weights (no retraining), re-calibrate, score ``psnr_teacher``."""
    model = recalibrate(supernet.extract(genes), pairs, seed=seed)
    return model, psnr_teacher(model, pairs)
