"""``speed.json``: teacher and student on every runtime of the bundle, timed side by side (export.speed).

Teacher and student run on the same runtime with the same threads and settings; all graphs of all
runtimes are timed interleaved in one set, so load from other processes hits them alike. Every graph
is loaded through its runtime's :meth:`~export.runtimes.base.Runtime.load_from_bundle`, as serve and
``bench latency`` load it. ``by_runtime`` has each runtime's medians and speedup; the top-level
``runtime`` / ``speedup`` are those of the runtime on which the student is fastest (the bundle's
preferred runtime). The teacher's graphs are exported once (or taken from its own bundle, made with
the same options) and reused by every runtime.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from export.artifacts import FILES, SPEED_NAME, ExportState, make_inputs
from export.runtimes import BundleFiles, ConvertContext, get_runtime


def _target(runtime: str, label: str, role: str, path: Path, file_role: str = "model", recorded: dict | None = None,
            **opts: Any) -> dict[str, Any]:
    return {"runtime": runtime, "label": label, "role": role, "path": path, "file_role": file_role,
            "recorded": recorded or {}, "opts": opts}


def teacher_graphs(state: ExportState, cfg: Any, x: np.ndarray, tmp: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """The teacher's graphs for every runtime, made once: ``{"onnx": ..., "openvino": IR or None}`` and the
    ``timed_graph`` description. From ``cfg.teacher_bundle`` when given, else exported into ``tmp``."""
    role = state.role
    doc: dict[str, Any] = {
        role: "model.onnx (the shipped graph: dynamic axes, onnxsim"
        + (", slimgan graph optimisation)" if cfg.optimize else ", no graph optimisation)"),
        f"{role}_passes": list(state.exported.optimized) if state.exported is not None else [],
    }
    if state.teacher_model is None:
        return {}, doc
    doc["teacher"] = "teacher exported by the same pipeline (same export, simplification and optimisation options)"
    if cfg.teacher_bundle is not None:
        xml = cfg.teacher_bundle / FILES["openvino"]
        doc["teacher_passes"] = _bundle_passes(cfg.teacher_bundle)
        return {"onnx": cfg.teacher_bundle / FILES["fp32"], "openvino": xml if xml.is_file() else None}, doc
    import torch

    from export.onnx_export import export_onnx

    graph = tmp / "teacher.onnx"
    variant = tmp / "teacher.openvino.onnx"
    t_export = export_onnx(state.teacher_model, graph, torch.from_numpy(x[:1].copy()), input_kind=state.info.input_kind,
                           opset=cfg.opset, optimize=cfg.optimize, targets={"openvino": variant})
    doc["teacher_passes"] = list(t_export.optimized)
    ir = None
    if "openvino" in state.runtimes:
        t_dir = tmp / "teacher-openvino"
        t_dir.mkdir()
        get_runtime("openvino").convert(ConvertContext(t_dir, graph, options={"source_onnx": variant if variant.is_file() else None}))
        ir = t_dir / FILES["openvino"]
    return {"onnx": graph, "openvino": ir}, doc


def _bundle_passes(bundle: Path) -> list[str]:
    """The graph rewrites a bundle's ``model.onnx`` got (from its speed.json), or [] when it does not say."""
    import json

    try:
        timed = json.loads((bundle / SPEED_NAME).read_text()).get("timed_graph") or {}
    except (OSError, ValueError):
        return []
    return next((list(v) for k, v in timed.items() if k.endswith("_passes") and isinstance(v, list)), [])


def speed_targets(state: ExportState, graphs: dict[str, Path]) -> list[dict[str, Any]]:
    """Every graph speed.json times, once each."""
    import onnxruntime as ort

    out, files, runtimes = state.out, state.files, state.runtimes
    ort_cpu = "onnxruntime-cpu"
    targets = [_target("onnxruntime", ort_cpu, "student", out / files["fp32"], "fp32")]
    if graphs.get("onnx") is not None:
        targets.append(_target("onnxruntime", ort_cpu, "teacher", graphs["onnx"], "fp32"))
    if "int8" in files:
        targets.append(_target("onnxruntime", ort_cpu, "student-int8", out / files["int8"], "int8"))
    if "openvino" in runtimes:
        # The teacher through the same converter, compiled with the same properties.
        recorded = {"openvino": {"precision": runtimes["openvino"]["precision"]}}
        targets.append(_target("openvino", "openvino-cpu", "student", out / files["openvino"], "openvino", recorded))
        if graphs.get("openvino") is not None:
            targets.append(_target("openvino", "openvino-cpu", "teacher", graphs["openvino"], "openvino", recorded))
        if "openvino-int8" in runtimes:
            targets.append(_target("openvino", "openvino-cpu", "student-int8", out / files["openvino-int8"], "openvino-int8",
                                   {"openvino-int8": {"precision": runtimes["openvino-int8"]["precision"]}}))
    if "CUDAExecutionProvider" in ort.get_available_providers():
        for t in [t for t in targets if t["runtime"] == "onnxruntime" and t["role"] in ("student", "teacher")]:
            targets.append({**t, "label": "onnxruntime-cuda", "opts": {"device": "cuda"}})
    if "plan" in files:
        targets.append({**_target("tensorrt", "tensorrt", "student", out / files["plan"], "plan", device="cuda"),
                        "note": "includes host<->device copies"})
    return targets


