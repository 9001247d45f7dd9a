"""Image-quality metrics shared by training evaluation, export parity and the quality benchmark.

All functions take float tensors (B, C, H, W) (or numpy arrays, converted) and a ``data_range``
(2.0 for images in [-1, 1]). They return one float averaged over the batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    t = t.detach().to(torch.float64)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) or (C, H, W), got shape {tuple(t.shape)}")
    return t


def psnr(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(range^2 / MSE)``, averaged over the batch.

    Identical inputs give ``inf``.
    """
    a, b = _as_tensor(a), _as_tensor(b)
    mse = ((a - b) ** 2).flatten(1).mean(1)  # (B,)
    values = [math.inf if m == 0 else 10 * math.log10(data_range**2 / float(m)) for m in mse]
    return float(np.mean(values))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]  # (size, size)


def ssim_map(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0, window: int = 11) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03), (B, C, H', W').

    Differentiable; the window shrinks to the image side for small inputs.
    """
    channels = a.shape[1]
    window = min(window, a.shape[-1], a.shape[-2])
    w = _gaussian_window(window, 1.5 * window / 11).to(a)[None, None].expand(channels, 1, -1, -1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, data_range: float = 2.0) -> float:
    """Mean structural similarity over the batch (1.0 for identical images)."""
    return float(ssim_map(_as_tensor(a), _as_tensor(b), data_range).mean())


def variance_of_laplacian(x: torch.Tensor | np.ndarray, data_range: float = 2.0) -> float:
    """Sharpness: variance of the 3x3 Laplacian of the grey image, scaled to 8-bit units, batch mean.

    The KD-GAN paper reports it next to FID/IS: MSE distillation blurs, and blur lowers this number.
    """
    x = _as_tensor(x)
    grey = x.mean(1, keepdim=True) * (255.0 / data_range)
    kernel = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64)[None, None]
    lap = F.conv2d(grey, kernel)
    return float(lap.flatten(1).var(1, unbiased=False).mean())
