"""``slimgan bench distill``: does distillation beat training the slim student alone, like for like?

Every student row sees the same training images, the same steps, batch, optimiser and seeds; only
the objective differs. Each seed is an independent replicate; metrics are the mean over seeds with a
``_std`` twin (sample standard deviation, ddof 1), and each row lists the ``seeds`` it used.

``--task paired`` (default): pix2pix edges -> scenes, synthetic (``distill.data.synth``), or a user's
aligned-layout folder (``--data DIR`` with ``train/`` and ``test/``, each file A|B side by side).

1. **teacher**: ``configs/synth/pix2pix_teacher.yaml`` (resnet_6blocks ngf 32, GAN + 100·L1), one per
   seed, on all training pairs.
2. **scratch**: the same recipe at 1/4 width (ngf 8) on the same training pairs (GAN + 100·L1 to the
   ground truth).
3. **distilled**: the same student with ``configs/synth/pix2pix_feature_kd.yaml`` (GAN + 100·L1 to the
   teacher + feature KD, 1x1 adapters) on the same training inputs, from that seed's teacher.

Scores: ``psnr_gt`` / ``ssim_gt`` (held-out pairs), ``psnr_teacher`` / ``ssim_teacher`` (to that
seed's teacher), by the engine's evaluation.

``--task unconditional --data DIR`` (MNIST layout ``train/<digit>/*.png``, ``test/<digit>/*.png``):

1. **teacher**: DCGAN (``configs/synth/dcgan_teacher.yaml``) at the teacher depth scale factor on
   ``train/`` (trained once, seed 0: its ``seeds`` are the sampling seeds of its scores).
2. **scratch**: the same DCGAN at the student depth scale factor, its own discriminator of that depth.
3. **distilled**: KD-GAN's joint scheme (``configs/synth/kd_gan.yaml``), same student and discriminator.
4. **dgl_gan**: DGL-GAN (``configs/synth/dgl_gan.yaml``'s terms) with D̄ = the teacher's discriminator.

Depth scale factors are the KD-GAN paper's: full = its MNIST pair (teacher d = 256, student d = 2,
Fig. 6), quick = its CIFAR-10 pair (d = 64 -> 4, Fig. 7), so ``--quick`` fits in minutes on a CPU.
All student rows: same images (every ``train/`` image), steps, batch, Adam (2e-4, β 0.5 / 0.999,
constant rate: DCGAN's) and seeds. Score: ``fid_classifier`` (:mod:`distill.metrics.classifier`)
between ``samples`` generated images (z from that seed) and the held-out ``test/`` images, on a
classifier trained on ``train/``; its held-out accuracy is ``setup.classifier_accuracy``.

The command line (``slimgan bench distill``) is :mod:`benchmarks.distill_cli`.

Output: ``{"teacher": {...}, "scratch": {...}, "distilled": {...}, ["dgl_gan": {...}], "setup": {...},
"comparisons": [...]}`` and a markdown table beside the JSON (``.md``).
"""

from __future__ import annotations

import csv
import logging
import math
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.report import aggregate, write_report
from distill.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "synth"
TEACHER_RECIPE = CONFIGS / "pix2pix_teacher.yaml"
FEATURE_RECIPE = CONFIGS / "pix2pix_feature_kd.yaml"
SCRATCH_OVERRIDES = ["generator.ngf=8", "discriminator.ndf=16"]  # the teacher recipe at 1/4 width
TASKS = ("paired", "unconditional", "translation")


@dataclass(frozen=True)
class Scale:
    """Paired task size: teacher / student steps, synthetic training pairs, image side."""

    teacher_steps: int
    student_steps: int
    num: int
    size: int


SCALES = {"quick": Scale(200, 200, 200, 32), "full": Scale(1500, 1500, 400, 32)}


@dataclass(frozen=True)
class UncondScale:
    """Unconditional task size: depth scale factors d, steps, batch, scored samples, classifier epochs."""

    teacher_d: int
    student_d: int
    teacher_steps: int
    student_steps: int
    batch_size: int
    samples: int
    classifier_epochs: int
    size: int = 32


UNCOND_SCALES = {"quick": UncondScale(64, 4, 300, 300, 64, 2000, 5),
                 "full": UncondScale(256, 2, 3000, 3000, 64, 2000, 5)}


