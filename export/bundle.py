"""``export_bundle``: checkpoint -> bundle directory with parity and speed checks (``slimgan export``).

The export is a short pipeline over one :class:`~export.artifacts.ExportState`: requirements first
(``--trt`` without TensorRT or a GPU fails before anything is exported), then the fp32 ONNX, each
runtime's artifacts (:func:`_server_units`: ONNX Runtime fp16 / int8, OpenVINO and its INT8 IR,
TensorRT; then the phone runtimes of ``--targets``), each converted and parity-checked by its own
:class:`~export.runtimes.base.Runtime` against the PyTorch model on inputs of the generator's real
distribution, the teacher, teacher vs student latency side by side (:mod:`export.speed_report`), and
finally ``parity.json``, ``speed.json`` and ``manifest.json`` (:mod:`export.artifacts`,
:mod:`export.manifest_build`) and a Triton repository.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from export.artifacts import FILES, PARITY_NAME, SPEED_NAME, ExportState, make_inputs, write_reports
from export.config import OPENVINO_PRECISIONS, SPEED_THREADS, ExportConfig, parse_batch
from export.convention import input_range, model_convention, output_range, parity_inputs
from export.manifest import Manifest
from export.parity import compare, failed_rows
from export.runtimes import ConvertContext, get_runtime
from slimgan.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["FILES", "OPENVINO_PRECISIONS", "PARITY_NAME", "SPEED_NAME", "SPEED_THREADS", "ExportConfig", "ExportResult",
           "export_bundle", "make_inputs", "parse_batch"]


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


@dataclass(frozen=True)
class Unit:
    """One artifact a runtime converts: ``key`` names its ``manifest.runtimes`` entry (None: none)."""

    runtime: str
    key: str | None
    options: dict[str, Any]
    batch: int = 1


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


@torch.no_grad()
def _torch_run(model: torch.nn.Module, x: Any) -> Any:
    return model(torch.from_numpy(x)).numpy()


def _prepare(checkpoint: str | Path, out: Path, cfg: ExportConfig) -> ExportState:
    """Load the model and fix what every step uses: its role, input shape, convention and parity inputs."""
    from distill.checkpoint import checkpoint_role, load_checkpoint

    model = load_checkpoint(checkpoint).eval()
    # Rows, files and reports name the model by what its checkpoint says it is, not by the command.
    role = checkpoint_role(model.slimgan_checkpoint["config"])
    if role == "model" and cfg.teacher is not None:  # no recorded role, but it is exported against a teacher
        role = "student"
    info, kwargs, sample_shape = _input_spec(model, cfg.height, cfg.width)
    convention = model_convention(model, info)
    if cfg.int8 and cfg.calib is None and info.input_kind == "image":
        raise ConfigError("--int8 needs --calib DIR, a folder of images to calibrate on")
    state = ExportState(out, model, info, kwargs, sample_shape, convention, role)
    lo, hi = output_range(convention)
    state.out_span = hi - lo
    in_range = input_range(convention, info)
    state.x, state.inputs_doc = parity_inputs(info.input_kind, sample_shape, min(2, cfg.batch[2]), cfg.calib, in_range, make_inputs)
    state.ref = _torch_run(model, state.x)
    if cfg.int8:
        from export.int8 import load_calibration_images

        if info.input_kind == "image":
            state.samples = load_calibration_images(cfg.calib, sample_shape[0], sample_shape[1], sample_shape[2], value_range=in_range)
        else:
            state.samples = make_inputs("latent", sample_shape, 32, seed=1)
    return state


def _step_onnx(state: ExportState, cfg: ExportConfig) -> None:
    """The fp32 ``model.onnx`` (and the graph optimised for OpenVINO, converted later and then removed)."""
    from export.onnx_export import export_onnx

    example = torch.from_numpy(state.x[:1].copy())
    ov_source = state.out / ".model.openvino.onnx"
    state.exported = export_onnx(state.model, state.onnx_path, example, input_kind=state.info.input_kind, opset=cfg.opset,
                                 dynamic_batch=True, dynamic_spatial=True, optimize=cfg.optimize,
                                 targets={"openvino": ov_source} if cfg.openvino else None)
    state.notes += state.exported.notes
    state.files["fp32"] = FILES["fp32"]
    if cfg.check:
        state.rows.append(compare(f"{state.role}: torch vs onnx fp32", _ort_fp32(state, cfg.threads), state.ref, "fp32",
                                  data_range=state.out_span))
        if hasattr(state.exported, "parity_rows"):  # a family exporter's own rows (StyleGAN2: truncation)
            state.rows += state.exported.parity_rows(state.model, state.x, cfg.threads)


def _ort_fp32(state: ExportState, threads: int) -> Any:
    session = get_runtime("onnxruntime").load(state.onnx_path, threads=threads)
    try:
        return session.run(state.x)
    finally:
        session.close()


def _server_units(state: ExportState, cfg: ExportConfig) -> Iterator[Unit]:
    """The server / GPU artifacts asked for, in order; later units read what earlier ones produced."""
    if cfg.fp16:
        yield Unit("onnxruntime", None, {"precision": "fp16"})
    if cfg.int8:
        yield Unit("onnxruntime", None, {"precision": "int8", "input_name": state.exported.input_name})
    if cfg.openvino:
        yield Unit("openvino", "openvino", {"precision": cfg.openvino_precision,
                                            "source_onnx": state.exported.variants.get("openvino")})
        if cfg.int8 and "openvino" in state.runtimes:
            yield Unit("openvino", "openvino-int8", {"int8": True, "precision": state.runtimes["openvino"]["precision"]})
    if cfg.trt:
        bmin, bopt, bmax = cfg.batch
        yield Unit("tensorrt", "tensorrt", {"fp16": cfg.fp16, "batch": cfg.batch, "input_name": state.exported.input_name,
                                            "fp16_onnx": state.out / FILES["fp16"] if cfg.fp16 else None}, batch=bopt)


def _convert(state: ExportState, cfg: ExportConfig, unit: Unit) -> None:
    """Convert one unit with its runtime, check it (the runtime's own rows) and book the result."""
    rt = get_runtime(unit.runtime)
    problem = rt.convert_problem(unit.options)
    if problem:
        state.notes.append(problem)
        return
    check = cfg.check
    ctx = ConvertContext(state.out, state.onnx_path, state.model, (unit.batch, *state.sample_shape), state.samples, dict(unit.options),
                         reference=state.ref if check else None, inputs=state.x if check else None, threads=cfg.threads,
                         label=state.role, data_range=state.out_span)
    result = rt.convert(ctx)
    rows = list(result.rows)
    if check and not rows:
        rows = rt.parity_rows(state.out, result, state.ref, state.x, label=state.role, threads=cfg.threads, data_range=state.out_span)
    state.add(rt, result, unit.key, rows)


def _step_runtimes(state: ExportState, cfg: ExportConfig) -> None:
    for unit in _server_units(state, cfg):
        _convert(state, cfg, unit)
    (state.out / ".model.openvino.onnx").unlink(missing_ok=True)
    # Phone runtimes (LiteRT, Core ML, ncnn, ExecuTorch, ONNX Runtime Mobile): export.targets
    from export.targets import convert_phone_targets, phone_parity_rows

    written = convert_phone_targets(list(cfg.targets), state.out, state.onnx_path, state.model, state.sample_shape, state.samples,
                                    state.files, state.runtimes)
    if cfg.check and written:
        state.rows += phone_parity_rows(written, state.out, state.model, state.x, state.ref, cfg.threads)


def _step_teacher(state: ExportState, cfg: ExportConfig) -> None:
    """MACs and parameters of the model and, with ``--teacher``, of the teacher (and their distance)."""
    from distill.checkpoint import load_checkpoint
    from distill.profile import count_macs, count_params

    example = torch.from_numpy(state.x[:1].copy())
    state.macs, state.params = count_macs(state.model, example=example), count_params(state.model)
    if cfg.teacher is None:
        return
    teacher = load_checkpoint(cfg.teacher).eval()
    t_info, _, t_shape = _input_spec(teacher, cfg.height, cfg.width)
    if t_shape != state.sample_shape or t_info.input_kind != state.info.input_kind:
        raise ConfigError(f"teacher {cfg.teacher} takes inputs of shape {t_shape}, the student {state.sample_shape}: they are not a pair")
    state.teacher_model = teacher
    state.teacher_info = {"macs": count_macs(teacher, example=example), "params": count_params(teacher),
                          "arch": teacher.slimgan_config["arch"], "sha256": teacher.slimgan_checkpoint["sha256"]}
    if cfg.check:
        state.rows.append(compare("teacher vs student (torch)", state.ref, _torch_run(teacher, state.x), "info", data_range=state.out_span))


def _step_speed(state: ExportState, cfg: ExportConfig) -> None:
    if cfg.check:
        from export.speed_report import measure_speed

        state.speed = measure_speed(state, cfg)


STEPS = (_step_onnx, _step_runtimes, _step_teacher, _step_speed)


def export_bundle(checkpoint: str | Path, out: str | Path, config: ExportConfig | None = None, **options: Any) -> ExportResult:
    """Export ``checkpoint`` into the bundle directory ``out`` (see module docstring).

    ``config``: an :class:`ExportConfig`; or the same options as keywords (``teacher``, ``res``,
    ``fp16``, ``targets``... see :meth:`ExportConfig.create`). Raises :class:`MissingDependencyError`
    before any work when an artifact's tools are missing, :class:`ConfigError` for bad shapes or
    options, and :class:`~export.staging.ExportIOError` (one line: path and errno) when the bundle
    cannot be written; the bundle appears whole or not at all (:mod:`export.staging`). Parity failures
    do not raise: the bundle is written and ``ExportResult.ok`` is False, so the caller can show the table.
    """
    from export.manifest_build import build_manifest

    if config is not None and options:
        raise TypeError("export_bundle takes an ExportConfig or keyword options, not both")
    from export.staging import staged_bundle

    cfg = config if config is not None else ExportConfig.create(**options)
    cfg.require()
    started = time.perf_counter()
    out = Path(out)
    with staged_bundle(out) as work:  # written aside, renamed into place when whole (export.staging)
        state = _prepare(checkpoint, work, cfg)
        for step in STEPS:
            step(state, cfg)
        manifest = build_manifest(state, cfg.opset, cfg.batch[2])
        manifest = write_reports(state, manifest, cfg.check)
    state.out = out
    if cfg.triton is not None:
        from export.triton import write_triton_repository

        write_triton_repository(out, cfg.triton, manifest)
    log.info("bundle %s written in %.1f s", out, time.perf_counter() - started)
    return ExportResult(bundle=out, manifest=manifest, parity=state.rows, speed=state.speed, notes=state.notes)
