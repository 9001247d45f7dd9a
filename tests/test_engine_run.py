"""The engine end to end on tiny models: outputs, resume equivalence, two-process DDP (gloo), Ctrl-C."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from distill import create_model, load_checkpoint, save_checkpoint
from distill.checkpoint import checkpoint_role
from distill.data import synthesize
from distill.engine.config import load_config
from distill.engine.loop import run_training


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    synthesize("paired", root / "data", num=8, size=32, seed=0, num_test=4)
    torch.manual_seed(0)
    save_checkpoint(create_model("resnet_6blocks", ngf=8), root / "teacher")
    return root


def recipe(assets: Path, steps: int = 6, **train) -> dict:
    return {
        "data": {"root": str(assets / "data"), "layout": "aligned"},
        "teacher": {"checkpoint": str(assets / "teacher")},
        "student": {"arch": "resnet_6blocks", "ngf": 4},
        "discriminator": {"arch": "basic", "ndf": 4, "gan_mode": "lsgan", "conditional": True},
        "loss": [
            {"name": "adv", "weight": 1.0},
            {"name": "l1_teacher", "weight": 10.0},
            {"name": "feature_kd", "weight": 1.0, "layers": ["model.9", "model.12"]},
        ],
        "train": {"steps": steps, "batch_size": 2, "log_every": 1, "device": "cpu", "progress": False,
                  "decay_start": 2, **train},
        "eval": {"num": 4, "batch_size": 4},
    }


def rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


LOSS_COLUMNS = ("D", "G_adv", "G_l1_teacher", "G_feature_kd", "G_total", "lr")


def test_run_writes_every_artifact_and_a_clean_student(assets, tmp_path):
    out = tmp_path / "run"
    result = run_training(load_config(raw=recipe(assets, steps=3, sample_every=2)), out)
    for name in ("config.yaml", "metrics.csv", "state.pt", "student/config.json", "student/model.safetensors",
                 "best/model.safetensors", "discriminator/config.json", "samples/step_000002.png",
                 "samples/step_000003.png"):
        assert (out / name).is_file(), name
    table = rows(out / "metrics.csv")
    assert [r["step"] for r in table] == ["1", "2", "3"]
    assert all(r[c] != "" for r in table for c in LOSS_COLUMNS)
    assert table[-1]["eval_psnr_gt"] and table[-1]["eval_ssim_teacher"] and table[-1]["eval_vol"]
    assert float(table[-1]["lr"]) == 0.0  # linear decay reaches zero at the last step
    assert result["best_metric"] == "psnr_gt"
    student = load_checkpoint(out / "student")
    assert checkpoint_role(out / "student") == "student" and checkpoint_role(out / "best") == "student"
    # adapters belong to the distiller: the student checkpoint is exactly the architecture's state dict
    assert set(load_file(str(out / "student/model.safetensors"))) == set(create_model("resnet_6blocks", ngf=4).state_dict())
    assert student(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["step"] == 3 and any("adapters" in k for k in state["modules"]["terms"])


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(assets, tmp_path):
    cfg = load_config(raw=recipe(assets, steps=6))
    run_training(cfg, tmp_path / "full")
    run_training(cfg, tmp_path / "split", stop_at=3)
    assert torch.load(tmp_path / "split/state.pt", weights_only=True)["step"] == 3
    assert len(rows(tmp_path / "split/metrics.csv")) == 3
    run_training(cfg, tmp_path / "split", resume=True)
    full, split = rows(tmp_path / "full/metrics.csv"), rows(tmp_path / "split/metrics.csv")
    assert [r["step"] for r in split] == [str(i) for i in range(1, 7)]
    for a, b in zip(full, split, strict=True):
        for c in LOSS_COLUMNS:
            assert a[c] == b[c], (a["step"], c, a[c], b[c])
    wa = load_file(str(tmp_path / "full/student/model.safetensors"))
    wb = load_file(str(tmp_path / "split/student/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, raw: dict, base: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    # each rank is handed its own --out so that a write by rank 1 would be visible
    run_training(load_config(raw=raw), Path(base) / f"out_rank{rank}", device="cpu")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_on_cpu_only_rank0_writes(assets, tmp_path):
    raw = recipe(assets, steps=2)
    mp.spawn(_ddp_worker, args=(2, _free_port(), raw, str(tmp_path)), nprocs=2, join=True)
    out0, out1 = tmp_path / "out_rank0", tmp_path / "out_rank1"
    assert not out1.exists()
    table = rows(out0 / "metrics.csv")
    assert [r["step"] for r in table] == ["1", "2"]
    assert all(r["G_total"] for r in table)
    load_checkpoint(out0 / "student")
    assert torch.load(out0 / "state.pt", weights_only=True)["step"] == 2


def test_teacher_training_and_cyclegan_method(tmp_path):
    synthesize("unpaired", tmp_path / "unpaired", num=4, size=32, seed=0, num_test=2)
    raw = {
        "method": {"name": "cyclegan", "lambda_cycle": 10.0, "lambda_identity": 0.5},
        "data": {"root": str(tmp_path / "unpaired"), "layout": "unaligned"},
        "generator": {"arch": "resnet_6blocks", "ngf": 4},
        "discriminator": {"arch": "basic", "ndf": 4},
        "train": {"steps": 2, "batch_size": 1, "log_every": 1, "device": "cpu", "progress": False},
        "eval": {"num": 2},
    }
    run_training(load_config(raw=raw), tmp_path / "cyc", kind="train")
    table = rows(tmp_path / "cyc/metrics.csv")
    assert {"G_GAN_A", "G_cycle_A", "G_idt_B", "D"} <= set(table[0])
    # a teacher run names its generator by what it is, and records the role in the provenance
    assert not (tmp_path / "cyc" / "student").exists()
    for name in ("teacher", "generator_b", "discriminator", "discriminator_b"):
        load_checkpoint(tmp_path / "cyc" / name)
    assert checkpoint_role(tmp_path / "cyc" / "teacher") == "teacher"
    assert checkpoint_role(tmp_path / "cyc" / "discriminator") == "discriminator"
