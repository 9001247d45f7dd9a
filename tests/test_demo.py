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
        [sys.executable, "-m", "slimgan.cli", "demo", "--out", str(out), "--teacher-steps", "6",
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
    assert grid.width >= 4 * 160  # input | teacher | student | target, 32 px tiles drawn at >= 160 px
    assert Image.open(out / "loss_curves.png").width >= 800
    assert "export speedup" in proc.stdout and "parity:" in proc.stdout
    # the checkpoints sit at the top, named by what they are; the runs that made them under runs/
    for role in ("teacher", "student"):
        config = json.loads((out / role / "config.json").read_text())
        assert config["provenance"]["role"] == role and (out / role / "model.safetensors").is_file()
        assert not (out / role / "student").exists() and not (out / role / "teacher").exists()
    # summary.json carries the bundles' parity rows exactly
    assert summary["parity"] == json.loads((out / "bundles/student/parity.json").read_text())["rows"]
    assert summary["teacher_parity"] == json.loads((out / "bundles/teacher/parity.json").read_text())["rows"]
    assert {r["name"] for r in summary["parity"]} >= {"student: torch vs onnx fp32", "student: torch vs onnx fp16"}
    assert all(r["psnr_db"] is not None for r in summary["parity"])
    teacher_texts = [(out / "bundles/teacher" / n).read_text() for n in ("parity.json", "speed.json", "manifest.json")]
    assert not any("student" in t for t in teacher_texts)
    assert not (out / ".slimgan.lock").exists()
