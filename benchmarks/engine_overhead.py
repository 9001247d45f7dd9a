"""Engine step-time overhead: a feature-KD step through the engine vs the bare work it wraps.

    python -m benchmarks.engine_overhead [--res 64] [--batch 4] [--steps 30] [--threads 2]

*engine*: ``GeneratorMethod.train_step`` (hooks, the loss-term sum, 1x1 adapters, Adam) with
``l1_teacher + feature_kd`` (3 layers), plus the scheduler and scaler updates of the loop.
*bare*: a hand-written step: teacher forward under ``no_grad`` + student forward, L1 to the teacher,
backward, Adam step. Both on the same pre-built batch (data loading excluded), after warm-up;
reports medians and the ratio engine / bare (1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _interleaved(a, b, steps: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for _ in range(steps):
        for fn, acc in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def measure(res: int = 64, batch: int = 4, steps: int = 30, teacher_ngf: int = 32, student_ngf: int = 8) -> dict:
    from distill import create_model, save_checkpoint
    from distill.engine.config import load_config
    from distill.engine.data import Batch
    from distill.engine.device import DeviceContext
    from distill.engine.methods import GeneratorMethod

    torch.manual_seed(0)
    teacher = create_model("resnet_6blocks", ngf=teacher_ngf).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, 3, res, res) * 2 - 1  # (B, 3, H, W) in [-1, 1]
    data = Batch(x, None, paired=False)
    layers = ["model.9", "model.12", "model.15"]

    cfg = load_config(raw={
        "student": {"arch": "resnet_6blocks", "ngf": student_ngf},
        "loss": [{"name": "l1_teacher", "weight": 100.0}, {"name": "feature_kd", "weight": 1.0, "layers": layers}],
        "train": {"steps": 10**6},
    })
    rt = DeviceContext(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:  # the method loads its offline teacher from a checkpoint
        save_checkpoint(teacher, Path(tmp) / "teacher")
        method = GeneratorMethod(cfg, rt, {"teacher": Path(tmp) / "teacher"})
    method.setup(data)
    method.build_optimizers()
    sched = {k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0) for k, o in method.optimizers().items()}
    step_no = [0]

    def engine_step() -> None:
        method.train_step(data, step_no[0])
        rt.end_step()
        for s in sched.values():
            s.step()
        step_no[0] += 1

    student = create_model("resnet_6blocks", ngf=student_ngf)
    opt = torch.optim.Adam(student.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def bare_step() -> None:
        with torch.no_grad():
            t = teacher(x)
        loss = 100.0 * torch.nn.functional.l1_loss(student(x), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    bare, engine = _interleaved(bare_step, engine_step, steps)  # alternate: drift on a shared machine hits both
    return {"res": res, "batch": batch, "steps": steps, "threads": torch.get_num_threads(),
            "teacher": f"resnet_6blocks ngf {teacher_ngf}", "student": f"resnet_6blocks ngf {student_ngf}",
            "feature_layers": layers, "bare_ms": round(bare * 1e3, 2), "engine_ms": round(engine * 1e3, 2),
            "overhead_ratio": round(engine / bare, 3), "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", default=None, help="optional JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args.res, args.batch, args.steps)
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
