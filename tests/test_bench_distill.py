"""``slimgan bench distill``: like-for-like rows (same images, steps, seeds), mean ± std over seeds, both tasks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.distill_bench import (
    BenchSetup,
    Scale,
    UncondScale,
    aggregate,
    compare,
    run_distill_bench,
)
from distill import load_checkpoint
from distill.data import synthesize
from distill.metrics import fid_classifier, load_classifier
from slimgan.cli import main


def _finite(row: dict, key: str) -> bool:
    return row[key] is not None and math.isfinite(row[key]) and math.isfinite(row[key + "_std"])


def test_aggregate_and_compare() -> None:
    row = aggregate([{"psnr_gt": 10.0, "x": 1.0}, {"psnr_gt": 12.0, "x": math.nan}, {"psnr_gt": 14.0, "x": 2.0}],
                    [0, 1, 2])
    assert row["psnr_gt"] == pytest.approx(12.0) and row["psnr_gt_std"] == pytest.approx(2.0)  # ddof 1
    assert row["x"] is None and row["x_std"] is None  # a NaN seed makes the mean null, never a partial mean
    assert row["seeds"] == [0, 1, 2] and [p["psnr_gt"] for p in row["per_seed"]] == [10.0, 12.0, 14.0]
    # lower fid is better; seeds paired: a beats b on every seed, c loses on every seed, d is noise
    def row(values):
        return aggregate([{"fid_classifier": v} for v in values], [0, 1, 2])

    report = {"a": row([5.0, 6.0, 5.5]), "b": row([8.0, 8.4, 8.2]), "c": row([9.0, 9.5, 9.1]),
              "d": row([7.0, 9.6, 8.1])}
    out = {c["row"]: c for c in compare(report, ["a", "c", "d"], "b", "fid_classifier", higher_is_better=False)}
    assert out["a"]["diff"] == pytest.approx(-2.7) and out["a"]["beats"] and out["a"]["outcome"] == "better"
    lo, hi = out["a"]["ci95"]
    assert lo < -2.7 < hi < 0  # the interval is around the mean paired difference and excludes 0
    assert out["c"]["diff"] == pytest.approx(1.0) and not out["c"]["beats"] and out["c"]["outcome"] == "worse"
    assert out["d"]["ci95"][0] < 0 < out["d"]["ci95"][1] and out["d"]["outcome"] == "no difference shown"


def test_paired_on_a_users_aligned_folder(tmp_path, capsys) -> None:
    """A user's own aligned folder of 64x64 pairs: every row sees all its training pairs, 3 seeds."""
    data = synthesize("paired", tmp_path / "pairs", num=6, size=64, seed=5, num_test=4)
    out = tmp_path / "F.json"
    report = run_distill_bench(out, seeds=3, data=data, scale=Scale(1, 1, 0, 0), work=tmp_path / "w")
    setup = report["setup"]
    assert setup["train_images"] == {"scratch": 6, "distilled": 6} and setup["size"] == 64
    assert setup["held_out_pairs"] == 4 and setup["seeds"] == [0, 1, 2]
    for name in ("teacher", "scratch", "distilled"):
        assert report[name]["seeds"] == [0, 1, 2] and _finite(report[name], "psnr_gt"), name
    assert _finite(report["scratch"], "psnr_teacher") and _finite(report["distilled"], "psnr_teacher")
    # the rows are trained on the user's folder, nothing is generated beside it
    assert not (tmp_path / "w" / "data").exists()
    assert [p["psnr_gt"] for p in report["distilled"]["per_seed"]] != [report["distilled"]["psnr_gt"]] * 3
    assert json.loads(out.read_text())["comparisons"][0]["metric"] == "psnr_gt"
    assert "| distilled |" in out.with_suffix(".md").read_text()
    # each seed's distilled student learned from that seed's teacher
    cfg = (tmp_path / "w" / "seed2" / "distilled" / "config.yaml").read_text()
    assert str(tmp_path / "w" / "seed2" / "teacher" / "teacher") in cfg


def _class_folders(root, per_class: int = 8) -> None:
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


