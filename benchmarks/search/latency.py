"""Latency of search candidates measured through the export path, on the runtime that ships.

Each candidate is exported with :func:`export.onnx_export.export_onnx` (the checks and graph rewrites
``slimgan export`` applies, including the runtime's own optimisation target), compiled on ``--runtime``
and timed at ``--threads`` in short blocks alternating with the reference (``export.speed.interleaved``),
so load from other processes hits both alike. The search ranks candidates by their latency relative to
the reference in the same window.

Results are cached in a JSON file keyed by architecture, runtime, threads, resolution and the host's
CPU and runtime version. A device latency table (``--latency-table``: ``{"reference_ms": X, "entries":
[{"config": {searchable_resnet kwargs}, "latency_ms": Y}]}``, e.g. filled from the adb / Jetson scripts'
``latency.json`` of exported candidates) stands in for the host where it has an entry.
"""

from __future__ import annotations

import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimgan.errors import ConfigError

ONNX_TARGETS = ("onnxruntime", "openvino")


def host_id(runtime: Any) -> str:
    info = runtime.describe() if hasattr(runtime, "describe") else {}
    return f"{platform.machine()}|{_cpu_model()}|{runtime.name} {info.get('version', '?')}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def load_table(path: str | Path | None) -> dict[str, Any] | None:
    """A device latency table, keys canonicalised; None without a path."""
    if not path:
        return None
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        entries = {json.dumps(e["config"], sort_keys=True, separators=(",", ":")): float(e["latency_ms"])
                   for e in data["entries"]}
        return {"reference_ms": float(data["reference_ms"]), "entries": entries, "path": str(path)}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"latency table {path}: expected {{\"reference_ms\": X, \"entries\": [{{\"config\": {{...}}, "
                          f"\"latency_ms\": Y}}]}} ({type(exc).__name__}: {exc})") from exc


class LatencyMeter:
    """Exports, compiles and times candidates beside the reference; caches by architecture."""

    def __init__(self, runtime_name: str, threads: int, res: int, reference: nn.Module, workdir: Path,
                 cache_path: Path, table: dict[str, Any] | None = None, rounds: int = 3, min_time_s: float = 0.25,
                 input_nc: int = 3):
        from export.runtimes import get_runtime

        self.runtime = get_runtime(runtime_name)
        self.runtime.require()
        self.threads, self.res, self.rounds, self.min_time_s = threads, res, rounds, min_time_s
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cache_path = Path(cache_path)
        self.host = host_id(self.runtime)
        self.cache: dict[str, Any] = self._read_cache()
        self.table = table
        self.x = torch.rand(1, input_nc, res, res, generator=torch.Generator().manual_seed(0)) * 2 - 1
        self.ref_session = self._session(reference, "reference")
        self.ref_runs: list[float] = []
        self.measured = 0
        self.failures: list[dict[str, Any]] = []  # candidates whose export or compilation failed, with why

    def _read_cache(self) -> dict[str, Any]:
        if self.cache_path.is_file():
            try:
                data = json.loads(self.cache_path.read_text())
                if isinstance(data, dict):
                    return data
            except json.JSONDecodeError:
                pass  # a damaged cache is rebuilt, not trusted
        return {}

    def _write_cache(self) -> None:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.cache, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.cache_path)

    def _cache_key(self, key: str) -> str:
        return f"{self.host}|threads={self.threads}|res={self.res}|{key}"

    def _artifact(self, model: nn.Module, name: str) -> Path:
        from export.onnx_export import export_onnx

        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        onnx_path = folder / "model.onnx"
        target = self.runtime.name if self.runtime.name in ONNX_TARGETS else None
        variant = folder / f"model.{target}.onnx"
        result = export_onnx(model.eval(), onnx_path, self.x, targets={target: variant} if target else None)
        if self.runtime.name in ONNX_TARGETS:
            return result.variants.get(target, onnx_path)
        from export.runtimes.base import ConvertContext

        ctx = ConvertContext(bundle_dir=folder, onnx_path=onnx_path, module=model.eval(),
                             example_shape=tuple(self.x.shape), threads=self.threads)
        converted = self.runtime.convert(ctx)
        files = list(getattr(converted, "files", converted))
        return folder / files[0]

    def _session(self, model: nn.Module, name: str) -> Any:
        return self.runtime.load(self._artifact(model, name), threads=self.threads)

    def measure(self, model: nn.Module, key: str) -> dict[str, Any]:
        """``latency_ms`` (median), the reference's median in the same window, and their ratio."""
        if self.table is not None and key in self.table["entries"]:
            ms, ref = self.table["entries"][key], self.table["reference_ms"]
            return {"latency_ms": ms, "reference_ms_window": ref, "relative_latency": ms / ref, "latency_source": "table"}
        ck = self._cache_key(key)
        if ck in self.cache:
            return {**self.cache[ck], "latency_source": "cache"}
        from export.speed import interleaved

        session = self._session(model, "candidate")
        x = self.x.numpy().astype(np.float32)
        stats = interleaved({"candidate": lambda: session.run(x), "reference": lambda: self.ref_session.run(x)},
                            rounds=self.rounds, min_time_s=self.min_time_s)
        if hasattr(session, "close"):
            session.close()
        cand, ref = stats["candidate"]["median_ms"], stats["reference"]["median_ms"]
        self.ref_runs.append(ref)
        row = {"latency_ms": round(cand, 3), "reference_ms_window": round(ref, 3), "relative_latency": round(cand / ref, 4)}
        self.cache[ck] = row
        self._write_cache()
        self.measured += 1
        return {**row, "latency_source": "measured"}

    def reference_ms(self) -> float:
        """The reference's median over every window measured in this run (the table's value with a table)."""
        if self.ref_runs:
            return float(np.median(self.ref_runs))
        if self.table is not None:
            return self.table["reference_ms"]
        from export.speed import interleaved

        x = self.x.numpy().astype(np.float32)
        ms = interleaved({"reference": lambda: self.ref_session.run(x)}, rounds=self.rounds, min_time_s=self.min_time_s)
        self.ref_runs.append(ms["reference"]["median_ms"])
        return self.ref_runs[-1]


