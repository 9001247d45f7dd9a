"""Latency of slimgan bundles on a Jetson with TensorRT, written as ``latency.json`` (schema slimgan-latency/1).

Run through ``run_on_jetson.sh`` on the device. For each bundle:

1. build an engine from ``model.onnx`` with ``trtexec --onnx ... --saveEngine ... [--fp16|--int8]
   --shapes input:BxCxHxW --skipInference``;
2. time it with ``trtexec --loadEngine ... --warmUp MS --iterations N --duration S --exportTimes times.json``
   and summarise the per-inference host latency (H2D + compute + D2H, trtexec's "Latency") with the same
   statistics as ``slimgan bench latency`` (median first, mean, p90/p95/p99, throughput); the GPU compute
   time median is kept as ``compute_median_ms``;
3. record the device: ``/proc/device-tree/model``, ``nvpmodel -q``, ``jetson_clocks --show``,
   ``/etc/nv_tegra_release``, the ``nvidia-jetpack`` and TensorRT package versions.

Imports only torch-free slimgan modules (``export.manifest``, ``export.runtimes``, ``benchmarks.latency``)
and numpy, so the device needs no PyTorch.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("slimgan.jetson")

DEVICE_KEYS = (("orin nano", "orin-nano"), ("agx orin", "orin-agx"), ("orin agx", "orin-agx"),
               ("xavier nx", "xavier-nx"), ("nano", "jetson-nano"))


def _run(cmd: list[str], timeout: float = 30) -> str:
    """stdout (or the error) of a command; never raises, so a missing tool is recorded, not fatal."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: {exc}"
    out = (done.stdout or "").strip()
    if done.returncode != 0:
        out = (out + "\n" + (done.stderr or "").strip()).strip() or f"exit {done.returncode}"
    return out


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def jetson_environment() -> dict[str, Any]:
    """Board, power mode, clocks, L4T / JetPack / TensorRT versions and the CPU."""
    model = _read("/proc/device-tree/model") or platform.node()
    key = next((k for needle, k in DEVICE_KEYS if needle in model.lower()), "jetson")
    trt_version = _run(["dpkg-query", "-W", "-f=${Version}", "tensorrt"])
    try:
        import tensorrt

        trt_version = tensorrt.__version__
    except ImportError:
        pass
    cpu = next((ln.split(":", 1)[1].strip() for ln in (_read("/proc/cpuinfo") or "").splitlines()
                if ln.lower().startswith(("model name", "processor\t: arm", "hardware"))), platform.processor())
    return {
        "device": key,
        "board": model,
        "cpu_model": cpu or platform.machine(),
        "cpu_count": __import__("os").cpu_count(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "nvpmodel": _run(["nvpmodel", "-q"]),
        "jetson_clocks": _run(["jetson_clocks", "--show"]),
        "l4t_release": _read("/etc/nv_tegra_release"),
        "jetpack": _run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"]),
        "tensorrt": trt_version,
        "trtexec": shutil.which("trtexec"),
        "onnxruntime": None,
        "onnxruntime_providers": [],
        "torch": None,
        "gpu": model,
    }


def _shape_arg(name: str, shape: tuple[int, ...]) -> str:
    return f"--shapes={name}:{'x'.join(str(d) for d in shape)}"


def bench_bundle(bundle: Any, batch: int, res: int, precision: str, work: Path, args: argparse.Namespace) -> dict:
    """Build and time one bundle with trtexec; returns a latency.json result row."""
    from benchmarks.latency import make_input
    from export.runtimes.timing import summarize_times

    onnx_path = bundle.manifest.model_path(bundle.path, "fp32")
    x = make_input(bundle.manifest, batch, res)
    shapes = _shape_arg(bundle.manifest.input.name, x.shape)
    engine = work / f"{bundle.name}_b{batch}_{precision}.plan"
    flags = [] if precision == "fp32" else [f"--{precision}"]
    build = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}", shapes, "--skipInference", *flags]
    log.info("building: %s", " ".join(build))
    done = subprocess.run(build, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not engine.is_file():
        raise RuntimeError(f"trtexec could not build {onnx_path}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    times_path = work / f"{engine.stem}.times.json"
    timing = ["trtexec", f"--loadEngine={engine}", shapes, f"--warmUp={int(args.warmup * 1000)}",
              f"--iterations={args.min_runs}", f"--duration={args.min_time}", f"--exportTimes={times_path}"]
    log.info("timing: %s", " ".join(timing))
    done = subprocess.run(timing, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not times_path.is_file():
        raise RuntimeError(f"trtexec could not run {engine}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    records = json.loads(times_path.read_text())
    latency = [float(r["latencyMs"]) for r in records if "latencyMs" in r]
    compute = sorted(float(r["computeMs"]) for r in records if "computeMs" in r)
    stats = summarize_times(latency)
    return {
        "model": bundle.name, "arch": bundle.manifest.arch, "backend": "trt",
        "provider": f"trtexec TensorRT {args.trt_version} {precision}", "threads": None, "batch": batch,
        "input_shape": list(x.shape), "precision": precision,
        "median_ms": stats["median_ms"], "mean_ms": stats["mean_ms"], "p90_ms": stats["p90_ms"],
        "p95_ms": stats["p95_ms"], "p99_ms": stats["p99_ms"], "min_ms": stats["min_ms"], "max_ms": stats["max_ms"],
        "runs": stats["runs"], "throughput_ips": stats["throughput"] * batch,
        "compute_median_ms": compute[len(compute) // 2] if compute else None,
        "engine": str(engine),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="BUNDLE")
    parser.add_argument("--teacher", metavar="BUNDLE")
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--batch", default="1", help="comma list of batch sizes")
    parser.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"])
    parser.add_argument("--warmup", type=float, default=0.2, help="warm-up seconds")
    parser.add_argument("--min-runs", type=int, default=10)
    parser.add_argument("--min-time", type=float, default=3.0, help="minimum timed seconds")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from benchmarks.device_report import write_device_report
    from benchmarks.latency import SCHEMA, Bundle, add_speedups
    from benchmarks.roofline import layer_costs, total_macs

    if shutil.which("trtexec") is None:
        print("jetson_bench: trtexec not found (install JetPack's TensorRT; /usr/src/tensorrt/bin)", file=sys.stderr)
        return 2
    out = Path(args.out)
    work = out / "engines"
    work.mkdir(parents=True, exist_ok=True)
    env = jetson_environment()
    args.trt_version = env["tensorrt"]
    paths = ([args.teacher] if args.teacher and args.teacher not in args.models else []) + args.models
    bundles = [Bundle.open(p) for p in paths]
    teacher = Bundle.open(args.teacher).name if args.teacher else None
    models, results, skipped = {}, [], []
    for b in bundles:
        try:
            from benchmarks.latency import make_input

            macs = total_macs(layer_costs(b.manifest.model_path(b.path, "fp32"), make_input(b.manifest, 1, args.res).shape))
        except Exception:  # noqa: BLE001 - onnx may be absent on the device; the manifest's count serves
            macs = b.manifest.macs
        models[b.name] = {"bundle": str(b.path), "name": b.manifest.name, "arch": b.manifest.arch,
                          "task": b.manifest.task, "macs": macs, "manifest_macs": b.manifest.macs,
                          "params": b.manifest.params, "is_teacher": b.name == teacher}
        for batch in [int(v) for v in args.batch.split(",")]:
            try:
                results.append(bench_bundle(b, batch, args.res, args.precision, work, args))
            except RuntimeError as exc:
                skipped.append({"model": b.name, "backend": "trt", "reason": str(exc)})
                log.error("%s", exc)
    add_speedups(results, models, teacher)
    report = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": env,
        "settings": {"res": args.res, "batches": [int(v) for v in args.batch.split(",")], "threads": [],
                     "backends": ["trt"], "warmup_s": args.warmup, "min_runs": args.min_runs,
                     "min_time_s": args.min_time, "max_runs": None, "precision": args.precision,
                     "timing": "trtexec --warmUp/--iterations/--duration, per-inference host latency; median first"},
        "teacher": teacher, "models": models, "results": results, "skipped": skipped, "predictions": [],
    }
    write_device_report(out, report, environment={"onnxruntime": "-", "onnxruntime_providers": ["TensorRT"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
