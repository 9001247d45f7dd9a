"""What the on-device scripts (Jetson, Android, Core ML on a Mac) share: their ``latency.json`` files.

Each script measures with the device's own tools and builds a report in the schema of
``slimgan bench latency`` (``benchmarks.latency.SCHEMA``); :func:`write_device_report` writes it as
``latency.json``, ``latency.md`` (the same table, with the table's environment fields that a device does
not have filled in) and ``latency.png`` where matplotlib is installed, and prints the table.
Torch-free, like the scripts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("slimgan.device")


def bundle_models(bundles: list[Any], teacher: str | None) -> dict[str, dict[str, Any]]:
    """``latency.json`` ``models`` entries from the bundles' manifests (MACs and params as exported)."""
    return {b.name: {"bundle": str(b.path), "name": b.manifest.name, "arch": b.manifest.arch, "task": b.manifest.task,
                     "macs": b.manifest.macs, "params": b.manifest.params, "is_teacher": b.name == teacher} for b in bundles}


def write_device_report(out: str | Path, report: dict[str, Any], environment: dict[str, Any] | None = None,
                        settings: dict[str, Any] | None = None) -> Path:
    """Write ``report`` into ``out``; ``environment`` / ``settings`` override fields of the markdown table only."""
    from benchmarks.latency import format_latency_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps(report, indent=2) + "\n")
    table = dict(report, environment={**report["environment"], **(environment or {})},
                 settings={**report["settings"], **(settings or {})})
    (out / "latency.md").write_text(format_latency_table(table))
    try:
        from benchmarks.plots import plot_latency

        plot_latency(report, out / "latency.png")
    except ImportError:
        log.warning("matplotlib is not installed; latency.png not drawn")
    print((out / "latency.md").read_text(), end="")
    return out / "latency.json"
