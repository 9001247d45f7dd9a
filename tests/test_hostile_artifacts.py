"""Tampered artifacts: lying checkpoints and YAML alias bombs are refused fast, in one line, exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from distill import create_model, load_checkpoint, save_checkpoint
from distill.engine.config import load_config
from distill.errors import CheckpointError, ConfigError

ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi", strict=True)
)


# The child reports its own mm's high-water mark (VmHWM): wait4's ru_maxrss also counts the memory of
# the (large, late in a test session) pytest process it was forked from.
_REPORT_PEAK = """
import atexit, sys
peak_file = sys.argv.pop(1)
def report():
    with open("/proc/self/status") as status, open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(report)
from slimgan.cli import main
sys.exit(main(sys.argv[1:]))
"""


def slimgan(*args: str) -> tuple[int, str, int]:
    """Run the CLI; (exit code, stderr, peak RSS of the child in KiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        proc = subprocess.run([sys.executable, "-c", _REPORT_PEAK, str(peak_file), *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return proc.returncode, proc.stderr, int(peak_file.read_text())


@pytest.mark.parametrize("text", [ALIAS_BOMB, "a: &a [*a]\n", "base: &b {lr: 1}\ntrain:\n  <<: *b\n"])
def test_yaml_aliases_are_refused_before_expansion(tmp_path: Path, text: str) -> None:
    assert len(ALIAS_BOMB) < 500
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml: line \d+: YAML alias \*\w+ is not allowed"):
        load_config(recipe)
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ConfigError, match="alias"):
        load_config(raw={}, overrides=["train.steps=&x [*x]"])


def test_yaml_bomb_exits_2_in_one_line(tmp_path: Path) -> None:
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(ALIAS_BOMB)
    code, err, _ = slimgan("distill", "--config", str(recipe), "--out", str(tmp_path / "run"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "alias" in err, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(create_model("resnet_6blocks", ngf=4), tmp_path_factory.mktemp("ck") / "good")


def tamper(src: Path, dst: Path, config: dict | None = None, weights: bytes | None = None) -> Path:
    shutil.copytree(src, dst)
    if config is not None:
        data = json.loads((dst / "config.json").read_text())
        for key, value in config.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
        (dst / "config.json").write_text(json.dumps(data))
    if weights is not None:
        (dst / "model.safetensors").write_bytes(weights)
    return dst


def test_config_that_disagrees_with_weights_is_refused_before_building(checkpoint: Path, tmp_path: Path) -> None:
    wide = tamper(checkpoint, tmp_path / "wide", config={"kwargs": {"ngf": 8}})
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"key '.*' has shape \(4\b.*\) but the model expects \(8\b"):
        load_checkpoint(wide)
    # ngf 2000 describes 4.3 G elements (17 GB): refused from the meta build, nothing allocated
    huge = tamper(checkpoint, tmp_path / "huge", config={"kwargs": {"ngf": 2000}})
    with pytest.raises(CheckpointError, match=r"parameters, over the limit of"):
        load_checkpoint(huge)
    assert time.perf_counter() - t0 < 5
    code, err, peak_kib = slimgan("info", str(huge))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "huge" in err, err
    assert peak_kib < 1024 * 1024, f"peak RSS {peak_kib} KiB: the described model was allocated"
    # the untampered checkpoint still loads
    assert load_checkpoint(checkpoint, max_params=10**9).state_dict().keys()


def test_malformed_checkpoints_exit_2_with_one_line(checkpoint: Path, tmp_path: Path) -> None:
    weights = (checkpoint / "model.safetensors").read_bytes()
    cases = {
        "truncated": ({}, weights[: len(weights) // 2], "is truncated"),
        "junk": ({}, b"\xff" * 64, "not a safetensors file"),
        "header": ({}, (20).to_bytes(8, "little") + b"{not json" + b" " * 11, "not valid JSON"),
        "version": ({"format_version": "1"}, None, "'format_version' must be an integer"),
        "kwargs": ({"kwargs": [1, 2]}, None, "'kwargs' must be an object"),
        "kwarg_type": ({"kwargs": {"ngf": "wide"}}, None, "cannot build 'resnet_6blocks'"),
        "arch": ({"arch": "nope"}, None, "unknown architecture 'nope'"),
    }
    for name, (config, data, needle) in cases.items():
        bad = tamper(checkpoint, tmp_path / name, config=config, weights=data)
        with pytest.raises((CheckpointError, ConfigError), match=needle):
            load_checkpoint(bad)
    code, err, _ = slimgan("info", str(tmp_path / "truncated"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is truncated" in err, err


def test_refused_pickle_is_one_line_without_the_unsafe_advice(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "latest_net_G.pth"
    torch.save({"w": Payload()}, path)
    code, err, _ = slimgan("import", str(path), "--arch", "resnet_6blocks", "--ngf", "4", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "weights-only" in err and "weights_only=False" not in err and "this must never run" not in err


def test_damaged_training_state_is_one_line(tmp_path: Path) -> None:
    from distill.checkpoint import read_training_state

    path = tmp_path / "state.pt"
    torch.save({"step": 3, "modules": {}}, path)  # missing optimizers, schedulers, scaler, rng
    with pytest.raises(CheckpointError, match="has no 'optimizers' entry"):
        read_training_state(path)
    torch.save({"step": "3", "modules": {}, "optimizers": {}, "schedulers": {}, "scaler": {}, "rng": {}}, path)
    with pytest.raises(CheckpointError, match="'step' has the wrong type"):
        read_training_state(path)
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="cannot be read as a weights-only training state"):
        read_training_state(path)
