"""``slimgan demo``: the whole pipeline on an embedded default, with no downloads.

1. a synthetic paired dataset (edge maps -> shaded shapes, ``distill.data.synthesize``);
2. a small pix2pix teacher (``resnet_9blocks`` at ngf 32: GAN + 100·L1, PatchGAN), trained briefly;
3. a slim student (``mobile_resnet_9blocks`` at ngf 8, GAN Compression's student at 1/4 width)
   distilled with CRD (content relationship distillation: RKD distance + 2·angle over column strips,
   row strips and patches, λ_CRD 2.5 as for pix2pix), an L1 reconstruction to the teacher (weight
   100, in place of the perceptual term that anchors CRD in the paper), and the
   teacher discriminator's adversarial guidance (frozen pretrained D̄); perceptual is off because no
   VGG-16 weights are downloaded;
4. export of both with fp16 and parity checks on the held-out inputs (``export.bundle.export_bundle``);
5. a side-by-side latency benchmark (``benchmarks.latency``);
6. a labelled sample grid PNG (input | teacher | student | target, with the scores), the loss curves
   of both runs, and a summary table.

Everything lands in ``--out``: the two checkpoints ``teacher/`` and ``student/`` at the top, their
training runs (metrics.csv, samples/, state.pt) under ``runs/``, the bundles under ``bundles/``;
``summary.json`` names every artifact and carries the bundles' parity rows as ``parity.json`` has
them. ``--serve`` then replaces this process with ``slimgan serve`` on the two bundles (a fresh,
torch-free process).

Ctrl-C during training leaves each run's ``state.pt``; ``--resume`` continues the interrupted run
from it with the step counts recorded in ``settings.json`` (unless given again) and keeps a run that
had already finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("slimgan.demo")

# The embedded default: a few minutes on two busy cores, long enough for the teacher to learn the task
# and the student to follow it (the measured time is in README.md's Quickstart).
SIZE = 32
NUM_TRAIN = 200
NUM_TEST = 16
TEACHER = {"arch": "resnet_9blocks", "ngf": 32}
STUDENT = {"arch": "mobile_resnet_9blocks", "ngf": 8}
TEACHER_STEPS = 800
STUDENT_STEPS = 800
BATCH = 4
# Training runs on one intra-op thread: at 32² the ops are too small for a second thread to pay much,
# and on a busy machine each op's threads wait for one another, so two threads beside other jobs are
# many times slower than one (measured in benchmarks/results/demo_time.md).
TRAIN_THREADS = 1
# CRD's angle term costs N³ per granularity; 8-pixel patches (16 per 32² image) instead of the scaled
# 4-pixel default (64 per image) make a student step markedly cheaper (benchmarks/results/demo_time.md).
CRD_PATCH = 8
SETTINGS_NAME = "settings.json"
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
            {"name": "crd", "weight": 2.5, "patch": CRD_PATCH},
            {"name": "l1_teacher", "weight": 100.0},
            {"name": "teacher_adv", "weight": 1.0, "gan_mode": "lsgan", "conditional": True},
        ],
        "train": _train_section(steps, device, lr=STUDENT_LR, progress=progress),
        "eval": {"num": NUM_TEST},
    }


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


@dataclass
class DemoSettings:
    """What one ``slimgan demo`` run does; ``settings.json`` in the output folder records it for ``--resume``."""

    out: Path
    device: str = "cpu"
    threads: int = 1
    teacher_steps: int = TEACHER_STEPS
    student_steps: int = STUDENT_STEPS
    progress: bool = True
    resume: bool = False


def run_demo(out: str | Path = "demo", device: str = "cpu", threads: int = 1,
             teacher_steps: int = TEACHER_STEPS, student_steps: int = STUDENT_STEPS,
             progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """Run the whole pipeline into ``out`` and return (and write) ``summary.json``.

    ``resume``: continue the teacher and student runs from their ``state.pt`` (a finished run is kept).
    """
    from distill.engine.run_lock import RunLock

    settings = DemoSettings(Path(out), device, threads, teacher_steps, student_steps, progress, resume)
    with RunLock(out, what="slimgan demo"):
        try:
            return _run_demo(settings)
        except KeyboardInterrupt:
            log.warning("demo interrupted; continue with: slimgan demo --out %s --resume", out)
            raise


def recorded_steps(out: str | Path) -> dict[str, int]:
    """The step counts an earlier run in ``out`` recorded (empty when there is none)."""
    path = Path(out) / SETTINGS_NAME
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: int(raw[k]) for k in ("teacher_steps", "student_steps") if isinstance(raw.get(k), int)}


def _install_checkpoint(run_ckpt: Path, dest: Path) -> Path:
    """Copy a run's final generator checkpoint to the demo's top level (``D/teacher``, ``D/student``)."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(run_ckpt, dest)
    return dest


