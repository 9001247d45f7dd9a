"""``slimgan bench ablation`` end to end with tiny steps: rows over 3 seeds, the online CRD row, JSON and markdown."""

from __future__ import annotations

import json
import math

import pytest
import torch

from distill import load_checkpoint
from distill.data.datasets import TransformConfig, build_dataset
from distill.metrics import psnr
from slimgan.cli import main


@pytest.mark.slow
def test_bench_ablation_tiny(tmp_path, capsys):
    out = tmp_path / "ablation.json"
    code = main(["bench", "ablation", "--quick", "--steps", "2", "--teacher-steps", "2",
                 "--methods", "scratch,crd", "--seeds", "3", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["scratch", "crd"] and report["seeds"] == [0, 1, 2]
    for r in rows.values():
        assert r["seeds"] == [0, 1, 2] and len(r["per_seed"]) == 3
        assert math.isfinite(r["psnr_gt"]) and math.isfinite(r["psnr_gt_std"]) and r["sec_per_step"] > 0
        assert r["fid"] is None  # no Inception weights configured
    assert math.isfinite(rows["scratch"]["psnr_teacher"]) and math.isfinite(rows["crd"]["psnr_teacher"])
    runs = tmp_path / "ablation_runs"
    # scratch is measured against its seed's teacher on the same held-out pairs
    with torch.no_grad():
        test = build_dataset("aligned", runs / "data", "test", transform=TransformConfig(train=False))
        a = torch.stack([test[i]["A"] for i in range(16)])
        s = load_checkpoint(runs / "seed1" / "scratch" / "student")(a).clamp(-1, 1)
        t = load_checkpoint(runs / "seed1" / "teacher" / "teacher")(a).clamp(-1, 1)
    assert rows["scratch"]["per_seed"][1]["psnr_teacher"] == pytest.approx(psnr(s, t), abs=1e-3)
    # the CRD row runs as the paper does: its own online teacher and D̄, saved beside the student
    crd = runs / "seed0" / "crd"
    assert (crd / "teacher" / "model.safetensors").is_file(), "the online CRD teacher was not saved"
    for method in ("scratch", "crd"):
        for seed in (0, 1, 2):
            assert (runs / f"seed{seed}" / method / "student" / "model.safetensors").is_file(), (method, seed)
    assert "mode: online" in (crd / "config.yaml").read_text()
    assert report["teacher_steps"] == 2 and report["steps"] == 2
    table = out.with_suffix(".md").read_text()
    assert "| crd |" in table and "±" in table and "| method |" in capsys.readouterr().out