def _load(t: dict[str, Any], threads: int) -> Any:
    role = t.get("file_role", "model")
    view = BundleFiles({role: t["path"].name}, t.get("recorded", {}))
    return get_runtime(t["runtime"]).load_from_bundle(t["path"].parent, view, role, threads=threads, **t["opts"])


def time_targets(targets: list[dict[str, Any]], x: np.ndarray, threads: int, rounds: int, block_s: float) -> dict[int, dict[str, Any]]:
    """Load every target through its runtime and time them interleaved (export.speed)."""
    from export.speed import interleaved

    sessions = {}
    try:
        for i, t in enumerate(targets):
            sessions[i] = _load(t, threads)
        fns = {i: (lambda s=s: s.run(x)) for i, s in sessions.items()}
        stats = interleaved(fns, rounds=rounds, min_time_s=block_s)
        for i, s in sessions.items():
            stats[i]["describe"] = s.describe()
        return stats
    finally:
        for s in sessions.values():
            s.close()


def _row(t: dict[str, Any], st: dict[str, Any], described: dict[str, Any], info: dict[str, Any], batch: int, threads: int) -> dict[str, Any]:
    from export.speed import speed_row

    role, label = t["role"], t["label"]
    precision = "int8" if role.endswith("int8") else described.get("precision", "fp32")
    return speed_row(
        f"{role.replace('-int8', '')} {label}" + (f" int8 ({t['path'].name})" if role.endswith("int8") else ""),
        st, batch, info.get("macs"), info.get("params"),
        **{k: v for k, v in info.items() if k not in ("macs", "params")},
        backend=label, runtime=t["runtime"], threads=described.get("threads", threads), role=role.replace("-int8", ""),
        graph=t["path"].name if role != "teacher" else "teacher (same pipeline)", precision=precision,
        **({"note": t["note"]} if "note" in t else {}),
    )


def _book_entry(by_runtime: dict[str, Any], t: dict[str, Any], st: dict[str, Any], described: dict[str, Any],
                threads: int, more: dict[str, Any] | None, cores: int) -> None:
    """Add one timed target to its runtime's ``by_runtime`` entry."""
    role, label = t["role"], t["label"]
    precision = "int8" if role.endswith("int8") else described.get("precision", "fp32")
    key = t["runtime"] if label.endswith("-cpu") else label
    entry = by_runtime.setdefault(key, {"backend": label, "threads": threads, "version": described.get("version"),
                                        "device": described.get("device")})
    if role == "student-int8":
        entry["int8"] = {"graph": t["path"].name, "median_ms": st["median_ms"], "precision": precision}
        return
    entry[f"{role}_median_ms"] = st["median_ms"]
    entry[f"{role}_mean_ms"] = st["mean_ms"]
    entry[f"{role}_graph"] = t["path"].name if role == "student" else "teacher (same pipeline)"
    if role == "student":
        entry["precision"] = precision
        entry["settings"] = {k: v for k, v in described.items() if k not in ("version", "device", "file")}
    if more is not None:
        entry.setdefault("by_threads", {}).setdefault(str(cores), {})[f"{role}_median_ms"] = more["median_ms"]


def finish_entry(entry: dict[str, Any], threads: int) -> None:
    """Speedups of one ``by_runtime`` entry (teacher / student medians; int8 against the fp32 student)."""
    student, teacher = entry.get("student_median_ms"), entry.get("teacher_median_ms")
    entry["speedup"] = teacher / student if student and teacher else None
    entry["mean_speedup"] = entry["teacher_mean_ms"] / entry["student_mean_ms"] if teacher else None
    if "int8" in entry and student:
        entry["int8"]["speedup_vs_fp32"] = student / entry["int8"]["median_ms"]
    if student and teacher:
        entry.setdefault("by_threads", {})
        entry["by_threads"] = {str(threads): _speedup_entry(student, teacher), **{
            n: _speedup_entry(e["student_median_ms"], e["teacher_median_ms"]) for n, e in entry["by_threads"].items()}}