def _finished_step(run_dir: Path, role: str) -> int | None:
    """The step of the generator checkpoint a run last saved, or None."""
    config = run_dir / role / "config.json"
    if not config.is_file():
        return None
    step = (json.loads(config.read_text()).get("provenance") or {}).get("step")
    return step if isinstance(step, int) else None


def _train_stage(raw: dict[str, Any], run_dir: Path, kind: str, role: str, resume: bool) -> None:
    """Train one run; with ``resume`` continue it from ``state.pt``, or keep it when it already finished."""
    import torch

    from distill.engine.loop import STATE_NAME

    steps = raw["train"]["steps"]
    state = run_dir / STATE_NAME
    done = _finished_step(run_dir, role)
    if resume and state.is_file() and done is not None and done >= steps:
        log.info("demo: the %s run in %s already finished at step %d; kept", role, run_dir, done)
        return
    resume_run = resume and state.is_file()
    if resume and not resume_run:
        log.info("demo: no %s in %s; the %s run starts from step 0", STATE_NAME, run_dir, role)
    previous = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        _train(raw, run_dir, kind, resume_run)
    finally:
        torch.set_num_threads(previous)


def _train(raw: dict[str, Any], out: Path, kind: str, resume: bool = False) -> dict[str, Any]:
    from distill.engine.config import load_config
    from distill.engine.loop import run_training

    return run_training(load_config(raw=raw), out, kind=kind, distributed=False, resume=resume)


