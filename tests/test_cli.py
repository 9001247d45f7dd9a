"""CLI smoke tests: real subprocesses of the installed ``slimgan`` entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

SLIMGAN = shutil.which("slimgan")
CMD = [SLIMGAN] if SLIMGAN else [sys.executable, "-m", "slimgan.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=300)


def test_help_lists_foundation_commands():
    proc = run("--help")
    assert proc.returncode == 0
    for name in ("data", "import", "info"):
        assert name in proc.stdout


def test_info_json_reports_reference_params():
    proc = run("info", "--arch", "resnet_9blocks", "--ngf", "64", "--res", "256", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert abs(report["params"] / 1e6 - 11.38) < 0.01
    assert abs(report["macs"] / 1e9 - 56.8) < 0.1


def test_data_synth_then_info_on_checkpoint(tmp_path):
    proc = run("data", "synth", "--task", "paired", "--out", str(tmp_path / "d"), "--num", "3", "--size", "32")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "d" / "train").glob("*.png"))) == 3

    from distill import create_model, save_checkpoint

    save_checkpoint(create_model("mobile_resnet_9blocks", ngf=8), tmp_path / "ck")
    proc = run("info", str(tmp_path / "ck"), "--res", "64")
    assert proc.returncode == 0, proc.stderr
    assert "mobile_resnet_9blocks" in proc.stdout and "MACs at 64x64" in proc.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (("info",), "give either a checkpoint DIR or --arch NAME"),
        (("info", "/nonexistent/ckpt"), "/nonexistent/ckpt does not exist"),
        (("info", "--arch", "resnet_99"), "unknown architecture 'resnet_99'"),
        (("data", "synth", "--task", "paired", "--out", "/tmp/x", "--size", "30"), "multiple of 4"),
    ],
)
def test_user_errors_are_one_line_exit_2(args, needle):
    proc = run(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert needle in proc.stderr


@pytest.mark.parametrize(
    ("argv", "usage", "hint"),
    [
        (["export", "S", "--fp61", "--res", "64", "--out", "B"], "usage: slimgan export", "did you mean --fp16?"),
        # A typo is reported even when a required argument is missing as well.
        (["export", "S", "--fp61"], "usage: slimgan export", "did you mean --fp16?"),
        (["bench", "latency", "--thredz", "2"], "usage: slimgan bench latency", "did you mean --threads?"),
    ],
)
def test_mistyped_flag_shows_the_commands_usage_and_a_suggestion(argv, usage, hint):
    proc = run(*argv)
    assert proc.returncode == 2
    assert usage in proc.stderr
    assert "usage: slimgan [-h]" not in proc.stderr
    assert hint in proc.stderr.splitlines()[-1]


def test_abbreviated_and_valued_flags_still_parse():
    # --jso abbreviates --json; an unknown flag check must not refuse what argparse accepts.
    proc = run("info", "--arch", "resnet_9blocks", "--ngf", "8", "--res", "64", "--jso")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["params"] > 0
