"""``slimgan export`` end to end on tiny checkpoints: bundle files, parity gates, exit codes, manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from distill import create_model, save_checkpoint
from distill.registry import register_model
from export.manifest import Manifest
from export.runtimes.onnxruntime import make_session
from slimgan.cli import main


class TraceBrokenGenerator(nn.Module):
    """A generator whose traced graph differs from its eager forward (as with Python-side branching)."""

    def __init__(self, ngf: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.tanh(self.conv(x))
        return y * 0.5 if torch.jit.is_tracing() else y


@pytest.fixture
def broken_arch():
    """Register the trace-broken generator for one test only, so the zoo's list stays the built-in one."""
    from distill import registry

    register_model("test_trace_broken", family="test", role="generator", task="translate", input_kind="image", size_multiple=4)(
        lambda ngf=4: TraceBrokenGenerator(ngf)
    )
    yield "test_trace_broken"
    registry._REGISTRY.pop("test_trace_broken", None)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    teacher = save_checkpoint(create_model("resnet_6blocks", ngf=8), root / "teacher")
    student = save_checkpoint(create_model("mobile_resnet_9blocks", ngf=4), root / "student")
    return teacher, student


def test_export_cli_writes_bundle_that_passes_parity(pair, tmp_path, capsys) -> None:
    teacher, student = pair
    from distill.data import synthesize

    calib = tmp_path / "calib"
    synthesize("paired", calib, num=4, size=32, seed=0)
    out = tmp_path / "bundle"
    code = main(["export", str(student), "--teacher", str(teacher), "--fp16", "--int8", "--calib", str(calib),
                 "--res", "32", "--speed-rounds", "1", "--out", str(out), "--triton", str(tmp_path / "triton")])
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0, printed
    # the quantizers' own log lines go to the bundle, not the terminal
    assert "Expected bias" not in printed + captured.err and "nncf" not in captured.err.lower()
    assert (out / "logs" / "int8-onnxruntime.log").is_file() and (out / "logs" / "int8-openvino.log").is_file()
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.xml", "model.bin", "manifest.json", "parity.json",
                 "speed.json"):
        assert (out / name).is_file(), name
    parity = json.loads((out / "parity.json").read_text())
    rows = {r["name"]: r for r in parity["rows"]}
    assert rows["student: torch vs onnx fp32"]["passed"] is True
    assert rows["student: torch vs onnx fp16"]["passed"] is True
    assert rows["student: torch vs onnx int8"]["passed"] is True
    assert rows["student: torch vs openvino f32"]["passed"] is True
    assert rows["student: torch vs openvino f32"]["max_abs"] < 1e-4
    assert rows["teacher vs student (torch)"]["passed"] is None  # information only
    for key in ("max_abs", "mean_abs", "median_abs", "p99_abs", "max_rel", "psnr_db", "ssim", "nan", "inf", "min_atol"):
        assert key in rows["student: torch vs onnx fp32"]
    assert "PASS" in printed and "speedup" in printed

    speed = json.loads((out / "speed.json").read_text())
    assert speed["speedup"] > 0 and speed["mac_ratio"] > 1
    assert speed["threads"] == 1  # the default speed setting
    # every runtime: teacher and student on it, same threads; the fastest student's runtime is the headline
    by_runtime = speed["by_runtime"]
    assert {"onnxruntime", "openvino"} <= set(by_runtime)
    fastest = min(by_runtime, key=lambda k: by_runtime[k]["student_median_ms"])
    assert speed["runtime"] == fastest
    assert speed["speedup"] == pytest.approx(by_runtime[fastest]["teacher_median_ms"] / by_runtime[fastest]["student_median_ms"])
    rows_by = {(r["runtime"], r["role"], r["precision"] == "int8"): r for r in speed["rows"]}
    for rt, entry in by_runtime.items():
        assert entry["student_median_ms"] == rows_by[rt, "student", False]["median_ms"]
        assert entry["teacher_median_ms"] == rows_by[rt, "teacher", False]["median_ms"]
        assert entry["by_threads"]["1"]["speedup"] == pytest.approx(entry["speedup"])
    assert speed["by_threads"] == by_runtime[fastest]["by_threads"]
    # one entry per graph: no graph is timed twice
    graphs = [(r["runtime"], r["role"], r["graph"]) for r in speed["rows"]]
    assert len(graphs) == len(set(graphs))
    assert ("onnxruntime", "student", "model.int8.onnx") in graphs
    import importlib.util

    if importlib.util.find_spec("nncf") is not None:  # the openvino-int8 extra: NNCF's IR, checked and timed
        assert ("openvino", "student", "model.int8.xml") in graphs
        q_precision = Manifest.load(out).runtimes["openvino-int8"]["precision"]
        assert rows[f"student: torch vs openvino int8 {q_precision}"]["passed"] is True
        assert speed["int8"]["openvino"]["speedup_vs_fp32"] > 0
    assert speed["int8"]["faster"] in speed["int8"]
    cores = os.cpu_count() or 1
    if cores > 1:  # all cores, for information, measured side by side too
        assert speed["by_threads"][str(cores)]["student_median_ms"] > 0
    names = [r["name"] for r in speed["rows"]]
    assert "student onnxruntime-cpu" in names and "teacher onnxruntime-cpu" in names and "student openvino-cpu" in names
    for row in speed["rows"]:
        assert row["runs"] >= 5 and row["median_ms"] > 0 and row["macs"] > 0 and row["params"] > 0

    manifest = Manifest.load(out)
    assert manifest.task == "translate" and manifest.opset == 17
    expected = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx", "openvino": "model.xml",
                "openvino-weights": "model.bin"}
    if (out / "model.int8.xml").exists():
        expected |= {"openvino-int8": "model.int8.xml", "openvino-int8-weights": "model.int8.bin"}
    assert manifest.files == expected
    assert all((out / f).is_file() for f in manifest.files.values())
    assert manifest.preferred_runtime == speed["runtime"]
    assert manifest.runtimes["openvino"]["precision"] in ("f32", "bf16")
    assert manifest.input.value_range == [-1.0, 1.0] and manifest.dynamic_spatial
    assert len(manifest.source_sha256) == 64
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest

    config = (tmp_path / "triton" / manifest.name / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "dynamic_batching" in config
    assert (tmp_path / "triton" / manifest.name / "1" / "model.onnx").is_file()

    # An independent ORT session on model.onnx matches PyTorch on [-1, 1] inputs.
    from distill import load_checkpoint

    model = load_checkpoint(student)
    x = np.random.default_rng(5).uniform(-1, 1, (3, 3, 40, 48)).astype(np.float32)
    out_onnx = make_session(out / "model.onnx").run(None, {manifest.input.name: x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(out_onnx - ref)) < 1e-4


def test_latent_generator_bundle(tmp_path) -> None:
    ckpt = save_checkpoint(create_model("dcgan", ngf=4, nz=8, image_size=16), tmp_path / "g")
    code = main(["export", str(ckpt), "--fp16", "--speed-rounds", "1", "--out", str(tmp_path / "b")])
    assert code == 0
    manifest = Manifest.load(tmp_path / "b")
    assert manifest.task == "generate" and manifest.preprocessing.latent_size == 8
    assert manifest.input.distribution == "normal" and manifest.input.shape == ["batch", 8]
    parity = json.loads((tmp_path / "b" / "parity.json").read_text())
    assert parity["inputs"]["distribution"] == "normal(0, 1)" and parity["passed"]


def test_broken_model_fails_parity_with_nonzero_exit(broken_arch, tmp_path, capsys) -> None:
    ckpt = save_checkpoint(create_model(broken_arch), tmp_path / "broken")
    code = main(["export", str(ckpt), "--res", "16", "--speed-rounds", "1", "--out", str(tmp_path / "b")])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAIL" in captured.out and "parity check failed" in captured.err
    parity = json.loads((tmp_path / "b" / "parity.json").read_text())
    assert parity["passed"] is False


def test_trt_without_tensorrt_exits_2_with_one_line(pair, tmp_path) -> None:
    from export.tensorrt_engine import is_tensorrt_available

    if is_tensorrt_available():
        pytest.skip("TensorRT and a GPU are present")
    _, student = pair
    proc = subprocess.run(
        [sys.executable, "-m", "slimgan.cli", "export", str(student), "--trt", "--res", "64", "--out", str(tmp_path / "t")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("slimgan export: error: --trt needs TensorRT")
    assert not (tmp_path / "t" / "model.onnx").exists()  # checked before any export work


def test_bad_shape_is_a_user_error(pair, tmp_path) -> None:
    _, student = pair
    assert main(["export", str(student), "--res", "30", "--out", str(tmp_path / "b")]) == 2


@pytest.mark.gpu
def test_tensorrt_engine_parity(pair, tmp_path) -> None:
    from export.tensorrt_engine import is_tensorrt_available

    if not is_tensorrt_available():
        pytest.skip("needs TensorRT")
    _, student = pair
    code = main(["export", str(student), "--fp16", "--trt", "--res", "64", "--batch", "1:2:4", "--out", str(tmp_path / "b")])
    assert code == 0
    rows = json.loads((tmp_path / "b" / "parity.json").read_text())["rows"]
    assert any(r["name"].startswith("student: torch vs tensorrt") and r["passed"] for r in rows)
    assert (tmp_path / "b" / "model.plan").is_file()
