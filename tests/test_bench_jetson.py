"""The Jetson script: environment capture, and the latency.json it writes from trtexec's exported times.

TensorRT cannot run here, so a stand-in ``trtexec`` on PATH writes an engine file and a ``--exportTimes``
file in trtexec's format; everything downstream (parsing, statistics, schema, speedups) is real.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from benchmarks.jetson import jetson_bench
from tests.bench_helpers import make_bundle

FAKE_TRTEXEC = """#!/usr/bin/env python3
import json, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if "=" in a)
if "saveEngine" in args:
    open(args["saveEngine"], "wb").write(b"engine")
if "exportTimes" in args:
    scale = 2.0 if "teacher" in args["loadEngine"] else 1.0
    times = [{"startHostMs": i, "endHostMs": i + 1, "latencyMs": scale * (1.0 + 0.01 * i),
              "computeMs": scale * 0.8} for i in range(20)]
    json.dump(times, open(args["exportTimes"], "w"))
"""


def test_environment_records_tools_even_when_absent() -> None:
    env = jetson_bench.jetson_environment()
    for key in ("nvpmodel", "jetson_clocks", "jetpack", "tensorrt", "l4t_release", "board", "device"):
        assert key in env
    assert env["nvpmodel"]  # the command's output, or why it is unavailable


def test_jetson_bench_writes_latency_schema(tmp_path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    trtexec = bin_dir / "trtexec"
    trtexec.write_text(FAKE_TRTEXEC)
    trtexec.chmod(trtexec.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    teacher = make_bundle(tmp_path, "teacher", ngf=8)
    student = make_bundle(tmp_path, "student", ngf=4)
    out = tmp_path / "out"
    assert jetson_bench.main([str(student), "--teacher", str(teacher), "--res", "32", "--out", str(out)]) == 0
    report = json.loads((out / "latency.json").read_text())
    assert report["schema"] == "slimgan-latency/1" and report["settings"]["backends"] == ["trt"]
    rows = {r["model"]: r for r in report["results"]}
    assert rows["student"]["median_ms"] == pytest.approx(1.0 + 0.01 * 9.5) and rows["student"]["runs"] == 20
    assert rows["student"]["compute_median_ms"] == pytest.approx(0.8)
    assert rows["student"]["speedup"] == pytest.approx(2.0)
    assert rows["student"]["mac_ratio"] > 2
    assert (out / "latency.md").is_file() and (out / "latency.png").is_file()