def plain_side_by_side(runtime_name: str, threads: int, res: int, models: dict[str, nn.Module], workdir: Path,
                       rounds: int = 5, min_time_s: float = 0.5) -> dict[str, Any]:
    """The acceptance check as a user would run it: a plain ``torch.onnx.export`` of each model (no slimgan
    rewrites), compiled with the runtime's defaults at ``threads``, timed in alternating blocks.

    The last model is the reference. Returns each model's timing statistics with ``speedup_vs_reference``,
    and ``speedup``: the first model's."""
    import warnings

    from export.runtimes import get_runtime
    from export.speed import interleaved

    runtime = get_runtime(runtime_name)
    if runtime.name not in ONNX_TARGETS:
        raise ConfigError(f"the plain-ONNX check loads ONNX directly; {runtime.name} needs its own conversion")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, 3, res, res, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sessions = {}
    for i, (name, model) in enumerate(models.items()):
        path = workdir / f"model{i}.plain.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), x, str(path), input_names=["input"], output_names=["output"],
                              opset_version=17, dynamo=False)
        sessions[name] = runtime.load(path, threads=threads)
    xn = x.numpy()
    stats = interleaved({n: (lambda s=s: s.run(xn)) for n, s in sessions.items()}, rounds=rounds, min_time_s=min_time_s)
    names = list(models)
    ref = stats[names[-1]]["median_ms"]
    out: dict[str, Any] = {n: {**{k: round(v, 3) if isinstance(v, float) else v for k, v in stats[n].items()},
                               "speedup_vs_reference": round(ref / stats[n]["median_ms"], 3)} for n in names}
    out["speedup"] = out[names[0]]["speedup_vs_reference"]
    out["method"] = (f"plain torch.onnx.export (opset 17, static 1x3x{res}x{res}), {runtime.name} defaults at "
                     f"{threads} thread(s), {rounds} alternating blocks; speedup = {names[-1]} median / model median")
    return out
