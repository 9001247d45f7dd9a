"""The Android script: device capture over adb, the three tools' outputs parsed into latency.json.

No phone here, so a stand-in ``adb`` on PATH maps the phone's ``/data/local/tmp`` to a local folder,
answers ``getprop`` / ``dumpsys battery`` / the cpufreq files from a table, really copies on ``push`` and
really runs ``shell`` commands there with ``sh``. The tools are stand-ins too: each checks that the model
file it is given was pushed and prints timings in its real tool's format (slower for the teacher).
Everything on the slimgan side (pushing, command lines, parsing, statistics, schema, speedups) is real.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from benchmarks.android import android_bench
from export.manifest import Manifest
from tests.bench_helpers import make_bundle

FAKE_ADB = r"""#!{python} -S
import os, re, shutil, subprocess, sys
root = os.environ["FAKE_PHONE_ROOT"]
args = sys.argv[1:]
if args[:1] == ["-s"]:
    args = args[2:]
def local(path):
    return path.replace("/data/local/tmp", root + "/data/local/tmp")
if args == ["get-state"]:
    print("device"); sys.exit(0)
if args[0] == "push":
    dst = local(args[2]); os.makedirs(os.path.dirname(dst), exist_ok=True); shutil.copy(args[1], dst)
    print(f"{{args[1]}}: 1 file pushed"); sys.exit(0)
cmd = args[1]
props = {{"ro.product.model": "Pixel 8", "ro.product.manufacturer": "Google", "ro.soc.manufacturer": "Google",
          "ro.soc.model": "Tensor G3", "ro.build.version.release": "14", "ro.build.version.sdk": "34",
          "ro.product.cpu.abi": "arm64-v8a", "ro.board.platform": "zuma", "ro.hardware": "shiba"}}
if cmd == "getprop":
    print("\n".join(f"[{{k}}]: [{{v}}]" for k, v in props.items())); sys.exit(0)
if cmd.startswith("cat /sys/devices/system/cpu/"):
    print("1704000\n1704000\n2367000\n2367000\n2910000"); sys.exit(0)
if cmd == "dumpsys battery":
    print("Current Battery Service state:\n  temperature: 312"); sys.exit(0)
done = subprocess.run(["sh", "-c", local(cmd)], capture_output=True, text=True)
sys.stdout.write(done.stdout); sys.stderr.write(done.stderr); sys.exit(done.returncode)
"""

# Each stand-in refuses a model file that was not pushed and scales its timings for the teacher.
TOOLS = {
    "benchmark_model": r"""#!{python} -S
import os, sys
a = dict(x[2:].split("=", 1) for x in sys.argv[1:] if "=" in x)
assert os.path.isfile(a["graph"]), a["graph"]
s = 4 if "teacher" in a["graph"] else 1
n = int(a["num_runs"])
print("INFO: Initialized TensorFlow Lite runtime.")
print(f"count={{a['warmup_runs']}} first=9000 curr=9000 min=9000 max=9000 avg=9000 std=0")
print(f"count={{n}} first={{s*1100}} curr={{s*1000}} min={{s*900}} max={{s*1300}} avg={{s*1000.5}} std=12")
print(f"Inference timings in us: Init: 1000, First inference: 9000, Warmup (avg): 9000, Inference (avg): {{s*1000.5}}")
""",
    "benchncnn": r"""#!{python} -S
import os, sys
kv = dict(x.split("=", 1) for x in sys.argv[6:])
assert os.path.isfile(kv["param"]), kv["param"]
assert kv["shape"] == "[32,32,3]", kv["shape"]
s = 4 if "teacher" in os.getcwd() else 1
sys.stderr.write(f"loop_count = {{sys.argv[1]}}\nnum_threads = {{sys.argv[2]}}\n")
sys.stderr.write(f"{{kv['param']:>20}}  min = {{s*1.80:7.2f}}  max = {{s*2.40:7.2f}}  avg = {{s*2.00:7.2f}}\n")
""",
    "executor_runner": r"""#!{python} -S
import os, sys
a = dict(x[2:].split("=", 1) for x in sys.argv[1:] if "=" in x)
assert os.path.isfile(a["model_path"]), a["model_path"]
n = int(a["num_executions"])
s = 4 if "teacher" in a["model_path"] else 1
for i in range(n):
    ms = 50.0 if i == 0 else s * (3.0 + 0.01 * i)
    print(f"I 00:00:00.{{i:06d}} executorch:executor_runner.cpp:540] Iteration {{i + 1}} of {{n}}: {{ms:f}} ms")
