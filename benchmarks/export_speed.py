"""Teacher vs student ONNX Runtime CPU latency for each export variant, side by side in one process.

    python -m benchmarks.export_speed STUDENT_CKPT TEACHER_CKPT [--res 256] [--threads 2] [--rounds 5]

Variants (the same one applied to both graphs, so a ratio compares models, not settings):
``plain`` (exported + onnxsim), ``plain+nospin`` (idle intra-op threads sleep), ``optimized+nospin``
(plus the exact rewrites of :mod:`export.optimize`: what ``slimgan export`` ships and times) and
``optimized`` (rewrites, spinning threads). Every graph of every variant is timed interleaved
round by round (teacher once, student several times per round), so load from other processes on a
shared machine hits all alike. Prints teacher / student medians and their ratio per variant.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _variants(student_ckpt: str, teacher_ckpt: str, res: int, tmp: Path) -> dict[str, tuple[Path, Path, bool]]:
    import torch

    from distill.checkpoint import load_checkpoint
    from export.onnx_export import export_onnx

    x = torch.rand(1, 3, res, res, generator=torch.Generator().manual_seed(0)) * 2 - 1
    paths: dict[tuple[str, bool], Path] = {}
    for role, ckpt in (("student", student_ckpt), ("teacher", teacher_ckpt)):
        model = load_checkpoint(ckpt).eval()
        for opt in (False, True):
            paths[role, opt] = tmp / f"{role}{'_opt' if opt else ''}.onnx"
            export_onnx(model, paths[role, opt], x, optimize=opt)
    return {
        "plain": (paths["teacher", False], paths["student", False], True),
        "plain+nospin": (paths["teacher", False], paths["student", False], False),
        "optimized": (paths["teacher", True], paths["student", True], True),
        "optimized+nospin": (paths["teacher", True], paths["student", True], False),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student")
    parser.add_argument("teacher")
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (teacher 1 call, student 5 calls each)")
    args = parser.parse_args(argv)

    from export.runtimes.onnxruntime import make_session

    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, args.res, args.res)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="slimgan-export-speed-") as tmp:
        variants = _variants(args.student, args.teacher, args.res, Path(tmp))
        runs = {}
        for name, (teacher, student, spinning) in variants.items():
            for role, path in (("teacher", teacher), ("student", student)):
                sess = make_session(path, threads=args.threads, spinning=spinning)
                feed = {sess.get_inputs()[0].name: x}
                fn = (lambda s, f: (lambda: s.run(None, f)))(sess, feed)
                fn()
                fn()  # warm-up
                runs[name, role] = fn
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
        for _ in range(args.rounds):
            for key, fn in runs.items():
                for _ in range(1 if key[1] == "teacher" else 5):
                    t0 = time.perf_counter()
                    fn()
                    times[key].append((time.perf_counter() - t0) * 1000.0)
    print(f"threads {args.threads}, input 1x3x{args.res}x{args.res}, {args.rounds} interleaved rounds")
    print(f"{'variant':<20} {'teacher ms':>11} {'student ms':>11} {'speedup':>8}")
    for name in variants:
        t, s = float(np.median(times[name, "teacher"])), float(np.median(times[name, "student"]))
        print(f"{name:<20} {t:11.1f} {s:11.1f} {t / s:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