@dataclass(frozen=True)
class BenchSetup:
    """One seed's replicate of the paired experiment: data, run options, and this seed's teacher.

    ``data`` is a user's aligned folder (None: the synthetic task, generated once under
    ``work/data`` with data seed 0, the same pairs for every seed). ``overrides()`` are the ``--set``
    items every run of this seed (teacher and students) gets.
    """

    work: Path
    scale: Scale
    seed: int = 0
    device: str = "cpu"
    data: Path | None = None
    num_test: int = 16

    @property
    def data_root(self) -> Path:
        return self.data if self.data is not None else self.work / "data"

    @property
    def seed_dir(self) -> Path:
        return self.work / f"seed{self.seed}"

    @property
    def teacher_dir(self) -> Path:
        return self.seed_dir / "teacher"

    @property
    def teacher_checkpoint(self) -> Path:
        return self.teacher_dir / "teacher"

    @property
    def teacher_discriminator(self) -> Path:
        return self.teacher_dir / "discriminator"

    def overrides(self) -> list[str]:
        s = self.scale
        data = ([f"data.root={self.data}", "data.synth=null"] if self.data is not None else
                [f"data.root={self.work / 'data'}", f"data.synth.num={s.num}", f"data.synth.num_test={self.num_test}",
                 f"data.synth.size={s.size}", "data.synth.seed=0"])
        return [*data, "data.layout=aligned", f"train.seed={self.seed}", f"train.device={self.device}",
                "train.progress=false", "train.sample_every=0", "train.eval_every=0", "train.save_every=0",
                f"eval.num={self.num_test}", f"eval.batch_size={self.num_test}", "train.batch_size=4"]


def inspect_paired_folder(root: str | Path) -> tuple[int, int, int]:
    """(training pairs, held-out pairs, pair side) of an aligned folder; a clear error when it is not one."""
    from PIL import Image

    from distill.data.datasets import list_images

    root = Path(root)
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetError(f"{root} has no {split}/ folder (an aligned folder holds train/ and test/ A|B images)")
    train, test = list_images(root / "train"), list_images(root / "test")
    with Image.open(train[0]) as img:
        w, h = img.size
    if w != 2 * h:
        raise DatasetError(f"{train[0]} is {w}x{h}; an aligned pair is A|B side by side (width = 2 x height)")
    if len(test) < 2:
        raise DatasetError(f"{root}/test holds {len(test)} image; the benchmark needs 2+ held-out pairs")
    return len(train), len(test), h


def train_teacher(setup: BenchSetup) -> tuple[dict[str, float], float]:
    """Train this seed's pix2pix teacher (``pix2pix_teacher.yaml``) on all pairs; reuse it when already trained."""
    if _same_teacher(setup):
        log.info("bench: reusing the teacher in %s", setup.teacher_dir)
        return _last_eval(setup.teacher_dir), math.nan
    log.info("bench: teacher seed %d (%d steps)", setup.seed, setup.scale.teacher_steps)
    result = run_recipe(setup, TEACHER_RECIPE, setup.teacher_dir, [f"train.steps={setup.scale.teacher_steps}"],
                        "train")
    return result["metrics"], result["seconds"]


def _same_teacher(setup: BenchSetup) -> bool:
    """True when ``teacher_dir`` holds a finished teacher trained with this setup's steps, data and seed."""
    import yaml

    config = setup.teacher_dir / "config.yaml"
    if not (setup.teacher_checkpoint / "model.safetensors").is_file() or not config.is_file():
        return False
    raw = yaml.safe_load(config.read_text()) or {}
    train, data = raw.get("train") or {}, raw.get("data") or {}
    synth = data.get("synth") or {}
    s = setup.scale
    want_synth = (None, None) if setup.data is not None else (s.num, s.size)
    return ((train.get("steps"), train.get("seed"), synth.get("num"), synth.get("size"), str(data.get("root")))
            == (s.teacher_steps, setup.seed, *want_synth, str(setup.data_root))
            and (setup.teacher_dir / "metrics.csv").is_file())