print(f"I 00:00:01 executorch:executor_runner.cpp:552] Model executed successfully {{n}} time(s) in 123.0 ms.")
""",
}


def _script(path: Path, text: str) -> Path:
    path.write_text(text.format(python=sys.executable))  # -S: no site packages, a fast start per call
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def _phone_bundle(root: Path, name: str, ngf: int) -> Path:
    """A real tiny bundle plus placeholder phone artifacts listed the way export lists them."""
    bundle = make_bundle(root, name, ngf=ngf)
    files = {"tflite": "model.tflite", "tflite-fp16": "model.fp16.tflite", "ncnn-param": "model.ncnn.param",
             "ncnn-bin": "model.ncnn.bin", "executorch": "model.pte"}
    for f in files.values():
        (bundle / f).write_bytes(b"artifact")
    manifest = Manifest.load(bundle)
    shape = [1, 3, 32, 32]
    runtimes = {n: {"files": [], "input_shape": shape} for n in ("tflite", "ncnn", "executorch")}
    dataclasses.replace(manifest, files={**manifest.files, **files}, runtimes=runtimes).save(bundle)
    return bundle


@pytest.fixture()
def phone(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "adb", FAKE_ADB)
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, text in TOOLS.items():
        _script(tools / name, text)
    root = tmp_path / "phone"
    root.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PHONE_ROOT", str(root))
    return tools, root


def test_android_bench_writes_latency_schema_with_device(tmp_path, phone) -> None:
    tools, root = phone
    teacher = _phone_bundle(tmp_path, "teacher", ngf=8)
    student = _phone_bundle(tmp_path, "student", ngf=4)
    out = tmp_path / "out"
    rc = android_bench.main([str(student), "--teacher", str(teacher), "--tools", str(tools), "--threads", "1,4",
                             "--runs", "10", "--warmup", "2", "--rounds", "2", "--backends", "tflite,ncnn,executorch",
                             "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "latency.json").read_text())
    assert report["schema"] == "slimgan-latency/1" and report["skipped"] == []
    env = report["environment"]
    assert env["model"] == "Pixel 8" and env["soc"] == "Google Tensor G3" and env["android_version"] == "14"
    assert env["cpu_max_khz"] == [1704000, 1704000, 2367000, 2367000, 2910000] and env["battery_temperature_c"] == 31.2
    rows = {(r["model"], r["backend"], r["threads"]): r for r in report["results"]}
    assert len(rows) == 2 * 3 * 2
    tfl = rows[("student", "tflite", 4)]
    assert tfl["median_ms"] == pytest.approx(1.0005) and tfl["min_ms"] == pytest.approx(0.9) and tfl["runs"] == 20
    assert "--num_threads=4" in tfl["command"] and tfl["p90_ms"] is None and "per-invocation" in tfl["stat"]
    nc = rows[("student", "ncnn", 1)]
    assert nc["mean_ms"] == pytest.approx(2.0) and nc["max_ms"] == pytest.approx(2.4) and "shape=[32,32,3]" in nc["command"]
    et = rows[("student", "executorch", 1)]
    # the 50 ms first iteration is warm-up and dropped; 10 timed iterations per round, 2 rounds
    assert et["runs"] == 20 and et["max_ms"] < 4 and et["p90_ms"] is not None and "--cpu_threads=1" in et["command"]
    for backend in ("tflite", "ncnn", "executorch"):
        assert rows[("student", backend, 1)]["speedup"] == pytest.approx(4.0, rel=0.02)
        assert rows[("student", backend, 1)]["measured_on"] == "device"
    # artifacts and tools really went to the phone's folder
    assert (root / "data/local/tmp/slimgan/student/model.pte").is_file()
    assert (root / "data/local/tmp/slimgan/bin/benchncnn").is_file()
    assert (out / "latency.md").is_file() and (out / "latency.png").is_file()
    assert "Tensor G3" in (out / "latency.md").read_text()


def test_android_bench_skips_missing_tool_and_artifact_with_reasons(tmp_path, phone) -> None:
    tools, _ = phone
    (tools / "executor_runner").unlink()
    student = make_bundle(tmp_path, "plain", ngf=4)  # no phone artifacts
    out = tmp_path / "out"
    assert android_bench.main([str(student), "--tools", str(tools), "--threads", "1", "--runs", "3", "--rounds", "1",
                               "--out", str(out)]) == 0
    skipped = {s["backend"]: s["reason"] for s in json.loads((out / "latency.json").read_text())["skipped"]}
    assert "export it with --targets tflite" in skipped["tflite"]
    assert "executor_runner is not in --tools" in skipped["executorch"]


def test_android_bench_without_adb_is_one_line_exit_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert android_bench.main([str(tmp_path), "--tools", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "adb not found" in err and "\n" not in err


def test_tool_output_parsers_follow_the_tools_formats() -> None:
    bm = android_bench.parse_benchmark_model("count=5 first=1 curr=1 min=1 max=1 avg=1 std=0\n"
                                             "count=50 first=12000 curr=11474 min=11239 max=12655 avg=11590.1 std=277\n")
    assert bm == {"count": 50, "min_ms": 11.239, "max_ms": 12.655, "avg_ms": pytest.approx(11.5901)}
    same = android_bench.parse_benchmark_model("count=3 curr=2000(all same)")
    assert same["avg_ms"] == 2.0 and same["count"] == 3
    assert android_bench.parse_executor_runner("Model executed successfully 4 time(s) in 40.0 ms.", 1) == [10.0] * 4
    with pytest.raises(android_bench.ToolError, match="benchncnn printed no timing"):
        android_bench.parse_benchncnn("segfault", 4)