def write_heldout_inputs(data_root: Path) -> Path:
    """The held-out inputs (the A halves of ``data/test``) as images, for export's parity check."""
    from PIL import Image

    dest = data_root / "test_inputs"
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted((data_root / "test").glob("*.png")):
        with Image.open(path) as ab:
            ab.crop((0, 0, ab.width // 2, ab.height)).save(dest / path.name)
    return dest


class _Stages:
    """Times the demo's stages into ``timings`` and logs each one's end."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    def done(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.perf_counter() - t0, 1)
        log.info("demo: %s done in %.1f s (%.0f s so far)", name, self.timings[name], time.perf_counter() - self.start)


def _make_data(out: Path) -> Path:
    from distill.data.synth import synthesize

    data_root = out / "data"
    log.info("demo 1/6: synthetic paired dataset (%d pairs, %d px) -> %s", NUM_TRAIN, SIZE, data_root)
    if not (data_root / "train").is_dir():
        synthesize("paired", data_root, num=NUM_TRAIN, size=SIZE, seed=0, num_test=NUM_TEST)
    write_heldout_inputs(data_root)
    return data_root


def _train_both(st: DemoSettings, data_root: Path, stages: _Stages) -> tuple[Path, Path]:
    runs = st.out / "runs"
    t0 = time.perf_counter()
    log.info("demo 2/6: teacher %s ngf %d, pix2pix for %d steps", TEACHER["arch"], TEACHER["ngf"], st.teacher_steps)
    _train_stage(teacher_recipe(data_root, st.device, st.teacher_steps, st.progress), runs / "teacher", "train",
                 "teacher", st.resume)
    teacher_ckpt = _install_checkpoint(runs / "teacher" / "teacher", st.out / "teacher")
    stages.done("teacher", t0)

    t0 = time.perf_counter()
    log.info("demo 3/6: student %s ngf %d, CRD distillation for %d steps", STUDENT["arch"], STUDENT["ngf"],
             st.student_steps)
    recipe = student_recipe(data_root, teacher_ckpt, runs / "teacher" / "discriminator", st.device, st.student_steps,
                            st.progress)
    _train_stage(recipe, runs / "student", "distill", "student", st.resume)
    student_ckpt = _install_checkpoint(runs / "student" / "student", st.out / "student")
    stages.done("student", t0)
    return teacher_ckpt, student_ckpt


def _export_and_time(st: DemoSettings, data_root: Path, ckpts: tuple[Path, Path], stages: _Stages) -> dict[str, Any]:
    from benchmarks.latency import LatencyConfig, benchmark_latency
    from export.bundle import export_bundle

    teacher_ckpt, student_ckpt = ckpts
    t0 = time.perf_counter()
    heldout = data_root / "test_inputs"
    log.info("demo 4/6: export with fp16 and parity checks on the held-out inputs (%s)", heldout)
    teacher_bundle, student_bundle = st.out / "bundles" / "teacher", st.out / "bundles" / "student"
    teacher_manifest = export_bundle(teacher_ckpt, teacher_bundle, res=SIZE, fp16=True, calib=heldout,
                                     threads=st.threads).manifest
    exported = export_bundle(student_ckpt, student_bundle, teacher=teacher_ckpt, res=SIZE, fp16=True, calib=heldout,
                             threads=st.threads)
    stages.done("export", t0)

    t0 = time.perf_counter()
    thread_list = sorted({st.threads, os.cpu_count() or 1})
    log.info("demo 5/6: side-by-side latency benchmark (ONNX Runtime CPU, %s threads)", "/".join(map(str, thread_list)))
    latency = benchmark_latency([student_bundle], st.out / "latency",
                                LatencyConfig(backends=["ort"], threads=thread_list, res=SIZE), teacher=teacher_bundle)
    stages.done("latency", t0)
    return {"exported": exported, "teacher_manifest": teacher_manifest, "latency": latency,
            "teacher_bundle": teacher_bundle, "student_bundle": student_bundle}


def _run_demo(st: DemoSettings) -> dict[str, Any]:
    from distill.plots import plot_loss_curves

    stages = _Stages()
    st.out.mkdir(parents=True, exist_ok=True)
    (st.out / SETTINGS_NAME).write_text(json.dumps(
        {"teacher_steps": st.teacher_steps, "student_steps": st.student_steps, "threads": st.threads,
         "device": st.device}, indent=2) + "\n")
    t0 = time.perf_counter()
    data_root = _make_data(st.out)
    stages.done("data", t0)
    ckpts = _train_both(st, data_root, stages)
    made = _export_and_time(st, data_root, ckpts, stages)

    t0 = time.perf_counter()
    log.info("demo 6/6: sample grid, loss curves and summary")
    runs = st.out / "runs"
    grid = st.out / "samples.png"
    scores = write_sample_grid(data_root, ckpts[0], ckpts[1], grid, title=f"slimgan demo ({SIZE}x{SIZE})")
    curves = plot_loss_curves({"teacher": runs / "teacher" / "metrics.csv", "student": runs / "student" / "metrics.csv"},
                              st.out / "loss_curves.png")
    stages.done("samples", t0)
    summary = _summary(st, data_root, ckpts, made, scores, {"samples_png": grid, "loss_curves_png": curves})
    summary["seconds"] = {**stages.timings, "total": round(time.perf_counter() - stages.start, 1)}
    (st.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(st: DemoSettings, data_root: Path, ckpts: tuple[Path, Path], made: dict[str, Any],
             scores: dict[str, float], pictures: dict[str, Path]) -> dict[str, Any]:
    from distill.errors import SlimganError
    from export.bundle import PARITY_NAME

    exported, teacher_manifest = made["exported"], made["teacher_manifest"]
    teacher_bundle, student_bundle = made["teacher_bundle"], made["student_bundle"]
    speed = exported.speed
    if not any(r.get("passed") is not None for r in exported.parity):
        raise SlimganError("export produced no parity rows to check")
    runs, latency_dir = st.out / "runs", st.out / "latency"
    parity = json.loads((student_bundle / PARITY_NAME).read_text())
    return {
        "speedup": speed["speedup"],
        # the one speedup the demo prints: speed.json's, on the runtime where the student is fastest
        "speedup_runtime": speed.get("runtime"),
        "speedup_threads": speed.get("threads", st.threads),
        "mac_ratio": speed["mac_ratio"],
        "parity_passed": exported.ok,
        "parity_inputs": parity.get("inputs"),
        "psnr_teacher": round(scores["psnr_teacher"], 3),
        "ssim_teacher": round(scores["ssim_teacher"], 4),
        "psnr_gt": round(scores["psnr_gt"], 3),
        "ssim_gt": round(scores["ssim_gt"], 4),
        "teacher_psnr_gt": round(scores["teacher_psnr_gt"], 3),
        "teacher": {**TEACHER, "steps": _finished_step(runs / "teacher", "teacher") or st.teacher_steps,
                    "macs": teacher_manifest.macs, "params": teacher_manifest.params},
        "student": {**STUDENT, "steps": _finished_step(runs / "student", "student") or st.student_steps,
                    "method": "crd + l1_teacher + teacher_adv",
                    "macs": exported.manifest.macs, "params": exported.manifest.params},
        # the rows exactly as the student bundle's parity.json has them (and the teacher bundle's)
        "parity": parity["rows"],
        "teacher_parity": json.loads((teacher_bundle / PARITY_NAME).read_text())["rows"],
        "latency": [{k: r.get(k) for k in ("model", "backend", "threads", "median_ms", "speedup", "mac_ratio")}
                    for r in made["latency"]["results"]],
        "paths": {
            "data": str(data_root), "heldout_inputs": str(data_root / "test_inputs"),
            "teacher_checkpoint": str(ckpts[0]), "student_checkpoint": str(ckpts[1]),
            "teacher_bundle": str(teacher_bundle), "student_bundle": str(student_bundle),
            **{k: str(v) for k, v in pictures.items()},
            "latency_json": str(latency_dir / "latency.json"),
            "latency_png": str(latency_dir / "latency.png"), "parity_json": str(student_bundle / "parity.json"),
            "speed_json": str(student_bundle / "speed.json"),
            "teacher_run": str(runs / "teacher"), "student_run": str(runs / "student"),
            "teacher_metrics_csv": str(runs / "teacher" / "metrics.csv"),
            "student_metrics_csv": str(runs / "student" / "metrics.csv"),
        },
        "resolution": SIZE,
        "threads": st.threads,
    }


def _speedup_line(summary: dict[str, Any]) -> str:
    threads = summary.get("speedup_threads", summary["threads"])
    runtime = summary.get("speedup_runtime") or "onnxruntime"
    return (f"  speedup: x{summary['speedup']:.2f} on {runtime}, {threads} thread{'s' if threads != 1 else ''} "
            f"(student vs teacher, same runtime and settings; MAC ratio x{summary['mac_ratio']:.1f})")


def format_summary(summary: dict[str, Any]) -> str:
    from export.parity import verdict

    t, s = summary["teacher"], summary["student"]
    lines = [
        "",
        f"slimgan demo: {t['arch']} ngf {t['ngf']} (teacher, {t['steps']} steps) -> {s['arch']} ngf {s['ngf']} "
        f"(student, {s['steps']} steps), {summary['resolution']}x{summary['resolution']}",
        f"  {'':<22}{'teacher':>14}{'student':>14}",
    ]
    if t.get("macs") and s.get("macs"):
        lines.append(f"  {'MACs':<22}{t['macs'] / 1e6:>13.1f}M{s['macs'] / 1e6:>13.2f}M")
    if t.get("params") and s.get("params"):
        lines.append(f"  {'params':<22}{t['params'] / 1e3:>13.1f}k{s['params'] / 1e3:>13.1f}k")
    lines.append(f"  {'PSNR to ground truth':<22}{summary['teacher_psnr_gt']:>12.2f}dB{summary['psnr_gt']:>12.2f}dB")
    lines.append(f"  {'PSNR to teacher':<22}{'':>14}{summary['psnr_teacher']:>12.2f}dB")
    lines.append(_speedup_line(summary))
    inputs = summary.get("parity_inputs") or {}
    on = f" on {len(inputs.get('files') or [])} held-out inputs" if inputs.get("source") == "calib" else ""
    lines.append(f"  parity{on}: " + ", ".join(f"{r['name']} {r.get('verdict') or verdict(r)}"
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
    p.add_argument("--resume", action="store_true",
                   help="continue the teacher and student runs in --out from their saved state.pt (after Ctrl-C); "
                        "a run that already finished is kept, and the step counts default to the interrupted run's")
    p.add_argument("--serve", action="store_true", help="then serve the two bundles (slimgan serve)")
    p.add_argument("--port", type=int, default=8000, help="port for --serve (default 8000)")
    p.add_argument("--threads", type=int, default=1,
                   help="ONNX Runtime threads for the export speed check (default 1; latency also runs on all cores)")
    p.add_argument("--device", default="cpu", help="training device: cpu | cuda | auto")
    p.add_argument("--teacher-steps", type=int, default=None, help=f"teacher training steps (default {TEACHER_STEPS})")
    p.add_argument("--student-steps", type=int, default=None, help=f"student training steps (default {STUDENT_STEPS})")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no training progress bars or progress lines (stage lines are still logged)")
    p.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    recorded = recorded_steps(args.out) if args.resume else {}
    teacher_steps = args.teacher_steps if args.teacher_steps is not None else recorded.get("teacher_steps", TEACHER_STEPS)
    student_steps = args.student_steps if args.student_steps is not None else recorded.get("student_steps", STUDENT_STEPS)
    summary = run_demo(args.out, device=args.device, threads=args.threads, teacher_steps=teacher_steps,
                       student_steps=student_steps, progress=args.progress, resume=args.resume)
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
