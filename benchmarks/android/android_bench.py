"""Latency of slimgan bundles on an Android phone over ``adb``, written as ``latency.json`` (schema slimgan-latency/1).

Run on the computer the phone is plugged into (USB debugging on), through ``run_on_android.sh``. The
runtimes' own benchmark tools do the timing on the phone, with the artifacts ``slimgan export --targets
tflite,ncnn,executorch`` wrote into each bundle:

========== ====================================================================================
tflite     LiteRT's ``benchmark_model --graph=model.tflite --num_threads=T --use_xnnpack=true``
tflite-gpu the same on ``model.fp16.tflite`` with ``--use_gpu=true`` (GPU delegate)
ncnn       ncnn's ``benchncnn LOOPS T 0 -1 0 param=model.ncnn.param shape=[W,H,C]`` (CPU)
ncnn-vulkan  the same with GPU device 0 (Vulkan)
executorch ExecuTorch's ``executor_runner --model_path=model.pte --num_executions=N --cpu_threads=T``
           (a runner built with the XNNPACK backend, e.g. ``xnn_executor_runner``)
========== ====================================================================================

``--tools DIR`` holds the arm64 builds of those binaries (names as above; ``--executorch-runner`` renames
the last one); they and the artifacts are pushed under ``--remote-dir`` (default ``/data/local/tmp/slimgan``).
A backend whose tool or artifact is missing is skipped with the reason, as ``slimgan bench latency`` does.

Statistics: ``executor_runner`` logs every iteration, so its rows carry the full set (median first,
mean, p90/p95/p99) after dropping ``--warmup`` iterations. ``benchmark_model`` and ``benchncnn`` print
one count/min/max/avg summary per invocation (after their own warm-up), so each is invoked ``--rounds``
times: ``median_ms`` is then the median of the per-invocation averages, ``mean_ms`` the mean over all
timed runs, min/max over all of them, and the percentiles are left empty (``stat`` says which).

The device is recorded with ``getprop``: model and manufacturer, SoC (``ro.soc.manufacturer`` /
``ro.soc.model``, else ``ro.board.platform`` / ``ro.hardware``), Android version and SDK, ABI, each
core's maximum clock, and the battery temperature (thermal state changes phone latencies; let the phone
cool between runs and keep it unplugged from chargers that heat it).

Imports only torch-free slimgan modules (``export.manifest``, ``export.runtimes.timing``,
``benchmarks.latency``) and numpy.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("slimgan.android")

REMOTE_DIR = "/data/local/tmp/slimgan"
BACKENDS = ("tflite", "tflite-gpu", "ncnn", "ncnn-vulkan", "executorch")
DEFAULT_BACKENDS = ("tflite", "ncnn", "executorch")
PROPS = {
    "model": "ro.product.model",
    "manufacturer": "ro.product.manufacturer",
    "soc_manufacturer": "ro.soc.manufacturer",
    "soc_model": "ro.soc.model",
    "board_platform": "ro.board.platform",
    "hardware": "ro.hardware",
    "android_version": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "abi": "ro.product.cpu.abi",
    "build": "ro.build.fingerprint",
}


class ToolError(RuntimeError):
    """A device command that failed; the message is the reason recorded in ``skipped``."""


@dataclass
class Adb:
    """``adb [-s SERIAL]`` commands with captured output."""

    adb: str
    serial: str | None = None
    timeout: float = 900.0

    def _base(self) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else [])]

    def run(self, *args: str, timeout: float | None = None) -> str:
        try:
            done = subprocess.run([*self._base(), *args], capture_output=True, text=True, timeout=timeout or self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ToolError(f"adb {' '.join(args[:2])} failed: {exc}") from exc
        if done.returncode != 0:
            raise ToolError(f"adb {' '.join(args)} exited {done.returncode}: {(done.stdout + done.stderr).strip()[-500:]}")
        return done.stdout + done.stderr

    def shell(self, command: str, timeout: float | None = None) -> str:
        return self.run("shell", command, timeout=timeout)

    def push(self, local: Path, remote: str) -> None:
        self.run("push", str(local), remote)


# ------------------------------------------------------------------------------------------ device
def getprops(adb: Adb) -> dict[str, str]:
    """Every system property (``getprop`` prints ``[key]: [value]`` lines); empty when it fails."""
    try:
        text = adb.shell("getprop", timeout=30)
    except ToolError:
        return {}
    return {m.group(1): m.group(2) for m in re.finditer(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.M)}


def android_environment(adb: Adb) -> dict[str, Any]:
    """The phone: model, SoC, Android version, ABI, per-core max clocks, battery temperature."""
    props = getprops(adb)
    env: dict[str, Any] = {key: props.get(prop) or None for key, prop in PROPS.items()}
    env["soc"] = " ".join(v for v in (env["soc_manufacturer"], env["soc_model"]) if v) or env["board_platform"] or env["hardware"]
    try:
        freqs = adb.shell("cat /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq", timeout=30).split()
        env["cpu_max_khz"] = [int(f) for f in freqs if f.isdigit()]
    except ToolError:
        env["cpu_max_khz"] = []
    try:
        battery = adb.shell("dumpsys battery", timeout=30)
        match = re.search(r"temperature:\s*(\d+)", battery)
        env["battery_temperature_c"] = int(match.group(1)) / 10 if match else None
    except ToolError:
        env["battery_temperature_c"] = None
    name = " ".join(v for v in (env["manufacturer"], env["model"]) if v) or "android device"
    env.update({
        "device": "android",
        "cpu_model": f"{env['soc'] or 'unknown SoC'} ({name})",
        "cpu_count": len(env["cpu_max_khz"]) or None,
        "machine": env["abi"],
        "os": f"Android {env['android_version']} (SDK {env['sdk']})",
        "python": None, "onnxruntime": None, "onnxruntime_providers": [], "torch": None, "tensorrt": None,
        "gpu": None, "serial": adb.serial,
    })
    return env


# ------------------------------------------------------------------------------------------ parsing
_BENCHMARK_MODEL_STAT = re.compile(r"count=(\d+)(?: first=\d+)? curr=\d+(?: min=(\d+) max=(\d+) avg=([\d.e+-]+))?")
_BENCHNCNN = re.compile(r"min\s*=\s*([\d.]+)\s+max\s*=\s*([\d.]+)\s+avg\s*=\s*([\d.]+)")
_ET_ITERATION = re.compile(r"Iteration \d+ of \d+: ([\d.]+) ms")
_ET_TOTAL = re.compile(r"Model executed successfully (\d+) time\(s\) in ([\d.]+) ms")


def parse_benchmark_model(text: str) -> dict[str, float]:
    """``count``, ``min_ms``, ``max_ms``, ``avg_ms`` of the timed runs (the last stat line; times in us)."""
    matches = [m for m in _BENCHMARK_MODEL_STAT.finditer(text)]
    timed = [m for m in matches if m.group(2) is not None] or matches
    if not timed:
        raise ToolError(f"benchmark_model printed no timing line: {text.strip()[-300:]}")
    m = timed[-1]
    count = int(m.group(1))
    if m.group(2) is None:  # "(all same)": one value
        value = float(re.search(r"curr=(\d+)", m.group(0)).group(1)) / 1000
        return {"count": count, "min_ms": value, "max_ms": value, "avg_ms": value}
    return {"count": count, "min_ms": int(m.group(2)) / 1000, "max_ms": int(m.group(3)) / 1000, "avg_ms": float(m.group(4)) / 1000}


def parse_benchncnn(text: str, loops: int) -> dict[str, float]:
    m = _BENCHNCNN.search(text)
    if not m:
        raise ToolError(f"benchncnn printed no timing line: {text.strip()[-300:]}")
    return {"count": loops, "min_ms": float(m.group(1)), "max_ms": float(m.group(2)), "avg_ms": float(m.group(3))}


def parse_executor_runner(text: str, warmup: int) -> list[float]:
    """Per-iteration milliseconds after the first ``warmup`` (older runners log only the total: its mean)."""
    per_iter = [float(v) for v in _ET_ITERATION.findall(text)]
    if per_iter:
        if len(per_iter) <= warmup:
            raise ToolError(f"executor_runner logged {len(per_iter)} iterations, not more than --warmup {warmup}")
        return per_iter[warmup:]
    m = _ET_TOTAL.search(text)
    if not m:
        raise ToolError(f"executor_runner printed no timing: {text.strip()[-300:]}")
    n, total = int(m.group(1)), float(m.group(2))
    return [total / n] * n


def summarize_invocations(invocations: list[dict[str, float]]) -> dict[str, Any]:
    """Statistics over several tool invocations that each report count/min/max/avg (see module docstring)."""
    total = sum(i["count"] for i in invocations)
    mean = sum(i["avg_ms"] * i["count"] for i in invocations) / total
    return {
        "median_ms": statistics.median(i["avg_ms"] for i in invocations), "mean_ms": mean,
        "p90_ms": None, "p95_ms": None, "p99_ms": None,
        "min_ms": min(i["min_ms"] for i in invocations), "max_ms": max(i["max_ms"] for i in invocations),
        "runs": total, "throughput": 1000.0 / mean,
        "stat": f"median of {len(invocations)} per-invocation averages (the tool reports count/min/max/avg only)",
        "invocations": invocations,
    }


# ------------------------------------------------------------------------------------------ backends
@dataclass
class Plan:
    """How one backend runs on the phone: artifact role, tool, and the command builder."""

    role: str
    tool: str
    accelerator: str


PLANS = {
    "tflite": Plan("tflite", "benchmark_model", "cpu (XNNPACK)"),
    "tflite-gpu": Plan("tflite-fp16", "benchmark_model", "gpu delegate"),
    "ncnn": Plan("ncnn-param", "benchncnn", "cpu"),
    "ncnn-vulkan": Plan("ncnn-param", "benchncnn", "gpu (Vulkan)"),
    "executorch": Plan("executorch", "executor_runner", "cpu (XNNPACK)"),
}


def bench_backend(adb: Adb, bundle: Any, backend: str, threads: int, args: argparse.Namespace, tools: dict[str, str],
                  pushed: set[str]) -> dict[str, Any]:
    """Time one (bundle, backend, threads) cell on the phone; raises :class:`ToolError` to skip it."""
    from export.runtimes.timing import summarize_times

    plan = PLANS[backend]
    tool = tools.get(plan.tool)
    if tool is None:
        raise ToolError(f"{plan.tool} is not in --tools {args.tools}; build or download its arm64 binary")
    files = bundle.manifest.files
    if plan.role not in files:
        raise ToolError(f"the bundle has no {plan.role} artifact; export it with --targets {backend.split('-')[0]}")
    local = bundle.manifest.model_path(bundle.path, plan.role)
    remote_dir = f"{args.remote_dir}/{bundle.name}"
    remote = f"{remote_dir}/{local.name}"
    if remote not in pushed:
        adb.shell(f"mkdir -p {remote_dir}")
        adb.push(local, remote)
        pushed.add(remote)
    shape = (bundle.manifest.runtimes.get(backend.split("-")[0]) or {}).get("input_shape")
    prefix = f"taskset {args.cpu_mask} " if args.cpu_mask else ""
    if plan.tool == "benchmark_model":
        gpu = "--use_gpu=true" if backend == "tflite-gpu" else "--use_xnnpack=true"
        cmd = (f"{prefix}{tool} --graph={remote} --num_threads={threads} {gpu} --warmup_runs={args.warmup} "
               f"--num_runs={args.runs} --min_secs=0")
        stats = summarize_invocations([parse_benchmark_model(adb.shell(cmd)) for _ in range(args.rounds)])
    elif plan.tool == "benchncnn":
        if not shape:
            raise ToolError("the manifest records no ncnn input shape (re-export with this slimgan)")
        _, c, h, w = shape
        gpu = "0" if backend == "ncnn-vulkan" else "-1"
        cmd = f"cd {remote_dir} && {prefix}{tool} {args.runs} {threads} 0 {gpu} 0 param={local.name} shape=[{w},{h},{c}]"
        stats = summarize_invocations([parse_benchncnn(adb.shell(cmd), args.runs) for _ in range(args.rounds)])
    else:
        cmd = (f"{prefix}{tool} --model_path={remote} --num_executions={args.warmup + args.runs} --cpu_threads={threads} "
               f"--print_output=none")
        times = []
        for _ in range(args.rounds):
            times += parse_executor_runner(adb.shell(cmd), args.warmup)
        stats = dict(summarize_times(times), stat="per-iteration times logged by executor_runner")
    return {
        "model": bundle.name, "arch": bundle.manifest.arch, "backend": backend,
        "provider": f"{plan.tool} {plan.accelerator}", "threads": threads if "gpu" not in plan.accelerator else None,
        "batch": 1, "input_shape": shape, "measured_on": "device",
        "median_ms": stats["median_ms"], "mean_ms": stats["mean_ms"], "p90_ms": stats["p90_ms"], "p95_ms": stats["p95_ms"],
        "p99_ms": stats["p99_ms"], "min_ms": stats["min_ms"], "max_ms": stats["max_ms"], "runs": stats["runs"],
        "throughput_ips": stats["throughput"], "stat": stats.get("stat"), "command": cmd,
        **({"invocations": stats["invocations"]} if "invocations" in stats else {}),
    }


def push_tools(adb: Adb, tools_dir: Path, remote_dir: str, runner_name: str) -> dict[str, str]:
    """Push each tool found in ``tools_dir``; returns tool -> remote path."""
    names = {"benchmark_model": "benchmark_model", "benchncnn": "benchncnn", "executor_runner": runner_name}
    found = {}
    adb.shell(f"mkdir -p {remote_dir}/bin")
    for tool, name in names.items():
        local = tools_dir / name
        if local.is_file():
            remote = f"{remote_dir}/bin/{name}"
            adb.push(local, remote)
            adb.shell(f"chmod 755 {remote}")
            found[tool] = remote
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="BUNDLE")
    parser.add_argument("--teacher", metavar="BUNDLE")
    parser.add_argument("--tools", required=True, type=Path, help="folder with the arm64 benchmark_model, benchncnn, executor_runner")
    parser.add_argument("--executorch-runner", default="executor_runner", help="file name of the ExecuTorch runner in --tools")
    parser.add_argument("--backends", default=",".join(DEFAULT_BACKENDS), help=f"comma list of {', '.join(BACKENDS)}")
    parser.add_argument("--threads", default="1,2,4", help="comma list of CPU threads")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per invocation (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up runs per invocation (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="invocations per cell (default 3)")
    parser.add_argument("--cpu-mask", help="hex CPU mask for taskset on the phone (e.g. f0 for the big cores)")
    parser.add_argument("--serial", help="adb device serial (default: the only device)")
    parser.add_argument("--adb", default="adb", help="adb executable (default: adb on PATH)")
    parser.add_argument("--remote-dir", default=REMOTE_DIR)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from benchmarks.device_report import bundle_models, write_device_report
    from benchmarks.latency import SCHEMA, Bundle, add_speedups

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        print(f"android_bench: unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}", file=sys.stderr)
        return 2
    adb_path = shutil.which(args.adb)
    if adb_path is None:
        print(f"android_bench: {args.adb} not found (install Android platform-tools and put adb on PATH)", file=sys.stderr)
        return 2
    if not args.tools.is_dir():
        print(f"android_bench: --tools {args.tools} is not a folder", file=sys.stderr)
        return 2
    adb = Adb(adb_path, args.serial)
    try:
        state = adb.run("get-state", timeout=30).strip()
    except ToolError as exc:
        print(f"android_bench: no device on adb ({exc})", file=sys.stderr)
        return 2
    log.info("device state: %s", state)
    env = android_environment(adb)
    tools = push_tools(adb, args.tools, args.remote_dir, args.executorch_runner)
    threads_list = [int(t) for t in args.threads.split(",") if t.strip()]
    paths = ([args.teacher] if args.teacher and args.teacher not in args.models else []) + args.models
    bundles = [Bundle.open(p) for p in paths]
    teacher = Bundle.open(args.teacher).name if args.teacher else None
    models, results, skipped, pushed = bundle_models(bundles, teacher), [], [], set()
    for b in bundles:
        for backend in backends:
            for threads in threads_list if "gpu" not in PLANS[backend].accelerator else threads_list[:1]:
                try:
                    results.append(bench_backend(adb, b, backend, threads, args, tools, pushed))
                    log.info("%s %s threads=%d: median %.2f ms", b.name, backend, threads, results[-1]["median_ms"])
                except ToolError as exc:
                    entry = {"model": b.name, "backend": backend, "reason": str(exc)}
                    if entry not in skipped:
                        skipped.append(entry)
                        log.warning("skipped %s on %s: %s", b.name, backend, exc)
                    break
    add_speedups(results, models, teacher)
    report = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": env,
        "settings": {"res": None, "batches": [1], "threads": threads_list, "backends": backends, "warmup_runs": args.warmup,
                     "runs": args.runs, "rounds": args.rounds, "cpu_mask": args.cpu_mask,
                     "timing": "the runtimes' own benchmark tools on the phone over adb; see each row's stat"},
        "teacher": teacher, "models": models, "results": results, "skipped": skipped, "predictions": [],
    }
    write_device_report(args.out, report, environment={"onnxruntime": "-", "onnxruntime_providers": [env["os"]], "python": "-"},
                        settings={"res": "as exported", "warmup_s": f"{args.warmup} runs", "min_runs": args.runs, "min_time_s": 0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
