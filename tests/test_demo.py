"""``slimgan demo`` end to end at a few training steps: every stage runs for real and is summarised."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
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
    # one speedup, named by its runtime and threads, as speed.json has it
    speed = json.loads((out / "bundles/student/speed.json").read_text())
    speedup_lines = [line for line in proc.stdout.splitlines() if "speedup" in line]
    assert len(speedup_lines) == 1, proc.stdout
    assert f"on {speed['runtime']}, {speed['threads']} thread" in speedup_lines[0]
    assert f"x{speed['speedup']:.2f}" in speedup_lines[0]
    # parity ran on the held-out inputs, not on random ones
    inputs = json.loads((out / "bundles/student/parity.json").read_text())["inputs"]
    assert inputs["source"] == "calib" and inputs["files"], inputs
    assert Path(inputs["calib_dir"]) == out / "data" / "test_inputs"
    assert "parity on 4 held-out inputs:" in proc.stdout
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


def test_demo_help_offers_resume():
    proc = subprocess.run([sys.executable, "-m", "slimgan.cli", "demo", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--resume" in proc.stdout


def _metrics_steps(path: Path) -> list[int]:
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines if line.strip()]


@pytest.mark.slow
def test_demo_ctrl_c_then_resume_continues_the_student_run(tmp_path):
    from distill.checkpoint import read_training_state

    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "slimgan.cli", "demo", "--out", str(out), "--no-progress"]
    log = tmp_path / "first.log"
    with log.open("w") as err:
        proc = subprocess.Popen([*cmd, "--teacher-steps", "4", "--student-steps", "100000"],
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 400
            while not _metrics_steps(out / "runs/student/metrics.csv"):  # the student loop is running
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the student run never logged a step"
                time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert rc == 130, text[-3000:]
    assert "slimgan demo --out" in text and "--resume" in text
    interrupted_at = int(read_training_state(out / "runs/student/state.pt")["step"])
    assert 0 < interrupted_at < 100000
    assert not (out / ".slimgan.lock").exists()

    target = interrupted_at + 3
    proc = subprocess.run([*cmd, "--resume", "--student-steps", str(target)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already finished at step 4; kept" in proc.stderr  # the teacher is not trained again
    assert f"at step {interrupted_at}" in proc.stderr  # the engine's "resumed from ... at step N"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["teacher"]["steps"] == 4 and summary["student"]["steps"] == target
    assert json.loads((out / "student/config.json").read_text())["provenance"]["step"] == target
    steps = _metrics_steps(out / "runs/student/metrics.csv")
    assert steps[-1] == target and steps == sorted(steps)
    assert json.loads((out / "settings.json").read_text())["student_steps"] == target
