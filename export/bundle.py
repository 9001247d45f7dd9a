"""``export_bundle``: checkpoint -> bundle directory with parity and speed checks (``slimgan export``).

Order of work: requirements first (``--trt`` without TensorRT or a GPU fails before anything is
exported), then fp32 ONNX, fp16 / int8 / TensorRT as asked, parity of each against the PyTorch
student on inputs of the generator's real distribution, teacher vs student latency side by side,
and finally ``manifest.json``, ``parity.json``, ``speed.json`` (and a Triton repository).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.errors import ConfigError
from export.manifest import Manifest, Postprocessing, Preprocessing, TensorSpec
from export.onnx_export import DEFAULT_OPSET, export_onnx
from export.parity import compare, failed_rows
from export.runtime import make_session

# One intra-op thread for the checks and the side-by-side speed measurement: the edge setting, and the
# one where a slim student's latency is stable. On the 2-vCPU machines this was measured on, a 1.4 GMAC
# student at 256x256 took 33.5 ms at 1 thread and, run to run, either 26 or 57 ms at 2 threads (its
# ~250 small ops each pay a cross-core synchronisation), while the 56.8 GMAC teacher scales (960 ->
# 490-570 ms). speed.json also reports the all-cores setting under ``by_threads``.
SPEED_THREADS = 1

log = logging.getLogger(__name__)

PARITY_NAME = "parity.json"
SPEED_NAME = "speed.json"
FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx", "plan": "model.plan"}


@dataclass
class ExportResult:
    """What :func:`export_bundle` wrote and measured. ``ok`` is False when a deployment parity row failed."""

    bundle: Path
    manifest: Manifest
    parity: list[dict[str, Any]]
    speed: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return failed_rows(self.parity)

    @property
    def ok(self) -> bool:
        return not self.failed


def parse_batch(spec: str | None) -> tuple[int, int, int]:
    """``MIN:OPT:MAX`` (or a single number) -> (min, opt, max); default 1:1:8."""
    if not spec:
        return 1, 1, 8
    parts = spec.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError as exc:
        raise ConfigError(f"--batch {spec!r}: expected MIN:OPT:MAX integers, e.g. 1:4:8") from exc
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not (1 <= values[0] <= values[1] <= values[2]):
        raise ConfigError(f"--batch {spec!r}: expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")
    return values[0], values[1], values[2]


def _input_spec(model: torch.nn.Module, height: int | None, width: int | None) -> tuple[Any, dict[str, Any], tuple[int, ...]]:
    """(ModelInfo, constructor kwargs, per-sample input shape) with the spatial size validated."""
    from distill.registry import model_info

    cfg = model.slimgan_config
    info = model_info(cfg["arch"])
    kwargs = cfg["kwargs"]
    if info.task not in ("translate", "generate"):
        raise ConfigError(f"{cfg['arch']} is a {info.role}; slimgan export takes a generator checkpoint")
    if info.input_kind == "latent":
        return info, kwargs, (int(kwargs["nz"]),)
    h, w = height or 256, width or height or 256
    m = info.size_multiple
    if h % m or w % m or h <= 0 or w <= 0:
        raise ConfigError(f"{cfg['arch']} needs height and width that are multiples of {m}; got {h}x{w}")
    return info, kwargs, (int(kwargs.get("input_nc", 3)), h, w)


def make_inputs(input_kind: str, shape: tuple[int, ...], batch: int, seed: int = 0) -> np.ndarray:
    """Inputs of the generator's real distribution: images uniform in [-1, 1], latents N(0, 1)."""
    rng = np.random.default_rng(seed)
    if input_kind == "latent":
        return rng.standard_normal((batch, *shape)).astype(np.float32)
    return rng.uniform(-1.0, 1.0, (batch, *shape)).astype(np.float32)


@torch.no_grad()
def _torch_run(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(x)).numpy()


