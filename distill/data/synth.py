"""A procedural dataset that a small generator visibly learns in minutes on a CPU.

Task: edge map -> rendered scene. Each scene has 1-3 shapes on a textured background.

- The shape's kind fixes its colour (circle: red, square: blue, triangle: green), so the colour can
  be read off the outline.
- Shading is a light falling from the top-left across each shape's bounding box, so it is a local,
  learnable function of the outline.
- The background is a fixed diagonal-stripe texture over a vertical gradient.

Layouts match the loaders: ``paired`` writes A|B images to ``train/`` and ``test/``; ``unpaired``
writes edges to ``trainA``/``testA`` and scenes drawn from other seeds to ``trainB``/``testB``;
``unconditional`` writes scenes to ``train/`` and ``test/``. The same seed gives the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from distill.errors import DatasetError

TASKS = ("paired", "unpaired", "unconditional")
KINDS = ("circle", "square", "triangle")
COLOURS = {"circle": (220, 50, 40), "square": (40, 80, 210), "triangle": (40, 170, 70)}
_SPLITS = {"train": 0, "test": 1}


def _background(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    stripes = 0.5 + 0.5 * np.sin((xx + yy) * size / 4.0)  # diagonal stripes, period 4*2*pi/size... fixed
    base = np.stack([200 - 40 * yy, 190 - 30 * yy, 150 + 40 * yy], axis=-1)
    return base + 18 * stripes[..., None]


def _shape_mask(kind: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if kind == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if kind == "square":
        return (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    # upright triangle: apex at top, base at bottom
    top, bottom = cy - r, cy + r * 0.8
    t = np.clip((yy - top) / (bottom - top), 0, None)
    return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= t * r)


def _edges(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        inner &= np.roll(mask, (dy, dx), axis=(0, 1))
    return mask & ~inner


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (edge map, scene) pair as uint8 RGB arrays of shape (size, size, 3)."""
    scene = _background(size)
    edges = np.zeros((size, size), dtype=bool)
    occupied = np.zeros((size, size), dtype=bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        r = float(rng.uniform(0.12, 0.24) * size)
        cx, cy = (float(v) for v in rng.uniform(r, size - r, size=2))
        mask = _shape_mask(kind, cx, cy, r, size) & ~occupied
        if not mask.any():
            continue
        occupied |= mask
        light = 1.15 - 0.45 * np.clip(((xx - (cx - r)) + (yy - (cy - r))) / (4 * r), 0, 1)
        colour = np.array(COLOURS[kind], dtype=np.float32)
        scene[mask] = (colour[None, :] * light[mask][:, None])
        edges |= _edges(mask)
    edge_img = np.where(edges[..., None], 0, 255).repeat(3, axis=-1).astype(np.uint8)
    return edge_img, np.clip(scene, 0, 255).astype(np.uint8)


def _save(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(arr).save(path, format="PNG", optimize=False)


def synthesize(task: str, out: str | Path, num: int = 200, size: int = 64, seed: int = 0,
               num_test: int | None = None) -> Path:
    """Write a procedural dataset for ``task`` (paired | unpaired | unconditional) to ``out``.

    ``num`` training samples and ``num_test`` (default ``max(8, num // 10)``) held-out samples.
    """
    if task not in TASKS:
        raise DatasetError(f"unknown synthetic task {task!r}; choose one of: {', '.join(TASKS)}")
    if num < 1:
        raise DatasetError(f"--num must be >= 1, got {num}")
    if size < 16 or size % 4:
        raise DatasetError(f"--size must be a multiple of 4 and >= 16, got {size}")
    out = Path(out)
    num_test = max(8, num // 10) if num_test is None else num_test
    for split, count in (("train", num), ("test", num_test)):
        folders = {"paired": [split], "unpaired": [f"{split}A", f"{split}B"], "unconditional": [split]}[task]
        for folder in folders:
            (out / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            rng = np.random.default_rng([seed, _SPLITS[split], i])
            edges, scene = render_scene(rng, size)
            name = f"{i:05d}.png"
            if task == "paired":
                _save(np.concatenate([edges, scene], axis=1), out / split / name)
            elif task == "unconditional":
                _save(scene, out / split / name)
            else:
                _save(edges, out / f"{split}A" / name)
                # the B domain comes from an independent stream, so the pairs are not aligned
                _, other = render_scene(np.random.default_rng([seed, _SPLITS[split], i, 1]), size)
                _save(other, out / f"{split}B" / name)
    return out
