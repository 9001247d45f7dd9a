"""trtexec-style latency of exported bundles, per backend, thread count and batch size.

Each (bundle, backend, threads, batch) cell is timed by :func:`export.runtimes.timing.time_session`: a timed
warm-up, then at least ``min_runs`` timed calls and at least ``min_time_s`` seconds of them. Results list
the median first, then mean / p90 / p95 / p99, min / max and throughput (images/s = batch x calls/s).

Backends (a registry: one factory per name, each returns a ``run()`` callable or raises :class:`Skip`):

========== =====================================================================================
torch      the bundle's ``source_checkpoint`` in PyTorch (``torch.set_num_threads(threads)``)
ort        ``model.onnx`` in ONNX Runtime, CPUExecutionProvider
ort-fp16   the bundle's FP16 model in ONNX Runtime CPU
ort-int8   the bundle's INT8 model in ONNX Runtime CPU
openvino   the bundle's OpenVINO IR ``model.xml``, compiled at the precision export checked
openvino-int8  NNCF's INT8 IR ``model.int8.xml``
cuda       ``model.onnx`` in ONNX Runtime, CUDAExecutionProvider
trt        the bundle's own TensorRT engine ``model.plan`` (``slimgan export --trt``)
tflite     ``model.tflite`` in LiteRT's interpreter (XNNPACK)           } phone runtimes, exported with
tflite-fp16  ``model.fp16.tflite`` (fp16 weights, the GPU-delegate file) } ``--targets``; timed here on
ncnn       ``model.ncnn.param/.bin`` in ncnn (fp32)                      } their x86 builds and labelled
executorch ``model.pte`` in ExecuTorch's runtime (XNNPACK)               } as host measurements
ort-mobile ``model.ort`` in ONNX Runtime (ORT format)                    }
coreml     ``model.mlpackage`` (macOS only; skipped elsewhere with the reason)
========== =====================================================================================

Every backend but ``torch`` goes through :mod:`export.runtimes`, so it times the bundle's own
artifacts with the settings export checked and serve runs.

A backend that cannot run here (no file, no provider, no GPU, no TensorRT) is *skipped with a reason*;
the reasons are written to ``latency.json`` and printed. With a teacher bundle each student's
``speedup = median_teacher / median_student`` on the same backend/threads/batch is reported next to
its ``mac_ratio = MACs_teacher / MACs_student`` (the two differ: memory-bound layers, non-conv ops,
threading overhead). With ``predict`` devices, a roofline prediction (:mod:`benchmarks.roofline`)
calibrated on this machine is added, labelled ``"predicted"``.

Outputs in ``out``: ``latency.json`` (schema ``slimgan-latency/1``), ``latency.md`` and ``latency.png``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.manifest import Manifest
from slimgan.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)

SCHEMA = "slimgan-latency/1"
BACKENDS = ("torch", "ort", "ort-fp16", "ort-int8", "openvino", "openvino-int8", "cuda", "trt",
            "tflite", "tflite-fp16", "ncnn", "executorch", "ort-mobile", "coreml")
# Phone runtimes: measured here on their x86 kernels, so their rows say so (export.targets.HOST_NOTE).
PHONE_BACKENDS = ("tflite", "tflite-fp16", "ncnn", "executorch", "ort-mobile", "coreml")
GPU_BACKENDS = ("cuda", "trt")


class Skip(Exception):
    """A backend that cannot run for this bundle on this machine; the message is the reason."""


@dataclass
class LatencyConfig:
    """What to measure. ``threads`` of 0 means all cores of this machine."""

    backends: list[str] = field(default_factory=lambda: ["torch", "ort"])
    threads: list[int] = field(default_factory=lambda: [1, 2, 4])
    batches: list[int] = field(default_factory=lambda: [1])
    res: int = 256
    warmup_s: float = 0.2
    min_runs: int = 10
    min_time_s: float = 1.0
    max_runs: int = 1000
    predict: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ConfigError(f"unknown backend {unknown[0]!r}; choose from: {', '.join(BACKENDS)}")
        if self.min_runs < 1 or any(b < 1 for b in self.batches) or any(t < 0 for t in self.threads):
            raise ConfigError("--min-runs and --batch must be >= 1 and --threads >= 0")
        if self.min_runs < 10:
            log.warning("min_runs=%d is below the 10 timed runs trtexec-style reports use", self.min_runs)


@dataclass
class Bundle:
    """A bundle directory and its manifest; ``name`` is the directory name (what the user typed)."""

    path: Path
    manifest: Manifest
    name: str

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        path = Path(path)
        return cls(path, Manifest.load(path), path.resolve().name)


# ------------------------------------------------------------------------------------------- inputs
def make_input(manifest: Manifest, batch: int, res: int) -> np.ndarray:
    """An input of the bundle's distribution: an image in [-1, 1] (B, C, res, res) or a latent N(0, 1)."""
    rng = np.random.default_rng(0)
    shape = list(manifest.input.shape)
    if manifest.task == "generate" or len(shape) == 2:
        size = manifest.preprocessing.latent_size or (shape[1] if isinstance(shape[1], int) else None)
        if size is None:
            raise ConfigError(f"{manifest.name}: the manifest gives no latent size")
        return rng.standard_normal((batch, int(size))).astype(np.float32)
    channels = shape[1] if isinstance(shape[1], int) else 3
    hw = [d if isinstance(d, int) else res for d in shape[2:]]
    if manifest.preprocessing.fixed_size:
        hw = list(manifest.preprocessing.fixed_size)
    return (rng.random((batch, channels, *hw), dtype=np.float32) * 2 - 1).astype(np.float32)


