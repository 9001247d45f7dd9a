"""The Core ML report script: its refusal off macOS, and the compute-plan summary it writes.

Core ML runs only on macOS, so the summary is fed a stand-in with the shape of coremltools'
``MLComputePlan`` (operations, per-operation device usage and estimated cost).
"""

from __future__ import annotations

import platform
from types import SimpleNamespace

import pytest

from benchmarks.ios import coreml_report


@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS the script runs")
def test_refuses_off_macos_in_one_line(tmp_path, capsys) -> None:
    assert coreml_report.main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "need macOS" in err and "\n" not in err and not (tmp_path / "o").exists()


class MLNeuralEngineComputeDevice:  # named like coremltools' device classes
    pass


class MLCPUComputeDevice:
    pass


def test_device_shares_sums_operations_and_cost_per_preferred_device() -> None:
    ops = [SimpleNamespace(name=i) for i in range(4)]
    devices = [MLNeuralEngineComputeDevice(), MLNeuralEngineComputeDevice(), MLCPUComputeDevice(), None]
    costs = [0.5, 0.3, 0.2, None]
    plan = SimpleNamespace(
        model_structure=SimpleNamespace(program=SimpleNamespace(functions={"main": SimpleNamespace(block=SimpleNamespace(operations=ops))})),
        get_compute_device_usage_for_mlprogram_operation=lambda op: None if devices[op.name] is None
        else SimpleNamespace(preferred_compute_device=devices[op.name]),
        get_estimated_cost_for_mlprogram_operation=lambda op: None if costs[op.name] is None else SimpleNamespace(weight=costs[op.name]),
    )
    shares = coreml_report.device_shares(plan)
    assert shares == {"operations": {"NeuralEngine": 2, "CPU": 1}, "estimated_cost": {"NeuralEngine": 0.8, "CPU": 0.2}}