def run_recipe(setup: Any, recipe: Path | dict[str, Any], out: Path, overrides: list[str],
               kind: str = "distill", role: str | None = None) -> dict[str, Any]:
    """One engine run of ``recipe`` (a YAML path or a raw recipe dict) with the setup's shared overrides.

    Returns ``{"metrics": {psnr_gt, ssim_gt, psnr_teacher, ...}, "seconds", "sec_per_step"}``. A paired
    run without a teacher generator (scratch) gets ``psnr_teacher`` / ``ssim_teacher`` from the same
    evaluation against the seed's teacher, so every row is measured the same way.
    """
    from distill.engine.config import load_config
    from distill.engine.loop import run_training

    items = [*setup.overrides(), *overrides]
    if isinstance(recipe, dict):
        cfg, config_dir = load_config(raw=recipe, overrides=items), CONFIGS
    else:
        cfg, config_dir = load_config(recipe, items), recipe.parent
    if role is None:  # only the setup's teacher run makes a teacher; scratch baselines are students
        role = "teacher" if out == getattr(setup, "teacher_dir", None) else "student"
    start = time.perf_counter()
    result = run_training(cfg, out, kind=kind, config_dir=config_dir, distributed=False, role=role)
    seconds = time.perf_counter() - start
    metrics = {k[len("eval_"):]: v for k, v in result["metrics"].items() if k.startswith("eval_")}
    if (isinstance(setup, BenchSetup) and "psnr_teacher" not in metrics and setup.teacher_checkpoint.is_dir()
            and out != setup.teacher_dir):
        metrics.update(teacher_agreement(setup, out / "student"))
    return {"metrics": metrics, "seconds": seconds, "sec_per_step": sec_per_step(out, cfg.train.steps)}


def teacher_agreement(setup: BenchSetup, student_dir: Path) -> dict[str, float]:
    """``psnr_teacher`` / ``ssim_teacher`` of a student checkpoint, by the engine's evaluation on the held-out pairs."""
    import torch

    from distill.checkpoint import load_checkpoint
    from distill.data.datasets import TransformConfig, build_dataset
    from distill.engine.data import eval_batches
    from distill.engine.evaluate import evaluate

    class _Pair:
        def __init__(self, student: torch.nn.Module, teacher: torch.nn.Module):
            self.student, self.teacher = student, teacher

        def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"student": self.student(x), "teacher": self.teacher(x)}

    test = build_dataset("aligned", setup.data_root, "test", transform=TransformConfig(train=False))
    batches = eval_batches(test, setup.num_test, setup.num_test, None)
    metrics = evaluate(_Pair(load_checkpoint(student_dir), load_checkpoint(setup.teacher_checkpoint)), batches,
                       torch.device("cpu"))
    return {k: metrics[k] for k in ("psnr_teacher", "ssim_teacher")}


def sec_per_step(run_dir: Path, steps: int) -> float:
    """Steady-state training wall time per step from ``metrics.csv``: the median over the intervals between
    consecutive logged rows of Δtime_s / Δstep, leaving out the first row (one-off costs: kernel selection
    for new shapes) and the final row (its time includes the final evaluation). The median makes the
    figure robust to a burst of load from other processes on a shared machine.
    """
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return math.nan
    timed = [(int(r["step"]), float(r["time_s"])) for r in csv.DictReader(path.open())
             if r.get("time_s") not in (None, "")]
    before = [t for t in timed if t[0] < steps]
    rates = [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(before, before[1:], strict=False) if s1 > s0]
    if rates:
        return statistics.median(rates)
    step, seconds = (before or timed or [(1, math.nan)])[-1]
    return seconds / max(1, step)


def _last_eval(run_dir: Path) -> dict[str, float]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    last = next((r for r in reversed(rows) if any(k.startswith("eval_") and v for k, v in r.items())), {})
    return {k[5:]: float(v) for k, v in last.items() if k.startswith("eval_") and v not in ("", None)}


def default_work(out_json: Path) -> Path:
    return out_json.with_suffix("").with_name(out_json.stem + "_runs")


# ------------------------------------------------------------------------------------------ aggregation
def compare(report: dict[str, Any], rows: list[str], baseline: str, metric: str, higher_is_better: bool) -> list[dict]:
    """For each row vs ``baseline`` on ``metric``, by the seeds' paired differences (:func:`benchmarks.report.vs_baseline`):
    ``diff`` (row - baseline, the metric's units), ``ci95`` (95% t-interval), ``beats`` (the interval excludes 0
    on the good side) and ``outcome``: ``better`` / ``worse`` (interval excludes 0) or ``no difference shown``."""
    from benchmarks.report import verdict, vs_baseline

    out = []
    base = report[baseline]
    for name in rows:
        if name not in report:
            continue
        cmp = vs_baseline(report[name], base, metric, higher_is_better)
        if cmp is None:
            continue
        out.append({"row": name, "baseline": baseline, **cmp, "outcome": verdict(cmp)})
    return out


