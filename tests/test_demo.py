"""``slimgan demo`` end to end at a few training steps: every stage runs for real and is summarised."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image


@pytest.mark.slow
def test_demo_writes_summary_artifacts_and_passes_parity(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "distill.cli", "demo", "--out", str(out), "--teacher-steps", "6",
         "--student-steps", "4"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parity_passed"] is True
    assert summary["speedup"] > 1, "the 1/4-width mobile student must be faster than its teacher on ORT CPU"
    assert summary["mac_ratio"] > 20
    for key in ("psnr_teacher", "psnr_gt", "ssim_gt"):
        assert isinstance(summary[key], float)
    for key in ("samples_png", "latency_png", "latency_json", "parity_json", "speed_json", "student_bundle",
                "teacher_bundle", "student_checkpoint"):
        assert Path(summary["paths"][key]).exists(), key
    grid = Image.open(summary["paths"]["samples_png"])
    assert grid.width == 4 * 32 * 4  # input | teacher | student | target, 32 px tiles at x4
    assert "export speedup" in proc.stdout and "parity:" in proc.stdout
    assert {r["name"] for r in summary["parity"]} >= {"student: torch vs onnx fp32", "student: torch vs onnx fp16"}