def _ort_run(path: Path, x: np.ndarray, threads: int) -> np.ndarray:
    sess = make_session(path, threads=threads)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def export_bundle(
    checkpoint: str | Path,
    out: str | Path,
    *,
    teacher: str | Path | None = None,
    res: int | None = None,
    height: int | None = None,
    width: int | None = None,
    batch: str | tuple[int, int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    int8: bool = False,
    calib: str | Path | None = None,
    trt: bool = False,
    triton: str | Path | None = None,
    threads: int = SPEED_THREADS,
    check: bool = True,
    speed_rounds: int = 5,
    speed_block_s: float = 0.5,
    optimize: bool = True,
) -> ExportResult:
    """Export ``checkpoint`` into the bundle directory ``out`` (see module docstring).

    Raises :class:`MissingDependencyError` before any work when ``trt`` is asked for without TensorRT
    and a GPU, and :class:`ConfigError` for bad shapes or options. Parity failures do not raise: the
    bundle is written and ``ExportResult.ok`` is False, so the caller can show the table.
    ``optimize``: apply the exact graph rewrites of :mod:`export.optimize` to ``model.onnx`` (and to the
    teacher graph it is timed against); ``False`` ships the graph as exported and simplified.
    """
    from distill.checkpoint import load_checkpoint
    from distill.profile import count_macs, count_params

    if trt:
        from export.tensorrt_engine import require_tensorrt

        require_tensorrt()
    if res is not None and (height is not None or width is not None):
        raise ConfigError("give either --res or --height/--width, not both")
    height = height or res
    width = width or res or height
    bmin, bopt, bmax = batch if isinstance(batch, tuple) else parse_batch(batch)
    threads = int(threads or SPEED_THREADS)

    model = load_checkpoint(checkpoint).eval()
    info, kwargs, sample_shape = _input_spec(model, height, width)
    if int8 and calib is None and info.input_kind == "image":
        raise ConfigError("--int8 needs --calib DIR, a folder of images to calibrate on")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    started = time.perf_counter()

    # 1. fp32 ONNX -----------------------------------------------------------------------------
    parity_batch = min(2, bmax)
    x = make_inputs(info.input_kind, sample_shape, parity_batch, seed=0)
    example = torch.from_numpy(x[:1].copy())
    onnx_path = out / FILES["fp32"]
    exported = export_onnx(model, onnx_path, example, input_kind=info.input_kind, opset=opset, dynamic_batch=True, dynamic_spatial=True,
                           optimize=optimize)
    notes += exported.notes
    files = {"fp32": FILES["fp32"]}
    ref = _torch_run(model, x)
    rows: list[dict[str, Any]] = []
    if check:
        rows.append(compare("student: torch vs onnx fp32", _ort_run(onnx_path, x, threads), ref, "fp32"))
        if hasattr(exported, "parity_rows"):
            rows += exported.parity_rows(model, x, threads)

    # 2. fp16 ----------------------------------------------------------------------------------
    if fp16:
        from export.fp16 import convert_file

        convert_file(onnx_path, out / FILES["fp16"])
        files["fp16"] = FILES["fp16"]
        if check:
            rows.append(compare("student: torch vs onnx fp16", _ort_run(out / FILES["fp16"], x, threads), ref, "fp16"))

    # 3. int8 ----------------------------------------------------------------------------------
    if int8:
        from export.int8 import load_calibration_images, quantize_int8

        if info.input_kind == "image":
            samples = load_calibration_images(calib, sample_shape[0], sample_shape[1], sample_shape[2])
        else:
            samples = make_inputs("latent", sample_shape, 32, seed=1)
        quantize_int8(onnx_path, out / FILES["int8"], samples, exported.input_name)
        files["int8"] = FILES["int8"]
        if check:
            rows.append(compare("student: torch vs onnx int8", _ort_run(out / FILES["int8"], x, threads), ref, "int8"))

    # 4. TensorRT ------------------------------------------------------------------------------
    engine = None
    if trt:
        from export.tensorrt_engine import EngineRunner, build_engine

        engine = build_engine(
            onnx_path,
            out / FILES["plan"],
            exported.input_name,
            (bmin, *sample_shape),
            (bopt, *sample_shape),
            (bmax, *sample_shape),
            fp16=fp16,
            fp16_onnx_path=out / FILES["fp16"] if fp16 else None,
        )
        files["plan"] = FILES["plan"]
        if check:
            trt_x = x[: max(bmin, min(parity_batch, bmax))]
            trt_out = EngineRunner(engine.path)(trt_x)
            rows.append(compare(f"student: torch vs tensorrt ({engine.mode})", trt_out, ref[: len(trt_x)], "fp16" if fp16 else "fp32"))

    # 5. Teacher --------------------------------------------------------------------------------
    macs = count_macs(model, example=example)
    params = count_params(model)
    teacher_model = None
    teacher_info: dict[str, Any] | None = None
    if teacher is not None:
        teacher_model = load_checkpoint(teacher).eval()
        t_info, _, t_shape = _input_spec(teacher_model, height, width)
        if t_shape != sample_shape or t_info.input_kind != info.input_kind:
            raise ConfigError(f"teacher {teacher} takes inputs of shape {t_shape}, the student {sample_shape}: they are not a pair")
        teacher_info = {
            "macs": count_macs(teacher_model, example=example),
            "params": count_params(teacher_model),
            "arch": teacher_model.slimgan_config["arch"],
            "sha256": teacher_model.slimgan_checkpoint["sha256"],
        }
        if check:
            rows.append(compare("teacher vs student (torch)", ref, _torch_run(teacher_model, x), "info"))

    # 6. Speed ---------------------------------------------------------------------------------
    speed: dict[str, Any] = {"checked": False}
    if check:
        speed = _measure_speed(
            out, model, teacher_model, info.input_kind, sample_shape, bopt, opset, threads, macs, params, teacher_info, files, engine, notes,
            rounds=speed_rounds, block_s=speed_block_s, optimize=optimize, student_export=exported,
        )

    # 7. Manifest and reports ------------------------------------------------------------------
    manifest = _manifest(model, info, kwargs, exported, files, opset, macs, params, bmax, sample_shape)
    manifest.save(out)
    parity_doc = {
        "rows": rows,
        "passed": not failed_rows(rows),
        "checked": check,
        "inputs": {
            "batch": parity_batch,
            "shape": list(x.shape),
            "distribution": "normal(0, 1)" if info.input_kind == "latent" else "uniform[-1, 1]",
            "seed": 0,
        },
        "notes": notes,
    }
    (out / PARITY_NAME).write_text(json.dumps(parity_doc, indent=2) + "\n")
    (out / SPEED_NAME).write_text(json.dumps(speed, indent=2) + "\n")
    if triton is not None:
        from export.triton import write_triton_repository

        write_triton_repository(out, triton, manifest)
    log.info("bundle %s written in %.1f s", out, time.perf_counter() - started)
    return ExportResult(bundle=out, manifest=manifest, parity=rows, speed=speed, notes=notes)


def _manifest(model, info, kwargs, exported, files, opset, macs, params, bmax, sample_shape) -> Manifest:
    from distill import __version__

    ckpt = model.slimgan_checkpoint
    latent = info.input_kind == "latent"
    channels_out = int(exported.output_shape[1]) if isinstance(exported.output_shape[1], int) else 3
    color = "L" if channels_out == 1 else "RGB"
    in_color = "L" if (not latent and sample_shape[0] == 1) else "RGB"
    fixed = None
    if not latent and not exported.dynamic_spatial:
        fixed = [int(sample_shape[1]), int(sample_shape[2])]
    return Manifest(
        name=Path(ckpt["path"]).name or info.name,
        task=info.task,
        arch=info.name,
        input=TensorSpec(
            name=exported.input_name,
            shape=exported.input_shape,
            dtype="float32",
            value_range=None if latent else [float(v) for v in info.value_range],
            distribution="normal" if latent else "uniform",
        ),
        output=TensorSpec(name=exported.output_name, shape=exported.output_shape, dtype="float32", value_range=[-1.0, 1.0]),
        preprocessing=Preprocessing(
            color=in_color,
            size_multiple=int(info.size_multiple),
            fixed_size=fixed,
            latent_size=int(sample_shape[0]) if latent else None,
        ),
        postprocessing=Postprocessing(color=color),
        opset=int(opset),
        files=dict(files),
        source_checkpoint=str(ckpt["path"]),
        source_sha256=str(ckpt["sha256"]),
        macs=int(macs),
        macs_input_shape=[1, *(int(d) for d in sample_shape)],
        params=int(params),
        dynamic_batch=exported.dynamic_batch,
        dynamic_spatial=exported.dynamic_spatial,
        max_batch=int(bmax),
        arch_kwargs=dict(kwargs),
        controls=dict(getattr(exported, "controls", {})),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        slimgan_version=str(__version__),
    )


def _measure_speed(
    out, model, teacher_model, input_kind, sample_shape, batch, opset, threads, macs, params, teacher_info, files, engine, notes, rounds, block_s,
    optimize=True, student_export=None,
) -> dict[str, Any]:
    """Side-by-side latency rows (see export.speed). Returns the ``speed.json`` document."""
    import onnxruntime as ort

    from export.speed import compare_onnx, interleaved, onnx_runner, speed_row

    x = make_inputs(input_kind, sample_shape, batch, seed=2)
    student_info = {"macs": macs, "params": params, "arch": model.slimgan_config["arch"]}
    with tempfile.TemporaryDirectory(prefix="slimgan-speed-") as tmp:
        student_graph, teacher_graph, graph_note = _speed_graphs(out, teacher_model, x, input_kind, opset, Path(tmp), optimize, student_export)
        rows = compare_onnx(student_graph, teacher_graph, x, threads, student_info, teacher_info, rounds=rounds, min_time_s=block_s)
        doc: dict[str, Any] = {
            "checked": True,
            "backend": "onnxruntime-cpu",
            "threads": threads,
            "batch": batch,
            "input_shape": list(x.shape),
            "timed_graph": graph_note,
            "session_options": "ORT_ENABLE_ALL, sequential, mem pattern + CPU arena, intra_op_num_threads=threads, inter_op=1, "
                               "session.intra_op.allow_spinning=0",
            "rounds": rounds,
            "versions": {"onnxruntime": ort.__version__, "python": platform.python_version(), "machine": platform.machine()},
            "rows": rows,
            "speedup": None,
            "mac_ratio": None,
        }
        if teacher_info is not None:
            s_med = rows[0]["median_ms"]
            t_med = rows[1]["median_ms"]
            doc["speedup"] = t_med / s_med
            doc["by_threads"] = {str(threads): _speedup_entry(rows)}
            cores = os.cpu_count() or 1
            if cores != threads:
                # The other common setting, for information: all cores of this machine.
                more = compare_onnx(student_graph, teacher_graph, x, cores, student_info, teacher_info,
                                    rounds=max(2, rounds // 2), min_time_s=block_s)
                doc["by_threads"][str(cores)] = _speedup_entry(more)
            doc["mean_speedup"] = rows[1]["mean_ms"] / rows[0]["mean_ms"]
            doc["mac_ratio"] = teacher_info["macs"] / max(macs, 1)
            doc["param_ratio"] = teacher_info["params"] / max(params, 1)
        extra: dict[str, Any] = {}
        if "int8" in files:
            stats = interleaved(
                {"fp32": onnx_runner(out / files["fp32"], x, threads), "int8": onnx_runner(out / files["int8"], x, threads)},
                rounds=max(2, rounds // 2),
                min_time_s=block_s,
            )
            rows.append(speed_row("student onnxruntime-cpu fp32 (model.onnx)", stats["fp32"], batch, macs, params, backend="onnxruntime-cpu", threads=threads, graph=files["fp32"]))
            rows.append(speed_row("student onnxruntime-cpu int8 (model.int8.onnx)", stats["int8"], batch, macs, params, backend="onnxruntime-cpu", threads=threads, graph=files["int8"]))
            extra["int8_speedup_vs_fp32"] = stats["fp32"]["median_ms"] / stats["int8"]["median_ms"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            rows += compare_onnx(
                out / files["fp32"],
                teacher_graph if teacher_graph is not None else None,
                x,
                threads,
                student_info,
                teacher_info,
                rounds=rounds,
                min_time_s=block_s,
                providers=["CUDAExecutionProvider"],
                backend="onnxruntime-cuda",
            )
        if engine is not None:
            from export.runtime import time_session
            from export.tensorrt_engine import EngineRunner

            runner = EngineRunner(engine.path)
            stats = time_session(lambda: runner(x))
            rows.append(speed_row(f"student tensorrt ({engine.mode})", stats, batch, macs, params, backend="tensorrt", note="includes host<->device copies"))
        doc.update(extra)
    if teacher_info is None:
        notes.append("no --teacher: speed.json has no speedup")
    return doc


def _speedup_entry(rows: list[dict[str, Any]]) -> dict[str, float]:
    student, teacher = rows[0]["median_ms"], rows[1]["median_ms"]
    return {"student_median_ms": student, "teacher_median_ms": teacher, "speedup": teacher / student}


def _speed_graphs(
    out: Path, teacher_model, x: np.ndarray, input_kind: str, opset: int, tmp: Path, optimize: bool, student_export
) -> tuple[Path, Path | None, dict[str, Any]]:
    """The graphs timed side by side: the shipped ``model.onnx`` and the teacher through the same pipeline."""
    student_graph = out / "model.onnx"
    teacher_graph = None
    doc: dict[str, Any] = {
        "student": "model.onnx (the shipped graph: dynamic axes, onnxsim"
        + (", slimgan graph optimisation)" if optimize else ", no graph optimisation)"),
        "student_passes": list(student_export.optimized) if student_export is not None else [],
    }
    if teacher_model is not None:
        teacher_graph = tmp / "teacher.onnx"
        t_export = export_onnx(teacher_model, teacher_graph, torch.from_numpy(x[:1].copy()), input_kind=input_kind, opset=opset, optimize=optimize)
        doc["teacher"] = "teacher exported by the same pipeline (same export, simplification and optimisation options)"
        doc["teacher_passes"] = list(t_export.optimized)
    return student_graph, teacher_graph, doc