# ------------------------------------------------------------------------------------------ paired task
def run_paired_bench(out_json: Path, quick: bool, work: Path, seeds: list[int], device: str,
                     data: Path | None, scale: Scale | None = None) -> dict[str, Any]:
    scale = scale or SCALES["quick" if quick else "full"]
    num_test = 16
    if data is not None:
        num, num_test_avail, side = inspect_paired_folder(data)
        num_test = min(16 if quick else 64, num_test_avail)
        scale = replace(scale, num=num, size=side)
    steps = f"train.steps={scale.student_steps}"
    per: dict[str, list[dict[str, float]]] = {"teacher": [], "scratch": [], "distilled": []}
    seconds: dict[str, float] = {}
    for seed in seeds:
        setup = BenchSetup(work, scale, seed, device, data, num_test)
        metrics, secs = train_teacher(setup)
        per["teacher"].append(metrics)
        seconds["teacher"] = seconds.get("teacher", 0.0) + (secs if math.isfinite(secs) else 0.0)
        log.info("bench distill: seed %d scratch (%d steps on %d pairs)", seed, scale.student_steps, scale.num)
        run = run_recipe(setup, TEACHER_RECIPE, setup.seed_dir / "scratch", [steps, *SCRATCH_OVERRIDES], "train")
        per["scratch"].append(run["metrics"])
        seconds["scratch"] = seconds.get("scratch", 0.0) + run["seconds"]
        log.info("bench distill: seed %d distilled (%d steps, teacher targets on the same %d inputs)", seed,
                 scale.student_steps, scale.num)
        run = run_recipe(setup, FEATURE_RECIPE, setup.seed_dir / "distilled",
                         [steps, f"teacher.checkpoint={setup.teacher_checkpoint}", "teacher.auto=null", "student.ngf=8"])
        per["distilled"].append(run["metrics"])
        seconds["distilled"] = seconds.get("distilled", 0.0) + run["seconds"]
    report: dict[str, Any] = {k: aggregate(v, seeds) for k, v in per.items()}
    source = (f"aligned folder {data}" if data is not None else "synthetic edges->scenes (distill.data.synth, data seed 0)")
    report["setup"] = {
        "task": "paired", "data": source, "size": scale.size, "held_out_pairs": num_test,
        "train_images": {"scratch": scale.num, "distilled": scale.num},
        "teacher": "resnet_6blocks ngf 32, pix2pix GAN + 100*L1 on all training pairs, one per seed",
        "student": "resnet_6blocks ngf 8 (1/4 width)",
        "scratch": "pix2pix GAN + 100*L1 to the ground truth",
        "distilled": "GAN + 100*L1 to the teacher + feature KD (model.9/12/15, 1x1 adapters), teacher of the same seed",
        "steps": {"teacher": scale.teacher_steps, "student": scale.student_steps}, "batch_size": 4,
        "seeds": seeds, "std": "sample standard deviation over seeds (ddof 1)", "quick": quick,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    report["comparisons"] = compare(report, ["distilled"], "scratch", "psnr_gt", True)
    return report


# ------------------------------------------------------------------------------------ unconditional task
@dataclass(frozen=True)
class UncondSetup:
    """Shared ``--set`` items of the unconditional runs: the flattened data folder, 32 px, run options."""

    work: Path
    scale: UncondScale
    seed: int = 0
    device: str = "cpu"

    @property
    def data_root(self) -> Path:
        return self.work / "data"

    @property
    def teacher_dir(self) -> Path:
        return self.work / "teacher"

    def overrides(self) -> list[str]:
        s = self.scale
        return [f"data.root={self.data_root}", "data.layout=folder", "data.synth=null", f"data.load_size={s.size}",
                f"data.crop_size={s.size}", "data.flip=false", f"train.seed={self.seed}", f"train.device={self.device}",
                "train.progress=false", "train.sample_every=0", "train.eval_every=0", "train.save_every=0",
                f"train.batch_size={s.batch_size}", "train.lr=0.0002", "train.beta1=0.5", "train.beta2=0.999",
                "train.lr_policy=constant", f"train.log_every={max(1, s.student_steps // 10)}",
                "eval.num=32", "eval.batch_size=32", "eval.best_metric="]


def link_class_folders(src: Path, dst: Path) -> dict[str, int]:
    """``dst/{train,test}/<label>_<name>`` symlinks to ``src/{train,test}/<label>/<name>`` (the engine's
    folder layout is flat); returns the image count per split. Nothing is copied."""
    from distill.data.datasets import list_images

    counts = {}
    for split in ("train", "test"):
        root = src / split
        if not root.is_dir():
            raise DatasetError(f"{src} has no {split}/ folder (expected {src}/{split}/<label>/*.png)")
        labels = sorted(p for p in root.iterdir() if p.is_dir())
        if not labels:
            raise DatasetError(f"{root} has no class subfolders (expected {root}/<label>/*.png)")
        out = dst / split
        out.mkdir(parents=True, exist_ok=True)
        n = 0
        for label in labels:
            for f in list_images(label):
                link = out / f"{label.name}_{f.name}"
                if not link.is_symlink():
                    link.symlink_to(f.resolve())
                n += 1
        counts[split] = n
    return counts


def _dcgan(setup: UncondSetup, d: int, steps: int) -> list[str]:
    return [f"train.steps={steps}", f"discriminator.ndf={d}", "discriminator.arch=dcgan_discriminator",
            "discriminator.gan_mode=vanilla", f"student.ngf={d}", "student.arch=dcgan"]


def _same_uncond_teacher(setup: UncondSetup) -> bool:
    """True when ``teacher_dir`` holds a finished teacher of this scale's depth and steps."""
    import yaml

    config = setup.teacher_dir / "config.yaml"
    if not (setup.teacher_dir / "teacher" / "model.safetensors").is_file() or not config.is_file():
        return False
    raw = yaml.safe_load(config.read_text()) or {}
    model = raw.get("student") or raw.get("generator") or {}  # the resolved config names the trained model student
    return ((raw.get("train") or {}).get("steps"), model.get("ngf")) == (
        setup.scale.teacher_steps, setup.scale.teacher_d)


def uncond_rows(setup: UncondSetup) -> dict[str, tuple[Path, list[str], str]]:
    """(recipe, overrides, kind) of each student row: the same DCGAN student and discriminator (depth
    ``student_d``), steps, batch and optimiser; only the loss and the teacher side differ."""
    s = setup.scale
    student = _dcgan(setup, s.student_d, s.student_steps)
    teacher_g = setup.teacher_dir / "teacher"
    teacher_d = setup.teacher_dir / "discriminator"
    return {
        "scratch": (CONFIGS / "dcgan_teacher.yaml",
                    [*[o.replace("student.", "generator.") for o in student]], "train"),
        "distilled": (CONFIGS / "kd_gan.yaml", [*student, f"teacher.checkpoint={teacher_g}", "teacher.auto=null"],
                      "distill"),
        "dgl_gan": (CONFIGS / "dgl_gan.yaml", [*student, f"teacher.discriminator={teacher_d}", "teacher.auto=null"],
                    "distill"),
    }


def sample_generator(gen: Any, n: int, seed: int, batch: int = 256) -> Any:
    """``n`` images (N, C, S, S) in [-1, 1] of an unconditional generator, z ~ N(0, I) drawn with ``seed``."""
    import torch

    rng = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for start in range(0, n, batch):
            z = torch.randn(min(batch, n - start), gen.nz, generator=rng)
            out.append(gen(z).float().clamp(-1, 1))
    return torch.cat(out)


REFERENCE_Z_SEED = 777  # the teacher samples every swd is measured against (never trained on)


def score_generator(checkpoint: Path, classifier: Any, seed: int, samples: int,
                    reference: Any = None) -> dict[str, float]:
    """``fid_classifier`` (and Variance of Laplacian) of ``samples`` images from z ~ N(0, I) drawn with
    ``1000 + seed``; ``swd`` against ``reference`` (teacher samples) when given."""
    from distill.checkpoint import load_checkpoint
    from distill.metrics import fid_classifier, variance_of_laplacian
    from distill.metrics.swd import sliced_wasserstein_distance

    fake = sample_generator(load_checkpoint(checkpoint), samples, 1000 + seed)
    out = {"fid_classifier": fid_classifier(classifier.real_features, fake, classifier),
           "vol": variance_of_laplacian(fake)}
    if reference is not None:
        out["swd"] = sliced_wasserstein_distance(fake[:len(reference)], reference, patches_per_image=64)["swd"]
    return out


def teacher_check(report: dict[str, Any]) -> dict[str, Any]:
    """Whether the teacher slimgan trained beats the scratch student on fid_classifier beyond the 95% interval of
    the per-seed differences (seed k: the teacher's sampling seed k against scratch seed k). When it does not,
    the teacher is too weak and the distilled rows are no evidence."""
    from benchmarks.report import vs_baseline

    cmp = vs_baseline(report["teacher"], report["scratch"], "fid_classifier", False)
    ok = bool(cmp and cmp["beats"])
    return {**(cmp or {}), "teacher_beats_scratch": ok,
            "note": ("the teacher beats the scratch student beyond its interval: the rows compare distillation "
                     "from a useful teacher") if ok else
                    ("TEACHER TOO WEAK: it does not beat the scratch student beyond the 95% interval, so these rows "
                     "are not evidence about distillation")}


def run_unconditional_bench(out_json: Path, quick: bool, work: Path, seeds: list[int], device: str,
                            data: Path, scale: UncondScale | None = None) -> dict[str, Any]:
    from distill.metrics import ClassifierConfig, fit_folder_classifier

    scale = scale or UNCOND_SCALES["quick" if quick else "full"]
    t0 = time.perf_counter()
    counts = link_class_folders(data, work / "data")
    classifier = fit_folder_classifier(data, ClassifierConfig(image_size=scale.size, epochs=scale.classifier_epochs),
                                       cache_dir=work / "classifier", device=device)
    seconds: dict[str, float] = {"classifier": round(time.perf_counter() - t0, 1)}

    teacher_setup = UncondSetup(work, scale, 0, device)
    teacher_ckpt = teacher_setup.teacher_dir / "teacher"
    if not _same_uncond_teacher(teacher_setup):
        log.info("bench distill: DCGAN teacher d=%d (%d steps on %d images)", scale.teacher_d, scale.teacher_steps,
                 counts["train"])
        run = run_recipe(teacher_setup, CONFIGS / "dcgan_teacher.yaml", teacher_setup.teacher_dir,
                         [o.replace("student.", "generator.") for o in _dcgan(teacher_setup, scale.teacher_d,
                                                                             scale.teacher_steps)], "train")
        seconds["teacher"] = round(run["seconds"], 1)
    from distill.checkpoint import load_checkpoint

    reference = sample_generator(load_checkpoint(teacher_ckpt), min(scale.samples, 1024), REFERENCE_Z_SEED)
    per: dict[str, list[dict[str, float]]] = {"teacher": [], "scratch": [], "distilled": [], "dgl_gan": []}
    for seed in seeds:
        per["teacher"].append(score_generator(teacher_ckpt, classifier, seed, scale.samples, reference))
        setup = UncondSetup(work, scale, seed, device)
        for name, (recipe, overrides, kind) in uncond_rows(setup).items():
            log.info("bench distill: seed %d %s (%d steps on %d images)", seed, name, scale.student_steps,
                     counts["train"])
            run_dir = work / f"seed{seed}" / name
            run = run_recipe(setup, recipe, run_dir, overrides, kind)
            seconds[name] = round(seconds.get(name, 0.0) + run["seconds"], 1)
            per[name].append({**score_generator(run_dir / "student", classifier, seed, scale.samples, reference),
                              "sec_per_step": run["sec_per_step"]})
    report: dict[str, Any] = {k: aggregate(v, seeds) for k, v in per.items()}
    report["teacher"]["train_seeds"] = [0]
    report["setup"] = {
        "task": "unconditional", "data": str(data), "size": scale.size,
        "train_images": {"scratch": counts["train"], "distilled": counts["train"], "dgl_gan": counts["train"],
                         "teacher": counts["train"]},
        "held_out_images": counts["test"], "samples": scale.samples,
        "depth_scale_factor": {"teacher": scale.teacher_d, "student": scale.student_d},
        "teacher": f"DCGAN d={scale.teacher_d} (dcgan_teacher.yaml), trained once with seed 0; its seeds are "
                   "sampling seeds",
        "scratch": f"DCGAN d={scale.student_d}, non-saturating GAN with a d={scale.student_d} discriminator",
        "distilled": "KD-GAN joint scheme (configs/synth/kd_gan.yaml terms) from the teacher, same student and D",
        "dgl_gan": "DGL-GAN (configs/synth/dgl_gan.yaml terms): Adv(G, D) + λ·Adv(G, D̄), D̄ = the teacher's D",
        "steps": {"teacher": scale.teacher_steps, "student": scale.student_steps}, "batch_size": scale.batch_size,
        "optimizer": "Adam lr 2e-4, betas (0.5, 0.999), constant rate (every row)",
        "metric": "fid_classifier: Fréchet distance on the penultimate features of a classifier trained on "
                  "train/, generated samples vs the held-out test/ images (lower is better); swd: sliced "
                  "Wasserstein distance x1e3 (ProGAN) against fresh teacher samples (z seed 777)",
        "classifier_accuracy": round(classifier.accuracy, 4),
        "seeds": seeds, "std": "sample standard deviation over seeds (ddof 1)", "quick": quick,
        "seconds": seconds,
    }
    report["comparisons"] = compare(report, ["distilled", "dgl_gan"], "scratch", "fid_classifier", False)
    report["comparisons"] += compare(report, ["distilled", "dgl_gan"], "scratch", "swd", False)
    report["teacher_check"] = teacher_check(report)
    return report


# ------------------------------------------------------------------------------------------------ entry
def run_distill_bench(out_json: str | Path, quick: bool = False, work: str | Path | None = None,
                      seeds: int | list[int] = 3, device: str = "cpu", task: str = "paired",
                      data: str | Path | None = None, scale: Scale | UncondScale | None = None) -> dict[str, Any]:
    """Run the benchmark for ``task``; write ``out_json`` and a markdown table beside it; return the report.

    ``scale`` replaces the quick / full size (a :class:`Scale` for paired, :class:`UncondScale` for
    unconditional; tests use tiny ones)."""
    if task not in TASKS:
        raise ConfigError(f"unknown --task {task!r}; choose from {', '.join(TASKS)}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("--seeds must be at least 1")
    out_json = Path(out_json)
    work_dir = Path(work) if work else default_work(out_json)
    data_dir = Path(data).expanduser() if data else None
    if data_dir is not None and not data_dir.is_dir():
        raise DatasetError(f"--data {data_dir} is not a folder")
    start = time.perf_counter()
    if task == "paired":
        report = run_paired_bench(out_json, quick, work_dir, seed_list, device, data_dir, scale)
    else:
        if data_dir is None:
            raise ConfigError("--task unconditional needs --data DIR (train/<label>/*.png, test/<label>/*.png) or "
                              "--teacher DIR (a generator; its samples are the data)")
        report = run_unconditional_bench(out_json, quick, work_dir, seed_list, device, data_dir, scale)
    report["setup"]["wall_s"] = round(time.perf_counter() - start, 1)
    write_report(out_json, report, format_table(report))
    return report


ROWS = ("teacher", "scratch", "distilled", "dgl_gan")
_METRICS = {"paired": [("psnr_gt", 2), ("ssim_gt", 3), ("psnr_teacher", 2)],
            "unconditional": [("fid_classifier", 2), ("swd", 2), ("vol", 1)]}


def format_table(report: dict[str, Any]) -> str:
    """Markdown: one row per run, ``mean ± std`` over seeds per metric."""
    task = report["setup"]["task"]
    cols = _METRICS[task]
    lines = ["| run | " + " | ".join(c for c, _ in cols) + " | seeds |", "|---|" + "---|" * (len(cols) + 1)]
    for name in ROWS:
        r = report.get(name)
        if r is None:
            continue
        cells = [("-" if r.get(c) is None else f"{r[c]:.{d}f} ± {r[c + '_std']:.{d}f}") for c, d in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(r['seeds'])} |")
    lines.append("")
    for c in report.get("comparisons", []):
        ci = "no interval (one seed)" if c["ci95"] is None else f"95% CI [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}]"
        lines.append(f"- {c['row']} vs {c['baseline']} ({c['metric']}, "
                     f"{'higher' if c['higher_is_better'] else 'lower'} is better): diff {c['diff']:+.4f}, {ci}: "
                     f"{c['outcome']}")
    if "teacher_check" in report:
        lines.append(f"\n{report['teacher_check']['note']}.")
    s = report["setup"]
    extra = f", classifier held-out accuracy {s['classifier_accuracy']:.4f}" if "classifier_accuracy" in s else ""
    lines.append(f"\n{task}: {s['data']}; train images {s['train_images']}; steps {s['steps']}; seeds {s['seeds']}"
                 f"{extra}; wall {s.get('wall_s')} s.")
    return "\n".join(lines) + "\n"
