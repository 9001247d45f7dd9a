"""``slimgan bench distill --task unconditional --teacher DIR``: distil a user's unconditional generator from its
samples alone (no ``--data``: the teacher's samples are the data).

``train_samples`` images from the teacher (z ~ N(0, I), seed 99) are written once under ``WORK/data`` and every
row trains on them, with the same student (DCGAN at depth scale factor ``student_d``, same z size, channels and
resolution as the teacher), discriminator, steps, batch, Adam (2e-4, β 0.5 / 0.999) and seeds:

- ``scratch``: the student trained adversarially on the teacher's samples (``dcgan_teacher.yaml`` terms);
- ``kd_gan``: KD-GAN's joint scheme from the teacher generator (``kd_gan.yaml`` terms);
- ``dgl_gan``: DGL-GAN with D̄ = ``--teacher-discriminator`` (absent without one, and the table says so).

Score: ``swd`` (:mod:`distill.metrics.swd`) of ``score_samples`` student samples (z from the seed) against as
many fresh teacher samples (z seed 777, never trained on); ``teacher`` is the same teacher scored against
those, with other z (the metric's floor). Rows carry ``vs_baseline`` against ``scratch`` (paired 95%
t-intervals).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.distill_bench import REFERENCE_Z_SEED
from benchmarks.distill_bench import sample_generator as teacher_samples
from benchmarks.report import aggregate, format_cmp, mean_std, vs_baseline, write_report
from distill.errors import ConfigError

log = logging.getLogger(__name__)

TRAIN_Z_SEED = 99
__all__ = ["REFERENCE_Z_SEED", "SAMPLE_SCALES", "run_teacher_samples_bench", "teacher_samples"]


@dataclass(frozen=True)
class SampleScale:
    """Student ``steps`` and ``batch``; teacher samples to train on and to score with; SWD patches per image."""

    steps: int
    batch: int
    train_samples: int
    score_samples: int
    patches_per_image: int = 64
    student_d: int | None = None  # None: the teacher's ngf / 8 (at least 2), else 8


SAMPLE_SCALES = {"quick": SampleScale(100, 32, 512, 256), "full": SampleScale(1500, 64, 4096, 1024)}


def write_samples(images: Any, folder: Path) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    arr = ((images.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    for i, a in enumerate(arr):
        Image.fromarray(a).save(folder / f"{i:05d}.png")


def prepare_data(gen: Any, teacher_dir: Path, work: Path, scale: SampleScale) -> dict[str, Any]:
    """The teacher-sample folder (``train/``, ``test/``), reused when made by the same teacher with the same count."""
    from distill.checkpoint import file_sha256

    root = work / "data"
    stamp = {"teacher_sha256": file_sha256(teacher_dir / "model.safetensors"), "n": scale.train_samples,
             "z_seed": TRAIN_Z_SEED}
    meta = root / "samples.json"
    if not (meta.is_file() and json.loads(meta.read_text()) == stamp):
        log.info("bench distill: writing %d teacher samples to %s", scale.train_samples, root)
        write_samples(teacher_samples(gen, scale.train_samples, TRAIN_Z_SEED), root / "train")
        write_samples(teacher_samples(gen, 32, TRAIN_Z_SEED + 1), root / "test")
        meta.write_text(json.dumps(stamp))
    return {"root": root, **stamp}


def student_depth(teacher_cfg: dict[str, Any], scale: SampleScale) -> int:
    if scale.student_d is not None:
        return scale.student_d
    ngf = (teacher_cfg.get("kwargs") or {}).get("ngf")
    return max(2, int(ngf) // 8) if isinstance(ngf, int) else 8


def rows(setup: Any, teacher_dir: Path, teacher_disc: Path | None, d: int, info: dict[str, int]) -> dict[str, tuple]:
    """(recipe, overrides, kind) per row: the same DCGAN student and discriminator; only the objective differs."""
    from benchmarks.distill_bench import CONFIGS

    model = [f"student.ngf={d}", "student.arch=dcgan", f"student.kwargs.nz={info['nz']}",
             f"student.kwargs.image_size={info['size']}", f"student.kwargs.nc={info['nc']}"]
    shared = [f"train.steps={setup.scale.student_steps}", f"discriminator.ndf={d}",
              "discriminator.arch=dcgan_discriminator", "discriminator.gan_mode=vanilla"]
    out = {
        "scratch": (CONFIGS / "dcgan_teacher.yaml", [*shared, *[o.replace("student.", "generator.") for o in model]],
                    "train"),
        "kd_gan": (CONFIGS / "kd_gan.yaml", [*shared, *model, f"teacher.checkpoint={teacher_dir}", "teacher.auto=null"],
                   "distill"),
    }
    if teacher_disc is not None:
        out["dgl_gan"] = (CONFIGS / "dgl_gan.yaml", [*shared, *model, f"teacher.discriminator={teacher_disc}",
                                                     "teacher.auto=null", f"teacher.discriminator_gan_mode={d_gan_mode(teacher_disc)}"],
                          "distill")
    return out


def d_gan_mode(teacher_disc: Path) -> str:
    """The objective D̄ records in its provenance; ``vanilla`` (DCGAN's BCE) when it records none."""
    from distill.checkpoint import read_checkpoint_config

    return (read_checkpoint_config(teacher_disc).get("provenance") or {}).get("gan_mode") or "vanilla"


def score(gen: Any, reference: Any, seed: int, patches: int, classifier: Any = None) -> dict[str, float]:
    """``swd`` against ``reference`` and Variance of Laplacian of as many samples (z from ``1000 + seed``);
    ``fid_classifier`` against the held-out data too when a ``classifier`` (``--data``) is given."""
    from distill.metrics import fid_classifier, variance_of_laplacian
    from distill.metrics.swd import sliced_wasserstein_distance

    fake = teacher_samples(gen, reference.shape[0], 1000 + seed)
    out = {"swd": sliced_wasserstein_distance(fake, reference, patches_per_image=patches)["swd"],
           "vol": variance_of_laplacian(fake)}
    if classifier is not None:
        out["fid_classifier"] = fid_classifier(classifier.real_features, fake, classifier)
    return out


def _teacher_info(gen: Any, teacher_dir: Path) -> dict[str, Any]:
    import torch

    from distill.checkpoint import read_checkpoint_config
    from distill.registry import model_info

    cfg = read_checkpoint_config(teacher_dir)
    if model_info(cfg["arch"]).input_kind != "latent" or not hasattr(gen, "nz"):
        raise ConfigError(f"--teacher {teacher_dir} is a {cfg['arch']}, not an unconditional generator (z -> image)")
    with torch.no_grad():
        probe = gen(torch.zeros(1, gen.nz))
    if probe.dim() != 4 or probe.shape[-1] != probe.shape[-2] or probe.shape[1] != 3:
        raise ConfigError(f"--teacher {teacher_dir} makes {tuple(probe.shape[1:])} images; the benchmark trains a "
                          "DCGAN student on square RGB images")
    return {"arch": cfg["arch"], "kwargs": cfg["kwargs"], "params": sum(p.numel() for p in gen.parameters()),
            "nz": int(gen.nz), "size": int(probe.shape[-1]), "nc": 3, "path": str(teacher_dir)}


def run_teacher_samples_bench(out_json: str | Path, teacher_dir: str | Path, seeds: list[int], scale: SampleScale,
                              work: str | Path | None = None, device: str = "cpu",
                              teacher_disc: str | Path | None = None, quick: bool = False,
                              classifier: Any = None) -> dict[str, Any]:
    """Run the rows for every seed on the teacher's samples; write ``out_json`` and its ``.md``; return the report.

    ``classifier`` (from ``--data``, :func:`distill.metrics.fit_folder_classifier`) adds ``fid_classifier``."""
    from benchmarks.distill_bench import UncondScale, UncondSetup, run_recipe
    from distill.checkpoint import load_checkpoint, read_checkpoint_config

    out_json, teacher_dir = Path(out_json), Path(teacher_dir)
    work_dir = Path(work) if work else out_json.with_name(out_json.stem + "_runs")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    gen = load_checkpoint(teacher_dir)
    info = _teacher_info(gen, teacher_dir)
    d = student_depth(read_checkpoint_config(teacher_dir), scale)
    prepare_data(gen, teacher_dir, work_dir, scale)
    reference = teacher_samples(gen, scale.score_samples, REFERENCE_Z_SEED)
    uscale = UncondScale(teacher_d=0, student_d=d, teacher_steps=0, student_steps=scale.steps, batch_size=scale.batch,
                         samples=scale.score_samples, classifier_epochs=0, size=info["size"])
    disc = Path(teacher_disc) if teacher_disc else None
    per: dict[str, list[dict[str, float]]] = {"teacher": []}
    for seed in seeds:
        per["teacher"].append(score(gen, reference, seed, scale.patches_per_image, classifier))
        setup = UncondSetup(work_dir, uscale, seed, device)
        for name, (recipe, overrides, kind) in rows(setup, teacher_dir, disc, d, info).items():
            log.info("bench distill: seed %d %s (%d steps on %d teacher samples)", seed, name, scale.steps,
                     scale.train_samples)
            run_dir = work_dir / f"seed{seed}" / name
            run = run_recipe(setup, recipe, run_dir, overrides, kind)
            student = load_checkpoint(run_dir / "student")
            per.setdefault(name, []).append({**score(student, reference, seed, scale.patches_per_image, classifier),
                                             "sec_per_step": run["sec_per_step"]})
    table = [{"method": name, **aggregate(values, seeds)} for name, values in per.items()]
    base = next(r for r in table if r["method"] == "scratch")
    for r in table:
        if r["method"] not in ("scratch", "teacher"):
            r["vs_baseline"] = {m: vs_baseline(r, base, m) for m in ("swd", "fid_classifier") if m in r}
    report = {
        "schema": "slimgan-bench-distill-unconditional-samples/1", "smoke_test": bool(quick),
        "setup": {"task": "unconditional", "data": "teacher samples (no --data)", "teacher": info,
                  "student": {"arch": "dcgan", "ngf": d, "nz": info["nz"], "image_size": info["size"]},
                  "train_images": scale.train_samples, "score_samples": scale.score_samples,
                  "scale": asdict(scale), "seeds": list(seeds), "train_z_seed": TRAIN_Z_SEED,
                  "reference_z_seed": REFERENCE_Z_SEED,
                  "optimizer": "Adam lr 2e-4, betas (0.5, 0.999), constant rate (every row)",
                  "metric": "swd: sliced Wasserstein distance x1e3 on Laplacian-pyramid 7x7 patches (ProGAN), "
                            "samples vs fresh teacher samples; teacher row = the metric's floor (other z)",
                  "dgl_gan": (f"D̄ = {disc} ({d_gan_mode(disc)} objective; vanilla when its checkpoint records none)"
                              if disc else "absent: DGL-GAN needs the teacher's discriminator "
                              "(--teacher-discriminator DIR)")},
        "rows": table,
    }
    report["setup"]["wall_s"] = round(time.perf_counter() - wall0, 1)
    report["setup"]["cpu_s"] = round(time.process_time() - cpu0, 1)
    write_report(out_json, report, format_samples_table(report))
    return report


def format_samples_table(report: dict[str, Any]) -> str:
    s = report["setup"]
    t = s["teacher"]
    lines = (["**SMOKE TEST (--quick): not evidence.**", ""] if report["smoke_test"] else [])
    lines += [f"Teacher {t['arch']} ({t['params']:,} params, {t['size']} px) -> DCGAN d={s['student']['ngf']}, trained "
              f"on {s['train_images']} teacher samples for {s['scale']['steps']} steps; seeds {s['seeds']}.", "",
              "| row | swd (x1e3, lower better) | VoL | fid_classifier | vs scratch: swd | vs scratch: fid_classifier |",
              "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        cmp = r.get("vs_baseline") or {}
        lines.append(f"| {r['method']} | {mean_std(r, 'swd', 2)} | {mean_std(r, 'vol', 1)} | "
                     f"{mean_std(r, 'fid_classifier', 1)} | {format_cmp(cmp.get('swd'), 2)} | "
                     f"{format_cmp(cmp.get('fid_classifier'), 1)} |")
    if not any(r["method"] == "dgl_gan" for r in report["rows"]):
        lines += ["", f"dgl_gan: {s['dgl_gan']}."]
    lines += ["", "teacher: fresh teacher samples against the reference samples (the floor of the metric). vs scratch: "
              "mean paired difference [95% t-interval]; better / worse only when the interval excludes 0.", "",
              f"Wall {s['wall_s']} s, CPU {s['cpu_s']} s."]
    return "\n".join(lines) + "\n"
