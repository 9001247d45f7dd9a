"""Phone targets of ``slimgan export --targets``: each runtime's export and parity on a tiny generator.

One bundle is exported with every phone target whose extra is installed (a tiny mobile ResNet student,
ngf 4 at 32x32, and a tiny ResNet teacher); the per-target tests then check that target's artifact in
the manifest, its parity row, and a real session of its runtime on the shipped file. A target whose
extra is missing is skipped with the runtime's own one-line reason.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from distill import create_model, save_checkpoint
from distill.errors import ConfigError, MissingDependencyError, SlimganError
from export.manifest import Manifest
from export.parity import compare
from export.runtimes import get_runtime
from export.runtimes.mobile import MobileRuntime
from export.targets import PHONE_TARGETS, parse_targets

# target -> the files its runtime writes (all listed in manifest.json "files")
ARTIFACTS = {
    "tflite": ["model.tflite", "model.fp16.tflite"],
    "coreml": ["model.mlpackage"],
    "ncnn": ["model.ncnn.param", "model.ncnn.bin"],
    "executorch": ["model.pte"],
    "ort-mobile": ["model.ort", "model.required_operators_and_types.config"],
}
RES = 32


def _installed(name: str) -> tuple[bool, str]:
    try:
        get_runtime(name).require_convert()
    except MissingDependencyError as exc:
        return False, str(exc)
    return True, ""


def _require(name: str) -> None:
    ok, reason = _installed(name)
    if not ok:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def phone_bundle(tmp_path_factory):
    """The bundle exported with every installed phone target, its ExportResult and the PyTorch student."""
    from export.bundle import export_bundle

    targets = [t for t in PHONE_TARGETS if _installed(t)[0]]
    if not targets:
        pytest.skip("no phone runtime installed: pip install 'slimgan[mobile]'")
    root = tmp_path_factory.mktemp("phone")
    torch.manual_seed(0)
    student = create_model("mobile_resnet_9blocks", ngf=4).eval()
    save_checkpoint(student, root / "student")
    torch.manual_seed(1)
    save_checkpoint(create_model("resnet_6blocks", ngf=8).eval(), root / "teacher")
    result = export_bundle(root / "student", root / "B", teacher=root / "teacher", res=RES, targets=["openvino", *targets],
                           speed_rounds=1, speed_block_s=0.05)
    return result, student, targets


@pytest.mark.parametrize("target", PHONE_TARGETS)
def test_target_export_and_parity(phone_bundle, target) -> None:
    _require(target)
    result, student, _ = phone_bundle
    bundle = result.bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in ARTIFACTS[target]:
        assert name in manifest["files"].values() and (bundle / name).exists()
    assert manifest["runtimes"][target]["input_shape"] == [1, 3, RES, RES]
    # the runtime says its precision (Core ML computes in fp16 by default; the others ship fp32 graphs)
    assert manifest["runtimes"][target]["precision"] == ("fp16" if target == "coreml" else "fp32")
    rows = [r for r in json.loads((bundle / "parity.json").read_text())["rows"] if r.get("runtime") == target]
    assert rows and all(r["passed"] is True for r in rows), rows
    # converted and checked in a child process, whose output went to the bundle's log
    assert all(r["log"] == f"logs/{target}.log" for r in rows) and (bundle / "logs" / f"{target}.log").is_file()
    rt = get_runtime(target)
    if target == "coreml":
        (row,) = rows
        assert row["gate"] == "validate" and "max_abs" not in row
        assert "unavailable" in row["numbers"] and row["validation"]["model_type"] == "mlProgram"
        assert row["validation"]["input"]["type"] == "imageType" and row["validation"]["inferred_output_shape"] == [1, 3, RES, RES]
        assert row["validation"]["weights"]["mismatched"] == 0
        return
    assert {r["gate"] for r in rows} <= {"fp32", "fp16"} and any(r["gate"] == "fp32" for r in rows)
    # a fresh session of the runtime on the shipped file, on inputs parity did not use
    role = next(iter(rt.gates))
    session = rt.load_from_bundle(bundle, Manifest.load(bundle), role, threads=1)
    x = np.random.default_rng(7).uniform(-1, 1, (3, 3, RES, RES)).astype(np.float32)
    with torch.no_grad():
        ref = student(torch.from_numpy(x)).numpy()
    out = session.run(x)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert compare(target, out, ref, "fp32")["passed"]
    info = session.describe()
    assert info["runtime"] == target and info["threads"] == 1 and info["version"]


def test_speed_json_has_host_latencies_per_phone_runtime(phone_bundle) -> None:
    result, _, targets = phone_bundle
    speed = json.loads((result.bundle / "speed.json").read_text())
    for target in (t for t in targets if t != "coreml"):
        entry = speed["by_runtime"][target]
        assert entry["student_median_ms"] > 0 and entry["teacher_median_ms"] > 0 and entry["speedup"] > 0
        assert entry["measured_on"]["measured_on"] == "host" and entry["measured_on"]["cpu_model"]
        assert entry["measured_on"]["threads"] == 1 and entry["preferred_candidate"] is False
        assert any(r["runtime"] == target and r["role"] == "teacher" for r in speed["rows"])
    assert "coreml" not in speed["by_runtime"]
    assert speed["runtime"] not in PHONE_TARGETS  # the preferred (serving) runtime is never a phone runtime
    manifest = json.loads((result.bundle / "manifest.json").read_text())
    assert manifest["preferred_runtime"] == speed["runtime"]


def test_static_shape_artifacts_refuse_other_sizes_in_one_line(phone_bundle) -> None:
    result, student, targets = phone_bundle
    for target in (t for t in ("tflite", "executorch") if t in targets):
        rt = get_runtime(target)
        session = rt.load(result.bundle / rt.artifacts[target], threads=1)
        with pytest.raises(SlimganError, match=f"converted for inputs of 3x{RES}x{RES} per sample, got 3x64x64"):
            session.run(np.zeros((1, 3, 64, 64), np.float32))
    if "ncnn" in targets:  # ncnn graphs are shape-free: another size still matches PyTorch
        x = np.random.default_rng(3).uniform(-1, 1, (1, 3, 48, 64)).astype(np.float32)
        with torch.no_grad():
            ref = student(torch.from_numpy(x)).numpy()
        out = get_runtime("ncnn").load(result.bundle / "model.ncnn.param", threads=1).run(x)
        assert compare("ncnn 48x64", out, ref, "fp32")["passed"]


def test_coreml_validation_catches_wrong_weights_and_shape(phone_bundle) -> None:
    _require("coreml")
    result, _, _ = phone_bundle
    rt = get_runtime("coreml")
    torch.manual_seed(5)
    other = create_model("mobile_resnet_9blocks", ngf=4).eval()
    bad = rt.validate(result.bundle / "model.mlpackage", other, (1, 3, RES, RES))
    assert bad["ok"] is False and "convolution weight" in bad["error"]
    wrong = rt.validate(result.bundle / "model.mlpackage", None, (1, 3, 64, 64))
    assert wrong["ok"] is False and "does not match" in wrong["error"]
    if sys.platform != "darwin":
        with pytest.raises(SlimganError, match="Core ML predictions need macOS"):
            rt.load(result.bundle / "model.mlpackage")


def test_parse_targets() -> None:
    assert parse_targets("tflite, ncnn,tflite") == ["onnx", "tflite", "ncnn"]
    assert parse_targets(["onnx", "fp16", "ort-mobile"]) == ["onnx", "fp16", "ort-mobile"]
    assert parse_targets(None) == []
    with pytest.raises(ConfigError, match="unknown target 'tfl'; choose from onnx, fp16, int8, openvino, tensorrt, tflite"):
        parse_targets("tfl")


class _AbsentRuntime(MobileRuntime):
    name = "absent"
    extra = "tflite"
    module_name = "slimgan_no_such_package"


def test_missing_runtime_is_one_line_naming_the_extra() -> None:
    rt = _AbsentRuntime()
    ok, reason = rt.available()
    assert not ok and "\n" not in reason and "pip install 'slimgan[tflite]'" in reason and "slimgan_no_such_package" in reason
    with pytest.raises(MissingDependencyError, match=r"converting needs python package 'slimgan_no_such_package'.*slimgan\[tflite\]"):
        rt.require_convert()


def test_an_absent_phone_runtime_is_a_failed_row_and_the_bundle_is_still_written(tmp_path) -> None:
    from export.bundle import export_bundle

    missing = [t for t in PHONE_TARGETS if not get_runtime(t).available()[0]]
    if not missing:
        pytest.skip("every phone runtime is installed here")
    target = missing[0]
    torch.manual_seed(0)
    save_checkpoint(create_model("mobile_resnet_9blocks", ngf=4).eval(), tmp_path / "s")
    result = export_bundle(tmp_path / "s", tmp_path / "B", res=RES, targets=[target], speed_rounds=1, speed_block_s=0.05)
    assert not result.ok
    (row,) = [r for r in result.parity if r.get("runtime") == target]
    assert row["passed"] is False and f"pip install 'slimgan[{get_runtime(target).extra}]'" in row["error"]
    for name in ("manifest.json", "parity.json", "speed.json", "model.onnx"):
        assert (tmp_path / "B" / name).is_file()
    manifest = json.loads((tmp_path / "B" / "manifest.json").read_text())
    assert target not in manifest["runtimes"] and not set(ARTIFACTS[target]) & set(manifest["files"].values())


def test_phone_runtimes_keep_no_state_between_conversions() -> None:
    """convert() hands everything back in its ConvertResult; nothing is left on the shared runtime objects."""
    for target in PHONE_TARGETS:
        rt = get_runtime(target)
        assert vars(rt) == {}, (target, vars(rt))


def test_bench_latency_times_the_phone_artifacts_as_host_measurements(phone_bundle, tmp_path) -> None:
    from benchmarks.latency import LatencyConfig, benchmark_latency

    result, _, targets = phone_bundle
    backends = ["ort", "tflite", "ncnn", "executorch", "ort-mobile", "coreml"]
    cfg = LatencyConfig(backends=backends, threads=[1], res=RES, warmup_s=0.0, min_runs=10, min_time_s=0.05)
    report = benchmark_latency([result.bundle], tmp_path / "lat", cfg)
    rows = {r["backend"]: r for r in report["results"]}
    skipped = {s["backend"]: s["reason"] for s in report["skipped"]}
    for backend in ("tflite", "ncnn", "executorch", "ort-mobile"):
        if backend not in targets:
            assert backend in skipped
            continue
        row = rows[backend]
        assert row["median_ms"] > 0 and row["runs"] >= 10 and row["threads"] == 1
        assert row["measured_on"] == "host" and "not a phone latency" in row["note"]
    assert "ort" in rows and "measured_on" not in rows["ort"]
    if sys.platform != "darwin":  # off macOS Core ML never runs: skipped for that, or for its missing extra
        assert "need macOS" in skipped["coreml"] or "slimgan[coreml]" in skipped["coreml"]
    # another resolution than the static artifacts were converted for is skipped, with how to fix it
    other = benchmark_latency([result.bundle], tmp_path / "lat64", LatencyConfig(
        backends=[b for b in ("tflite", "executorch") if b in targets] or ["tflite"], threads=[1], res=64,
        warmup_s=0.0, min_runs=10, min_time_s=0.0))
    assert not other["results"] and all("re-export" in s["reason"] or "extra" in s["reason"] or "install" in s["reason"]
                                        for s in other["skipped"])


def test_cli_targets_errors_are_one_line_exit_2(tmp_path) -> None:
    from slimgan.cli import main

    torch.manual_seed(0)
    save_checkpoint(create_model("mobile_resnet_9blocks", ngf=4).eval(), tmp_path / "s")
    assert main(["export", str(tmp_path / "s"), "--res", str(RES), "--targets", "tflite,nope", "--out", str(tmp_path / "B")]) == 2
    assert not (tmp_path / "B").exists()