def test_unconditional_on_class_folders(tmp_path) -> None:
    data = tmp_path / "digits"
    _class_folders(data)
    out = tmp_path / "U.json"
    report = run_distill_bench(out, seeds=3, task="unconditional", data=data, work=tmp_path / "w",
                               scale=UncondScale(teacher_d=4, student_d=2, teacher_steps=1, student_steps=1,
                                                 batch_size=4, samples=16, classifier_epochs=1))
    setup = report["setup"]
    assert setup["train_images"]["scratch"] == setup["train_images"]["distilled"] == 16
    assert setup["depth_scale_factor"] == {"teacher": 4, "student": 2}
    assert 0.0 <= setup["classifier_accuracy"] <= 1.0
    for name in ("teacher", "scratch", "distilled", "dgl_gan"):
        assert report[name]["seeds"] == [0, 1, 2] and _finite(report[name], "fid_classifier"), name
        assert _finite(report[name], "swd"), name
    # a 1-step teacher cannot beat scratch beyond the interval: the table says the rows are not evidence
    check = report["teacher_check"]
    assert check["teacher_beats_scratch"] is check["beats"]
    if not check["beats"]:
        assert "TEACHER TOO WEAK" in out.with_suffix(".md").read_text()
    # the reported number is fid_classifier of that seed's student on its z draw (re-computed here)
    clf = load_classifier(next((tmp_path / "w" / "classifier").iterdir()))
    gen = load_checkpoint(tmp_path / "w" / "seed1" / "distilled" / "student")
    with torch.no_grad():
        fake = gen(torch.randn(16, gen.nz, generator=torch.Generator().manual_seed(1001))).clamp(-1, 1)
    assert report["distilled"]["per_seed"][1]["fid_classifier"] == pytest.approx(
        fid_classifier(clf.real_features, fake, clf), rel=1e-4)
    # the data folder is linked, never copied
    assert all(p.is_symlink() for p in (tmp_path / "w" / "data" / "train").iterdir())
    # dgl_gan's D̄ is the teacher's discriminator, the students share depth and discriminator
    dgl = (tmp_path / "w" / "seed0" / "dgl_gan" / "config.yaml").read_text()
    assert str(tmp_path / "w" / "teacher" / "discriminator") in dgl


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["bench", "distill", "--task", "unconditional", "--out", str(tmp_path / "x.json")]) == 2
    assert "needs --data" in capsys.readouterr().err
    (tmp_path / "flat").mkdir()
    assert main(["bench", "distill", "--data", str(tmp_path / "flat"), "--out", str(tmp_path / "x.json")]) == 2
    assert "has no train/ folder" in capsys.readouterr().err
    assert main(["bench", "distill", "--seeds", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert main(["bench", "distill", "--steps", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err


def test_synthetic_overrides_share_data_and_vary_seed(tmp_path) -> None:
    a, b = BenchSetup(tmp_path, Scale(1, 1, 8, 32), seed=0), BenchSetup(tmp_path, Scale(1, 1, 8, 32), seed=1)
    assert "train.seed=0" in a.overrides() and "train.seed=1" in b.overrides()
    assert [o for o in a.overrides() if o.startswith("data.")] == [o for o in b.overrides() if o.startswith("data.")]
    assert a.teacher_dir != b.teacher_dir


@pytest.mark.slow
def test_unconditional_from_a_users_teacher_without_data(tmp_path) -> None:
    """--task unconditional --teacher DIR, no --data: a 64 px DCGAN's samples are the data; scratch and kd_gan
    with swd over 3 seeds and intervals; dgl_gan with the teacher's discriminator."""
    from distill.checkpoint import save_checkpoint
    from distill.metrics.swd import sliced_wasserstein_distance
    from distill.registry import create_model

    torch.manual_seed(0)
    teacher = save_checkpoint(create_model("dcgan", nz=100, ngf=16, image_size=64), tmp_path / "G", {"role": "teacher"})
    disc = save_checkpoint(create_model("dcgan_discriminator", ndf=8, image_size=64), tmp_path / "D",
                           {"role": "discriminator"})
    out = tmp_path / "U.json"
    assert main(["bench", "distill", "--task", "unconditional", "--teacher", str(teacher), "--quick", "--steps", "2",
                 "--seeds", "0", "1", "2", "--teacher-discriminator", str(disc), "--work", str(tmp_path / "w"),
                 "--no-progress", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["teacher", "scratch", "kd_gan", "dgl_gan"]
    assert report["setup"]["teacher"]["size"] == 64 and report["setup"]["student"]["ngf"] == 2
    for name, row in rows.items():
        assert len(row["per_seed"]) == 3 and _finite(row, "swd"), name
    for name in ("kd_gan", "dgl_gan"):
        cmp = rows[name]["vs_baseline"]["swd"]
        assert cmp["ci95"][0] <= cmp["diff"] <= cmp["ci95"][1] and cmp["beats"] is (cmp["ci95"][1] < 0)
    # the data is the teacher's samples, written once; the students are 64 px DCGANs of the teacher's z size
    assert len(list((tmp_path / "w" / "data" / "train").iterdir())) == 512
    student = load_checkpoint(tmp_path / "w" / "seed1" / "kd_gan" / "student")
    assert student.nz == 100 and student(torch.zeros(1, 100)).shape[-1] == 64
    # swd of seed 1's student re-computed: its samples (z seed 1001) against the reference teacher samples
    from benchmarks.uncond_teacher_bench import REFERENCE_Z_SEED, teacher_samples

    ref = teacher_samples(load_checkpoint(teacher), 256, REFERENCE_Z_SEED)
    swd = sliced_wasserstein_distance(teacher_samples(student, 256, 1001), ref, patches_per_image=64)["swd"]
    assert rows["kd_gan"]["per_seed"][1]["swd"] == pytest.approx(swd, rel=1e-4)
    # without --teacher-discriminator the table says why dgl_gan is absent
    out2 = tmp_path / "U2.json"
    assert main(["bench", "distill", "--task", "unconditional", "--teacher", str(teacher), "--quick", "--steps", "1",
                 "--seeds", "1", "--work", str(tmp_path / "w"), "--no-progress", "--out", str(out2)]) == 0
    assert "dgl_gan: absent" in out2.with_suffix(".md").read_text()
