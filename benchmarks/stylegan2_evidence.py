"""StyleGAN2 compression on real MNIST digits: a teacher, and half-width students from scratch, from the
teacher's pruned channels, and pruned + output KD (L1 + VGG perceptual to the teacher's output: CAGC's
distillation without its content mask and LPIPS) (+ DGL-GAN's D̄ term, + VEM).

Every row trains on the same data (``<data>/train/<digit>/*.png`` at 32 px) for the same steps with the
same recipe, once per seed; seed k's students distil from (and are pruned from) seed k's teacher. Each
generator is scored by the classifier Fréchet distance (:func:`distill.metrics.fid_classifier`, a small
classifier trained on the MNIST training split; lower is better) of ``--samples`` images (the EMA
generator, fixed noise, ψ = 1, the same latents for every row) against the 2,000 held-out test digits.

    python -m benchmarks.stylegan2_evidence --data ../shared/data/mnist --out runs/sg2_mnist \\
        --teacher-steps 300 --steps 150 --seeds 0 1 2 --workers 2

writes ``results.json`` and ``results.md`` (the table, per-seed values, each row against ``scratch`` by the
paired 95% t-interval of :mod:`benchmarks.report`, wall time) into ``--out``. A teacher run keeps its generator
in ``RUN/teacher``, a student run in ``RUN/student``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.report import aggregate, format_cmp, vs_baseline, write_report

log = logging.getLogger(__name__)

# "output KD" = L1 + VGG perceptual to the teacher's output on the same z: CAGC's distillation without its
# content-aware mask and without LPIPS, so it is not called CAGC.
ROWS = ("teacher", "scratch", "pruned", "pruned + output KD", "pruned + output KD + DGL-GAN",
        "pruned + output KD + VEM")
REG = {"name": "stylegan2", "r1": 0.0128, "d_reg_every": 16, "pl_weight": 2.0, "g_reg_every": 4, "mixing": 0.9,
       "ema_kimg": 1.0}


def _base(data: str, steps: int, seed: int, channels: int, batch: int) -> dict[str, Any]:
    return {
        "data": {"root": data, "layout": "folder", "load_size": 32},
        "method": dict(REG),
        "student": {"arch": "stylegan2", "kwargs": {"image_size": 32, "channels": channels, "nz": 32, "n_mlp": 2}},
        "discriminator": {"arch": "stylegan2_discriminator", "gan_mode": "vanilla", "kwargs": {"channels": channels}},
        "loss": [{"name": "adv", "weight": 1.0}],
        "teacher": {"mode": "none"},
        "train": {"steps": steps, "batch_size": batch, "lr": 0.002, "beta1": 0.0, "beta2": 0.99,
                  "lr_policy": "constant", "log_every": 50, "seed": seed, "progress": False, "device": "cpu"},
        "eval": {"num": 16},
    }


def row_config(row: str, data: str, out: Path, steps: int, teacher_steps: int, seed: int, width: int,
               batch: int) -> tuple[dict[str, Any], str]:
    """(raw recipe, kind) of one row for one seed."""
    if row == "teacher":
        return _base(data, teacher_steps, seed, width, batch), "train"
    raw = _base(data, steps, seed, width // 2, batch)
    teacher = out / f"teacher_s{seed}"
    if row != "scratch":
        raw["student"]["init"] = str(out / f"pruned_s{seed}")
    if "output KD" in row:
        raw["teacher"] = {"mode": "offline", "checkpoint": str(teacher / "teacher")}
        raw["loss"] += [{"name": "l1_teacher", "weight": 3.0}, {"name": "perceptual", "weight": 3.0, "vgg16": "off"}]
    if "DGL" in row:
        raw["teacher"]["discriminator"] = str(teacher / "discriminator")
        raw["loss"].append({"name": "dgl_gan", "weight": 0.1, "start": 0.1875})
    if "VEM" in row:
        raw["loss"].append({"name": "vem", "weight": 0.05, "to": "teacher", "channels": 8, "langevin_steps": 10,
                            "step_size": 50.0, "noise_std": 0.005, "lr": 1e-4})
    return raw, "distill" if "output KD" in row else "train"


def _run_job(args: tuple) -> dict[str, Any]:
    row, seed, raw, kind, out_dir = args
    role = "teacher" if row == "teacher" else "student"  # scratch and pruned rows train students with kind=train
    import torch

    torch.set_num_threads(1)
    from distill.engine.config import load_config
    from distill.engine.loop import run_training

    t0 = time.perf_counter()
    run_training(load_config(raw=copy.deepcopy(raw)), out_dir, kind=kind, distributed=False, role=role)
    return {"row": row, "seed": seed, "train_s": time.perf_counter() - t0, "dir": str(out_dir),
            "generator": str(Path(out_dir) / role)}


def score(generator_dir: Path, real_features, classifier, samples: int, seed: int = 1234) -> float:
    import torch

    from distill import load_checkpoint
    from distill.metrics import fid_classifier

    g = load_checkpoint(generator_dir).eval()
    z = torch.randn(samples, g.nz, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = torch.cat([g(z[i : i + 100]).clamp(-1, 1) for i in range(0, samples, 100)])
    return fid_classifier(real_features, images, classifier)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/mnist")
    p.add_argument("--out", required=True)
    p.add_argument("--teacher-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--width", type=int, default=32, help="teacher channels (students get half)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = str(Path(args.data).resolve())
    started = time.perf_counter()
    jobs: dict[str, list[dict[str, Any]]] = {}

    def run(rows: tuple[str, ...]) -> None:
        tasks = []
        for row in rows:
            for seed in args.seeds:
                raw, kind = row_config(row, data, out, args.steps, args.teacher_steps, seed, args.width, args.batch)
                name = "teacher" if row == "teacher" else row.replace(" + ", "_").replace("-", "").replace(" ", "_")
                tasks.append((row, seed, raw, kind, out / f"{name}_s{seed}"))
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            for result in pool.map(_run_job, tasks):
                jobs.setdefault(result["row"], []).append(result)
                print(f"{result['row']} seed {result['seed']}: {result['train_s']:.0f} s", flush=True)

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run(("teacher",))
    from distill.prune import prune_checkpoint

    for seed in args.seeds:
        prune_checkpoint(out / f"teacher_s{seed}" / "teacher", out / f"pruned_s{seed}", 0.5, "l1")
    run(ROWS[1:])

    from distill.metrics import ClassifierConfig, fit_folder_classifier

    clf = fit_folder_classifier(data, ClassifierConfig(image_size=32))
    for row in ROWS:
        for result in jobs[row]:
            result["fid_classifier"] = score(Path(result["generator"]), clf.real_features, clf, args.samples)
    doc = evidence_report(jobs, vars(args), clf.accuracy, time.perf_counter() - started)
    write_report(out / "results.json", doc, format_evidence(doc))
    print(format_evidence(doc), end="")
    return 0


def evidence_report(jobs: dict[str, list[dict[str, Any]]], settings: dict[str, Any], accuracy: float,
                    wall: float) -> dict[str, Any]:
    """``rows``: per row the seeds' ``fid_classifier`` (mean, ``_std``, ``per_seed``) and ``vs_baseline`` against
    ``scratch`` (paired by seed: seed k's students come from seed k's teacher)."""
    table = []
    for row in ROWS:
        runs = sorted(jobs[row], key=lambda r: r["seed"])
        entry = {"row": row, **aggregate([{"fid_classifier": r["fid_classifier"], "train_s": r["train_s"]} for r in runs],
                                         [r["seed"] for r in runs])}
        entry.update(mean=entry["fid_classifier"], std=entry["fid_classifier_std"],
                     values=[r["fid_classifier"] for r in runs], train_s_mean=entry["train_s"])
        table.append(entry)
    scratch = next(t for t in table if t["row"] == "scratch")
    for t in table:
        if t["row"] != "scratch":
            t["vs_baseline"] = vs_baseline(t, scratch, "fid_classifier")
    return {"settings": settings, "classifier_accuracy": accuracy, "rows": table, "runs": jobs, "wall_s": wall}


def format_evidence(doc: dict[str, Any]) -> str:
    lines = ["| row | fid_classifier (mean ± std) | per seed | vs scratch | train s / run |", "|---|---|---|---|---|"]
    for t in doc["rows"]:
        lines.append(f"| {t['row']} | {t['mean']:.2f} ± {t['std']:.2f} | {', '.join(f'{v:.2f}' for v in t['values'])} "
                     f"| {format_cmp(t.get('vs_baseline'))} | {t['train_s_mean']:.0f} |")
    lines += ["", f"classifier held-out accuracy {100 * doc['classifier_accuracy']:.1f} %; wall time "
              f"{doc['wall_s'] / 60:.1f} min. vs scratch: mean paired difference [95% t-interval] (lower is better)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
