"""``slimgan data pairs``: a folder of photos -> the pix2pix aligned layout (edges | photo).

This is how edges2shoes / edges2handbags were made (Isola et al. 2017, §4: edges from HED, then
post-processed): every photo is centre-cropped to a square, resized to ``size``, an edge map is
computed from it, and the two are written side by side (A = edges on the left, the generator's
input; B = the photo) into ``train/`` and ``test/``, the layout ``data.layout: aligned`` reads.

Edge detectors (numpy / scipy, no OpenCV):

- ``canny``: Gaussian smoothing, Sobel gradients, non-maximum suppression along the gradient
  direction, and hysteresis between a low and a high threshold (Canny 1986). Thin binary lines.
- ``sobel``: the Sobel gradient magnitude of the smoothed image, thresholded at a percentile.
- ``hed-like``: soft, multi-scale edges (gradient magnitude at three smoothing scales, averaged and
  contrast-stretched), closer to the thick, graded strokes of HED than the two binary detectors.
  It imitates HED's look; it is not the learned HED network.

Edges are drawn black on white, as in edges2shoes.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from distill.errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
EDGE_METHODS = ("canny", "sobel", "hed-like")


def _gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) float in [0, 1] (ITU-R 601 luma)."""
    return (rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])) / 255.0


def _gradients(gray: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(gray, sigma) if sigma > 0 else gray
    return ndimage.sobel(smooth, axis=1), ndimage.sobel(smooth, axis=0)  # d/dx, d/dy


def sobel_edges(gray: np.ndarray, sigma: float = 1.0, percentile: float = 90.0) -> np.ndarray:
    """Binary edges: Sobel magnitude above its ``percentile`` (and above a small floor for flat images)."""
    gx, gy = _gradients(gray, sigma)
    mag = np.hypot(gx, gy)
    threshold = max(np.percentile(mag, percentile), 0.05 * mag.max(), 1e-6)
    return (mag >= threshold).astype(np.float64)


def canny_edges(gray: np.ndarray, sigma: float = 1.0, low: float = 0.1, high: float = 0.25) -> np.ndarray:
    """Binary thin edges by Canny's method; ``low`` / ``high`` are fractions of the largest gradient."""
    from scipy import ndimage

    gx, gy = _gradients(gray, sigma)
    mag = np.hypot(gx, gy)
    if mag.max() <= 1e-9:
        return np.zeros_like(gray)
    # non-maximum suppression: keep a pixel when it is the largest of its two neighbours along the
    # gradient direction, quantised to 0 / 45 / 90 / 135 degrees
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    padded = np.pad(mag, 1, mode="constant")
    h, w = mag.shape

    def shifted(dy: int, dx: int) -> np.ndarray:
        return padded[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]

    keep = np.zeros_like(mag, dtype=bool)
    for lo, hi, (dy, dx) in ((0, 22.5, (0, 1)), (157.5, 180.1, (0, 1)), (22.5, 67.5, (1, 1)),
                             (67.5, 112.5, (1, 0)), (112.5, 157.5, (1, -1))):
        sel = (angle >= lo) & (angle < hi)
        keep |= sel & (mag >= shifted(dy, dx)) & (mag >= shifted(-dy, -dx))
    thin = np.where(keep, mag, 0.0)
    strong = thin >= high * mag.max()
    weak = thin >= low * mag.max()
    # hysteresis: weak pixels survive when their 8-connected component holds a strong one
    labels, n = ndimage.label(weak, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros_like(gray)
    has_strong = np.zeros(n + 1, dtype=bool)
    has_strong[np.unique(labels[strong])] = True
    has_strong[0] = False
    return has_strong[labels].astype(np.float64)


def hed_like_edges(gray: np.ndarray, sigmas: tuple[float, ...] = (1.0, 2.0, 4.0)) -> np.ndarray:
    """Soft edges in [0, 1]: mean of normalised gradient magnitudes at several scales, contrast-stretched."""
    acc = np.zeros_like(gray)
    for s in sigmas:
        gx, gy = _gradients(gray, s)
        mag = np.hypot(gx, gy) * s  # scale-normalised (Lindeberg), so coarse scales count alike
        acc += mag / max(mag.max(), 1e-9)
    acc /= len(sigmas)
    lo, hi = np.percentile(acc, 50), np.percentile(acc, 99.5)
    return np.clip((acc - lo) / max(hi - lo, 1e-9), 0.0, 1.0) ** 0.8


EDGE_FUNCTIONS = {"canny": canny_edges, "sobel": sobel_edges, "hed-like": hed_like_edges}


def edge_map(photo: Image.Image, method: str = "canny") -> Image.Image:
    """The edge image of ``photo`` (RGB, black strokes on white) by ``method``."""
    if method not in EDGE_FUNCTIONS:
        raise DatasetError(f"unknown edge method {method!r}; choose one of: {', '.join(EDGE_METHODS)}")
    edges = EDGE_FUNCTIONS[method](_gray(np.asarray(photo.convert("RGB"))))
    ink = (255.0 * (1.0 - edges)).round().astype(np.uint8)
    return Image.fromarray(ink).convert("RGB")


def square(photo: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to ``size`` (bicubic)."""
    w, h = photo.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)


@dataclass(frozen=True)
class PairsReport:
    out: Path
    train: int
    test: int
    edges: str
    size: int


def find_photos(folder: str | Path) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"photo folder {root} does not exist")
    photos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise DatasetError(f"photo folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return photos


def make_pairs(photos: str | Path, out: str | Path, edges: str = "canny", size: int = 256,
               test_fraction: float = 0.1, seed: int = 0) -> PairsReport:
    """Write ``out/train/*.png`` and ``out/test/*.png`` (edges | photo, each ``size`` x ``size``)."""
    if edges not in EDGE_FUNCTIONS:
        raise DatasetError(f"unknown edge method {edges!r}; choose one of: {', '.join(EDGE_METHODS)}")
    if size < 8 or size % 4:
        raise DatasetError(f"--size must be a multiple of 4 and at least 8 (generators downsample by 4), got {size}")
    if not 0.0 <= test_fraction < 1.0:
        raise DatasetError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    files = find_photos(photos)
    order = list(range(len(files)))
    random.Random(seed).shuffle(order)
    n_test = 0 if len(files) < 2 or test_fraction == 0 else max(1, round(test_fraction * len(files)))
    test_ids = set(order[:n_test])
    out = Path(out)
    for split in ("train", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
    root = Path(photos)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as img:
                photo = square(img.convert("RGB"), size)
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"cannot read photo {path}: {exc}") from exc
        pair = Image.new("RGB", (2 * size, size))
        pair.paste(edge_map(photo, edges), (0, 0))
        pair.paste(photo, (size, 0))
        # keep sub-folder names in the file name so that photos with one name in two folders do not collide
        name = "_".join(path.relative_to(root).with_suffix("").parts) + ".png"
        pair.save(out / ("test" if i in test_ids else "train") / name)
    report = PairsReport(out, len(files) - n_test, n_test, edges, size)
    log.debug("wrote %d training and %d held-out pairs (%s edges, %d px) to %s", report.train, report.test, edges,
             size, out)
    return report
