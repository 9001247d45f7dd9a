"""``slimgan bench quality``: FID, KID, IS, Variance of Laplacian, PSNR/SSIM and an mIoU hook for generators.

The metrics live in :mod:`distill.metrics` (FID/KID/IS and the FID Inception in
:mod:`distill.metrics.fid` / :mod:`distill.metrics.inception`); this module is the harness around them
and the mIoU hook for a user's segmentation model:

- :func:`compute_miou` -- mean IoU of a user's segmentation model on generated images.
- :func:`evaluate_models` -- the ``slimgan bench quality`` harness (writes quality.json / quality.md).

Without the Inception weight file FID/KID/IS are *unavailable*: the harness reports ``null`` with the
reason; a randomly initialised Inception is never used to produce a number.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from distill.errors import ConfigError
from distill.metrics.fid import (  # noqa: F401  (re-exported: the harness's public metric names)
    CACHE_ENV,
    FEATURE_DIM,
    UNAVAILABLE,
    WEIGHTS_ENV,
    Images,
    compute_fid,
    compute_kid,
    dataset_statistics,
    fid_from_features,
    frechet_distance,
    inception_outputs,
    inception_score,
    inception_score_from_logits,
    iter_batches,
    kid_from_features,
    load_inception,
    resolve_inception_weights,
    statistics,
)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ mIoU
def load_callable(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function (for ``--seg-model``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"expected MODULE:FUNCTION (e.g. mypkg.seg:predict), got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for {spec!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{module_name} has no callable {attr!r}")
    return fn


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(K, K) counts, rows = label, columns = prediction; pixels labelled ``ignore_index`` are skipped."""
    pred, label = np.asarray(pred).astype(np.int64).ravel(), np.asarray(label).astype(np.int64).ravel()
    if pred.shape != label.shape:
        raise ValueError(f"prediction has {pred.size} pixels, labels {label.size}")
    keep = (label != ignore_index) & (label >= 0) & (label < num_classes)
    return np.bincount(num_classes * label[keep] + np.clip(pred[keep], 0, num_classes - 1),
                       minlength=num_classes**2).reshape(num_classes, num_classes)


def miou_from_confusion(conf: np.ndarray) -> tuple[float, list[float | None]]:
    """Mean IoU over classes present in labels or predictions; per-class IoU (None when absent)."""
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - np.diag(conf)
    per_class = [float(i / u) if u > 0 else None for i, u in zip(inter, union, strict=True)]
    present = [v for v in per_class if v is not None]
    return (float(np.mean(present)) if present else float("nan")), per_class


def compute_miou(pred_fn: Callable[[Any], Any], images: Images, labels: Iterable[Any] | Any, num_classes: int,
                 ignore_index: int = 255, batch_size: int = 16) -> float:
    """mIoU of ``pred_fn`` (images (B, 3, H, W) in [-1, 1] -> class map (B, H, W), or logits (B, K, H, W))
    on ``images`` against ``labels`` (B, H, W) integer maps, the "FCN score" of pix2pix (Isola et al. 2017, §4.2).
    """
    import torch

    label_iter = iter_batches(labels, batch_size) if isinstance(labels, (torch.Tensor, np.ndarray)) else iter(labels)
    conf = np.zeros((num_classes, num_classes), np.int64)
    for batch in iter_batches(images, batch_size):
        label = next(label_iter)
        conf += confusion_matrix(_class_map(pred_fn(batch), num_classes), _to_numpy(label), num_classes, ignore_index)
    return miou_from_confusion(conf)[0]


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _class_map(pred: Any, num_classes: int) -> np.ndarray:
    pred = _to_numpy(pred)
    if pred.ndim == 4:  # logits (B, K, H, W)
        pred = pred.argmax(1)
    return pred


