"""Batches as a pure function of the step, so a resumed run sees exactly the batches it would have seen."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from distill.data.datasets import TransformConfig, build_dataset
from distill.engine.config import DataConfig
from distill.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One step's data. ``real_a``: (B, C, H, W) image or (B, nz) latent; ``real_b``: target/real or None."""

    real_a: torch.Tensor
    real_b: torch.Tensor | None
    paired: bool

    def to(self, device: torch.device) -> Batch:
        return Batch(self.real_a.to(device), None if self.real_b is None else self.real_b.to(device), self.paired)


def ensure_data(cfg: DataConfig, root: Path) -> None:
    """Write the synthetic dataset into ``root`` when it is missing and ``data.synth`` asks for one."""
    expected = {"aligned": ["train"], "unaligned": ["trainA", "trainB"], "folder": ["train"]}.get(cfg.layout, ["train"])
    if all((root / d).is_dir() for d in expected):
        return
    if cfg.synth is None:
        raise DatasetError(f"dataset {root} is missing ({'/'.join(expected)}); set data.root or add a data.synth section")
    from distill.data.synth import synthesize

    s = cfg.synth
    log.info("generating the synthetic %s dataset (%d train / %d test, %d px) into %s", s.task, s.num, s.num_test, s.size, root)
    synthesize(s.task, root, num=s.num, size=s.size, seed=s.seed, num_test=s.num_test)


def build_split(cfg: DataConfig, root: Path, phase: str, seed: int) -> Dataset:
    transform = TransformConfig(load_size=cfg.load_size, crop_size=cfg.crop_size, flip=cfg.flip, train=phase == "train")
    return build_dataset(cfg.layout, root, phase, cfg.direction, transform, seed)


def _mix(*values: int) -> int:
    h = 1469598103934665603
    for v in values:
        h = ((h ^ (int(v) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 62)
    return h


class BatchStream:
    """Batch for step ``s`` on this rank: global sample ``g = (s·world + rank)·B + j`` reads index
    ``perm_{g // N}[g % N]`` (a seeded permutation per epoch); random crops / flips and latents are
    seeded by ``(seed, g)``. Stateless, hence resumable and identical across restarts.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 nz: int | None = None, max_items: int = 0):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world, self.nz = rank, world, nz
        self.n = len(dataset) if not max_items else min(max_items, len(dataset))
        if self.n == 0:
            raise DatasetError("the training set is empty")
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(_mix(self.seed, epoch)))}
        return self._perms[epoch]

    def _item(self, g: int) -> dict:
        index = int(self._perm(g // self.n)[g % self.n])
        rng = getattr(getattr(self.dataset, "transform", None), "rng", None)
        if rng is not None:
            rng.seed(_mix(self.seed, g, 7))
        return self.dataset[index]

    def batch(self, step: int) -> Batch:
        first = (step * self.world + self.rank) * self.batch_size
        items = [self._item(first + j) for j in range(self.batch_size)]
        if "A" in items[0]:
            a = torch.stack([it["A"] for it in items])  # (B, C, H, W)
            b = torch.stack([it["B"] for it in items])
            from distill.data.datasets import AlignedDataset

            return Batch(a, b, paired=isinstance(self.dataset, AlignedDataset))
        b = torch.stack([it["B"] for it in items])  # real images (B, C, H, W)
        if self.nz is None:
            raise DatasetError("an image-folder dataset needs a latent generator (nz)")
        z = torch.randn(self.batch_size, self.nz, generator=torch.Generator().manual_seed(_mix(self.seed, first, 11)))
        return Batch(z, b, paired=False)


def eval_batches(dataset: Dataset, num: int, batch_size: int, nz: int | None, seed: int = 1234) -> list[Batch]:
    """The first ``num`` held-out samples (fixed latents for generators), in batches."""
    num = min(num, len(dataset))
    items = [dataset[i] for i in range(num)]
    out = []
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, num, batch_size):
        chunk = items[i : i + batch_size]
        if "A" in chunk[0]:
            from distill.data.datasets import AlignedDataset

            out.append(Batch(torch.stack([c["A"] for c in chunk]), torch.stack([c["B"] for c in chunk]),
                             paired=isinstance(dataset, AlignedDataset)))
        else:
            z = torch.randn(len(chunk), nz or 1, generator=gen)
            out.append(Batch(z, torch.stack([c["B"] for c in chunk]), paired=False))
    return out