def _check_batch(manifest: Manifest, batch: int) -> None:
    static = manifest.input.shape[0] if isinstance(manifest.input.shape[0], int) else None
    if not manifest.dynamic_batch and static is not None and batch != static:
        raise Skip(f"the graph has a static batch of {static}; re-export with a dynamic batch for batch {batch}")
    if manifest.max_batch and batch > manifest.max_batch:
        raise Skip(f"batch {batch} exceeds the bundle's max_batch {manifest.max_batch}")


# ------------------------------------------------------------------------------------------ backends
RunFactory = Callable[[Bundle, np.ndarray, int], tuple[Callable[[], object], str]]


def _runtime_factory(runtime: str, role: str, device: str = "cpu", hint: str = "") -> RunFactory:
    """Time the bundle's own ``role`` file on ``runtime`` through :mod:`export.runtimes`, loaded as export
    checked it (``manifest.runtimes``: e.g. OpenVINO's compile precision)."""

    def factory(bundle: Bundle, x: np.ndarray, threads: int) -> tuple[Callable[[], object], str]:
        from export.runtimes import get_runtime

        rt = get_runtime(runtime)
        ok, reason = rt.available()
        if ok and hasattr(rt, "runs_here"):
            ok, reason = rt.runs_here()
        if not ok:
            raise Skip(reason)
        if role not in bundle.manifest.files:
            raise Skip(f"the bundle has no {role} model (files: {', '.join(bundle.manifest.files)}); {hint or f'export it with --{role}'}")
        path = bundle.manifest.model_path(bundle.path, role)
        if not path.exists():
            raise Skip(f"{path} is listed in the manifest but missing")
        static = (bundle.manifest.runtimes.get(runtime) or {}).get("input_shape")
        if static and runtime != "ncnn" and list(static[1:]) != list(x.shape[1:]):
            raise Skip(f"{path.name} was converted for {'x'.join(map(str, static))} inputs; re-export at this --res to time it")
        if runtime == "onnxruntime" and device == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise Skip(f"ONNX Runtime {ort.__version__} has no CUDAExecutionProvider (available: "
                           f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu on a CUDA machine")
        # loaded as export checked it and serve runs it: the runtime's own options (export.runtimes)
        session = rt.load_from_bundle(bundle.path, bundle.manifest, role, threads=threads, device=device)
        info = session.describe()
        label = " ".join(str(v) for v in (info.get("runtime"), info.get("version"), info.get("device"), info.get("precision")) if v)
        return (lambda: session.run(x)), label

    return factory


def _torch_factory(bundle: Bundle, x: np.ndarray, threads: int) -> tuple[Callable[[], object], str]:
    ckpt = Path(bundle.manifest.source_checkpoint) if bundle.manifest.source_checkpoint else None
    if ckpt is None or not (ckpt / "config.json").is_file():
        raise Skip(f"source checkpoint {bundle.manifest.source_checkpoint or '(none)'} is not on this machine")
    import torch

    from distill.checkpoint import load_checkpoint

    model = load_checkpoint(ckpt)
    torch.set_num_threads(threads)
    inp = torch.from_numpy(x)

    def run() -> object:
        with torch.inference_mode():
            return model(inp)

    return run, f"torch {torch.__version__} CPU"


BACKEND_FACTORIES: dict[str, RunFactory] = {
    "torch": _torch_factory,
    "ort": _runtime_factory("onnxruntime", "fp32"),
    "ort-fp16": _runtime_factory("onnxruntime", "fp16"),
    "ort-int8": _runtime_factory("onnxruntime", "int8"),
    "cuda": _runtime_factory("onnxruntime", "fp32", device="cuda"),
    "openvino": _runtime_factory("openvino", "openvino", hint="export it with this slimgan (OpenVINO IR)"),
    "openvino-int8": _runtime_factory("openvino", "openvino-int8",
                                      hint="export it with --int8 --calib DIR and the openvino-int8 extra (NNCF)"),
    "trt": _runtime_factory("tensorrt", "plan", device="cuda", hint="export it with --trt on this GPU"),
    **{name: _runtime_factory(runtime, role, hint=f"export it with --targets {runtime}")
       for name, runtime, role in (("tflite", "tflite", "tflite"), ("tflite-fp16", "tflite", "tflite-fp16"),
                                   ("ncnn", "ncnn", "ncnn-param"), ("executorch", "executorch", "executorch"),
                                   ("ort-mobile", "ort-mobile", "ort-mobile"), ("coreml", "coreml", "coreml"))},
}


# --------------------------------------------------------------------------------------- environment
def _cpu_model() -> str:
    from export.runtimes.mobile import cpu_model

    return cpu_model()


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - an optional library that fails to import is simply absent
        return None
    return getattr(mod, "__version__", "unknown")


def environment() -> dict[str, Any]:
    """CPU model and cores, OS, Python and library versions, ORT providers, GPU if any."""
    import onnxruntime as ort

    from distill import __version__

    env: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "slimgan": __version__,
        "numpy": np.__version__,
        "onnx": _version("onnx"),
        "onnxruntime": ort.__version__,
        "onnxruntime_device": ort.get_device(),
        "onnxruntime_providers": ort.get_available_providers(),
        "torch": _version("torch"),
        "openvino": _version("openvino"),
        "nncf": _version("nncf"),
        "tensorrt": _version("tensorrt"),
        "gpu": None,
        "device": "host",
    }
    try:
        import torch

        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
            env["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return env


# ------------------------------------------------------------------------------------------ the run
def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _resolve_threads(threads: int) -> int:
    return threads or _cores()


def cap_threads(threads: list[int]) -> tuple[list[int], str | None]:
    """Thread counts up to this machine's cores (0 = all), and a note when any was capped.

    More intra-op threads than cores only measures oversubscription: the counts above the cores are
    measured at the cores, once.
    """
    cores = _cores()
    resolved = [_resolve_threads(t) for t in threads]
    capped = list(dict.fromkeys(min(t, cores) for t in resolved))
    over = [t for t in resolved if t > cores]
    note = None
    if over:
        note = (f"threads {', '.join(map(str, over))} exceed this machine's {cores} cores; measured at "
                f"{', '.join(map(str, capped))}")
        log.warning("%s", note)
    return capped, note


def _macs_at(bundle: Bundle, res: int) -> tuple[int, int | None, list[Any] | None]:
    """MACs at batch 1 and ``res``: ``(reported, graph, per-layer costs)``.

    ``reported`` follows the manifest's convention (torch flop counter, ConvTranspose by output size,
    as the papers quote), scaled from the export shape to ``res`` so MAC ratios here match
    ``speed.json``. ``graph`` is the arithmetic of the ONNX graph as it runs (what the roofline uses);
    a stride-2 transposed convolution does a quarter of the work the papers' convention counts.
    """
    from benchmarks.roofline import layer_costs, total_macs

    graph_macs, costs = None, None
    try:
        x = make_input(bundle.manifest, 1, res)
        costs = layer_costs(bundle.manifest.model_path(bundle.path, "fp32"), x.shape)
        graph_macs = total_macs(costs)
    except Exception as exc:  # noqa: BLE001 - shape inference can fail on exotic graphs; fall back
        log.warning("%s: could not cost the ONNX graph (%s); the roofline skips it", bundle.name, exc)
    reported = int(bundle.manifest.macs)
    shape = bundle.manifest.macs_input_shape
    if bundle.manifest.task == "translate" and shape and len(shape) == 4:
        reported = int(round(reported * res * res / (shape[2] * shape[3])))
    elif shape is None and graph_macs is not None:  # bundles from before macs_input_shape existed
        reported = graph_macs
    return reported, graph_macs, costs


def measure_cell(bundle: Bundle, backend: str, threads: int, batch: int, cfg: LatencyConfig) -> dict[str, Any]:
    """Time one (bundle, backend, threads, batch) cell; raises :class:`Skip` when it cannot run."""
    from export.runtimes.timing import time_session

    _check_batch(bundle.manifest, batch)
    x = make_input(bundle.manifest, batch, cfg.res)
    try:
        run, provider = BACKEND_FACTORIES[backend](bundle, x, threads)
    except MissingDependencyError as exc:
        raise Skip(str(exc)) from exc
    stats = time_session(run, warmup_s=cfg.warmup_s, min_runs=cfg.min_runs, min_time_s=cfg.min_time_s,
                         max_runs=cfg.max_runs)
    return {
        "model": bundle.name, "arch": bundle.manifest.arch, "backend": backend, "provider": provider,
        "threads": None if backend in GPU_BACKENDS else threads, "batch": batch,
        "input_shape": list(x.shape),
        "median_ms": stats["median_ms"], "mean_ms": stats["mean_ms"], "p90_ms": stats["p90_ms"],
        "p95_ms": stats["p95_ms"], "p99_ms": stats["p99_ms"], "min_ms": stats["min_ms"],
        "max_ms": stats["max_ms"], "runs": stats["runs"],
        "throughput_ips": stats["throughput"] * batch,
        **({"measured_on": "host", "note": _host_note()} if backend in PHONE_BACKENDS else {}),
    }


def _host_note() -> str:
    from export.targets import HOST_NOTE

    return HOST_NOTE


def benchmark_latency(bundle_dirs: list[str | Path], out: str | Path, cfg: LatencyConfig,
                      teacher: str | Path | None = None) -> dict[str, Any]:
    """Measure every cell, add speedups and predictions, write latency.json / .md / .png; return the report."""
    from benchmarks.plots import plot_latency

    paths = list(bundle_dirs)
    if teacher is not None and Path(teacher).resolve() not in [Path(p).resolve() for p in paths]:
        paths.insert(0, teacher)
    bundles = [Bundle.open(p) for p in paths]
    names = [b.name for b in bundles]
    if len(set(names)) != len(names):  # two bundles in same-named folders: disambiguate by parent
        for b in bundles:
            b.name = f"{b.path.resolve().parent.name}/{b.name}"
    teacher_name = None
    if teacher is not None:
        teacher_name = next(b.name for b in bundles if b.path.resolve() == Path(teacher).resolve())

    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    models: dict[str, dict[str, Any]] = {}
    costs_by_model: dict[str, Any] = {}
    for b in bundles:
        macs, graph_macs, costs = _macs_at(b, cfg.res)
        costs_by_model[b.name] = costs
        models[b.name] = {"bundle": str(b.path), "name": b.manifest.name, "arch": b.manifest.arch,
                          "task": b.manifest.task, "macs": macs, "graph_macs": graph_macs,
                          "manifest_macs": b.manifest.macs,
                          "params": b.manifest.params, "is_teacher": b.name == teacher_name,
                          "role": b.manifest.role or ("teacher" if b.name == teacher_name else None)}
    threads_list, threads_note = cap_threads(cfg.threads)
    for backend in cfg.backends:
        for b in bundles:
            for threads in [threads_list[0]] if backend in GPU_BACKENDS else threads_list:
                for batch in cfg.batches:
                    try:
                        row = measure_cell(b, backend, threads, batch, cfg)
                    except Skip as exc:
                        entry = {"model": b.name, "backend": backend, "reason": str(exc)}
                        if entry not in skipped:
                            skipped.append(entry)
                            log.warning("skipped %s on %s: %s", b.name, backend, exc)
                        continue
                    results.append(row)
                    log.info("%s %s threads=%s batch=%d: median %.3f ms", b.name, backend, row["threads"],
                             batch, row["median_ms"])
    add_speedups(results, models, teacher_name)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        "settings": {"res": cfg.res, "batches": cfg.batches, "threads": threads_list, "threads_note": threads_note,
                     "backends": cfg.backends,
                     "warmup_s": cfg.warmup_s, "min_runs": cfg.min_runs, "min_time_s": cfg.min_time_s,
                     "max_runs": cfg.max_runs, "timing": "trtexec-style: timed warm-up, then >= min_runs "
                     "and >= min_time_s of timed end-to-end calls; median first"},
        "teacher": teacher_name,
        "models": models,
        "results": results,
        "skipped": skipped,
        "predictions": [],
    }
    if cfg.predict:
        report["calibration"], report["predictions"] = _predict(bundles, costs_by_model, results, cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "latency.md").write_text(format_latency_table(report))
    plot_latency(report, out / "latency.png")
    return report


