"""Bundles that are whole or absent: atomic export, manifest checksums, I/O errors, models served from memory.

Real processes and real files throughout: ``slimgan export`` runs as a child, is SIGKILLed mid-write, and
writes into a real 2 MiB tmpfs (skipped with the reason when this machine will not mount one).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from distill import create_model, save_checkpoint
from export.bundle import export_bundle
from export.manifest import Manifest
from export.runtimes import get_runtime
from export.staging import ExportIOError

ROOT = Path(__file__).resolve().parents[1]


def slimgan(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slimgan.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_checksums_hold(bundle: Path) -> dict:
    manifest = json.loads((bundle / "manifest.json").read_text())
    sums = manifest["checksums"]
    assert set(manifest["files"].values()) | {"parity.json", "speed.json"} == set(sums)
    for name, digest in sums.items():
        assert sha256(bundle / name) == digest, name
    return manifest


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("atomic")
    torch.manual_seed(0)
    a = save_checkpoint(create_model("resnet_6blocks", ngf=4), root / "a", provenance={"role": "student"})
    torch.manual_seed(1)
    b = save_checkpoint(create_model("resnet_6blocks", ngf=4), root / "b", provenance={"role": "student"})
    return a, b


def test_manifest_checksums_cover_every_listed_file_and_the_reports(ckpts, tmp_path) -> None:
    result = export_bundle(ckpts[0], tmp_path / "B", res=32, fp16=True, speed_rounds=1, speed_block_s=0.05)
    manifest = assert_checksums_hold(result.bundle)
    assert {"model.onnx", "model.fp16.onnx", "model.xml", "model.bin"} <= set(manifest["checksums"])
    assert Manifest.load(result.bundle).files == manifest["files"]
    assert [p.name for p in tmp_path.iterdir()] == ["B"]  # no temporary sibling left


def test_reexport_replaces_the_bundle_and_refuses_a_folder_that_is_not_one(ckpts, tmp_path) -> None:
    out = tmp_path / "B"
    first = assert_checksums_hold(export_bundle(ckpts[0], out, res=32, check=False).bundle)
    (out / "stale.txt").write_text("from the old bundle")
    second = assert_checksums_hold(export_bundle(ckpts[1], out, res=32, check=False).bundle)
    assert first["source_sha256"] != second["source_sha256"] and not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["B"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    proc = slimgan("export", str(ckpts[0]), "--out", str(other), "--res", "32", "--no-check")
    assert proc.returncode == 2 and "is not a slimgan bundle" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (other / "notes.txt").read_text() == "keep me" and [p.name for p in other.iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_sigkilled_reexport_leaves_the_old_bundle_whole_and_the_next_export_cleans_up(ckpts, tmp_path) -> None:
    out = tmp_path / "B"
    old = assert_checksums_hold(export_bundle(ckpts[0], out, res=32, check=False).bundle)
    child = subprocess.Popen([sys.executable, "-m", "slimgan.cli", "export", str(ckpts[1]), "--out", str(out), "--res", "32",
                              "--fp16", "--speed-rounds", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staged = tmp_path / f".B.tmp-{child.pid}"
    deadline = time.monotonic() + 240
    while not (staged / "model.onnx").is_file() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (staged / "model.onnx").is_file(), "the re-export never wrote its model"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    assert child.returncode == -signal.SIGKILL
    # the named folder is the old bundle, every file matching its manifest; the half-written one is aside
    kept = assert_checksums_hold(out)
    assert kept["source_sha256"] == old["source_sha256"] and staged.exists()
    ort = get_runtime("onnxruntime").load_from_bundle(out, Manifest.load(out), "fp32", threads=1)
    assert ort.run(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 3, 32, 32)
    new = assert_checksums_hold(export_bundle(ckpts[1], out, res=32, check=False).bundle)
    assert new["source_sha256"] != old["source_sha256"]
    assert not staged.exists() and [p.name for p in tmp_path.iterdir()] == ["B"]


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", f"slimgan-{uuid.uuid4().hex[:8]}", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs here: {done.stderr.strip() or done.returncode}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_export_to_a_full_disk_is_one_line_with_the_errno_and_leaves_nothing(tiny_tmpfs, tmp_path) -> None:
    torch.manual_seed(0)
    big = save_checkpoint(create_model("resnet_6blocks", ngf=16), tmp_path / "big")  # ~2 MB of fp32 weights per graph
    proc = slimgan("export", str(big), "--out", str(tiny_tmpfs / "B"), "--res", "32", "--no-check")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"slimgan export: error: cannot write {tiny_tmpfs / 'B'}") and "[Errno 28] No space left on device" in lines[0]
    assert os.listdir(tiny_tmpfs) == []  # no bundle, no hidden temporary folder or file


def test_library_io_error_is_an_export_io_error(ckpts, tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):  # root writes anywhere: a file where the parent folder should be instead
            (tmp_path / "file").write_text("x")
            target = tmp_path / "file" / "B"
        else:
            target = ro / "B"
        with pytest.raises(ExportIOError, match=r"cannot write .*\[Errno \d+\]"):
            export_bundle(ckpts[0], target, res=32, check=False)
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("runtime,role,files", [("onnxruntime", "fp32", ["model.onnx"]),
                                                 ("openvino", "openvino", ["model.bin", "model.xml"])])
def test_served_models_live_in_memory_so_changed_files_change_nothing(ckpts, tmp_path, runtime, role, files) -> None:
    bundle = export_bundle(ckpts[0], tmp_path / "B", res=32, check=False).bundle
    session = get_runtime(runtime).load_from_bundle(bundle, Manifest.load(bundle), role, threads=1)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    before = session.run(x)
    for name in files:  # truncate in place (what a crashed copy or a re-export by hand does)
        with open(bundle / name, "r+b") as f:
            f.truncate(16)
    after = session.run(x)
    np.testing.assert_array_equal(before, after)
    session.close()
