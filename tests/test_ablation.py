"""``slimgan bench ablation`` end to end with tiny steps: rows, finite metrics, JSON and markdown."""

from __future__ import annotations

import json
import math

import pytest

from distill.cli import main


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
    assert rows["scratch"]["psnr_teacher"] is None and math.isfinite(rows["crd"]["psnr_teacher"])
    table = out.with_suffix(".md").read_text()
    assert "| vem |" in table and "| method |" in capsys.readouterr().out
    assert (tmp_path / "ablation_runs" / "vem" / "student" / "model.safetensors").is_file()
