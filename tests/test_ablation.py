"""``slimgan bench ablation`` end to end with tiny steps: rows, finite metrics, JSON and markdown."""

from __future__ import annotations

import json
import math

import pytest
import torch

from distill import load_checkpoint
from distill.cli import main
from distill.data.datasets import TransformConfig, build_dataset
from distill.metrics import psnr


@pytest.mark.slow
def test_bench_ablation_tiny(tmp_path, capsys):
    out = tmp_path / "ablation.json"
    code = main(["bench", "ablation", "--quick", "--steps", "2", "--teacher-steps", "2",
                 "--methods", "scratch,crd,vem", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["scratch", "crd", "vem"]
    for r in rows.values():
        assert math.isfinite(r["psnr_gt"]) and math.isfinite(r["sec_per_step"]) and r["sec_per_step"] > 0
        assert r["fid"] is None  # no Inception weights configured
    # every row is measured against the one shared teacher, scratch included (same held-out pairs)
    assert math.isfinite(rows["scratch"]["psnr_teacher"]) and math.isfinite(rows["crd"]["psnr_teacher"])
    runs = tmp_path / "ablation_runs"
    with torch.no_grad():
        test = build_dataset("aligned", runs / "data", "test", transform=TransformConfig(train=False))
        a = torch.stack([test[i]["A"] for i in range(16)])
        s = load_checkpoint(runs / "scratch" / "student")(a).clamp(-1, 1)
        t = load_checkpoint(runs / "teacher" / "teacher")(a).clamp(-1, 1)
    assert rows["scratch"]["psnr_teacher"] == pytest.approx(psnr(s, t), abs=1e-3)
    assert report["teacher_steps"] == 2 and report["steps"] == 2
    table = out.with_suffix(".md").read_text()
    assert "| vem |" in table and "| method |" in capsys.readouterr().out
    assert (tmp_path / "ablation_runs" / "vem" / "student" / "model.safetensors").is_file()