def add_speedups(results: list[dict[str, Any]], models: dict[str, dict[str, Any]], teacher: str | None) -> None:
    """``speedup = median_teacher / median`` on the same backend/threads/batch; ``mac_ratio = MACs_t / MACs``."""
    if teacher is None:
        return
    ref = {(r["backend"], r["threads"], r["batch"]): r["median_ms"] for r in results if r["model"] == teacher}
    for r in results:
        t_ms = ref.get((r["backend"], r["threads"], r["batch"]))
        r["speedup"] = t_ms / r["median_ms"] if t_ms and r["median_ms"] > 0 else None
        r["mac_ratio"] = models[teacher]["macs"] / models[r["model"]]["macs"] if models[r["model"]]["macs"] else None


def _predict(bundles: list[Bundle], costs_by_model: dict[str, Any], results: list[dict[str, Any]],
             cfg: LatencyConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Calibrate one η on this machine (ORT fp32, batch 1), validate it here, predict each model per device."""
    from benchmarks.devices import get_device
    from benchmarks.roofline import calibrate, measure_host, predict, total_bytes, total_macs, validate

    devices = [get_device(d) for d in cfg.predict]
    threads_list = sorted(cap_threads(cfg.threads)[0])
    hosts = {t: measure_host(t) for t in threads_list}
    cells: list[dict[str, Any]] = []
    totals: dict[str, tuple[int, int]] = {}
    for b in bundles:
        costs = costs_by_model.get(b.name)
        if not costs:
            continue
        totals[b.name] = (total_macs(costs), total_bytes(costs))
        for t in threads_list:
            measured = next((r["median_ms"] for r in results if r["model"] == b.name and r["backend"] == "ort"
                             and r["threads"] == t and r["batch"] == 1), None)
            if measured is None:
                try:
                    measured = measure_cell(b, "ort", t, 1, cfg)["median_ms"]
                except Skip as exc:
                    log.warning("cannot calibrate on %s: %s", b.name, exc)
                    continue
            cells.append({"model": b.name, "threads": t, "macs": totals[b.name][0], "bytes": totals[b.name][1],
                          "measured_ms": measured, "host": hosts[t]})
    efficiency = calibrate([(c["macs"], c["bytes"], c["measured_ms"], c["host"]) for c in cells])
    calibration: dict[str, Any] = {
        "host": {str(t): h for t, h in hosts.items()},
        "efficiency": efficiency,
        "efficiency_rule": "median over the measured ORT fp32 batch-1 cells of roofline bound / measured time, "
                           "capped at 1; one value for every model and device",
        "validation": validate(cells, efficiency) if cells and efficiency == efficiency else [],
    }
    predictions: list[dict[str, Any]] = []
    if not cells or efficiency != efficiency:  # NaN: nothing measured to calibrate on
        return calibration, predictions
    for name, (macs, nbytes) in totals.items():
        for dev in devices:
            for t in (threads_list if dev.kind == "cpu" else [None]):
                row = predict(macs, nbytes, dev, efficiency, threads=t)
                row.update({"model": name, "batch": 1, "res": cfg.res, "measured_ms": None})
                predictions.append(row)
    return calibration, predictions


# -------------------------------------------------------------------------------------------- tables
def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def format_latency_table(report: dict[str, Any]) -> str:
    """The markdown report: measured table, skipped backends with reasons, predictions, environment."""
    env, s = report["environment"], report["settings"]
    lines = [f"# Latency ({s['res']} x {s['res']}, {env['cpu_model']}, ONNX Runtime {env['onnxruntime']})", ""]
    has_teacher = report.get("teacher") is not None
    head = ["model", "backend", "threads", "batch", "median ms", "mean ms", "p90 ms", "p95 ms", "p99 ms",
            "images/s", "runs"]
    if has_teacher:
        head += ["speedup", "MAC ratio"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    from benchmarks.plots import model_label

    for r in report["results"]:
        name = model_label(r["model"], report["models"].get(r["model"], {}).get("role")
                           or ("teacher" if r["model"] == report.get("teacher") else None))
        cells = [name, r["backend"], str(r["threads"] or "-"), str(r["batch"]), _fmt(r["median_ms"]),
                 _fmt(r["mean_ms"]), _fmt(r["p90_ms"]), _fmt(r["p95_ms"]), _fmt(r["p99_ms"]),
                 _fmt(r["throughput_ips"], ".1f"), str(r["runs"])]
        if has_teacher:
            cells += [_fmt(r.get("speedup"), ".2f") + "x", _fmt(r.get("mac_ratio"), ".2f") + "x"]
        lines.append("| " + " | ".join(cells) + " |")
    if report["skipped"]:
        lines += ["", "Skipped:", ""]
        lines += [f"- {k['model']} / {k['backend']}: {k['reason']}" for k in report["skipped"]]
    if report.get("predictions"):
        lines += ["", "Roofline predictions (labelled predicted; calibrated on this machine, batch 1):", "",
                  "| model | device | precision | threads | predicted ms | roofline bound ms | bound by | efficiency | measured ms |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in report["predictions"]:
            lines.append(f"| {p['model']} | {p['device']} | {p['precision']} | {p['threads'] or '-'} | "
                         f"{_fmt(p['predicted_ms'])} ({p['label']}) | {_fmt(p['ideal_ms'])} | {p.get('bound', '-')} | "
                         f"{_fmt(p['efficiency'], '.3f')} | {_fmt(p['measured_ms'])} |")
        validation = (report.get("calibration") or {}).get("validation") or []
        if validation:
            lines += ["", "The same model on this machine (validation: how much of each measured time the roofline "
                      "explains; a ratio far above 1 is per-operator overhead it does not model):", "",
                      "| model | threads | measured ms | predicted ms | measured / predicted |", "|---|---|---|---|---|"]
            lines += [f"| {v['model']} | {v['threads']} | {_fmt(v['measured_ms'])} | {_fmt(v['predicted_ms'])} | "
                      f"{_fmt(v['measured_over_predicted'], '.2f')} |" for v in validation]
    lines += ["", f"Environment: {env['cpu_model']} ({env['cpu_count']} CPUs), {env['os']}, Python {env['python']}, "
              f"onnxruntime {env['onnxruntime']} ({', '.join(env['onnxruntime_providers'])}), torch {env['torch']}, "
              f"tensorrt {env['tensorrt'] or 'absent'}, GPU {env['gpu'] or 'none'}.",
              f"Timing: warm-up {s['warmup_s']} s, >= {s['min_runs']} runs and >= {s['min_time_s']} s per cell."]
    if s.get("threads_note"):
        lines.append(f"Threads: {s['threads_note']}.")
    return "\n".join(lines) + "\n"
