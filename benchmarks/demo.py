"""``slimgan demo``: the whole pipeline on an embedded default, with no downloads.

1. a synthetic paired dataset (edge maps -> shaded shapes, ``distill.data.synthesize``);
2. a small pix2pix teacher (``resnet_9blocks`` at ngf 32: GAN + 100·L1, PatchGAN), trained briefly;
3. a slim student (``mobile_resnet_9blocks`` at ngf 8, GAN Compression's student at 1/4 width)
   distilled with CRD (content relationship distillation: RKD distance + 2·angle over column strips,
   row strips and patches, λ_CRD 2.5 as for pix2pix), an L1 reconstruction to the teacher (weight
   100, in place of the perceptual term that anchors CRD in the paper), and the
   teacher discriminator's adversarial guidance (frozen pretrained D̄); perceptual is off because no
   VGG-16 weights are downloaded;
4. export of both with fp16 and parity checks (``export.bundle.export_bundle``);
5. a side-by-side latency benchmark (``benchmarks.latency``);
6. a labelled sample grid PNG (input | teacher | student | target, with the scores), the loss curves
   of both runs, and a summary table.

Everything lands in ``--out``: the two checkpoints ``teacher/`` and ``student/`` at the top, their
training runs (metrics.csv, samples/, state.pt) under ``runs/``, the bundles under ``bundles/``;
``summary.json`` names every artifact and carries the bundles' parity rows as ``parity.json`` has
them. ``--serve`` then replaces this process with ``slimgan serve`` on the two bundles (a fresh,
torch-free process).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("slimgan.demo")

# The embedded default: small enough for a laptop CPU in a few minutes, large enough to learn the task.
SIZE = 32
NUM_TRAIN = 200
NUM_TEST = 16
TEACHER = {"arch": "resnet_9blocks", "ngf": 32}
STUDENT = {"arch": "mobile_resnet_9blocks", "ngf": 8}
TEACHER_STEPS = 1000
STUDENT_STEPS = 1000
BATCH = 4
# The papers' Adam lr 2e-4 is tuned for full-size students over ~100 epochs. For this 39 k-parameter
# student and a few minutes of training it leaves the student far behind (measured on this task after
# 800 steps: PSNR to teacher 19.9 dB at 2e-4, 23.7 dB at 2e-3), so the demo student uses 2e-3.
STUDENT_LR = 2e-3


def _data_section(root: Path) -> dict[str, Any]:
    return {"root": str(root), "layout": "aligned",
            "synth": {"task": "paired", "num": NUM_TRAIN, "num_test": NUM_TEST, "size": SIZE, "seed": 0}}


def _train_section(steps: int, device: str, lr: float = 2e-4, progress: bool = True) -> dict[str, Any]:
    return {"steps": steps, "batch_size": BATCH, "lr": lr, "beta1": 0.5, "log_every": 20,
            "sample_every": 0, "eval_every": 0, "device": device, "seed": 0, "progress": progress}


def teacher_recipe(data_root: Path, device: str = "cpu", steps: int = TEACHER_STEPS,
                   progress: bool = True) -> dict[str, Any]:
    """pix2pix (Isola et al.): L_G = GAN + 100·||G(x) - y||₁ with a conditional PatchGAN."""
    return {
        "description": "demo teacher: pix2pix resnet_9blocks ngf 32 on synthetic edges -> scenes",
        "data": _data_section(data_root),
        "student": dict(TEACHER),
        "discriminator": {"arch": "basic", "ndf": 16, "gan_mode": "lsgan", "conditional": True},
        "loss": [{"name": "adv", "weight": 1.0}, {"name": "l1_target", "weight": 100.0}],
        "train": _train_section(steps, device, progress=progress),
        "eval": {"num": NUM_TEST},
    }


def student_recipe(data_root: Path, teacher_ckpt: Path, teacher_d: Path, device: str = "cpu",
                   steps: int = STUDENT_STEPS, progress: bool = True) -> dict[str, Any]:
    """CRD on an offline teacher: L = 2.5·L_CRD + 100·|G_s - G_t|₁ + Adv(G_s, sg(D̄)).

    CRD's relational terms are invariant to the student's absolute colours; the paper anchors them
    with a VGG perceptual loss, which needs weights the demo does not download, so an L1 term to the
    teacher (weighted like pix2pix's L1) anchors them instead.
    """
    return {
        "description": "demo student: mobile_resnet_9blocks ngf 8 distilled with CRD from the demo teacher",
        "data": _data_section(data_root),
        "teacher": {"mode": "offline", "checkpoint": str(teacher_ckpt), "discriminator": str(teacher_d)},
        "student": dict(STUDENT),
        "loss": [
            {"name": "crd", "weight": 2.5},
            {"name": "l1_teacher", "weight": 100.0},
            {"name": "teacher_adv", "weight": 1.0, "gan_mode": "lsgan", "conditional": True},
        ],
        "train": _train_section(steps, device, lr=STUDENT_LR, progress=progress),
        "eval": {"num": NUM_TEST},
    }


def _train(raw: dict[str, Any], out: Path, kind: str) -> dict[str, Any]:
    from distill.engine.config import load_config
    from distill.engine.loop import run_training

    return run_training(load_config(raw=raw), out, kind=kind, distributed=False)


def write_sample_grid(data_root: Path, teacher_dir: Path, student_dir: Path, path: Path, num: int = 6,
                      title: str = "") -> dict[str, float]:
    """A labelled grid, rows of input | teacher | student | target on held-out pairs; returns the scores.

    The title gives both models, their training steps and the scores over all held-out pairs.
    """
    import torch

    from distill.checkpoint import load_checkpoint
    from distill.data.datasets import TransformConfig, build_dataset, to_image
    from distill.metrics import psnr, ssim
    from distill.plots import format_metrics, labelled_grid

    test = build_dataset("aligned", data_root, "test", transform=TransformConfig(train=False))
    samples = [test[i] for i in range(len(test))]
    a = torch.stack([s["A"] for s in samples])
    b = torch.stack([s["B"] for s in samples])
    teacher, student = load_checkpoint(teacher_dir), load_checkpoint(student_dir)
    with torch.no_grad():
        t, s = teacher(a), student(a)
    scores = {"psnr_teacher": psnr(s, t), "ssim_teacher": ssim(s, t), "psnr_gt": psnr(s, b), "ssim_gt": ssim(s, b),
              "teacher_psnr_gt": psnr(t, b)}
    n = min(num, len(samples))
    steps = {name: (m.slimgan_checkpoint["config"].get("provenance") or {}).get("step")
             for name, m in (("teacher", teacher), ("student", student))}
    lines = [title] if title else []
    lines.append(f"teacher {teacher.slimgan_config['arch']} (step {steps['teacher']}) -> student "
                 f"{student.slimgan_config['arch']} (step {steps['student']}), {len(samples)} held-out pairs")
    lines.append("student: " + format_metrics(scores, ["psnr_teacher", "psnr_gt", "ssim_gt"]) + "; teacher: "
                 + format_metrics({"psnr_gt": scores["teacher_psnr_gt"]}, ["psnr_gt"]))
    columns = [(name, [to_image(x[i]) for i in range(n)])
               for name, x in (("input", a), ("teacher", t), ("student", s), ("target", b))]
    labelled_grid(columns, "\n".join(lines)).save(path)
    return scores


def run_demo(out: str | Path = "demo", device: str = "cpu", threads: int = 1,
             teacher_steps: int = TEACHER_STEPS, student_steps: int = STUDENT_STEPS,
             progress: bool = True) -> dict[str, Any]:
    """Run the whole pipeline into ``out`` and return (and write) ``summary.json``."""
    from distill.engine.run_lock import RunLock

    with RunLock(out, what="slimgan demo"):
        return _run_demo(Path(out), device, threads, teacher_steps, student_steps, progress)


def _install_checkpoint(run_ckpt: Path, dest: Path) -> Path:
    """Copy a run's final generator checkpoint to the demo's top level (``D/teacher``, ``D/student``)."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(run_ckpt, dest)
    return dest


def _run_demo(out: Path, device: str, threads: int, teacher_steps: int, student_steps: int,
              progress: bool) -> dict[str, Any]:
    from benchmarks.latency import LatencyConfig, benchmark_latency
    from distill.data.synth import synthesize
    from distill.errors import SlimganError
    from distill.plots import plot_loss_curves
    from export.bundle import PARITY_NAME, export_bundle

    start = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)
        log.info("demo: %s done in %.1f s (%.0f s so far)", name, timings[name], time.perf_counter() - start)

    t0 = time.perf_counter()
    data_root = out / "data"
    log.info("demo 1/6: synthetic paired dataset (%d pairs, %d px) -> %s", NUM_TRAIN, SIZE, data_root)
    if not (data_root / "train").is_dir():
        synthesize("paired", data_root, num=NUM_TRAIN, size=SIZE, seed=0, num_test=NUM_TEST)
    stage("data", t0)

    t0 = time.perf_counter()
    log.info("demo 2/6: teacher %s ngf %d, pix2pix for %d steps", TEACHER["arch"], TEACHER["ngf"], teacher_steps)
    runs = out / "runs"
    _train(teacher_recipe(data_root, device, teacher_steps, progress), runs / "teacher", "train")
    teacher_ckpt = _install_checkpoint(runs / "teacher" / "teacher", out / "teacher")
    stage("teacher", t0)

    t0 = time.perf_counter()
    log.info("demo 3/6: student %s ngf %d, CRD distillation for %d steps", STUDENT["arch"], STUDENT["ngf"],
             student_steps)
    _train(student_recipe(data_root, teacher_ckpt, runs / "teacher" / "discriminator", device, student_steps,
                          progress), runs / "student", "distill")
    student_ckpt = _install_checkpoint(runs / "student" / "student", out / "student")
    stage("student", t0)

    t0 = time.perf_counter()
    log.info("demo 4/6: export with fp16 and parity checks")
    teacher_bundle, student_bundle = out / "bundles" / "teacher", out / "bundles" / "student"
    teacher_manifest = export_bundle(teacher_ckpt, teacher_bundle, res=SIZE, fp16=True, threads=threads).manifest
    exported = export_bundle(student_ckpt, student_bundle, teacher=teacher_ckpt, res=SIZE, fp16=True,
                             threads=threads)
    stage("export", t0)

    t0 = time.perf_counter()
    cores = os.cpu_count() or 1
    thread_list = sorted({threads, cores})
    log.info("demo 5/6: side-by-side latency benchmark (ONNX Runtime CPU, %s threads)", "/".join(map(str, thread_list)))
    latency_dir = out / "latency"
    latency = benchmark_latency([student_bundle], latency_dir,
                                LatencyConfig(backends=["ort", "ort-fp16"], threads=thread_list, res=SIZE),
                                teacher=teacher_bundle)
    stage("latency", t0)

    t0 = time.perf_counter()
    log.info("demo 6/6: sample grid, loss curves and summary")
    grid = out / "samples.png"
    scores = write_sample_grid(data_root, teacher_ckpt, student_ckpt, grid, title=f"slimgan demo ({SIZE}x{SIZE})")
    curves = plot_loss_curves({"teacher": runs / "teacher" / "metrics.csv", "student": runs / "student" / "metrics.csv"},
                              out / "loss_curves.png")
    stage("samples", t0)

    speed = exported.speed
    if not any(r.get("passed") is not None for r in exported.parity):
        raise SlimganError("export produced no parity rows to check")
    summary = {
        "speedup": speed["speedup"],
        "mac_ratio": speed["mac_ratio"],
        "parity_passed": exported.ok,
        "psnr_teacher": round(scores["psnr_teacher"], 3),
        "ssim_teacher": round(scores["ssim_teacher"], 4),
        "psnr_gt": round(scores["psnr_gt"], 3),
        "ssim_gt": round(scores["ssim_gt"], 4),
        "teacher_psnr_gt": round(scores["teacher_psnr_gt"], 3),
        "teacher": {**TEACHER, "steps": teacher_steps, "macs": teacher_manifest.macs,
                    "params": teacher_manifest.params},
        "student": {**STUDENT, "steps": student_steps, "method": "crd + l1_teacher + teacher_adv",
                    "macs": exported.manifest.macs, "params": exported.manifest.params},
        # the rows exactly as the student bundle's parity.json has them (and the teacher bundle's)
        "parity": json.loads((student_bundle / PARITY_NAME).read_text())["rows"],
        "teacher_parity": json.loads((teacher_bundle / PARITY_NAME).read_text())["rows"],
        "latency": [{k: r.get(k) for k in ("model", "backend", "threads", "median_ms", "speedup", "mac_ratio")}
                    for r in latency["results"]],
        "paths": {
            "data": str(data_root), "teacher_checkpoint": str(teacher_ckpt), "student_checkpoint": str(student_ckpt),
            "teacher_bundle": str(teacher_bundle), "student_bundle": str(student_bundle),
            "samples_png": str(grid), "loss_curves_png": str(curves),
            "latency_json": str(latency_dir / "latency.json"),
            "latency_png": str(latency_dir / "latency.png"), "parity_json": str(student_bundle / "parity.json"),
            "speed_json": str(student_bundle / "speed.json"),
            "teacher_run": str(runs / "teacher"), "student_run": str(runs / "student"),
            "teacher_metrics_csv": str(runs / "teacher" / "metrics.csv"),
            "student_metrics_csv": str(runs / "student" / "metrics.csv"),
        },
        "seconds": {**timings, "total": round(time.perf_counter() - start, 1)},
        "resolution": SIZE,
        "threads": threads,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    from export.parity import verdict

    t, s = summary["teacher"], summary["student"]
    lines = [
        "",
        f"slimgan demo: {t['arch']} ngf {t['ngf']} (teacher) -> {s['arch']} ngf {s['ngf']} (student), "
        f"{summary['resolution']}x{summary['resolution']}",
        f"  {'':<22}{'teacher':>14}{'student':>14}",
    ]
    if t.get("macs") and s.get("macs"):
        lines.append(f"  {'MACs':<22}{t['macs'] / 1e6:>13.1f}M{s['macs'] / 1e6:>13.2f}M")
    if t.get("params") and s.get("params"):
        lines.append(f"  {'params':<22}{t['params'] / 1e3:>13.1f}k{s['params'] / 1e3:>13.1f}k")
    lines.append(f"  {'PSNR to ground truth':<22}{summary['teacher_psnr_gt']:>12.2f}dB{summary['psnr_gt']:>12.2f}dB")
    lines.append(f"  {'PSNR to teacher':<22}{'':>14}{summary['psnr_teacher']:>12.2f}dB")
    for row in summary["latency"]:
        if row["model"] != "teacher" and row.get("speedup"):
            lines.append(f"  speedup on {row['backend']}, threads={row['threads']}: x{row['speedup']:.2f} "
                         f"(MAC ratio x{row['mac_ratio']:.1f})")
    lines.append(f"  export speedup (ORT CPU, side by side): x{summary['speedup']:.2f}, MAC ratio x{summary['mac_ratio']:.1f}")
    lines.append("  parity: " + ", ".join(f"{r['name']} {r.get('verdict') or verdict(r)}"
                                        + (f" ({r['psnr_db']:.1f} dB)" if r.get("psnr_db") is not None else "")
                                        for r in summary["parity"]))
    lines.append(f"  samples: {summary['paths']['samples_png']}   loss curves: {summary['paths']['loss_curves_png']}"
                 f"   latency plot: {summary['paths']['latency_png']}")
    lines.append(f"  total time: {summary['seconds']['total']:.0f} s")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="the whole pipeline (data, teacher, distilled student, export, latency) on an embedded default",
        description="Synthetic data -> pix2pix teacher -> CRD-distilled mobile student -> ONNX/fp16 export with "
                    "parity -> side-by-side latency -> sample grid and summary.json. No downloads.")
    p.add_argument("--out", default="demo", help="output folder (default ./demo)")
    p.add_argument("--serve", action="store_true", help="then serve the two bundles (slimgan serve)")
    p.add_argument("--port", type=int, default=8000, help="port for --serve (default 8000)")
    p.add_argument("--threads", type=int, default=1,
                   help="ONNX Runtime threads for the export speed check (default 1; latency also runs on all cores)")
    p.add_argument("--device", default="cpu", help="training device: cpu | cuda | auto")
    p.add_argument("--teacher-steps", type=int, default=TEACHER_STEPS)
    p.add_argument("--student-steps", type=int, default=STUDENT_STEPS)
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no training progress bars or progress lines (stage lines are still logged)")
    p.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    summary = run_demo(args.out, device=args.device, threads=args.threads,
                       teacher_steps=args.teacher_steps, student_steps=args.student_steps, progress=args.progress)
    print(format_summary(summary))
    print(f"\nwrote {Path(args.out) / 'summary.json'}")
    if not summary["parity_passed"]:
        return 1
    if args.serve:
        paths = summary["paths"]
        argv = [sys.executable, "-m", "slimgan.cli", "serve", paths["student_bundle"], paths["teacher_bundle"],
                "--port", str(args.port)]
        print(f"serving on http://127.0.0.1:{args.port}/ (Ctrl-C to stop)", flush=True)
        os.execv(sys.executable, argv)  # a fresh process: the server never loads torch
    return 0
