"""Dataset classes for the aligned, unaligned and image-folder layouts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from distill.errors import DatasetError

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


@dataclass(frozen=True)
class TransformConfig:
    """pix2pix-style preprocessing: resize to ``load_size``, random crop ``crop_size``, random flip.

    ``load_size`` / ``crop_size`` of 0 keep the image's own size. ``train=False`` crops the centre
    and never flips.
    """

    load_size: int = 0
    crop_size: int = 0
    flip: bool = True
    train: bool = True
    channels: int = 3


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files in ``folder``; a missing or empty folder is an error that names it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
    if not files:
        raise DatasetError(f"dataset folder {folder} holds no images ({', '.join(IMG_EXTENSIONS)})")
    return files


def read_image(path: Path, channels: int = 3) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB" if channels == 3 else "L")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


class _Transform:
    """Same random crop / flip applied to every image of one sample (A and B stay aligned)."""

    def __init__(self, cfg: TransformConfig, rng: random.Random):
        self.cfg = cfg
        self.rng = rng

    def params(self, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int], bool]:
        w, h = size
        if self.cfg.load_size:
            w = h = self.cfg.load_size
        crop = self.cfg.crop_size or min(w, h)
        if crop > min(w, h):
            raise DatasetError(f"crop_size {crop} is larger than the loaded image ({w}x{h})")
        if self.cfg.train:
            x, y = self.rng.randint(0, w - crop), self.rng.randint(0, h - crop)
        else:
            x, y = (w - crop) // 2, (h - crop) // 2
        flip = self.cfg.train and self.cfg.flip and self.rng.random() < 0.5
        return (w, h), (x, y), flip

    def apply(self, img: Image.Image, params) -> torch.Tensor:
        (w, h), (x, y), flip = params
        if img.size != (w, h):
            img = img.resize((w, h), Image.BICUBIC)
        crop = self.cfg.crop_size or min(w, h)
        img = img.crop((x, y, x + crop, y + crop))
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return to_tensor(img)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor (C, H, W) in [-1, 1]."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()) / 127.5 - 1.0


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Float tensor (C, H, W) in [-1, 1] -> 8-bit PIL image."""
    arr = ((tensor.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().numpy().transpose(1, 2, 0)
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


class AlignedDataset(Dataset):
    """pix2pix layout: ``root/phase/*.png`` with A|B side by side. Returns ``{"A", "B", "path"}``.

    ``direction="BtoA"`` swaps the halves, so ``A`` is always the generator's input.
    """

    def __init__(self, root: str | Path, phase: str = "train", direction: str = "AtoB",
                 transform: TransformConfig = TransformConfig(), seed: int = 0):
        if direction not in ("AtoB", "BtoA"):
            raise DatasetError(f"direction must be AtoB or BtoA, got {direction!r}")
        self.files = list_images(Path(root) / phase)
        self.direction = direction
        self.cfg = transform
        self.transform = _Transform(transform, random.Random(seed))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        ab = read_image(path, self.cfg.channels)
        w, h = ab.size
        if w % 2:
            raise DatasetError(f"{path} is {w} pixels wide; an aligned A|B image needs an even width")
        a = ab.crop((0, 0, w // 2, h))
        b = ab.crop((w // 2, 0, w, h))
        params = self.transform.params(a.size)
        a_t, b_t = self.transform.apply(a, params), self.transform.apply(b, params)
        if self.direction == "BtoA":
            a_t, b_t = b_t, a_t
        return {"A": a_t, "B": b_t, "path": str(path)}


class UnalignedDataset(Dataset):
    """CycleGAN layout: ``root/{phase}A`` and ``root/{phase}B``; B is drawn at random (unpaired)."""

    def __init__(self, root: str | Path, phase: str = "train", direction: str = "AtoB",
                 transform: TransformConfig = TransformConfig(), seed: int = 0):
        if direction not in ("AtoB", "BtoA"):
            raise DatasetError(f"direction must be AtoB or BtoA, got {direction!r}")
        a, b = list_images(Path(root) / f"{phase}A"), list_images(Path(root) / f"{phase}B")
        self.files_a, self.files_b = (a, b) if direction == "AtoB" else (b, a)
        self.cfg = transform
        self.rng = random.Random(seed)
        self.transform = _Transform(transform, self.rng)

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def __getitem__(self, index: int) -> dict:
        path_a = self.files_a[index % len(self.files_a)]
        path_b = self.files_b[self.rng.randrange(len(self.files_b))]
        a, b = read_image(path_a, self.cfg.channels), read_image(path_b, self.cfg.channels)
        return {
            "A": self.transform.apply(a, self.transform.params(a.size)),
            "B": self.transform.apply(b, self.transform.params(b.size)),
            "path": str(path_a),
        }


class ImageFolderDataset(Dataset):
    """Unconditional layout: images in ``root`` (or ``root/phase`` when it exists). Returns ``{"B", "path"}``."""

    def __init__(self, root: str | Path, phase: str = "train",
                 transform: TransformConfig = TransformConfig(), seed: int = 0):
        root = Path(root)
        folder = root / phase if (root / phase).is_dir() else root
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        if subfolders and not any(p.suffix.lower() in IMG_EXTENSIONS for p in folder.iterdir()):
            # class folders (train/<label>/*.png, e.g. MNIST): an unconditional GAN uses all of them
            self.files = [f for sub in subfolders for f in list_images(sub)]
        else:
            self.files = list_images(folder)
        self.cfg = transform
        self.transform = _Transform(transform, random.Random(seed))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        img = read_image(self.files[index], self.cfg.channels)
        return {"B": self.transform.apply(img, self.transform.params(img.size)), "path": str(self.files[index])}


LAYOUTS = {"aligned": AlignedDataset, "unaligned": UnalignedDataset, "folder": ImageFolderDataset}


def build_dataset(layout: str, root: str | Path, phase: str = "train", direction: str = "AtoB",
                  transform: TransformConfig = TransformConfig(), seed: int = 0) -> Dataset:
    """Build a dataset by layout name: ``aligned``, ``unaligned`` or ``folder``."""
    cls = LAYOUTS.get(layout)
    if cls is None:
        raise DatasetError(f"unknown dataset layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    if cls is ImageFolderDataset:
        return cls(root, phase, transform, seed)
    return cls(root, phase, direction, transform, seed)
