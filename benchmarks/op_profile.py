"""Where a graph's time goes, per operator type, on ONNX Runtime and OpenVINO (per-op profiles).

    python -m benchmarks.op_profile GRAPH.onnx|GRAPH.xml [--runtime onnxruntime|openvino] [--res 256]
        [--threads 1] [--runs 10] [--precision f32|bf16] [--top 15]

ONNX Runtime: ``SessionOptions.enable_profiling`` with the options every slimgan session uses (the
node events of the trace, summed per op type). OpenVINO: ``PERF_COUNT=YES`` and each infer request's
``profiling_info`` (executed layers only, with the kernel that ran them, e.g. ``brgconv_avx512_bf16`` or
``ref_bf16`` for a reference fallback). Both report the mean per run; profiling adds overhead, so use
the shares, not the totals, and compare graphs in one run.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np


def ort_profile(path: Path, x: np.ndarray, threads: int, runs: int) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], int]]:
    import onnxruntime as ort

    from export.runtimes.onnxruntime import session_options

    opts = session_options(threads, spinning=False)
    opts.enable_profiling = True
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(runs + 2):
        sess.run(None, feed)
    trace = Path(sess.end_profiling())
    events = [e for e in json.loads(trace.read_text()) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    trace.unlink(missing_ok=True)
    total: dict[tuple[str, str], float] = collections.defaultdict(float)
    count: collections.Counter = collections.Counter()
    per_run = len(events) / (runs + 2)
    for e in events[int(2 * per_run):]:  # skip the warm-up runs
        key = (e["args"].get("op_name", "?"), e["args"].get("provider", ""))
        total[key] += e["dur"] / 1000.0 / runs
        count[key] += 1
    return total, {k: v // runs for k, v in count.items()}


def ov_profile(path: Path, x: np.ndarray, threads: int, runs: int, precision: str | None) -> tuple[dict, dict]:
    import openvino as ov

    from export.runtimes.openvino import compile_config

    config = {**compile_config(threads, precision), "PERF_COUNT": "YES"}
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
    for _ in range(2):
        request.infer({0: x})
    total: dict[tuple[str, str], float] = collections.defaultdict(float)
    count: collections.Counter = collections.Counter()
    for _ in range(runs):
        request.infer({0: x})
        for p in request.profiling_info:
            if p.status.name != "EXECUTED":
                continue
            key = (p.node_type, p.exec_type)
            total[key] += p.real_time.total_seconds() * 1000.0 / runs
            count[key] += 1
    return total, {k: v // runs for k, v in count.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graph", type=Path)
    parser.add_argument("--runtime", choices=("onnxruntime", "openvino"), default=None,
                        help="default: openvino for .xml, onnxruntime for .onnx")
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--precision", choices=("f32", "bf16"), help="OpenVINO inference precision (default: the CPU's)")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    runtime = args.runtime or ("openvino" if args.graph.suffix == ".xml" else "onnxruntime")
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, args.res, args.res)).astype(np.float32)
    if runtime == "onnxruntime":
        total, count = ort_profile(args.graph, x, args.threads, args.runs)
    else:
        total, count = ov_profile(args.graph, x, args.threads, args.runs, args.precision)
    whole = sum(total.values())
    print(f"{runtime} {args.graph.name} 1x3x{args.res}x{args.res}, {args.threads} thread(s): {whole:.2f} ms of op time per run")
    for (op, kernel), ms in sorted(total.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{ms:9.2f} ms {100 * ms / whole:5.1f}%  x{count[op, kernel]:<3d} {op:<28} {kernel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
