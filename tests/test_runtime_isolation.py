"""Third-party runtimes run in a child process (export.isolation): a crash, a hang, an abort or an
exception costs one failed row naming the runtime, the signal and the log file, never the export.

The misbehaving runtimes are real child processes doing the real thing (SIGSEGV, abort, an endless
loop); see tests/isolation_runtimes.py. The last test is issue 21's acceptance: ``slimgan export
--targets tflite,ncnn`` with an ``ncnn`` package that segfaults, placed first on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from isolation_runtimes import (
    NOISE_LINES,
    AbortInConvertRuntime,
    HangingRuntime,
    OnnxCopyRuntime,
    RaisingRuntime,
    SegfaultOnUseRuntime,
    WrongNumbersRuntime,
)

from distill import create_model, save_checkpoint
from export.isolation import IsolatedJob, ParityJob, run_isolated
from export.onnx_export import export_onnx

RES = 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny generator, its fp32 ONNX, parity inputs and PyTorch's outputs on them."""
    root = tmp_path_factory.mktemp("iso")
    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=4).eval()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, RES, RES)).astype(np.float32)
    export_onnx(model, root / "model.onnx", torch.from_numpy(x[:1]), input_kind="image")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    return model, root / "model.onnx", x, ref


def _job(runtime, bundle, tiny, **kw) -> IsolatedJob:
    model, onnx, x, ref = tiny
    bundle.mkdir(exist_ok=True)
    return IsolatedJob(runtime, bundle, onnx, model, (1, 3, RES, RES), parity=ParityJob(x, ref, 1, 2.0, "student"), **kw)


def test_a_runtime_converts_and_checks_in_a_child_with_its_noise_in_the_log(tiny, tmp_path, capfd) -> None:
    run = run_isolated(_job(OnnxCopyRuntime(), tmp_path / "B", tiny))
    assert run.ok, run.error
    assert run.result.files == ("model.iso.onnx",) and run.result.precision == "fp32"
    assert run.result.report["pid"] != os.getpid()  # converted in another process
    (row,) = run.rows
    assert row["passed"] is True and row["gate"] == "fp32" and row["runtime"] == "iso-onnx-copy"
    assert row["name"] == "student: torch vs iso-onnx-copy (model.iso.onnx)" and row["log"] == "logs/iso-onnx-copy.log"
    out, err = capfd.readouterr()
    assert "converter noise" not in out + err
    log = (tmp_path / "B" / "logs" / "iso-onnx-copy.log").read_text()
    assert sum("converter noise line" in line for line in log.splitlines()) == NOISE_LINES


def test_a_segfault_while_running_is_one_failed_row_naming_signal_and_log(tiny, tmp_path) -> None:
    run = run_isolated(_job(SegfaultOnUseRuntime(), tmp_path / "B", tiny))
    assert not run.ok and run.result is None
    assert run.signal == "SIGSEGV" and run.stage == "parity"
    (row,) = run.rows
    assert row["passed"] is False and row["runtime"] == "iso-segfault-on-use" and row["signal"] == "SIGSEGV"
    assert "SIGSEGV" in row["error"] and "while running the parity check" in row["error"] and "\n" not in row["error"]
    log = tmp_path / "B" / "logs" / "iso-segfault-on-use.log"
    assert "logs/iso-segfault-on-use.log in the bundle" in row["error"] and row["log"] == "logs/iso-segfault-on-use.log"
    assert "Segmentation fault" in log.read_text()  # faulthandler's stack of the dying child


def test_an_abort_in_the_converter_names_sigabrt(tiny, tmp_path) -> None:
    run = run_isolated(_job(AbortInConvertRuntime(), tmp_path / "B", tiny))
    assert run.signal == "SIGABRT" and run.stage == "convert"
    assert "SIGABRT" in run.rows[0]["error"] and "while converting" in run.rows[0]["error"]
    assert "about to abort" in (tmp_path / "B" / "logs" / "iso-abort.log").read_text()