def _speedup_entry(student: float, teacher: float) -> dict[str, float]:
    return {"student_median_ms": student, "teacher_median_ms": teacher, "speedup": teacher / student}


def rename_slot(value: Any, slot: str, role: str) -> Any:
    """``value`` with the exported model's slot name (keys, row names, role fields) replaced by its role."""
    if isinstance(value, dict):
        return {k.replace(slot, role): rename_slot(v, slot, role) for k, v in value.items()}
    if isinstance(value, list):
        return [rename_slot(v, slot, role) for v in value]
    if isinstance(value, str):
        return value.replace(slot, role)
    return value


def _document(state: ExportState, by_runtime: dict[str, Any], rows: list, x: np.ndarray, cfg: Any, graph_note: dict) -> dict[str, Any]:
    from export.targets import label_phone_entries, serving_runtimes

    threads, teacher_info = cfg.threads, state.teacher_info
    for entry in by_runtime.values():
        finish_entry(entry, threads)
    label_phone_entries(by_runtime, threads)
    fastest = min(serving_runtimes(by_runtime), key=lambda k: by_runtime[k]["student_median_ms"])
    best = by_runtime[fastest]
    doc: dict[str, Any] = {
        "checked": True, "runtime": fastest, "backend": best["backend"], "threads": threads, "batch": int(x.shape[0]),
        "input_shape": list(x.shape), "timed_graph": graph_note, "rounds": cfg.speed_rounds,
        "versions": {"python": platform.python_version(), "machine": platform.machine(),
                     **{k: e["version"] for k, e in by_runtime.items()}},
        "rows": rows, "by_runtime": by_runtime, "speedup": best.get("speedup"), "mac_ratio": None,
    }
    if teacher_info is not None:
        doc["by_threads"] = best.get("by_threads", {})
        doc["mean_speedup"] = best.get("mean_speedup")
        doc["mac_ratio"] = teacher_info["macs"] / max(state.macs, 1)
        doc["param_ratio"] = teacher_info["params"] / max(state.params, 1)
    int8 = {k: e["int8"] for k, e in by_runtime.items() if "int8" in e}
    if int8:
        faster = min(int8, key=lambda k: int8[k]["median_ms"])
        doc["int8"] = {**int8, "faster": faster}
        doc["int8_speedup_vs_fp32"] = int8[faster]["speedup_vs_fp32"]
    return doc


def measure_speed(state: ExportState, cfg: Any) -> dict[str, Any]:
    """The ``speed.json`` document (see module docstring). ``state.role`` names the exported model in it
    (``teacher`` or ``model`` when a checkpoint that is not a student is exported on its own);
    internally the exported model is the "student" slot."""
    from export.targets import phone_speed_targets

    batch, threads = cfg.batch[1], cfg.threads
    x = make_inputs(state.info.input_kind, state.sample_shape, batch, seed=2)
    student_info = {"macs": state.macs, "params": state.params, "arch": state.model.slimgan_config["arch"]}
    infos = {"student": student_info, "teacher": state.teacher_info, "student-int8": student_info}
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="slimgan-speed-") as tmp:
        graphs, graph_note = teacher_graphs(state, cfg, x, Path(tmp))
        targets = speed_targets(state, graphs)
        targets += phone_speed_targets(state.out, state.files, state.runtimes, state.teacher_model, graphs.get("onnx"),
                                       state.sample_shape, Path(tmp))
        stats = time_targets(targets, x, threads, cfg.speed_rounds, cfg.speed_block_s)
        more: dict[int, dict[str, Any]] = {}
        pairs = [i for i, t in enumerate(targets) if t["role"] in ("student", "teacher") and t["label"].endswith("-cpu")]
        if state.teacher_info is not None and cores != threads:
            # The other common setting, for information: all cores of this machine.
            sub = [targets[i] for i in pairs]
            more = dict(zip(pairs, time_targets(sub, x, cores, max(2, cfg.speed_rounds // 2), cfg.speed_block_s).values(), strict=True))
    rows, by_runtime = [], {}
    for i, t in enumerate(targets):
        st = dict(stats[i])
        described = st.pop("describe")
        rows.append(_row(t, st, described, infos[t["role"]] or {}, batch, threads))
        _book_entry(by_runtime, t, st, described, threads, more.get(i), cores)
    doc = _document(state, by_runtime, rows, x, cfg, graph_note)
    if state.teacher_info is None:
        state.notes.append("no --teacher: speed.json has no speedup")
        # Without a teacher the document has only the exported model's slot: name it by the model's role.
        return doc if state.role == "student" else rename_slot(doc, "student", state.role)
    return doc
