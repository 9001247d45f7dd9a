"""Photos and the teacher's outputs on them: training crops and held-out images for ``psnr_teacher``.

Every image under ``--photos`` (recursively, sorted) is resized so its shorter side is ``res`` (sides
rounded down to a multiple of 4); with ``max_photos``, an evenly spaced subset. Every ``holdout_every``-th photo is held out and centre-cropped to
``res x res``; the rest are training photos. The teacher runs once per photo on the image the student
will see, so a training crop's target is the teacher's output at the same pixels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from distill.data.datasets import IMG_EXTENSIONS, read_image, to_tensor
from distill.errors import DatasetError


def find_photos(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"photos folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if len(files) < 2:
        raise DatasetError(f"photos folder {root} holds {len(files)} images ({', '.join(IMG_EXTENSIONS)}); the search needs at least 2")
    return files


def _resize_short(img: Image.Image, res: int) -> Image.Image:
    w, h = img.size
    scale = res / min(w, h)
    nw, nh = max(4, int(round(w * scale)) // 4 * 4), max(4, int(round(h * scale)) // 4 * 4)
    return img.resize((nw, nh), Image.BICUBIC)


def _center_crop(t: torch.Tensor, res: int) -> torch.Tensor:
    h, w = t.shape[-2:]
    top, left = (h - res) // 2, (w - res) // 2
    return t[..., top : top + res, left : left + res]


@torch.no_grad()
def _teacher(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return teacher(x.unsqueeze(0)).squeeze(0).clamp(-1, 1)


@dataclass
class PhotoPairs:
    """Photo tensors in [-1, 1] and the teacher's outputs: ``train_x/train_y`` lists, ``val_x/val_y`` stacks."""

    train_x: list[torch.Tensor]
    train_y: list[torch.Tensor]
    val_x: torch.Tensor
    val_y: torch.Tensor
    train_files: list[str]
    val_files: list[str]

    @classmethod
    def build(cls, teacher: nn.Module, root: str | Path, res: int, holdout_every: int = 5,
              max_photos: int | None = None, progress=None) -> PhotoPairs:
        files = find_photos(root)
        if max_photos and len(files) > max_photos:  # evenly spaced, so every sub-folder is represented
            step = len(files) / max_photos
            files = [files[int(i * step)] for i in range(max_photos)]
        if len(files) < 2:
            raise DatasetError(f"photos folder {root}: at least 2 photos are needed (one held out)")
        teacher.eval()
        val_idx = set(range(holdout_every - 1, len(files), holdout_every)) or {len(files) - 1}
        tx, ty, vx, vy, tf, vf = [], [], [], [], [], []
        for i, path in enumerate(files):
            x = to_tensor(_resize_short(read_image(path), res))
            if i in val_idx:
                x = _center_crop(x, res)
                vx.append(x), vy.append(_teacher(teacher, x)), vf.append(str(path))
            else:
                tx.append(x), ty.append(_teacher(teacher, x)), tf.append(str(path))
            if progress:
                progress(i + 1, len(files))
        return cls(tx, ty, torch.stack(vx), torch.stack(vy), tf, vf)

    def batch(self, rng: random.Random, size: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` random aligned crops (and horizontal flips) of training photos and teacher outputs."""
        xs, ys = [], []
        for _ in range(size):
            i = rng.randrange(len(self.train_x))
            x, y = self.train_x[i], self.train_y[i]
            h, w = x.shape[-2:]
            c = min(crop, h, w) // 4 * 4
            top, left = rng.randint(0, h - c), rng.randint(0, w - c)
            x, y = x[:, top : top + c, left : left + c], y[:, top : top + c, left : left + c]
            if rng.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            xs.append(x), ys.append(y)
        side = min(t.shape[-1] for t in xs), min(t.shape[-2] for t in xs)
        return (torch.stack([t[:, : side[1], : side[0]] for t in xs]),
                torch.stack([t[:, : side[1], : side[0]] for t in ys]))
