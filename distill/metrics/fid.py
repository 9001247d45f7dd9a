"""Fréchet Inception Distance, Kernel Inception Distance and Inception Score.

Images are float tensors (N, 3, H, W) in [-1, 1], or iterables of such batches.

- :func:`frechet_distance` -- the Fréchet distance between two Gaussians (FID's formula); also the
  formula of :func:`distill.metrics.classifier.fid_classifier`.
- :func:`fid_from_features`, :func:`kid_from_features`, :func:`inception_score_from_logits` -- the
  formulas on precomputed features / logits, for any feature extractor.
- :func:`load_inception` -- the in-house FID Inception-v3 with pytorch-fid's weight file.
- :func:`compute_fid`, :func:`compute_kid`, :func:`inception_score` -- one float each.
- :func:`dataset_statistics` -- Inception statistics of a dataset's real images, cached on disk.

FID (Heusel et al. 2017, eq. 6): with (mu_r, Sigma_r) and (mu_g, Sigma_g) the mean and covariance of the
2048-d pool3 features of real and generated images,
``FID = ||mu_r - mu_g||^2 + Tr(Sigma_r + Sigma_g - 2 (Sigma_r Sigma_g)^(1/2))``.
KID (Bińkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel
``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets. IS (Salimans et al. 2016):
``exp(E_x KL(p(y|x) || p(y)))`` over the 1008-way softmax, averaged over splits.

Without the Inception weight file these metrics are *unavailable*: the functions raise
:class:`~distill.errors.MissingDependencyError`. A randomly initialised Inception is never used to
produce a number.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from distill.errors import MissingDependencyError

log = logging.getLogger(__name__)

WEIGHTS_ENV = "SLIMGAN_INCEPTION_WEIGHTS"
CACHE_ENV = "SLIMGAN_CACHE"
FEATURE_DIM = 2048
UNAVAILABLE = "unavailable"

Images = Any  # torch.Tensor (N, C, H, W) in [-1, 1], or an iterable of such batches


# --------------------------------------------------------------------------------------------- FID formula
def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))`` (Heusel et al. 2017, eq. 6).

    ``sqrtm`` is scipy's matrix square root. When the product is singular (the square root is not
    finite) ``eps * I`` is added to both covariances; a square root whose imaginary part is numerical
    noise (diagonal below 1e-3) is replaced by its real part, a larger one raises ``ValueError``.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        log.warning("frechet_distance: singular product; adding %g to the covariance diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"frechet_distance: sqrtm has a large imaginary part {np.max(np.abs(covmean.imag)):g}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """scipy's matrix square root, its singularity warnings silenced (the caller checks finiteness)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from scipy import linalg

        return np.asarray(linalg.sqrtm(a))


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features (N, D): the Gaussian fitted by FID."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need at least two feature vectors (N, D), got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two feature sets (N, D). Exact and fast when a set has fewer than D + 1 samples.

    With centred features A (n1, D) and B (n2, D), Sigma_1 = A^T A / (n1 - 1) and Sigma_2 = B^T B / (n2 - 1),
    so ``Tr((Sigma_1 Sigma_2)^(1/2)) = ||A B^T||_* / sqrt((n1 - 1)(n2 - 1))`` (nuclear norm): an
    (n1 x n2) SVD instead of a (D x D) matrix square root. Large sets use :func:`frechet_distance`.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    n1, n2, d = len(real), len(fake), real.shape[1]
    if n1 < 2 or n2 < 2 or fake.shape[1] != d:
        raise ValueError(f"need two (N >= 2, D) feature sets of equal D, got {real.shape} and {fake.shape}")
    if min(n1, n2) > d:
        return frechet_distance(*statistics(real), *statistics(fake))
    mu1, mu2 = real.mean(0), fake.mean(0)
    a, b = real - mu1, fake - mu2
    tr1, tr2 = float((a * a).sum()) / (n1 - 1), float((b * b).sum()) / (n2 - 1)
    nuclear = float(np.linalg.svd(a @ b.T, compute_uv=False).sum()) / math.sqrt((n1 - 1) * (n2 - 1))
    diff = mu1 - mu2
    return float(diff.dot(diff) + tr1 + tr2 - 2 * nuclear)


