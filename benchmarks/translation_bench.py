"""``slimgan bench distill --task translation``: distil a real (frozen) translation teacher on real photos.

The teacher is a checkpoint directory (``slimgan import`` of a user's generator). Targets are the
teacher's outputs, computed once on every photo at ``res`` and cached (GAN Compression's pseudo-pairs
for CycleGAN), together with the teacher's activations at the feature-KD layers. Every row trains the
same student (default ``mobile_resnet_9blocks`` at ngf 16 with BatchNorm, ``--student-norm``) from the same
initialisation per seed, on the same random crops in the same order, for the same steps, with the same Adam;
only the objective differs:

- ``l1``: ``10·L1(G_s(x), G_t(x))`` (the baseline; 10 = GAN Compression's λ_recon);
- ``feature``: l1 + ``1·Σ_ℓ MSE(f_ℓ(S_ℓ), T_ℓ)``, GAN Compression's feature KD with learned 1x1 adapters
  at the four residual-trunk layers (``model.9/12/15/18``);
- ``crd``: l1 + ``25·L_CRD`` (content relationship distillation, λ_CRD of CycleGAN; not in the default list);
- ``vem``: l1 + ``0.1·(-Ĩ(T; S))`` (energy network at C = 8, the horse→zebra width);
- ``mse``: ``10·MSE`` instead of L1 (not in the default list).

Scores on the held-out photos, whole images at ``res``: ``psnr_teacher``, ``ssim_teacher`` and ``swd``
(:mod:`distill.metrics.swd`, student outputs against teacher outputs). ``identity`` (returning the input)
is the floor every student must clear. ``colour_map`` is one affine RGB map (12 numbers) fitted by least
squares on the training photos' pixels: how far a teacher is a plain recolouring, and so the score a student
must pass to do better than a recolouring. Each row records its held-out curve (``psnr_teacher`` on a fixed
subset every ``eval_every`` steps) and whether it flattened.

Crops are 64 px, 16 to a batch, by default. The teacher's InstanceNorm statistics and receptive field span
the whole photo, so a small crop's cached target depends on pixels the crop does not hold
(``setup.crop_target_psnr`` measures it for the teacher itself); the BatchNorm student nonetheless learns the
whole-photo mapping faster per step from 16 crops of 64 px than from 4 of 128 px, the same pixels a step
(``--crop 128 --batch 4``; benchmarks/results/real_teacher_crop128.md). The student uses BatchNorm by default
because its InstanceNorm after the first convolution removes the per-image colour statistics the teacher's
colour changes follow; ``--student-norm instance`` gives the CycleGAN layout.

The full scale holds the whole run to ``--time-budget`` minutes (70 by default): :func:`fit_to_budget` times
a few steps of every row side by side on the host and, when the 2,000 steps would not fit, trains every row
the largest shared step count that does (recorded in ``setup.budget``).
"""

from __future__ import annotations

import logging
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.report import aggregate, format_cmp, mean_std, vs_baseline, write_report
from benchmarks.time_budget import JobCost, curve_points, describe, fit_steps
from distill.errors import CheckpointError, ConfigError, DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
FEATURE_LAYERS = ("model.9", "model.12", "model.15", "model.18")  # GAN Compression's resnet mapping layers
FEATURE_CACHE_LIMIT = 2 << 30  # bytes of cached teacher activations (fp16) before layers are dropped
METRICS = ("psnr_teacher", "ssim_teacher", "swd")
# crd is not in the default list: its angle term is O(N³) in the crop side (column and row units), about 25x
# an l1 step at 4 crops of 128 px on one CPU thread, so within the default time budget it would leave every row
# a fraction of the steps.
DEFAULT_METHODS = ("l1", "feature", "vem")

# name -> (loss specs beyond the shared reconstruction, description); every row also gets 10·l1_teacher
# except ``mse`` which replaces it.
METHODS: dict[str, tuple[list[dict[str, Any]], str]] = {
    "l1": ([], "10·L1 to the teacher's output (pseudo-pairs)"),
    "feature": ([{"name": "feature_kd", "weight": 1.0, "layers": list(FEATURE_LAYERS)}],
                "l1 + 1·feature KD (GAN Compression, 1x1 adapters, residual-trunk layers)"),
    "crd": ([{"name": "crd", "weight": 25.0}], "l1 + 25·CRD (column, row and patch relations, RKD 1:2)"),
    "vem": ([{"name": "vem", "weight": 0.1, "to": "teacher", "channels": 8}],
            "l1 + 0.1·VEM (-Ĩ(T;S), energy net C=8, 10 Langevin steps)"),
    "mse": ([], "10·MSE to the teacher's output"),
}


ADAM_BETAS = (0.5, 0.999)  # GAN Compression's, kept for every row so the rows differ only in their objective


@dataclass(frozen=True)
class TranslationScale:
    """Image short side ``res``, training ``crop`` and ``batch``, ``steps`` per row, Adam ``lr`` (constant for
    the first half, then linearly to 0), the held-out curve every ``eval_every`` steps on ``curve_images``;
    at most ``max_train`` / ``max_test`` photos (the teacher pass and the cache grow with them)."""

    res: int
    crop: int
    batch: int
    steps: int
    lr: float
    eval_every: int
    curve_images: int = 8
    test_fraction: float = 0.2
    student_arch: str = "mobile_resnet_9blocks"
    student_ngf: int = 16
    student_norm: str = "batch"
    max_train: int | None = 200
    max_test: int | None = 50
    time_budget_min: float | None = None


SCALES = {
    "quick": TranslationScale(res=64, crop=32, batch=2, steps=40, lr=1e-3, eval_every=20, curve_images=4),
    "full": TranslationScale(res=256, crop=64, batch=16, steps=2000, lr=1e-3, eval_every=200, time_budget_min=70.0),
}


# --------------------------------------------------------------------------------------------- photos
def list_photos(root: Path) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return files


def _cap(files: list[Path], limit: int | None, seed: int) -> list[Path]:
    if limit is None or len(files) <= limit:
        return files
    return sorted(random.Random(seed).sample(files, limit))


