"""What a user sees: roles from provenance, verdicts that match the JSON, one measurement per graph,
run locks, progress that shows every term, labelled pictures, the generated recipe schema,
``data pairs`` feeding ``distill``, ``info --layers``, the import summary and the access log."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw
from serve_bundles import dummy_bundle, free_port, wait_ready

from distill import create_model, save_checkpoint
from distill.checkpoint import checkpoint_role, import_summary
from distill.data import synthesize
from distill.engine.run_lock import LOCK_NAME, RunLock, RunLockedError
from distill.engine.schema import SCHEMA_PATH, render_schema, schema_is_current, section_table
from distill.progress import Progress
from slimgan.cli import main


def slimgan(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slimgan.cli", *args], capture_output=True, text=True,
                          timeout=600, **kwargs)


# ------------------------------------------------------------------------------------- recipe schema
def test_schema_md_is_generated_from_the_dataclasses_and_current() -> None:
    assert SCHEMA_PATH.is_file(), "configs/SCHEMA.md is missing: python -m distill.engine.schema"
    assert schema_is_current(), "configs/SCHEMA.md is stale: regenerate with python -m distill.engine.schema"
    text = render_schema()
    for key in ("`data`", "`layout`", "`direction`", "`load_size`", "`teacher`", "`mode`", "`checkpoint`",
                "`decay_start`", "linear decay to zero", "`l1_teacher`", "`feature_kd`", "`crd`"):
        assert key in text, key
    undocumented = [line.split("|")[1].strip() for line in text.splitlines() if "(undocumented)" in line]
    assert not undocumented, (f"recipe keys without a meaning: {undocumented}; give each a trailing # comment or a "
                              "'name: text' docstring entry in distill/engine/config.py (or distill.engine.schema.MEANINGS)")


def test_schema_generator_walks_any_dataclass() -> None:
    @dataclasses.dataclass(frozen=True)
    class NewConfig:
        """A section added later.

        speed: how fast it goes.
        """

        speed: float = 1.5
        colour: str = "red"  # red | blue
        extra: list[int] = dataclasses.field(default_factory=list)

    text = "\n".join(section_table("new", NewConfig))
    assert "| `speed` | `float` | `1.5` | how fast it goes. |" in text
    assert "| `colour` | `str` | `\"red\"` | red \\| blue |" in text
    assert "| `extra` | `list[int]` | `[]` | (undocumented) |" in text


def test_schema_check_cli_fails_on_a_stale_file(tmp_path) -> None:
    stale = tmp_path / "SCHEMA.md"
    stale.write_text("old\n")
    assert main(["schema", "--out", str(stale), "--check"]) == 1
    assert main(["schema", "--out", str(stale)]) == 0
    assert main(["schema", "--out", str(stale), "--check"]) == 0


# -------------------------------------------------------------------------------------------- progress
def test_progress_lines_off_a_terminal_show_every_term_once_per_log_every() -> None:
    out = io.StringIO()
    logs = {"G_adv": 0.5, "G_l1_teacher": 0.25, "G_crd": 0.125, "G_feature_kd": 2.0, "G_total": 3.0, "D": 0.7}
    p = Progress(10, desc="run", log_every=5, stream=out, tty=False)
    for step in range(1, 11):
        p.update(step, logs)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert lines[0].startswith("run step 5/10") and lines[1].startswith("run step 10/10")
    for name in logs:
        assert f"{name}=" in lines[1]
    assert Progress(10, enabled=False, stream=out, tty=False).line(1, logs)  # disabled: update prints nothing


def test_progress_bar_rotates_terms_but_always_shows_the_total() -> None:
    logs = {f"G_term{i}": float(i) for i in range(12)} | {"G_total": 9.0, "D": 0.1}
    p = Progress(10, tty=False, width=100)
    seen: set[str] = set()
    for _ in range(12):
        text = p.postfix(logs)
        assert text.startswith("G_total=9, D=0.1")
        seen |= {part.split("=")[0] for part in text.split(", ")}
    assert {f"G_term{i}" for i in range(12)} <= seen
    assert p.postfix({"G_a": 1.0, "G_total": 1.0}) == "G_total=1, G_a=1"  # fits: everything at once


# -------------------------------------------------------------------------------------------- run lock
def test_run_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename,
                                                       "command": "slimgan distill"}))
        with pytest.raises(RunLockedError, match=f"PID {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path) as lock:  # the holder is gone: its lock is stale and is taken over
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ux")
    synthesize("paired", root / "data", num=6, size=32, seed=0, num_test=2)
    torch.manual_seed(0)
    save_checkpoint(create_model("resnet_6blocks", ngf=4), root / "teacher", provenance={"role": "teacher"})
    return root


def _student_recipe(root: Path, data: Path, steps: int, log_every: int = 1) -> Path:
    path = root / f"student_{steps}.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"root": str(data), "layout": "aligned"},
        "teacher": {"mode": "offline", "checkpoint": str(root / "teacher")},
        "student": {"arch": "resnet_6blocks", "ngf": 4},
        "loss": [{"name": "l1_teacher", "weight": 1.0}, {"name": "l1_target", "weight": 1.0}],
        "train": {"steps": steps, "batch_size": 2, "log_every": log_every, "device": "cpu"},
        "eval": {"num": 2, "batch_size": 2, "num_samples": 2},
    }))
    return path


def test_second_distill_on_a_held_run_dir_fails_with_one_line_naming_the_first(paired, capsys) -> None:
    out = paired / "locked_run"
    first = subprocess.Popen([sys.executable, "-m", "slimgan.cli", "distill", "--config",
                              str(_student_recipe(paired, paired / "data", 100000)), "--out", str(out),
                              "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.csv").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)  # metrics.csv is written after the first step: the run is live
        assert first.poll() is None and (out / LOCK_NAME).is_file()
        capsys.readouterr()
        code = main(["distill", "--config", str(_student_recipe(paired, paired / "data", 2)), "--out", str(out)])
        captured = capsys.readouterr()
        assert code == 2
        err = [line for line in captured.err.splitlines() if line.strip()]
        assert len(err) == 1 and f"PID {first.pid}" in err[0] and str(out) in err[0], captured.err
    finally:
        first.send_signal(signal.SIGINT)  # Ctrl-C: the first run saves state.pt and releases the lock
        first.wait(timeout=120)
    assert not (out / LOCK_NAME).exists()
    assert (out / "state.pt").is_file()


# ------------------------------------------------------------------------- data pairs -> train/distill
def _photos(folder: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        img = Image.new("RGB", (72, 56), tuple(int(v) for v in rng.integers(0, 255, 3)))
        ImageDraw.Draw(img).ellipse((8 + i, 6, 48, 44 + i % 3), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        img.save(folder / ("sub" if i % 2 else "") / f"photo{i}.jpg")
    return folder


@pytest.mark.parametrize("edges", ["canny", "sobel", "hed-like"])
def test_data_pairs_writes_the_aligned_layout(tmp_path, edges) -> None:
    from distill.data import AlignedDataset, TransformConfig

    photos = _photos(tmp_path / "photos")
    assert main(["data", "pairs", str(photos), "--out", str(tmp_path / "pairs"), "--edges", edges,
                 "--size", "32"]) == 0
    train = sorted((tmp_path / "pairs" / "train").glob("*.png"))
    test = sorted((tmp_path / "pairs" / "test").glob("*.png"))
    assert len(train) == 5 and len(test) == 1
    pair = np.asarray(Image.open(train[0]))
    assert pair.shape == (32, 64, 3)
    edge_half, photo_half = pair[:, :32], pair[:, 32:]
    assert edge_half.min() < 128 < edge_half.max() and (edge_half > 200).mean() > 0.5  # dark strokes on white
    assert np.abs(photo_half.astype(int) - edge_half.astype(int)).mean() > 20
    sample = AlignedDataset(tmp_path / "pairs", "train", transform=TransformConfig(train=False))[0]
    assert sample["A"].shape == sample["B"].shape == (3, 32, 32)


def test_data_pairs_errors_name_the_input(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["data", "pairs", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "holds no images" in capsys.readouterr().err
    _photos(tmp_path / "p", 2)
    (tmp_path / "p" / "broken.png").write_bytes(b"not a png")
    assert main(["data", "pairs", str(tmp_path / "p"), "--out", str(tmp_path / "o"), "--size", "32"]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_photos_to_pairs_to_teacher_to_distilled_student_with_pictures(tmp_path, capsys) -> None:
    _photos(tmp_path / "photos")
    assert main(["data", "pairs", str(tmp_path / "photos"), "--out", str(tmp_path / "pairs"), "--size", "32"]) == 0
    teacher_recipe = tmp_path / "teacher.yaml"
    teacher_recipe.write_text(yaml.safe_dump({
        "data": {"root": str(tmp_path / "pairs"), "layout": "aligned"},
        "generator": {"arch": "resnet_6blocks", "ngf": 4},
        "discriminator": {"arch": "basic", "ndf": 4, "conditional": True},
        "loss": [{"name": "adv"}, {"name": "l1_target", "weight": 100.0}],
        "train": {"steps": 2, "batch_size": 2, "log_every": 1, "device": "cpu"},
        "eval": {"num": 1, "num_samples": 1},
    }))
    assert main(["train", "--config", str(teacher_recipe), "--out", str(tmp_path / "t"), "--no-progress"]) == 0
    assert checkpoint_role(tmp_path / "t" / "teacher") == "teacher"
    assert not (tmp_path / "t" / "student").exists()
    student_recipe = tmp_path / "student.yaml"
    student_recipe.write_text(yaml.safe_dump({
        "data": {"root": str(tmp_path / "pairs"), "layout": "aligned"},
        "teacher": {"checkpoint": str(tmp_path / "t" / "teacher")},
        "student": {"arch": "resnet_6blocks", "ngf": 2},
        "loss": [{"name": "l1_teacher", "weight": 10.0}],
        "train": {"steps": 2, "batch_size": 2, "log_every": 1, "device": "cpu"},
        "eval": {"num": 1, "num_samples": 1},
    }))
    capsys.readouterr()
    assert main(["distill", "--config", str(student_recipe), "--out", str(tmp_path / "s")]) == 0
    err = capsys.readouterr().err
    assert "step 2/2" in err and "G_total=" in err and "G_l1_teacher=" in err  # not a terminal: plain lines
    run = tmp_path / "s"
    assert checkpoint_role(run / "student") == "student"
    assert Image.open(run / "loss_curves.png").width >= 800
    grid = Image.open(run / "samples" / "step_000002.png")
    # input | teacher | student | target at >= 160 px each, under a title and a header row
    assert grid.width >= 4 * 160 and grid.height > 160
    (run / "loss_curves.png").unlink()
    assert main(["plot", str(run)]) == 0
    assert (run / "loss_curves.png").is_file() and Image.open(run / "samples.png").width >= 4 * 160


# ------------------------------------------------------------------------------------------- export
def test_exporting_a_teacher_never_calls_it_student_and_times_each_graph_once(paired) -> None:
    calib = paired / "data" / "test"
    out = paired / "teacher_bundle"
    proc = slimgan("export", str(paired / "teacher"), "--out", str(out), "--res", "32", "--fp16", "--int8",
                   "--calib", str(calib), "--speed-rounds", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "student" not in (proc.stdout + proc.stderr).lower()
    for path in out.iterdir():
        if path.suffix == ".json":
            assert "student" not in path.read_text().lower(), path.name
    parity = json.loads((out / "parity.json").read_text())
    int8 = next(r for r in parity["rows"] if r["gate"] == "int8")
    assert int8["verdict"] == "reported" and "reported" in int8["criterion"]
    assert "int8" in proc.stdout and "reported" in proc.stdout and "PASS" not in [
        w for line in proc.stdout.splitlines() if "int8" in line for w in line.split()]
    assert "calib" in parity["inputs"]["distribution"]  # parity ran on the user's images, not on noise
    speed = json.loads((out / "speed.json").read_text())
    graphs = [(r["graph"], r["backend"], r["threads"]) for r in speed["rows"]]
    assert len(graphs) == len(set(graphs)) and {g for g, _, _ in graphs} == {"model.onnx", "model.int8.onnx", "model.xml", "model.int8.xml"}
    # the headline ratio is the faster int8 runtime's, against that runtime's own fp32 graph in the same run
    faster = speed["int8"]["faster"]
    ms = {"int8" if r["precision"] == "int8" else "fp32": r["median_ms"] for r in speed["rows"] if r["runtime"] == faster}
    assert speed["int8"][faster]["median_ms"] == min(v["median_ms"] for k, v in speed["int8"].items() if k != "faster")
    assert speed["int8_speedup_vs_fp32"] == pytest.approx(ms["fp32"] / ms["int8"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["role"] == "teacher"


def test_export_with_teacher_bundle_gives_both_bundles_with_one_speedup(paired) -> None:
    from export.pair import export_pair

    torch.manual_seed(1)
    student = save_checkpoint(create_model("resnet_6blocks", ngf=2), paired / "student",
                              provenance={"role": "student"})
    export_pair(student, paired / "sb", paired / "teacher", paired / "tb", res=32, speed_rounds=1,
                speed_block_s=0.05)
    speed = json.loads((paired / "sb" / "speed.json").read_text())
    # one student and one teacher row per runtime; the headline speedup is the preferred runtime's pair
    per_runtime = {(r["runtime"], r["role"]) for r in speed["rows"]}
    assert len(per_runtime) == len(speed["rows"]) == 2 * len(speed["by_runtime"])
    rows = {r["role"]: r for r in speed["rows"] if r["runtime"] == speed["runtime"]}
    assert speed["speedup"] == pytest.approx(rows["teacher"]["median_ms"] / rows["student"]["median_ms"])
    assert json.loads((paired / "tb" / "manifest.json").read_text())["role"] == "teacher"
    assert json.loads((paired / "sb" / "manifest.json").read_text())["role"] == "student"
    assert "student" not in (paired / "tb" / "parity.json").read_text()


# --------------------------------------------------------------------------- info, import, serve, bench
def test_info_layers_lists_module_paths_and_shapes(paired, capsys) -> None:
    assert main(["info", str(paired / "teacher"), "--res", "32", "--layers"]) == 0
    out = capsys.readouterr().out
    assert "role: teacher" in out and "model.12" in out and "1x16x8x8" in out
    assert main(["info", str(paired / "teacher"), "--res", "32", "--layers", "--json"]) == 0
    layers = {x["path"]: x for x in json.loads(capsys.readouterr().out)["layers"]}
    assert layers["model.1"]["type"] == "Conv2d" and layers["model.1"]["output_shape"] == [1, 4, 32, 32]


def test_import_says_what_it_dropped(tmp_path, capsys) -> None:
    model = create_model("resnet_6blocks", ngf=4, norm="instance")
    state = dict(model.state_dict())
    norms = [n for n, m in model.named_modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    for n in norms:  # what a checkpoint from pytorch < 0.4 carries
        state[f"{n}.running_mean"] = torch.zeros(1)
        state[f"{n}.running_var"] = torch.ones(1)
    torch.save(state, tmp_path / "latest_net_G.pth")
    assert main(["import", str(tmp_path / "latest_net_G.pth"), "--arch", "resnet_6blocks", "--ngf", "4",
                 "--out", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    kept = len(model.state_dict())
    assert f"kept {kept} of {kept + 2 * len(norms)} keys" in out and f"running_mean x{len(norms)}" in out
    assert "(teacher)" in out and checkpoint_role(tmp_path / "t") == "teacher"
    assert import_summary(tmp_path / "t") in out


def test_serve_access_log_is_off_by_default_and_one_flag_turns_it_on(tmp_path) -> None:
    from serve.settings import ServeSettings

    assert ServeSettings().access_log is False
    bundle = dummy_bundle(tmp_path / "gen", "generate", name="gen")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "slimgan.cli", "serve", str(bundle), "--backend", "dummy",
                             "--port", str(port), "--access-log"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc=proc)
        assert httpx.get(base + "/v2/models").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert '"GET /v2/models HTTP/1.1" 200' in output


def test_bench_quality_defaults_to_the_datas_own_size(paired, tmp_path) -> None:
    assert main(["bench", "quality", str(paired / "teacher"), "--data", str(paired / "data"),
                 "--out", str(tmp_path / "q")]) == 0
    data = json.loads((tmp_path / "q" / "quality.json").read_text())["data"]
    assert data["res"] == 32 and data["res_source"] == "the data's own size"


def test_latency_threads_are_capped_at_the_cores_and_say_so() -> None:
    from benchmarks.latency import _cores, cap_threads

    cores = _cores()
    threads, note = cap_threads([1, cores + 3, 0])
    assert threads == list(dict.fromkeys([1, cores])) and str(cores + 3) in note and f"{cores} cores" in note
    assert cap_threads([1])[1] is None
