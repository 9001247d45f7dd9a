"""Multi-scale sliced Wasserstein distance (SWD) on Laplacian-pyramid patches (Karras et al. 2018, ProGAN §5).

Follows ProGAN's ``metrics/sliced_wasserstein.py``: each image set is decomposed into a Laplacian pyramid
(5-tap binomial filter, one level per halving down to ``min_res``); at every level ``patches_per_image``
random 7x7 neighbourhoods are cut from each image; each set's descriptors are normalised per channel by
that set's own mean and standard deviation; the distance between the two sets is the sliced Wasserstein
distance (``dir_repeats`` x ``dirs_per_repeat`` random unit directions, sorted projections, mean absolute
difference). ProGAN reports it x 1e3; so does :func:`sliced_wasserstein_distance` (``swd``: the mean over
levels, ``swd_levels``: finest first). Lower is better; the same images give 0.

Needs no downloaded weights, so it scores any pair of image sets (a student against its teacher, a
generator's samples against the teacher's samples).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable 5-tap binomial filter with reflect padding, per channel. (B, C, H, W) -> same shape."""
    c = x.shape[1]
    k = _BINOMIAL.to(x)
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``levels`` bands, finest first: band_i = G_i - up(G_{i+1}); the last is the coarsest Gaussian level."""
    bands = []
    current = x
    for _ in range(levels - 1):
        down = _blur(current)[:, :, ::2, ::2]
        up = F.interpolate(down, size=current.shape[-2:], mode="bilinear", align_corners=False)
        bands.append(current - up)
        current = down
    bands.append(current)
    return bands


def num_levels(height: int, width: int, min_res: int = 16) -> int:
    """One level per halving while the shorter side stays >= ``min_res`` (ProGAN: 1024 -> 16 is 7 levels)."""
    side, levels = min(height, width), 1
    while side // 2 >= min_res:
        side //= 2
        levels += 1
    return levels


def _patches(band: torch.Tensor, per_image: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) -> (B * per_image, C, size, size) random neighbourhoods (positions from ``gen``)."""
    b, _, h, w = band.shape
    if h < size or w < size:
        raise ValueError(f"a {h}x{w} pyramid level is smaller than the {size}x{size} patch")
    ys = torch.randint(0, h - size + 1, (b, per_image), generator=gen)
    xs = torch.randint(0, w - size + 1, (b, per_image), generator=gen)
    out = [band[i, :, y:y + size, x:x + size] for i in range(b) for y, x in zip(ys[i].tolist(), xs[i].tolist(),
                                                                                  strict=True)]
    return torch.stack(out)


def _normalise(desc: torch.Tensor) -> torch.Tensor:
    """Per-channel standardisation over all descriptors of one set, then flatten: (N, C, k, k) -> (N, C*k*k)."""
    desc = desc - desc.mean(dim=(0, 2, 3), keepdim=True)
    desc = desc / desc.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-8)
    return desc.reshape(desc.shape[0], -1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, dir_repeats: int, dirs_per_repeat: int,
                       gen: torch.Generator) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the projections of ``a``, ``b`` (N, D)."""
    if a.shape != b.shape:
        raise ValueError(f"descriptor sets differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    results = []
    for _ in range(dir_repeats):
        dirs = torch.randn(a.shape[1], dirs_per_repeat, generator=gen, dtype=a.dtype)
        dirs = dirs / dirs.norm(dim=0, keepdim=True)
        pa, _ = torch.sort(a @ dirs, dim=0)
        pb, _ = torch.sort(b @ dirs, dim=0)
        results.append((pa - pb).abs().mean())
    return float(torch.stack(results).mean())


def _descriptors(images: Iterable[torch.Tensor], levels: int, per_image: int, size: int,
                 seed: int) -> list[torch.Tensor]:
    """Per level, the normalised descriptors of every image (positions drawn from ``seed``)."""
    gen = torch.Generator().manual_seed(seed)
    per_level: list[list[torch.Tensor]] = [[] for _ in range(levels)]
    for batch in images:
        for i, band in enumerate(laplacian_pyramid(batch.float(), levels)):
            per_level[i].append(_patches(band, per_image, size, gen))
    return [_normalise(torch.cat(p)) for p in per_level]


def _as_batches(x: torch.Tensor | Iterable[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x[i:i + 1] for i in range(x.shape[0])] if x.dim() == 4 else [x.unsqueeze(0)]
    return [t if t.dim() == 4 else t.unsqueeze(0) for t in x]


@torch.no_grad()
def sliced_wasserstein_distance(
    a: torch.Tensor | Iterable[torch.Tensor], b: torch.Tensor | Iterable[torch.Tensor], *,
    patches_per_image: int = 128, patch_size: int = 7, min_res: int = 16, dir_repeats: int = 4,
    dirs_per_repeat: int = 128, seed: int = 0,
) -> dict[str, float | list[float]]:
    """SWD x 1e3 between two image sets (a (N, C, H, W) tensor or a list of (C, H, W) / (1, C, H, W) images of
    any sizes, values in any fixed range; both sets the same count, image i of ``a`` the same size as image
    i of ``b``). Returns ``{"swd": mean over levels, "swd_levels": [finest, ..., coarsest]}``.

    Patch positions and projection directions come from ``seed``, and the patch positions are the
    same for both sets, so scoring twice gives the same number.
    """
    a_list, b_list = _as_batches(a), _as_batches(b)
    if len(a_list) != len(b_list) or not a_list:
        raise ValueError(f"SWD needs two non-empty image sets of the same size, got {len(a_list)} and {len(b_list)}")
    levels = min(num_levels(*t.shape[-2:], min_res=min_res) for t in a_list)
    desc_a = _descriptors(a_list, levels, patches_per_image, patch_size, seed)
    desc_b = _descriptors(b_list, levels, patches_per_image, patch_size, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    per_level = [1e3 * sliced_wasserstein(da, db, dir_repeats, dirs_per_repeat, gen)
                 for da, db in zip(desc_a, desc_b, strict=True)]
    return {"swd": sum(per_level) / len(per_level), "swd_levels": per_level}