# ---------------------------------------------------------------------------------------- the harness
def _json_value(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return float(x)


@dataclass(frozen=True)
class QualityOptions:
    """Options of :func:`evaluate_models` (the ``slimgan bench quality`` flags)."""

    layout: str = "aligned"
    phase: str = "test"
    direction: str = "AtoB"
    teacher: str | None = None
    res: int | None = None
    num: int | None = None
    batch_size: int = 8
    weights_path: str | Path | None = None
    cache_dir: str | Path | None = None
    seg_model: str | None = None
    num_classes: int | None = None
    seed: int = 0
    kid_subset_size: int = 1000
    is_splits: int = 10


@dataclass
class _Inputs:
    """What every model is scored against: the dataset, the Inception side and the segmenter."""

    dataset: Any
    count: int
    paired: bool
    inception: Any = None
    real_stats: dict[str, np.ndarray] | None = None
    seg_fn: Callable[..., Any] | None = None


def evaluate_models(models: list[str], data: str | Path, out: str | Path, options: QualityOptions | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """Run the quality benchmark; writes ``quality.json`` and ``quality.md`` into ``out`` and returns the report.

    ``options`` (or the same names as keywords: ``teacher=...``) are :class:`QualityOptions`.
    Each model is a checkpoint directory (run in torch) or an exported bundle (run in ONNX Runtime).
    Translation models turn the dataset's A images into fakes compared with the real B images
    (PSNR/SSIM to ground truth only for the paired ``aligned`` layout); unconditional models draw
    ``num`` latents from N(0, 1) with ``seed``. With ``teacher``, PSNR/SSIM to the teacher's outputs on
    the same inputs are added. With ``seg_model`` (``module:function``) the mIoU of the segmenter on
    the fakes is measured against its own predictions on the real images.
    """
    from benchmarks.generators import load_generator

    opts = replace(options or QualityOptions(), **overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    inputs, size = _load_inputs(data, opts)
    weights, inception_reason = _setup_inception(inputs, opts)
    teacher = opts.teacher
    names = list(models) + ([teacher] if teacher and teacher not in models else [])
    generators = {m: load_generator(m) for m in names}
    results = []
    teacher_outputs: list[Any] = []
    order = ([teacher] if teacher else []) + [m for m in models if m != teacher]
    for name in order:
        row = _score_model(name, generators[name], inputs, opts, teacher_outputs)
        results.append(row)
        log.info("quality %s: %s", name, {k: v for k, v in row.items() if isinstance(v, float)})

    report = {
        "schema": "slimgan-quality/1",
        "data": {"root": str(data), "layout": opts.layout, "phase": opts.phase, "direction": opts.direction, **size,
                 "images": inputs.count},
        "teacher": teacher,
        "inception": {"weights": str(weights) if weights else None,
                      "available": weights is not None, "reason": inception_reason,
                      "reference_cached": bool(inputs.real_stats["cached"]) if inputs.real_stats is not None else None},
        "segmentation": {"model": opts.seg_model, "num_classes": opts.num_classes,
                         "labels": "segmenter predictions on the real images" if opts.seg_model else None},
        "results": results,
    }
    (out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "quality.md").write_text(format_quality_table(report))
    return report


def _load_inputs(data: str | Path, opts: QualityOptions) -> tuple[_Inputs, dict[str, Any]]:
    """The dataset (at ``res`` or its own size), how many images to score, and the size record."""
    from distill.data import TransformConfig, build_dataset

    res = opts.res
    transform = TransformConfig(load_size=res or 0, crop_size=res or 0, flip=False, train=False)
    dataset = build_dataset(opts.layout, data, phase=opts.phase, direction=opts.direction, transform=transform,
                            seed=opts.seed)
    count = len(dataset) if opts.num is None else min(opts.num, len(dataset))
    if count < 2:
        raise ConfigError(f"{data} ({opts.layout}, {opts.phase}) has {len(dataset)} images; the quality benchmark needs 2+")
    # None: the data's own size (resizing 64 px data to 256 px changes every score); the report says which
    native = list(dataset[0]["B"].shape[-2:])
    size = {"res": res or (native[0] if native[0] == native[1] else native),
            "res_source": "--res" if res else "the data's own size"}
    if res is None:
        log.info("evaluating at the data's own size, %s (give --res to resize)", "x".join(map(str, native)))
    seg_fn = load_callable(opts.seg_model) if opts.seg_model else None
    if seg_fn is not None and not opts.num_classes:
        raise ConfigError("--seg-model needs --num-classes")
    return _Inputs(dataset, count, opts.layout == "aligned", seg_fn=seg_fn), size


def _setup_inception(inputs: _Inputs, opts: QualityOptions) -> tuple[Path | None, str | None]:
    """Load the FID Inception and the real images' statistics into ``inputs``; without the weight file, the reason."""
    weights = resolve_inception_weights(opts.weights_path)
    if weights is None:
        reason = (f"Inception weights not found ({opts.weights_path or '$' + WEIGHTS_ENV + ' unset'}); "
                  "FID/KID/IS need pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
        log.warning("FID/KID/IS unavailable: %s", reason)
        return None, reason
    ds, count = inputs.dataset, inputs.count
    inputs.real_stats = dataset_statistics(_Subset(ds, count), weights, opts.res, opts.batch_size, opts.cache_dir,
                                           files=_dataset_files(ds, count),
                                           extra_key=f"{opts.layout}|{opts.phase}|{opts.direction}|{count}")
    inputs.inception = load_inception(weights)
    return weights, None


def _score_model(name: str, gen: Any, inputs: _Inputs, opts: QualityOptions, teacher_outputs: list[Any]) -> dict[str, Any]:
    """One row: VoL, PSNR/SSIM to ground truth and to the teacher, FID/KID/IS, mIoU as available.

    The teacher is scored first; its outputs are appended to ``teacher_outputs`` for the students."""
    import torch

    from distill.metrics import psnr, ssim, variance_of_laplacian

    teacher, k = opts.teacher, opts.num_classes
    acc = _Accumulator()
    conf = np.zeros((k, k), np.int64) if inputs.seg_fn else None
    feats, logits = [], []
    gen_rng = torch.Generator().manual_seed(opts.seed)
    for bi, start in enumerate(range(0, inputs.count, opts.batch_size)):
        samples = [inputs.dataset[i] for i in range(start, min(start + opts.batch_size, inputs.count))]
        real = torch.stack([s["B"] for s in samples])  # (B, C, H, W)
        n = len(samples)
        if gen.task == "generate":
            fake = gen(torch.randn(n, gen.latent_size, generator=gen_rng))
        else:
            fake = gen(torch.stack([s["A"] for s in samples]))
        fake = fake.float().clamp(-1, 1)
        acc.add("vol", variance_of_laplacian(fake), n)
        if inputs.paired and gen.task == "translate" and fake.shape == real.shape:
            acc.add("psnr_gt", psnr(fake, real), n)
            acc.add("ssim_gt", ssim(fake, real), n)
        if teacher and name == teacher:
            teacher_outputs.append(fake)
        elif teacher and teacher_outputs and fake.shape == teacher_outputs[bi].shape:
            acc.add("psnr_teacher", psnr(fake, teacher_outputs[bi]), n)
            acc.add("ssim_teacher", ssim(fake, teacher_outputs[bi]), n)
        if inputs.inception is not None:
            f, lg = inception_outputs(fake, inputs.inception, opts.batch_size)
            feats.append(f)
            logits.append(lg)
        if conf is not None:
            conf += confusion_matrix(_class_map(inputs.seg_fn(fake), k), _class_map(inputs.seg_fn(real), k), k)
    row: dict[str, Any] = {"model": name, "arch": gen.arch, "runtime": gen.runtime, "task": gen.task,
                           "images": inputs.count, "is_teacher": bool(teacher and name == teacher)}
    row.update({key: _json_value(v) for key, v in acc.means().items()})
    row.update(_inception_scores(inputs, feats, logits, opts))
    if conf is not None:
        row["miou"] = _json_value(miou_from_confusion(conf)[0])
    return row


def _inception_scores(inputs: _Inputs, feats: list[np.ndarray], logits: list[np.ndarray],
                      opts: QualityOptions) -> dict[str, Any]:
    if inputs.inception is None or inputs.real_stats is None:
        return {"fid": None, "kid": None, "kid_std": None, "is": None, "is_std": None}
    real = inputs.real_stats
    f_fake, l_fake = np.concatenate(feats), np.concatenate(logits)
    fid = (fid_from_features(real["features"], f_fake) if len(f_fake) <= FEATURE_DIM
           else frechet_distance(real["mu"], real["sigma"], *statistics(f_fake)))
    kid_mean, kid_std = kid_from_features(real["features"], f_fake, subset_size=opts.kid_subset_size)
    is_mean, is_std = inception_score_from_logits(l_fake, opts.is_splits)
    return {"fid": fid, "kid": kid_mean, "kid_std": kid_std, "is": is_mean, "is_std": is_std}


class _Subset:
    def __init__(self, dataset: Any, count: int) -> None:
        self.dataset, self.count = dataset, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]


def _dataset_files(dataset: Any, count: int) -> list[Path]:
    files = getattr(dataset, "files", None) or getattr(dataset, "files_b", None) or []
    return [Path(p) for p in files]


class _Accumulator:
    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, value: float, n: int) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value * n
        self.counts[key] = self.counts.get(key, 0) + n

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


_COLUMNS = [("fid", "FID", "{:.2f}"), ("kid", "KID", "{:.4f}"), ("is", "IS", "{:.2f}"),
            ("vol", "VoL", "{:.1f}"), ("psnr_gt", "PSNR gt", "{:.2f}"), ("ssim_gt", "SSIM gt", "{:.4f}"),
            ("psnr_teacher", "PSNR teacher", "{:.2f}"), ("ssim_teacher", "SSIM teacher", "{:.4f}"),
            ("miou", "mIoU", "{:.4f}")]


def format_quality_table(report: dict[str, Any]) -> str:
    """A markdown table of a quality report; missing FID/KID/IS print as "unavailable"."""
    cols = [c for c in _COLUMNS if any(c[0] in r for r in report["results"])]
    lines = [f"# Quality ({report['data']['images']} images, {report['data']['layout']} "
             f"{report['data']['phase']}, {report['data']['res']} px)", ""]
    if not report["inception"]["available"]:
        lines += [f"FID/KID/IS: {UNAVAILABLE} -- {report['inception']['reason']}", ""]
    lines.append("| model | runtime | " + " | ".join(c[1] for c in cols) + " |")
    lines.append("|---|---|" + "---|" * len(cols))
    for r in report["results"]:
        name = r["model"] + (" (teacher)" if r.get("is_teacher") else "")
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            cells.append(UNAVAILABLE if v is None and key in ("fid", "kid", "is") else ("-" if v is None else fmt.format(v)))
        lines.append(f"| {name} | {r['runtime']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