def kid_from_features(
    real: np.ndarray, fake: np.ndarray, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): mean and std over subsets of the unbiased MMD^2, cubic kernel."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least two real and two generated feature vectors")
    d = real.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def inception_score_from_logits(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """IS (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` per split; mean and std over splits."""
    logits = np.asarray(logits, np.float64)
    logits = logits - logits.max(1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(1, keepdims=True)  # p(y|x), (N, K)
    splits = max(1, min(splits, len(probs)))
    scores = []
    for part in np.array_split(probs, splits):
        py = part.mean(0, keepdims=True)  # p(y) over the split
        kl = (part * (np.log(part + 1e-12) - np.log(py + 1e-12))).sum(1).mean()
        scores.append(math.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


# ------------------------------------------------------------------------------------ Inception network
def resolve_inception_weights(path: str | Path | None = None) -> Path | None:
    """The Inception weight file: ``path``, else ``$SLIMGAN_INCEPTION_WEIGHTS``; None when neither exists."""
    candidate = path or os.environ.get(WEIGHTS_ENV)
    if not candidate:
        return None
    candidate = Path(candidate).expanduser()
    return candidate if candidate.is_file() else None


def _require_weights(path: str | Path | None) -> Path:
    resolved = resolve_inception_weights(path)
    if resolved is None:
        where = f"{path} does not exist" if path else f"no weight file given and ${WEIGHTS_ENV} is not set"
        raise MissingDependencyError(
            f"FID/KID/IS are unavailable: {where}; pass pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
            f"with --inception-weights PATH or ${WEIGHTS_ENV}"
        )
    return resolved


_MODEL_CACHE: dict[tuple[str, float, str], Any] = {}


def load_inception(path: str | Path | None, device: str = "cpu") -> Any:
    """The FID Inception (:class:`distill.metrics.inception.FIDInception`) with weights from ``path`` (eval mode).

    Raises :class:`MissingDependencyError` when the file is missing; kept in memory per (path, mtime).
    """
    from distill.metrics.inception import load_fid_inception

    resolved = _require_weights(path)
    key = (str(resolved.resolve()), resolved.stat().st_mtime, str(device))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()
        _MODEL_CACHE[key] = load_fid_inception(resolved, device=device)
    return _MODEL_CACHE[key]


def iter_batches(images: Images, batch_size: int = 50) -> Iterator[Any]:
    """Batches (B, C, H, W) from a tensor/array (N, C, H, W) or an iterable of batches (or of (C, H, W))."""
    import torch

    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images.unsqueeze(0)
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]
        return
    for item in images:
        if isinstance(item, dict):
            item = item["B"]
        if isinstance(item, np.ndarray):
            item = torch.from_numpy(item)
        yield item.unsqueeze(0) if item.ndim == 3 else item


def inception_outputs(
    images: Images, model: Any, batch_size: int = 50, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """pool3 features (N, 2048) and 1008-class logits (N, 1008) of images in [-1, 1]."""
    import torch

    feats, logits = [], []
    with torch.no_grad():
        for batch in iter_batches(images, batch_size):
            for start in range(0, batch.shape[0], batch_size):
                f, lg = model(batch[start : start + batch_size].to(device=device, dtype=torch.float32))
                feats.append(f.double().cpu().numpy())
                logits.append(lg.double().cpu().numpy())
    if not feats:
        raise ValueError("no images were given")
    return np.concatenate(feats), np.concatenate(logits)


def compute_fid(real: Images, fake: Images, weights_path: str | Path | None, batch_size: int = 50,
                device: str = "cpu") -> float:
    """FID between two image sets (tensors (N, 3, H, W) in [-1, 1] or iterables of batches)."""
    model = load_inception(weights_path, device)
    f_real, _ = inception_outputs(real, model, batch_size, device)
    f_fake, _ = inception_outputs(fake, model, batch_size, device)
    return fid_from_features(f_real, f_fake)


def compute_kid(real: Images, fake: Images, weights_path: str | Path | None, batch_size: int = 50,
                num_subsets: int = 100, subset_size: int = 1000, device: str = "cpu") -> float:
    """KID (mean over subsets) between two image sets."""
    model = load_inception(weights_path, device)
    f_real, _ = inception_outputs(real, model, batch_size, device)
    f_fake, _ = inception_outputs(fake, model, batch_size, device)
    return kid_from_features(f_real, f_fake, num_subsets, subset_size)[0]


def inception_score(images: Images, weights_path: str | Path | None, batch_size: int = 50, splits: int = 10,
                    device: str = "cpu") -> float:
    """Inception Score (mean over ``splits``) of one image set."""
    model = load_inception(weights_path, device)
    _, logits = inception_outputs(images, model, batch_size, device)
    return inception_score_from_logits(logits, splits)[0]


# ------------------------------------------------------------------------------- reference statistics
def _cache_dir(cache_dir: str | Path | None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "slimgan"
    return Path(base) / "fid_stats"


def _weights_digest(path: Path) -> str:
    from distill.checkpoint import file_sha256

    return file_sha256(path)[:16]


def reference_cache_key(files: Iterable[Path], weights: Path, res: int | None, extra: str = "") -> str:
    """Key of a folder's statistics: image paths, sizes and mtimes, the weights' hash, the resolution."""
    h = hashlib.sha256()
    for f in sorted(Path(p).resolve() for p in files):
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(f"{_weights_digest(weights)}|{res}|{extra}".encode())
    return h.hexdigest()[:24]


def dataset_statistics(
    dataset: Any, weights_path: str | Path | None, res: int | None = None, batch_size: int = 50,
    cache_dir: str | Path | None = None, files: list[Path] | None = None, extra_key: str = "",
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Inception features, ``mu`` and ``sigma`` of a dataset's real images, cached on disk.

    ``dataset`` yields samples whose ``"B"`` entry is the real image. The cache file is
    ``<cache_dir>/<key>.npz`` (default ``$SLIMGAN_CACHE/fid_stats`` or ``~/.cache/slimgan/fid_stats``),
    the key hashing ``files`` (paths, sizes, mtimes), the weights' SHA-256, ``res`` and ``extra_key``,
    so changing any image, the weights or the resolution recomputes.
    """
    weights = _require_weights(weights_path)
    files = files if files is not None else [Path(p) for p in getattr(dataset, "files", [])]
    path = None
    if files:
        path = _cache_dir(cache_dir) / f"{reference_cache_key(files, weights, res, extra_key)}.npz"
        if path.is_file():
            with np.load(path) as data:
                log.info("reference statistics from cache %s", path)
                return {"mu": data["mu"], "sigma": data["sigma"], "features": data["features"],
                        "logits": data["logits"], "cached": np.array(True)}
    model = load_inception(weights, device)
    feats, logits = inception_outputs(_real_batches(dataset, batch_size), model, batch_size, device)
    mu, sigma = statistics(feats)
    out = {"mu": mu, "sigma": sigma, "features": feats.astype(np.float32), "logits": logits.astype(np.float32)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **out)
        tmp.replace(path)
        log.info("reference statistics cached at %s", path)
    out["cached"] = np.array(False)
    return out


def _real_batches(dataset: Any, batch_size: int) -> Iterator[Any]:
    import torch

    batch = []
    for i in range(len(dataset)):
        batch.append(dataset[i]["B"])
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)
