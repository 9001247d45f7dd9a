"""``python -m benchmarks.stylegan2_evidence`` at toy scale: the teacher run's generator is read from RUN/teacher."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _digits(root: Path, per_class: int = 12) -> Path:
    """MNIST layout: train/<digit>/*.png and test/<digit>/*.png, 28x28 grey strokes."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for k in range(2):
            d = root / split / str(k)
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 40, (28, 28)).astype(np.uint8)
                p = int(rng.integers(4, 20))
                if k == 0:
                    img[p:p + 4, 3:-3] = 255
                else:
                    img[3:-3, p:p + 4] = 255
                Image.fromarray(img).save(d / f"{i:05d}.png")
    return root


@pytest.mark.slow
def test_stylegan2_evidence_toy_scale(tmp_path) -> None:
    data = _digits(tmp_path / "mnist")
    out = tmp_path / "F"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.stylegan2_evidence", "--data", str(data),
                           "--teacher-steps", "2", "--steps", "2", "--seeds", "0", "--samples", "64",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    rows = {r["row"]: r for r in doc["rows"]}
    assert list(rows) == ["teacher", "scratch", "pruned", "pruned + output KD", "pruned + output KD + DGL-GAN",
                          "pruned + output KD + VEM"]
    for name, row in rows.items():
        assert len(row["per_seed"]) == 1 and math.isfinite(row["fid_classifier"]), name
    assert "vs_baseline" in rows["pruned"] and rows["pruned"]["vs_baseline"]["ci95"] is None  # one seed: no interval
    # the teacher's generator is RUN/teacher; the students (scratch included) are RUN/student
    assert (out / "teacher_s0" / "teacher" / "model.safetensors").is_file()
    assert (out / "scratch_s0" / "student" / "model.safetensors").is_file()
    assert (out / "pruned_s0" / "model.safetensors").is_file()
    cagc = (out / "pruned_output_KD_s0" / "config.yaml").read_text()
    assert str(out / "teacher_s0" / "teacher") in cagc
    assert "| pruned + output KD |" in (out / "results.md").read_text()