def test_a_hang_is_stopped_at_the_timeout(tiny, tmp_path) -> None:
    started = time.monotonic()
    run = run_isolated(_job(HangingRuntime(), tmp_path / "B", tiny, timeout_s=8))
    assert time.monotonic() - started < 60
    assert not run.ok and run.stage == "convert"
    assert "no answer after 8 s while converting; the process was stopped" in run.rows[0]["error"]
    pid = int((tmp_path / "B" / "hang.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the hanging child is gone, not orphaned


def test_an_exception_is_one_line_with_the_traceback_in_the_log(tiny, tmp_path) -> None:
    run = run_isolated(_job(RaisingRuntime(), tmp_path / "B", tiny))
    assert not run.ok and run.signal is None and run.stage == "convert"
    error = run.rows[0]["error"]
    assert "runtime iso-raise: ValueError: legalize failed for operation 'mhlo.convolution'" in error
    assert "\n" not in error and "second line" not in error
    log = (tmp_path / "B" / "logs" / "iso-raise.log").read_text()
    assert "Traceback" in log and "second line of the converter's message" in log


def test_wrong_numbers_are_a_parity_failure_not_a_crash(tiny, tmp_path) -> None:
    run = run_isolated(_job(WrongNumbersRuntime(), tmp_path / "B", tiny))
    assert run.ok
    (row,) = run.rows
    assert row["passed"] is False and row["gate"] == "fp32" and row["max_abs"] == pytest.approx(0.01, rel=1e-3)


@pytest.mark.slow
def test_export_survives_an_ncnn_that_segfaults(tmp_path) -> None:
    """Issue 21: not killed by a signal; manifest.json and a parity.json with an ncnn row; <= 60 lines."""
    fake = tmp_path / "fake" / "ncnn"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import os\nimport signal\n\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    torch.manual_seed(0)
    save_checkpoint(create_model("mobile_resnet_9blocks", ngf=4).eval(), tmp_path / "S")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "slimgan.cli", "export", "S", "--res", "64", "--targets", "tflite,ncnn",
                           "--out", "B"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    printed = (done.stdout + done.stderr).splitlines()
    assert done.returncode >= 0, f"killed by signal {-done.returncode}"
    assert done.returncode == 1, printed  # the bundle is written; the failed rows make it exit 1
    assert len(printed) <= 60, printed
    bundle = tmp_path / "B"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "ncnn" not in manifest["runtimes"] and "model.ncnn.param" not in manifest["files"].values()
    assert json.loads((bundle / "speed.json").read_text())["checked"] is True
    rows = {r["runtime"]: r for r in json.loads((bundle / "parity.json").read_text())["rows"] if "runtime" in r}
    ncnn = rows["ncnn"]
    assert ncnn["passed"] is False and ncnn["signal"] == "SIGSEGV" and ncnn["log"] == "logs/ncnn.log"
    assert "SIGSEGV" in ncnn["error"] and (bundle / "logs" / "ncnn.log").is_file()
    # the row names the log where it ends up, not inside the staging folder that is renamed away
    assert ".tmp-" not in ncnn["error"] and "logs/ncnn.log in the bundle" in ncnn["error"]
    assert any("ncnn" in line and "SIGSEGV" in line for line in printed)
    tflite = rows["tflite"]  # installed: converted and checked; absent: a failed row with the install hint
    assert tflite["passed"] is True or "slimgan[tflite]" in tflite["error"], tflite


def test_a_module_that_cannot_be_handed_over_is_a_failed_row(tiny, tmp_path) -> None:
    _, onnx, x, ref = tiny
    job = IsolatedJob(OnnxCopyRuntime(), tmp_path, onnx, torch.nn.Conv2d(3, 3, 1), (1, 3, RES, RES),
                      parity=ParityJob(x, ref))
    run = run_isolated(job)
    assert not run.ok and "could not be handed to the child process" in run.rows[0]["error"]
    assert run.rows[0]["passed"] is False and "\n" not in run.rows[0]["error"]
