"""Core ML performance report of slimgan bundles on a Mac (Apple silicon), written as ``latency.json``.

The scripted half of what Xcode's Core ML performance report shows (``README.md`` beside this file
covers running that report on an iPhone). For each bundle's ``model.mlpackage`` (``slimgan export
--targets coreml``) and each compute-unit setting (``CPU_ONLY``, ``CPU_AND_GPU``, ``CPU_AND_NE``, ``ALL``):

1. the load time (``MLModel(...)``, which compiles the package for those units);
2. the prediction latency: ``--warmup`` predictions, then ``--runs`` timed ones, with an image of the
   model's input size, summarised as ``slimgan bench latency`` does (median first, mean, p90/p95/p99);
3. the compute plan (``coremltools.models.compute_plan.MLComputePlan``): per operation, the preferred
   compute device and the estimated share of the work, summed per device, which is Xcode's "compute
   unit mapping" of the same report.

The Mac is recorded (``sw_vers``, ``sysctl machdep.cpu.brand_string``, ``hw.model``). Numbers from a Mac
are not iPhone numbers (the Neural Engine generation, clocks and thermals differ); they order the
compute units and catch ops that fall back to the CPU. Needs macOS 14+, python3 with coremltools,
numpy and pillow; slimgan's ``export.manifest`` and ``benchmarks.latency``, not torch.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")


def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False).stdout.strip() or None
    except OSError:
        return None


def mac_environment() -> dict[str, Any]:
    import coremltools as ct

    return {
        "device": "mac", "os": f"macOS {platform.mac_ver()[0]}", "sw_vers": _run(["sw_vers"]),
        "cpu_model": _run(["sysctl", "-n", "machdep.cpu.brand_string"]) or platform.processor(),
        "hw_model": _run(["sysctl", "-n", "hw.model"]), "cpu_count": None, "machine": platform.machine(),
        "python": platform.python_version(), "coremltools": ct.__version__,
        "onnxruntime": None, "onnxruntime_providers": [], "torch": None, "tensorrt": None, "gpu": None,
    }


def device_shares(plan: Any) -> dict[str, Any]:
    """Per preferred compute device: operation count and summed estimated cost (the plan's weights)."""
    ops, cost = defaultdict(int), defaultdict(float)
    program = plan.model_structure.program
    for op in program.functions["main"].block.operations:
        usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
        if usage is None:
            continue
        device = type(usage.preferred_compute_device).__name__.replace("ML", "").replace("ComputeDevice", "") or "unknown"
        ops[device] += 1
        estimate = plan.get_estimated_cost_for_mlprogram_operation(op)
        cost[device] += estimate.weight if estimate is not None else 0.0
    return {"operations": dict(ops), "estimated_cost": {k: round(v, 4) for k, v in cost.items()}}


def input_image(model: Any) -> tuple[str, Any]:
    """The model's input name and a feed for it (a mid-grey image, or zeros for a tensor input)."""
    import numpy as np
    from PIL import Image

    spec = model.get_spec().description.input[0]
    if spec.type.WhichOneof("Type") == "imageType":
        w, h = spec.type.imageType.width, spec.type.imageType.height
        mode = "L" if spec.type.imageType.colorSpace == 10 else "RGB"  # 10: GRAYSCALE in Core ML's enum
        return spec.name, Image.new(mode, (w, h), 128)
    return spec.name, np.zeros([int(d) for d in spec.type.multiArrayType.shape], dtype=np.float32)


def bench_units(package: Path, units: str, warmup: int, runs: int) -> dict[str, Any]:
    import coremltools as ct
    from coremltools.models.compute_plan import MLComputePlan

    from export.runtimes.timing import summarize_times

    t0 = time.perf_counter()
    model = ct.models.MLModel(str(package), compute_units=getattr(ct.ComputeUnit, units))
    load_ms = (time.perf_counter() - t0) * 1000
    name, feed = input_image(model)
    for _ in range(warmup):
        model.predict({name: feed})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.predict({name: feed})
        times.append((time.perf_counter() - t0) * 1000)
    stats = summarize_times(times)
    try:
        plan = device_shares(MLComputePlan.load_from_path(model.get_compiled_model_path(), getattr(ct.ComputeUnit, units)))
    except Exception as exc:  # noqa: BLE001 - the compute plan needs macOS 14.4+; latency stands without it
        plan = {"error": f"{type(exc).__name__}: {exc}"}
    return {"load_ms": load_ms, "compute_plan": plan, **stats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="BUNDLE")
    parser.add_argument("--teacher", metavar="BUNDLE")
    parser.add_argument("--units", default=",".join(COMPUTE_UNITS), help=f"comma list of {', '.join(COMPUTE_UNITS)}")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if platform.system() != "Darwin":
        print("coreml_report: Core ML predictions need macOS; run this on a Mac (see benchmarks/ios/README.md)", file=sys.stderr)
        return 2
    units = [u.strip() for u in args.units.split(",") if u.strip()]
    unknown = [u for u in units if u not in COMPUTE_UNITS]
    if unknown:
        print(f"coreml_report: unknown compute units {unknown[0]!r}; choose from {', '.join(COMPUTE_UNITS)}", file=sys.stderr)
        return 2

    from benchmarks.device_report import bundle_models, write_device_report
    from benchmarks.latency import SCHEMA, Bundle, add_speedups

    paths = ([args.teacher] if args.teacher and args.teacher not in args.models else []) + args.models
    bundles = [Bundle.open(p) for p in paths]
    teacher = Bundle.open(args.teacher).name if args.teacher else None
    models, results, skipped = bundle_models(bundles, teacher), [], []
    for b in bundles:
        if "coreml" not in b.manifest.files:
            skipped.append({"model": b.name, "backend": "coreml", "reason": "no model.mlpackage; export it with --targets coreml"})
            continue
        for u in units:
            stats = bench_units(b.manifest.model_path(b.path, "coreml"), u, args.warmup, args.runs)
            results.append({"model": b.name, "arch": b.manifest.arch, "backend": f"coreml-{u.lower()}", "provider": f"Core ML {u}",
                            "threads": None, "batch": 1, "input_shape": (b.manifest.runtimes.get("coreml") or {}).get("input_shape"),
                            "measured_on": "device", "throughput_ips": stats.pop("throughput"), **stats})
    add_speedups(results, models, teacher)
    env = mac_environment()
    report = {
        "schema": SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "environment": env,
        "settings": {"res": None, "batches": [1], "threads": [], "backends": [f"coreml-{u.lower()}" for u in units],
                     "warmup_s": f"{args.warmup} predictions", "min_runs": args.runs, "min_time_s": 0, "max_runs": args.runs,
                     "timing": "MLModel.predict wall time per call after warm-up; median first"},
        "teacher": teacher, "models": models, "results": results, "skipped": skipped, "predictions": [],
    }
    write_device_report(args.out, report, environment={"onnxruntime": "-"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