def split_photos(root: Path, fraction: float, seed: int = 0, max_train: int | None = None,
                 max_test: int | None = None) -> dict[str, Any]:
    """``{train: [...], test: [...], how}``: ``train/`` and ``test/`` (or ``trainA/`` and ``testA/``) when the
    folder has both, else a deterministic split (sorted relative paths shuffled with ``random.Random(seed)``;
    ``fraction`` held out).
    Either side larger than ``max_train`` / ``max_test`` is cut to a deterministic sample of that size."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"--photos {root} is not a folder")
    given = next(((a, b) for a, b in (("train", "test"), ("trainA", "testA"))
                  if (root / a).is_dir() and (root / b).is_dir()), None)
    if given:  # trainA/testA: a CycleGAN dataset folder, whose A side is the teacher's input domain
        train, test = list_photos(root / given[0]), list_photos(root / given[1])
        how = f"the folder's {given[0]}/ and {given[1]}/"
    else:
        files = list_photos(root)
        order = list(files)
        random.Random(seed).shuffle(order)
        n_test = max(2, round(fraction * len(files)))
        test, train = sorted(order[:n_test]), sorted(order[n_test:])
        how = f"sorted paths shuffled with random.Random({seed}); {n_test} of {len(files)} held out"
    available = {"train": len(train), "test": len(test)}
    train, test = _cap(train, max_train, seed), _cap(test, max_test, seed)
    if (len(train), len(test)) != (available["train"], available["test"]):
        how += (f"; capped to {len(train)} of {available['train']} training and {len(test)} of {available['test']} "
                f"held-out photos (random.Random({seed}) sample)")
    if len(train) < 2 or len(test) < 2:
        raise DatasetError(f"--photos {root}: {len(train)} training and {len(test)} held-out photos; "
                           "the benchmark needs 2+ of each (image files: " + ", ".join(IMAGE_SUFFIXES) + ")")
    return {"train": train, "test": test, "how": how, "available": available, "train_files": [str(p.relative_to(root)) for p in train],
            "test_files": [str(p.relative_to(root)) for p in test]}


def load_photo(path: Path, res: int, step: int = 4) -> Any:
    """RGB photo -> (3, H, W) in [-1, 1], the short side resized to ``res`` (bicubic), both sides cut to a
    multiple of ``step`` (centred; :func:`size_step`) so the teacher and the student map it to the same size."""
    import numpy as np
    import torch
    from PIL import Image

    from serve.imaging import to_rgb

    try:
        with Image.open(path) as img:
            img = to_rgb(img)  # a 16-bit PNG scaled, not clipped to white as convert("RGB") would
            w, h = img.size
            scale = res / min(w, h)
            img = img.resize((max(4, round(w * scale)), max(4, round(h * scale))), Image.BICUBIC)
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc
    arr = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1) / 127.5 - 1.0
    h, w = arr.shape[-2:]
    top, left = (h % step) // 2, (w % step) // 2
    return arr[:, top:top + h - h % step, left:left + w - w % step].contiguous()


def size_step(teacher: Any, scale: TranslationScale) -> int:
    """The multiple both sides of every photo are cut to: the least one that the teacher's and the student's
    architectures both take (a ResNet halves twice, so 4; pix2pix's ``unet_256`` halves 8 times, so 256)."""
    import math

    from distill.registry import model_info

    arch = teacher.slimgan_config["arch"]
    info = model_info(arch)
    if info.input_kind != "image":
        raise ConfigError(f"--task translation needs an image-to-image teacher; {arch} is a {info.input_kind} "
                          "generator: use --task unconditional")
    channels = teacher.slimgan_config["kwargs"].get("input_nc", 3)
    if channels != 3:
        raise ConfigError(f"--task translation feeds RGB photos; the teacher ({arch}) takes {channels} channel(s)")
    step = math.lcm(4, info.size_multiple, model_info(scale.student_arch).size_multiple)
    if scale.res < step:
        raise ConfigError(f"--res {scale.res} is smaller than the teacher's size step: {arch} takes sides that are "
                          f"multiples of {step}; pass --res {step} or more")
    return step


# ------------------------------------------------------------------------------------- teacher cache
class _Taps:
    """Forward hooks storing the outputs of the modules at ``paths`` of ``model``."""

    def __init__(self, model: Any, paths: list[str]) -> None:
        modules = dict(model.named_modules())
        missing = [p for p in paths if p not in modules]
        if missing:
            raise ConfigError(f"{type(model).__name__} has no module {missing[0]!r} (feature-KD layers "
                              f"{', '.join(paths)}); `slimgan info CKPT --layers` lists its paths")
        self.feats: dict[str, Any] = {}
        self.handles = [modules[p].register_forward_hook(self._hook(p)) for p in paths]

    def _hook(self, path: str):
        def hook(_module, _inputs, output):
            self.feats[path] = output
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def shared_layers(teacher: Any, student: Any) -> list[str]:
    """The feature-KD layers (:data:`FEATURE_LAYERS`) both models have."""
    t_mods, s_mods = dict(teacher.named_modules()), dict(student.named_modules())
    return [p for p in FEATURE_LAYERS if p in t_mods and p in s_mods]


def feature_layers(teacher: Any, student: Any, sample_shape: tuple[int, int], n_train: int, step: int = 4) -> list[str]:
    """The feature-KD layers both models have, at most as many as fit :data:`FEATURE_CACHE_LIMIT` (evenly kept)."""
    layers = shared_layers(teacher, student)
    if not layers:
        return []
    import torch

    side = max(32, step)
    taps = _Taps(teacher, layers)
    with torch.no_grad():
        teacher(torch.zeros(1, 3, side, side))
    taps.close()
    per_pixel = sum(f.shape[1] / (side * side / (f.shape[-1] * f.shape[-2])) for f in taps.feats.values()) / len(layers)
    per_layer = per_pixel * sample_shape[0] * sample_shape[1] * 2 * n_train
    keep = max(1, min(len(layers), int(FEATURE_CACHE_LIMIT // max(per_layer, 1))))
    return [layers[round(i * (len(layers) - 1) / max(1, keep - 1))] for i in range(keep)] if keep < len(layers) else layers


def teacher_pass(teacher: Any, photos: list[Path], res: int, layers: list[str], step: int = 4) -> list[dict[str, Any]]:
    """Per photo: ``input`` and the teacher's ``target`` (fp32) and activations at ``layers`` (fp16)."""
    import torch

    taps = _Taps(teacher, layers) if layers else None
    items = []
    with torch.no_grad():
        for path in photos:
            x = load_photo(path, res, step)
            y = teacher(x.unsqueeze(0)).float().clamp(-1, 1)[0]
            if y.shape != x.shape:
                raise CheckpointError(f"the teacher maps a {tuple(x.shape)} photo to {tuple(y.shape)}; the "
                                      "translation benchmark needs an image-to-image generator of the same size")
            feats = {k: v[0].half() for k, v in taps.feats.items()} if taps else {}
            items.append({"input": x, "target": y, "feats": feats})
    if taps:
        taps.close()
    return items


CROP_CHECK_PHOTOS = 8  # training photos the crop-target check runs the teacher on


def crop_target_psnr(teacher: Any, items: list[dict[str, Any]], crop: int,
                     n: int = CROP_CHECK_PHOTOS, step: int = 4) -> float | None:
    """PSNR between the teacher run on a centre ``crop`` of each of the first ``n`` training photos and the same
    crop of its whole-photo output (the cached target). Low values mean the targets of a crop depend on context
    outside it (the teacher's InstanceNorm statistics and receptive field), so a crop-trained student chases
    targets it cannot see; None when no photo is larger than the crop, or the teacher cannot run on a crop that size
    (not a multiple of its size ``step``)."""
    import torch

    from distill.metrics import psnr

    if crop % step:
        return None
    scores = []
    with torch.no_grad():
        for item in items[:n]:
            h, w = item["input"].shape[-2:]
            if min(h, w) < crop or max(h, w) == crop:  # no window, or the window is the whole photo
                continue
            top, left = (h - crop) // 8 * 4, (w - crop) // 8 * 4
            window = (..., slice(top, top + crop), slice(left, left + crop))
            alone = teacher(item["input"][window].unsqueeze(0)).float().clamp(-1, 1)
            scores.append(min(100.0, psnr(alone, item["target"][window].unsqueeze(0))))  # identical: inf
    return round(sum(scores) / len(scores), 2) if scores else None


# --------------------------------------------------------------------------------------------- training
class CropSampler:
    """Random ``crop`` x ``crop`` windows (corners on a 4-pixel grid, so the 1/4-resolution teacher activations
    line up) with random horizontal flips, from ``torch.Generator(seed)``: every row of a seed sees the
    same batches in the same order."""

    def __init__(self, items: list[dict[str, Any]], crop: int, batch: int, seed: int) -> None:
        import torch

        self.items, self.crop, self.batch = items, crop, batch
        self.gen = torch.Generator().manual_seed(10_000 + seed)

    def __call__(self) -> tuple[Any, Any, dict[str, Any]]:
        import torch

        xs, ys, fs = [], [], {}
        for i in torch.randint(0, len(self.items), (self.batch,), generator=self.gen).tolist():
            x, y, feats = self._window(self.items[i])
            xs.append(x)
            ys.append(y)
            for k, v in feats.items():
                fs.setdefault(k, []).append(v)
        return torch.stack(xs), torch.stack(ys), {k: torch.stack(v) for k, v in fs.items()}

    def _window(self, item: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
        import torch

        h, w = item["input"].shape[-2:]
        c = min(self.crop, h - h % 4, w - w % 4)
        top = 4 * int(torch.randint(0, (h - c) // 4 + 1, (1,), generator=self.gen))
        left = 4 * int(torch.randint(0, (w - c) // 4 + 1, (1,), generator=self.gen))
        flip = bool(torch.rand((), generator=self.gen) < 0.5)

        def cut(t: Any, stride: int = 1) -> Any:
            out = t[..., top // stride:(top + c) // stride, left // stride:(left + c) // stride]
            return out.flip(-1) if flip else out

        feats = {k: cut(f, h // f.shape[-2]).float() for k, f in item["feats"].items()}
        return cut(item["input"]), cut(item["target"]), feats


def build_terms(method: str, layers: list[str]) -> list[Any]:
    from distill.losses import build_loss

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r} in --methods; choose from {', '.join(METHODS)}")
    base = [{"name": "mse_teacher" if method == "mse" else "l1_teacher", "weight": 10.0}]
    specs = base + [dict(s) for s in METHODS[method][0]]
    for s in specs:
        if s["name"] == "feature_kd":
            if not layers:
                raise ConfigError("the feature row needs layers the teacher and student share "
                                  f"({', '.join(FEATURE_LAYERS)}); leave 'feature' out of --methods")
            s["layers"] = list(layers)
    return [build_loss(s) for s in specs]


def _lr_at(step: int, scale: TranslationScale) -> float:
    half = scale.steps // 2
    return scale.lr if step < half else scale.lr * (scale.steps - step) / max(1, scale.steps - half)


def predict(student: Any, images: list[Any]) -> list[Any]:
    import torch

    was = student.training
    student.eval()
    with torch.no_grad():
        outs = [student(x.unsqueeze(0)).float().clamp(-1, 1)[0] for x in images]
    student.train(was)
    return outs


def _psnr(outs: list[Any], targets: list[Any]) -> float:
    from distill.metrics import psnr

    return sum(psnr(o.unsqueeze(0), t.unsqueeze(0)) for o, t in zip(outs, targets, strict=True)) / len(outs)


def train_row(method: str, seed: int, train: list[dict[str, Any]], curve: list[dict[str, Any]],
              scale: TranslationScale, layers: list[str]) -> tuple[Any, dict[str, Any]]:
    """Train one student; returns it and ``{curve: [[step, psnr_teacher], ...], train_s, sec_per_step, first_step_s}``."""
    import torch

    from distill.engine.context import StepContext
    from distill.registry import create_model

    torch.manual_seed(seed)
    student = create_model(scale.student_arch, ngf=scale.student_ngf, norm=scale.student_norm)
    # NHWC lets oneDNN use its blocked CPU convolution kernels, which train this small student faster than
    # NCHW at the same fp32 precision (the calibration speeds are in README, Distillation).
    student.to(memory_format=torch.channels_last).train()
    terms = build_terms(method, layers)
    taps = _Taps(student, sorted({p for t in terms for p in t.student_layers()}))
    sampler = CropSampler(train, scale.crop, scale.batch, seed)

    def context(step: int) -> StepContext:
        x, y, feats = sampler()
        x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
        out = student(x)
        return StepContext(step=step, real_a=x, real_b=None, paired=False, student=student, teacher=None,
                           student_out=out, teacher_out=y, student_feats=dict(taps.feats), teacher_feats=feats)

    with torch.no_grad():
        first = context(0)
    for t in terms:
        t.setup(first)
        t.to(memory_format=torch.channels_last)  # the adapters and VEM's energy net that setup built, likewise
    params = list(student.parameters()) + [p for t in terms for p in t.student_parameters()]
    opt = torch.optim.Adam(params, lr=scale.lr, betas=ADAM_BETAS)
    aux = [o for t in terms for o in t.aux_optimizers().values()]
    sampler.gen.manual_seed(10_000 + seed)  # the setup batch is not a training batch
    curve_x, curve_y = [c["input"] for c in curve], [c["target"] for c in curve]
    history = [[0, round(_psnr(predict(student, curve_x), curve_y), 4)]]
    start, timed, first = time.perf_counter(), 0.0, 0.0
    for step in range(scale.steps):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, scale)
        ctx = context(step)
        ctx.optimize = _optimize
        for t in terms:
            t.aux_step(ctx)
        loss = sum(t.weight * t(ctx) for t in terms)
        _optimize(loss, opt)
        timed += time.perf_counter() - t0
        first = first or timed
        if (step + 1) % scale.eval_every == 0 or step + 1 == scale.steps:
            history.append([step + 1, round(_psnr(predict(student, curve_x), curve_y), 4)])
    taps.close()
    del aux
    student.eval()
    return student, {"curve": history, "train_s": round(time.perf_counter() - start, 2),
                     "sec_per_step": round(timed / scale.steps, 5), "first_step_s": round(first, 5)}


def _optimize(loss: Any, optimizer: Any) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def flattened(curve: list[list[float]], tolerance_db: float = 0.1) -> dict[str, Any]:
    """Whether the held-out curve flattened: the gain over the last quarter of the steps is below ``tolerance_db``."""
    last_step = curve[-1][0]
    ref = [p for p in curve if p[0] <= 0.75 * last_step][-1]
    gain = curve[-1][1] - ref[1]
    return {"last_quarter_gain_db": round(gain, 4), "flat": bool(gain < tolerance_db), "tolerance_db": tolerance_db}


def fit_colour_map(train: list[dict[str, Any]]) -> Any:
    """The 4 x 3 least-squares affine RGB map (``[r, g, b, 1] @ W``) from the training photos' input pixels to
    their teacher pixels, in float64. A reference, not a student: the best any recolouring that ignores
    position and context does on these photos; a student below it has learned less than 12 numbers hold."""
    import torch

    ata = torch.zeros(4, 4, dtype=torch.float64)
    atb = torch.zeros(4, 3, dtype=torch.float64)
    for item in train:
        a = _with_ones(item["input"])
        ata += a.T @ a
        atb += a.T @ item["target"].reshape(3, -1).T.double()
    return torch.linalg.lstsq(ata, atb).solution


def apply_colour_map(weights: Any, x: Any) -> Any:
    return (_with_ones(x) @ weights).T.reshape(x.shape).float().clamp(-1, 1)


def _with_ones(x: Any) -> Any:
    import torch

    pixels = x.reshape(3, -1).T.double()
    return torch.cat([pixels, torch.ones(pixels.shape[0], 1, dtype=torch.float64)], 1)


def score(outs: list[Any], targets: list[Any]) -> dict[str, float]:
    from distill.metrics import ssim
    from distill.metrics.swd import sliced_wasserstein_distance

    ssim_v = sum(ssim(o.unsqueeze(0), t.unsqueeze(0)) for o, t in zip(outs, targets, strict=True)) / len(outs)
    return {"psnr_teacher": _psnr(outs, targets), "ssim_teacher": ssim_v,
            "swd": sliced_wasserstein_distance(outs, targets)["swd"]}


# ----------------------------------------------------------------------------------------------- seeds
@dataclass(frozen=True)
class SeedJob:
    """What every seed trains: the rows, the scale, the feature layers, where the students go."""

    methods: tuple[str, ...]
    scale: TranslationScale
    layers: tuple[str, ...]
    work_dir: str
    provenance: dict[str, Any]


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Each training process holds its own copy of the teacher's cached outputs and activations (up to
# FEATURE_CACHE_LIMIT), so the default stops at a few processes however many cores there are.
MAX_DEFAULT_JOBS = 4


def default_jobs() -> int:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_DEFAULT_JOBS))


def run_seed(job: SeedJob, seed: int, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every row of one seed: ``{method: {metrics, info, samples}}``; the students are saved under ``work_dir``."""
    from distill.checkpoint import save_checkpoint

    test_x, test_y = [t["input"] for t in data["test"]], [t["target"] for t in data["test"]]
    out: dict[str, dict[str, Any]] = {}
    for method in job.methods:
        log.info("bench distill translation: seed %d %s (%d steps)", seed, method, job.scale.steps)
        student, info = train_row(method, seed, data["train"], data["curve"], job.scale, list(job.layers))
        outs = predict(student, test_x)
        save_checkpoint(student, Path(job.work_dir) / f"seed{seed}" / method,
                        provenance={**job.provenance, "method": method, "seed": seed})
        out[method] = {"metrics": {**score(outs, test_y), "sec_per_step": info["sec_per_step"], "train_s": info["train_s"]},
                       "info": {"seed": seed, **info, **flattened(info["curve"])}, "samples": outs[:3]}
    return out


_WORKER_DATA: dict[str, dict[str, Any]] = {}


def _row_worker(job: SeedJob, seed: int, cache: str, level: int) -> dict[str, dict[str, Any]]:
    import torch

    # One thread per process: two rows side by side on two cores train faster than one row on both
    # (a 1/4-width student's convolutions are too small to split well across threads).
    torch.set_num_threads(1)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(level)
    t0 = time.perf_counter()
    if cache not in _WORKER_DATA:  # a worker process trains several rows; it reads the cache once
        _WORKER_DATA.clear()
        # mapped, not read: the workers share the file's pages instead of each holding a copy of every
        # photo, target and teacher activation
        _WORKER_DATA[cache] = torch.load(cache, weights_only=True, mmap=True)
    return _timed_seed(job, seed, _WORKER_DATA[cache], t0)


def _timed_seed(job: SeedJob, seed: int, data: dict[str, Any], started: float) -> dict[str, dict[str, Any]]:
    """``run_seed``, each row's info stamped with ``job_s``: the seconds since ``started`` (the job's start,
    data loading included), which the budget calibration needs."""
    out = run_seed(job, seed, data)
    for row in out.values():
        row["info"]["job_s"] = round(time.perf_counter() - started, 3)
    return out


# Relative cost of a row's step before any is measured, so the dearest rows start first and the workers
# finish together.
_ROW_COST = {"crd": 25.0, "vem": 8.0, "feature": 1.2}


class RowRunner:
    """Runs (seed, row) jobs: in this process for one worker, else in ``workers`` spawned processes that read
    the teacher's outputs from one cache file (spawn, not fork: the parent's OpenMP threads do not survive a
    fork). The pool lives for the whole ``with`` block, so the budget calibration and the run share it.
    A row's result does not depend on where it ran."""

    def __init__(self, data: dict[str, Any], workers: int, work_dir: Path) -> None:
        self.data, self.workers, self.cache, self.pool = data, workers, Path(work_dir) / "teacher_outputs.pt", None

    def __enter__(self) -> RowRunner:
        if self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            import torch

            self.cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.data, self.cache)
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
        self.cache.unlink(missing_ok=True)

    def run(self, job: SeedJob, tasks: list[tuple[int, str]]) -> dict[int, dict[str, dict[str, Any]]]:
        """Every (seed, method) task in the given order; ``{seed: {method: run_seed's row}}``."""
        from dataclasses import replace

        out: dict[int, dict[str, dict[str, Any]]] = {s: {} for s, _ in tasks}
        if self.pool is None:
            for s, m in tasks:
                out[s].update(_timed_seed(replace(job, methods=(m,)), s, self.data, time.perf_counter()))
            return out
        level = log.getEffectiveLevel()
        futures = {(s, m): self.pool.submit(_row_worker, replace(job, methods=(m,)), s, str(self.cache), level)
                   for s, m in tasks}
        for (s, _m), f in futures.items():
            out[s].update(f.result())
        return out


def task_order(seeds: list[int], methods: tuple[str, ...], cost: dict[str, float] | None = None) -> list[tuple[int, str]]:
    """Every (seed, method) pair, dearest rows first (by measured seconds a step when given)."""
    cost = cost or _ROW_COST
    return sorted(((s, m) for s in seeds for m in methods), key=lambda t: -cost.get(t[1], 1.0))


# ---------------------------------------------------------------------------------------------- budget
CALIBRATION_STEPS = 5  # steps each row trains to measure the host; the first (warm-up) is timed apart
BUDGET_TAIL_S = 15.0  # the report, the table and the picture after the last row
MIN_BUDGET_STEPS = 50  # fewer steps than this is no benchmark


def _eval_every_for(scale: TranslationScale) -> Callable[[int], int]:
    """The curve interval for a run of ``n`` steps: as many curve points as the scale's own step count gives."""
    points = max(1, scale.steps // scale.eval_every)
    return lambda n: max(1, n // points)


def calibrate(runner: RowRunner, job: SeedJob, seed: int) -> dict[str, JobCost]:
    """Train every row ``CALIBRATION_STEPS`` steps side by side, as the run will, and turn each into a
    :class:`JobCost`; the students go to ``work_dir/calibration`` and are not results."""
    from dataclasses import replace

    k = CALIBRATION_STEPS
    probe = replace(job, scale=replace(job.scale, steps=k, eval_every=k),
                    work_dir=str(Path(job.work_dir) / "calibration"))
    rows = runner.run(probe, task_order([seed], job.methods))[seed]
    shutil.rmtree(probe.work_dir, ignore_errors=True)
    costs = {}
    for m in job.methods:
        info = rows[m]["info"]
        timed, first = info["sec_per_step"] * k, info["first_step_s"]
        # the warm-up step's extra time is paid once a job, so it goes with the fixed cost
        sps = (timed - first) / (k - 1)
        costs[m] = JobCost(fixed_s=max(0.0, info["job_s"] - info["train_s"]) + max(0.0, first - sps),
                           sec_per_step=sps, eval_s=max(0.0, info["train_s"] - timed) / curve_points(k, k))
    return costs


def fit_to_budget(runner: RowRunner, job: SeedJob, seeds: list[int],
                  started: float) -> tuple[SeedJob, dict[str, Any], list[tuple[int, str]]]:
    """Lower ``job``'s step count (every row alike) to what fits ``scale.time_budget_min`` on this host;
    returns the job to run, the JSON's ``setup.budget`` and the (seed, row) order the plan assumed."""
    from dataclasses import replace

    scale = job.scale
    budget_s = 60.0 * scale.time_budget_min
    t0 = time.perf_counter()
    costs = calibrate(runner, job, seeds[0])
    spent = time.perf_counter() - started
    order = task_order(seeds, job.methods, {m: c.sec_per_step for m, c in costs.items()})
    every = _eval_every_for(scale)
    steps, predicted = fit_steps([costs[m] for _, m in order], runner.workers, scale.steps,
                                 budget_s - spent - BUDGET_TAIL_S, every)
    if steps < min(MIN_BUDGET_STEPS, scale.steps):
        raise ConfigError(f"--time-budget {scale.time_budget_min:g} min leaves {steps} of {scale.steps} steps a row on "
                          f"this host (seconds a step: {describe(costs)}); raise --time-budget, pass --steps "
                          "without it, or train fewer --methods / --seeds")
    budget = {"minutes": scale.time_budget_min, "requested_steps": scale.steps, "steps": steps,
              "lowered": steps < scale.steps, "calibration_s": round(time.perf_counter() - t0, 1),
              "calibration": {m: {"sec_per_step": round(c.sec_per_step, 5), "fixed_s": round(c.fixed_s, 2),
                                  "eval_s": round(c.eval_s, 3)} for m, c in costs.items()},
              "predicted_wall_s": round(spent + predicted + BUDGET_TAIL_S, 1)}
    if steps < scale.steps:
        log.warning("bench distill translation: %d of %d steps a row fit --time-budget %g min on this host (%s)",
                    steps, scale.steps, scale.time_budget_min, describe(costs))
    return replace(job, scale=replace(scale, steps=steps, eval_every=every(steps))), budget, order


# ------------------------------------------------------------------------------------------------- run
def teacher_info(teacher: Any, path: Path) -> dict[str, Any]:
    cfg = getattr(teacher, "slimgan_checkpoint", {}).get("config", {})
    return {"path": str(path), "arch": cfg.get("arch"), "kwargs": cfg.get("kwargs"),
            "params": sum(p.numel() for p in teacher.parameters()),
            "sha256": getattr(teacher, "slimgan_checkpoint", {}).get("sha256")}


def prepare_data(teacher: Any, photos: Path, methods: list[str], scale: TranslationScale, step: int) -> dict[str, Any]:
    """Split ``photos``, pick the feature layers, run the teacher once over every photo (its outputs and, for
    the feature row, activations are the cache every row trains on; photos cut to :func:`size_step`'s ``step``)
    and measure the crop-target check."""
    from distill.registry import create_model

    split = split_photos(photos, scale.test_fraction, max_train=scale.max_train, max_test=scale.max_test)
    probe = create_model(scale.student_arch, ngf=scale.student_ngf, norm=scale.student_norm)
    shape = load_photo(split["train"][0], scale.res, step).shape[-2:]
    layers = feature_layers(teacher, probe, tuple(shape), len(split["train"]), step) if "feature" in methods else []
    t0 = time.perf_counter()
    train = teacher_pass(teacher, split["train"], scale.res, layers, step)
    test = teacher_pass(teacher, split["test"], scale.res, [], step)
    teacher_s = time.perf_counter() - t0
    for item in test:
        item["feats"] = {}
    return {"split": split, "student_params": sum(p.numel() for p in probe.parameters()), "layers": layers,
            "train": train, "test": test, "teacher_pass_s": teacher_s,
            "size_step": step, "crop_target_psnr": crop_target_psnr(teacher, train, scale.crop, step=step)}


def setup_block(teacher: dict[str, Any], photos: Path, prep: dict[str, Any], scale: TranslationScale,
                seeds: list[int]) -> dict[str, Any]:
    """The JSON's ``setup``: ``teacher`` (:func:`teacher_info`), student, photo split and every setting the rows
    share."""
    split, layers = prep["split"], prep["layers"]
    return {
        "task": "translation", "teacher": teacher,
        "student": {"arch": scale.student_arch, "ngf": scale.student_ngf, "norm": scale.student_norm,
                    "params": prep["student_params"]},
        "photos": str(photos), "split": split["how"], "train_images": len(split["train"]),
        "test_images": len(split["test"]), "test_files": split["test_files"],
        "photos_available": split["available"],
        "res": scale.res, "res_rule": f"short side resized to res (bicubic), sides cut to a multiple of {prep['size_step']} "
                                      "(the teacher's and the student's size step)",
        "scale": asdict(scale), "feature_layers": layers, "seeds": list(seeds),
        "targets": "teacher outputs on every photo at res, computed once (pseudo-pairs); crops cut from them",
        "crop_target_psnr": prep["crop_target_psnr"],
        "crop_target_note": "psnr of the teacher run on a centre crop vs the same crop of its whole-photo output "
                            f"({CROP_CHECK_PHOTOS} training photos): how much of a crop's target the crop "
                            "alone determines",
        "optimizer": f"Adam lr {scale.lr} betas {ADAM_BETAS}, constant for half the steps then linear to 0",
        "metrics": "psnr_teacher / ssim_teacher: whole held-out photos at res vs the teacher's outputs; swd: "
                   "sliced Wasserstein distance x1e3 on Laplacian-pyramid 7x7 patches (ProGAN), student vs "
                   "teacher outputs on the held-out photos",
        "comparison": "vs_baseline: diff = row - l1 per seed (paired), ci95 = 95% t-interval of the mean "
                      "difference, beats = interval excludes 0 on the good side (swd: lower is better)",
        "teacher_pass_s": round(prep["teacher_pass_s"], 1),
    }


def _known_methods(methods: list[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(DEFAULT_METHODS if methods is None else methods))
    if "l1" not in chosen:
        chosen.insert(0, "l1")
    for m in chosen:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r} in --methods; choose from {', '.join(METHODS)}")
    return chosen


def rows_for_teacher(methods: list[str], teacher: Any, scale: TranslationScale,
                     explicit: bool) -> tuple[list[str], dict[str, str]]:
    """``methods`` less the rows this teacher cannot train, and ``{row: why}`` for each left out. The feature row
    needs layers both networks have (a pix2pix U-Net teacher has none of a ResNet student's); asked for by
    ``--methods``, it stops the run before the teacher pass instead."""
    from distill.registry import create_model

    if "feature" not in methods:
        return methods, {}
    probe = create_model(scale.student_arch, ngf=scale.student_ngf, norm=scale.student_norm)
    if shared_layers(teacher, probe):
        return methods, {}
    why = (f"the teacher ({teacher.slimgan_config['arch']}) and the student ({scale.student_arch}) share none of "
           f"the feature-KD layers ({', '.join(FEATURE_LAYERS)})")
    if explicit:
        raise ConfigError(f"--methods feature: {why}; leave 'feature' out of --methods")
    log.warning("bench distill translation: no feature row: %s", why)
    return [m for m in methods if m != "feature"], {"feature": why}


def run_translation_bench(out_json: str | Path, teacher_dir: str | Path, photos: str | Path,
                          seeds: list[int], methods: list[str] | None, scale: TranslationScale,
                          quick: bool = False, work: str | Path | None = None, command: str = "",
                          jobs: int | None = None) -> dict[str, Any]:
    """Run every method (None: :data:`DEFAULT_METHODS`, less those the teacher cannot train) for every seed
    (``jobs`` rows at a time, each in its own process with one torch thread; default one per core, at most 4);
    write ``out_json``, the ``.md`` table and the ``.png`` picture."""
    import torch

    from distill.checkpoint import load_checkpoint

    chosen = _known_methods(methods)
    if not seeds:
        raise ConfigError("--seeds must list at least one seed")
    out_json = Path(out_json)
    work_dir = Path(work) if work else out_json.with_name(out_json.stem + "_runs")
    wall0, cpu0, child0 = time.perf_counter(), time.process_time(), _children_cpu()
    teacher = load_checkpoint(teacher_dir)
    for p in teacher.parameters():
        p.requires_grad_(False)
    t_info = teacher_info(teacher, Path(teacher_dir))
    step = size_step(teacher, scale)  # a teacher that cannot take these photos stops the run before anything else
    methods, left_out = rows_for_teacher(chosen, teacher, scale, explicit=methods is not None)
    prep = prepare_data(teacher, Path(photos), methods, scale, step)
    layers, train, test = prep["layers"], prep["train"], prep["test"]
    curve_set = test[:scale.curve_images]
    test_x, test_y = [t["input"] for t in test], [t["target"] for t in test]
    identity = score(test_x, test_y)
    colour_weights = fit_colour_map(train)
    colour_map = score([apply_colour_map(colour_weights, x) for x in test_x], test_y)
    job = SeedJob(methods=tuple(methods), scale=scale, layers=tuple(layers), work_dir=str(work_dir),
                  provenance={"role": "student", "teacher": str(teacher_dir),
                              "teacher_sha256": t_info["sha256"]})
    workers = max(1, min(jobs or default_jobs(), len(seeds) * len(methods)))
    budget, tasks = None, task_order(seeds, job.methods)
    with RowRunner({"train": train, "test": test, "curve": curve_set}, workers, work_dir) as runner:
        if scale.time_budget_min:  # the run keeps the order the budget was planned on
            job, budget, tasks = fit_to_budget(runner, job, seeds, wall0)
            scale = job.scale
        done = runner.run(job, tasks)
    by_seed = {s: {m: done[s][m] for m in methods} for s in seeds}
    per = {m: [by_seed[s][m]["metrics"] for s in seeds] for m in methods}
    extras = {m: [by_seed[s][m]["info"] for s in seeds] for m in methods}
    samples = {m: by_seed[seeds[0]][m]["samples"] for m in methods}
    rows = table_rows(methods, per, extras, seeds, work_dir)
    report = {
        "schema": "slimgan-bench-distill-translation/1",
        "command": command,
        "smoke_test": bool(quick),
        "label": ("SMOKE TEST (--quick): too few steps and too small images to be evidence" if quick else
                  "evidence scale: every row trained to the same step count, curves written"),
        "setup": setup_block(t_info, Path(photos), prep, scale, seeds),
        "identity": {k: round(v, 6) for k, v in identity.items()},
        "colour_map": {**{k: round(v, 6) for k, v in colour_map.items()},
                       "weights": [[round(float(v), 6) for v in r] for r in colour_weights],
                       "fit": f"least-squares affine RGB map (4 x 3) from the {len(train)} training photos' input "
                              "pixels to their teacher pixels"},
        "rows": rows,
    }
    report["baseline_vs_identity"] = baseline_vs_identity(report)
    if budget:
        report["setup"]["budget"] = budget
    report["setup"]["rows_left_out"] = left_out
    report["setup"]["wall_s"] = round(time.perf_counter() - wall0, 1)
    report["setup"]["cpu_s"] = round(time.process_time() - cpu0 + _children_cpu() - child0, 1)
    report["setup"]["torch_threads"] = 1 if workers > 1 else torch.get_num_threads()
    report["setup"]["workers"] = workers
    write_report(out_json, report, format_translation_table(report))
    try:
        save_picture(out_json.with_suffix(".png"), test_x[:3], test_y[:3], samples)
    except ImportError as exc:  # matplotlib is optional; the table stands without the picture
        log.warning("no picture: %s", exc)
    return report


def table_rows(methods: list[str], per: dict[str, list[dict[str, Any]]], extras: dict[str, list[dict[str, Any]]],
               seeds: list[int], work_dir: Path) -> list[dict[str, Any]]:
    """One row per method (mean, ``_std``, ``per_seed``, curves, checkpoints); ``vs_baseline`` against the first (l1)."""
    rows = [{"method": m, "objective": METHODS[m][1], **aggregate(per[m], seeds), "curves": extras[m],
             "checkpoints": [str(work_dir / f"seed{s}" / m) for s in seeds], "all_flat": all(e["flat"] for e in extras[m])}
            for m in methods]
    for row in rows[1:]:
        row["vs_baseline"] = {m: vs_baseline(row, rows[0], m) for m in METRICS}
    return rows


# The baseline student has learned the teacher's mapping (not just copied its input) only if it beats
# returning the input by a clear margin on the held-out photos.
IDENTITY_MARGIN_DB = 3.0


def baseline_vs_identity(report: dict[str, Any]) -> dict[str, Any]:
    """``{diff_db, margin_db, learned}``: the baseline row's psnr_teacher minus returning the input's."""
    base = report["rows"][0].get("psnr_teacher")
    diff = None if base is None else round(base - report["identity"]["psnr_teacher"], 4)
    return {"method": report["rows"][0]["method"], "diff_db": diff, "margin_db": IDENTITY_MARGIN_DB,
            "learned": diff is not None and diff >= IDENTITY_MARGIN_DB}


def _identity_lines(report: dict[str, Any]) -> list[str]:
    check = report.get("baseline_vs_identity") or baseline_vs_identity(report)
    if check["learned"] or check["diff_db"] is None:
        return []
    return ["", f"**The {check['method']} student scores {check['diff_db']:+.2f} dB of psnr_teacher against returning the "
            f"input (it must clear +{check['margin_db']:g} dB): at this budget the students have not learned the "
            "teacher's mapping, and the rows compare under-trained students, not distillation methods.**"]


def _colour_map_lines(report: dict[str, Any]) -> list[str]:
    colour, base = report.get("colour_map"), report["rows"][0]
    if not colour or base.get("psnr_teacher") is None:
        return []
    over_input = colour["psnr_teacher"] - report["identity"]["psnr_teacher"]
    diff = base["psnr_teacher"] - colour["psnr_teacher"]
    return ["", f"The affine colour map fitted on the training photos scores {over_input:+.2f} dB against returning "
            f"the input; the {base['method']} student {diff:+.2f} dB against the colour map."]


def format_translation_table(report: dict[str, Any]) -> str:
    s = report["setup"]
    lines = []
    if report["smoke_test"]:
        lines += ["**SMOKE TEST (--quick): not evidence.** Too few steps and too small images.", ""]
    t = s["teacher"]
    lines += [f"Teacher {t['arch']} ({t['params']:,} params) -> student {s['student']['arch']} ngf "
              f"{s['student']['ngf']} ({s['student']['params']:,} params); {s['train_images']} training / "
              f"{s['test_images']} held-out photos at {s['res']} px short side; crops {s['scale']['crop']}, batch "
              f"{s['scale']['batch']}, {s['scale']['steps']} steps; seeds {s['seeds']}."
              + _student_norm_text(s) + _crop_text(s), "",
              "| method | psnr_teacher (dB) | ssim_teacher | swd (x1e3, lower better) | vs l1: psnr | vs l1: swd "
              "| curve flat | s/step |",
              "|---|---|---|---|---|---|---|---|"]
    references = (("identity (input returned)", report["identity"]),
                  ("colour map (affine RGB, least squares on the training photos)", report.get("colour_map")))
    lines += [f"| {label} | {ref['psnr_teacher']:.2f} | {ref['ssim_teacher']:.3f} | {ref['swd']:.1f} | | | | |"
              for label, ref in references if ref]
    for r in report["rows"]:
        cmp = r.get("vs_baseline", {})
        lines.append(f"| {r['method']} | {mean_std(r, 'psnr_teacher')} | {mean_std(r, 'ssim_teacher', 3)} | "
                     f"{mean_std(r, 'swd', 1)} | {format_cmp(cmp.get('psnr_teacher'))} | "
                     f"{format_cmp(cmp.get('swd'), 1)} | {'yes' if r['all_flat'] else 'no'} | "
                     f"{r.get('sec_per_step', 0):.3f} |")
    lines += _identity_lines(report) + _colour_map_lines(report)
    left_out = s.get("rows_left_out") or {}
    lines += ["", *(f"Row left out: {m}: {why}." for m, why in left_out.items())] if left_out else []
    lines += ["", "Mean ± sample std over seeds. vs l1: mean paired difference [95% t-interval]; 'better' / "
              "'worse' only when the interval excludes 0. Curve flat: held-out psnr_teacher gained < 0.1 dB over "
              "the last quarter of the steps, every seed.", "",
              f"Wall {s['wall_s']} s, CPU {s['cpu_s']} s ({s.get('workers', 1)} training "
              f"process(es), {s['torch_threads']} torch thread(s) each); teacher pass "
              f"{s['teacher_pass_s']} s. Split: {s['split']}." + _budget_text(s)]
    if report.get("command"):
        lines += ["", f"Command: `{report['command']}`"]
    if report.get("run_notes"):
        lines += ["", report["run_notes"]]
    lines += _export_lines(report.get("export"))
    return "\n".join(lines) + "\n"


def _budget_text(setup: dict[str, Any]) -> str:
    b = setup.get("budget")
    if not b:
        return ""
    measured = ", ".join(f"{m} {c['sec_per_step']:.3f}" for m, c in b["calibration"].items())
    fit = (f"only {b['steps']} of the {b['requested_steps']} steps a row fit it on this host, so every row trained "
           f"{b['steps']}" if b["lowered"] else f"all {b['steps']} steps a row fit it")
    return (f" Time budget {b['minutes']:g} min (--time-budget): {fit} (calibration, seconds a step: {measured}; "
            f"predicted wall {b['predicted_wall_s']:.0f} s).")


def _student_norm_text(setup: dict[str, Any]) -> str:
    norm = setup["student"].get("norm")
    return f" Student norm: {norm}." if norm else ""


def _crop_text(setup: dict[str, Any]) -> str:
    value = setup.get("crop_target_psnr")
    if value is None:
        return ""
    return (f" The teacher on a {setup['scale']['crop']} px crop alone matches the crop of its whole-photo output to "
            f"{value:.1f} dB psnr; the lower, the more of a crop's target depends on pixels outside it.")


def _export_lines(export: dict[str, Any] | None) -> list[str]:
    if not export:
        return []
    lines = ["", f"Export of the `{export['method']}` student (seed {export['seed']}): `{export['command']}`", "",
             "| check | max abs | PSNR (dB) | verdict |", "|---|---|---|---|"]
    for r in export["parity"]:
        psnr = "-" if r.get("psnr_db") is None else f"{r['psnr_db']:.1f}"
        mx = "-" if r.get("max_abs") is None else f"{r['max_abs']:.2e}"
        lines.append(f"| {r['name']} | {mx} | {psnr} | {r.get('verdict', '-')} |")
    lines += ["", "| model | runtime | median ms | MACs | params |", "|---|---|---|---|---|"]
    for r in export["speed"]:
        lines.append(f"| {r['name']} | {r.get('backend', '-')} | {r['median_ms']:.2f} | {r.get('macs', 0) / 1e9:.2f} G | "
                     f"{r.get('params', 0):,} |")
    if export.get("speedup"):
        ups = ", ".join(f"{rt} x{v:.2f}" for rt, v in export["speedup"].items() if v is not None)
        lines += ["", f"Speedup over the teacher (teacher median / student median, {export.get('threads')} thread(s), "
                      f"input {export.get('speed_input')}): {ups}."]
    return lines


def attach_export(out_json: str | Path, bundle: str | Path, method: str, seed: int, command: str) -> dict[str, Any]:
    """Add the exported student's parity and speed rows (``BUNDLE/parity.json``, ``speed.json``) to a translation
    report as ``export`` and re-write its JSON and markdown."""
    import json

    out_json, bundle = Path(out_json), Path(bundle)
    report = json.loads(out_json.read_text())
    parity = json.loads((bundle / "parity.json").read_text())
    speed = json.loads((bundle / "speed.json").read_text())
    keep = ("name", "max_abs", "mean_abs", "psnr_db", "ssim", "verdict", "criterion")
    report["export"] = {
        "method": method, "seed": seed, "command": command, "bundle": str(bundle),
        "parity": [{k: r.get(k) for k in keep} for r in parity.get("rows", [])],
        "speed": [{k: r.get(k) for k in ("name", "role", "backend", "threads", "median_ms", "p90_ms", "macs", "params",
                                         "input_shape")} for r in speed.get("rows", [])],
        "speed_input": speed.get("input_shape"), "threads": speed.get("threads"),
        "speedup": {k: v.get("speedup") for k, v in (speed.get("by_runtime") or {}).items()},
    }
    write_report(out_json, report, format_translation_table(report))
    return report


def save_picture(path: Path, inputs: list[Any], targets: list[Any], samples: dict[str, list[Any]]) -> Path:
    """A grid: one line per held-out photo; columns input | teacher | each row's student (first seed), labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("input", inputs), ("teacher", targets), *[(f"{m} student", v) for m, v in samples.items()]]
    n = len(inputs)
    h, w = inputs[0].shape[-2:]
    fig, axes = plt.subplots(n, len(cols), figsize=(2.4 * len(cols) * w / max(h, w) + 0.2, 2.4 * n * h / max(h, w)),
                             squeeze=False, dpi=100)
    for j, (label, images) in enumerate(cols):
        for i in range(n):
            ax = axes[i][j]
            img = images[i]
            ax.imshow(((img.permute(1, 2, 0).clamp(-1, 1) + 1) / 2).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run_translation_cli(args: Any, seeds: list[int]) -> int:
    """``slimgan bench distill --task translation``: check the flags, pick the scale, run, print the table."""
    from dataclasses import replace

    from distill.registry import model_info

    if not args.teacher:
        raise ConfigError("--task translation needs --teacher DIR (a checkpoint directory, e.g. from slimgan import)")
    if not args.photos:
        raise ConfigError("--task translation needs --photos DIR (a folder of photos; train/ and test/ optional)")
    if getattr(args, "progress", True) is False:
        logging.getLogger(__name__).setLevel(logging.WARNING)
    scale = SCALES["quick" if args.quick else "full"]
    # (value, flag name, scale field, least value): the split needs two photos a side
    sizes = ((args.steps, "steps", "steps", 1), (args.res, "res", "res", 1),
             (getattr(args, "crop", None), "crop", "crop", 1), (getattr(args, "batch", None), "batch", "batch", 1),
             (getattr(args, "max_train_photos", None), "max-train-photos", "max_train", 2),
             (getattr(args, "max_test_photos", None), "max-test-photos", "max_test", 2))
    for flag, name, field, low in sizes:
        if flag is not None:
            if flag < low:
                raise ConfigError(f"--{name} must be at least {low}, got {flag}")
            scale = replace(scale, **{field: flag})
    if getattr(args, "student_norm", None):
        scale = replace(scale, student_norm=args.student_norm)
    budget = getattr(args, "time_budget", None)
    if budget is not None:
        if not budget >= 0:
            raise ConfigError(f"--time-budget must be 0 (no budget) or more minutes, got {budget:g}")
        scale = replace(scale, time_budget_min=budget or None)
    elif args.steps is not None:  # steps the user asked for are trained as asked
        scale = replace(scale, time_budget_min=None)
    step = model_info(scale.student_arch).size_multiple
    if scale.crop > scale.res:
        scale = replace(scale, crop=scale.res - scale.res % step)
    if scale.crop % step:
        low = scale.crop - scale.crop % step
        raise ConfigError(f"--crop {scale.crop} is not a multiple of {step} ({scale.student_arch} takes sides that are); "
                          f"use --crop {low or step} or {low + step}")
    if scale.steps < scale.eval_every:
        scale = replace(scale, eval_every=max(1, scale.steps // 4))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    report = run_translation_bench(args.out, args.teacher, args.photos, seeds, methods, scale, quick=args.quick,
                                   work=args.work, command=" ".join(["slimgan", *sys.argv[1:]]),
                                   jobs=getattr(args, "jobs", None))
    print(format_translation_table(report), end="")
    print(f"wrote {args.out} (+ .md, .png)")
    return 0
