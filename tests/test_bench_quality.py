"""FID formula, the in-house Inception loader, KID/IS, mIoU hook and the `slimgan bench quality` harness."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import linalg

from benchmarks import quality
from distill.errors import CheckpointError, MissingDependencyError
from distill.metrics import inception
from distill.metrics.inception import FIDInception, load_fid_inception
from tests.bench_helpers import fake_inception_weights, fake_segmenter


@pytest.fixture(autouse=True)
def _small_inception(monkeypatch):
    """Resize to 75 px (Inception's minimum) instead of FID's 299 so the tests stay fast on 2 cores."""
    monkeypatch.setattr(inception, "INPUT_SIZE", 75)


def _spd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d


@pytest.mark.parametrize("d", [2, 16, 64])
def test_frechet_distance_matches_scipy_formula(d: int) -> None:
    rng = np.random.default_rng(d)
    for _ in range(3):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 2
        s1, s2 = _spd(rng, d) + 0.01 * np.eye(d), _spd(rng, d)
        covmean = linalg.sqrtm(s1 @ s2)
        expected = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(covmean)))
        assert quality.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-3)


def test_frechet_distance_properties() -> None:
    rng = np.random.default_rng(1)
    mu, s = rng.standard_normal(8), _spd(rng, 8)
    assert quality.frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-6)
    # 1-d Gaussians: (m1 - m2)^2 + (sd1 - sd2)^2
    assert quality.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0, abs=1e-9)
    # singular covariances (rank 2 in 6-d) fall back to the eps offset and stay finite
    s1, s2 = _spd(rng, 6, rank=2), _spd(rng, 6, rank=2)
    value = quality.frechet_distance(np.zeros(6), s1, np.ones(6), s2)
    assert math.isfinite(value) and value > 0
    with pytest.raises(ValueError):
        quality.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_fid_from_features_low_rank_path_matches_formula() -> None:
    rng = np.random.default_rng(3)
    for n1, n2, d in [(10, 7, 32), (5, 5, 64), (80, 90, 16)]:  # rank-deficient and full-rank covariances
        f1, f2 = rng.standard_normal((n1, d)), rng.standard_normal((n2, d)) * 1.5 + 0.3
        s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
        expected = float(np.sum((f1.mean(0) - f2.mean(0)) ** 2) + np.trace(s1 + s2)
                         - 2 * np.trace(np.real(linalg.sqrtm(s1 @ s2))))
        assert quality.fid_from_features(f1, f2) == pytest.approx(expected, abs=1e-3)


def test_kid_and_inception_score() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((200, 16)), rng.standard_normal((200, 16))
    same, _ = quality.kid_from_features(a, b, num_subsets=20, subset_size=100)
    shifted, _ = quality.kid_from_features(a, b + 1.0, num_subsets=20, subset_size=100)
    assert abs(same) < 0.02 and shifted > 10 * max(abs(same), 1e-3)
    # IS: identical predictions -> 1; confident, uniformly spread predictions over K classes -> K
    assert quality.inception_score_from_logits(np.zeros((50, 10)), splits=5)[0] == pytest.approx(1.0)
    confident = np.eye(10)[np.arange(100) % 10] * 50.0
    assert quality.inception_score_from_logits(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-3)


def test_inception_weights_round_trip_with_strict_keys(tmp_path) -> None:
    path = fake_inception_weights(tmp_path / "pt_inception-2015-12-05-test.pth")
    loaded = load_fid_inception(path)
    reference = FIDInception(input_size=75)
    reference.load_state_dict(torch.load(path, weights_only=True))
    reference.eval()
    x = torch.rand(2, 3, 40, 40) * 2 - 1
    with torch.no_grad():
        f1, l1 = loaded(x)
        f2, l2 = reference(x)
    assert f1.shape == (2, 2048) and l1.shape == (2, 1008)
    torch.testing.assert_close(f1, f2)
    torch.testing.assert_close(l1, l2)
    assert "Mixed_7c.branch3x3dbl_3b.conv.weight" in reference.state_dict()
    assert tuple(reference.state_dict()["fc.weight"].shape) == (1008, 2048)

    state = torch.load(path, weights_only=True)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="unexpected key 'extra.weight'"):
        load_fid_inception(tmp_path / "extra.pth")
    state.pop("extra.weight")
    state.pop("Mixed_6a.branch3x3.conv.weight")
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing key"):
        load_fid_inception(tmp_path / "missing.pth")
    state = {k: v for k, v in torch.load(path, weights_only=True).items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")  # pre-0.4.1 files lack num_batches_tracked: accepted
    load_fid_inception(tmp_path / "old.pth")


def test_fid_kid_is_with_weights_and_unavailable_without(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(quality.WEIGHTS_ENV, raising=False)
    weights = fake_inception_weights(tmp_path / "pt_inception-2015-12-05-test.pth")
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(4, 3, 32, 32, generator=gen) * 2 - 1
    fake = (torch.rand(4, 3, 32, 32, generator=gen) * 0.2).clamp(-1, 1)
    fid_same = quality.compute_fid(real, real, weights, batch_size=4)
    fid_diff = quality.compute_fid(real, [fake[:2], fake[2:]], weights, batch_size=4)  # iterable of batches
    assert abs(fid_same) < 1e-3 * max(1.0, fid_diff)
    assert fid_diff > 0 and math.isfinite(fid_diff)
    assert math.isfinite(quality.compute_kid(real, fake, weights, subset_size=3, num_subsets=5))
    assert quality.inception_score(fake, weights, splits=2) >= 1.0 - 1e-9
    with pytest.raises(MissingDependencyError, match="unavailable"):
        quality.compute_fid(real, fake, None)
    with pytest.raises(MissingDependencyError):
        quality.compute_fid(real, fake, tmp_path / "absent.pth")


def test_miou_hook() -> None:
    images = torch.tensor([-0.9, 0.0, 0.9]).repeat(2, 3, 4, 1)  # (2, 3, 4, 3): columns of class 0, 1, 2
    labels = fake_segmenter(images)
    assert quality.compute_miou(fake_segmenter, images, labels, num_classes=3) == pytest.approx(1.0)
    wrong = labels.clone()
    wrong[..., 2] = 1  # class-2 column labelled 1: IoU0 = 1, IoU1 = 8/16, IoU2 = 0/8
    assert quality.compute_miou(fake_segmenter, images, wrong, num_classes=3) == pytest.approx((1 + 0.5 + 0) / 3)
    assert quality.load_callable("tests.bench_helpers:fake_segmenter") is fake_segmenter


def _checkpoints(tmp_path):
    from distill import create_model, save_checkpoint

    torch.manual_seed(0)
    teacher = save_checkpoint(create_model("resnet_6blocks", ngf=8), tmp_path / "teacher")
    student = save_checkpoint(create_model("resnet_6blocks", ngf=4), tmp_path / "student")
    return teacher, student


def test_bench_quality_cli(tmp_path, monkeypatch, capsys) -> None:
    from distill.data import synthesize
    from slimgan.cli import main

    monkeypatch.delenv(quality.WEIGHTS_ENV, raising=False)
    data = tmp_path / "data"
    synthesize("paired", data, num=4, size=32, seed=0)
    teacher, student = _checkpoints(tmp_path)
    weights = fake_inception_weights(tmp_path / "pt_inception-2015-12-05-test.pth")
    common = ["bench", "quality", str(student), "--teacher", str(teacher), "--data", str(data), "--res", "32",
              "--batch-size", "2", "--num", "3", "--kid-subset-size", "3", "--stats-cache", str(tmp_path / "cache")]

    # without weights: FID/KID/IS are null / "unavailable", the other metrics are numbers
    assert main([*common, "--out", str(tmp_path / "q0")]) == 0
    report = json.loads((tmp_path / "q0" / "quality.json").read_text())
    assert report["inception"]["available"] is False
    for row in report["results"]:
        assert row["fid"] is None and row["kid"] is None and row["is"] is None
        assert row["vol"] > 0 and math.isfinite(row["psnr_gt"]) and -1 <= row["ssim_gt"] <= 1
    assert "unavailable" in (tmp_path / "q0" / "quality.md").read_text()
    student_row = next(r for r in report["results"] if not r["is_teacher"])
    assert math.isfinite(student_row["psnr_teacher"])

    args = [*common, "--inception-weights", str(weights), "--seg-model", "tests.bench_helpers:fake_segmenter",
            "--num-classes", "3"]
    assert main([*args, "--out", str(tmp_path / "q1")]) == 0
    report = json.loads((tmp_path / "q1" / "quality.json").read_text())
    assert report["inception"]["available"] is True and report["inception"]["reference_cached"] is False
    for row in report["results"]:
        assert row["fid"] > 0 and math.isfinite(row["kid"]) and row["is"] >= 1.0 - 1e-9
        assert 0.0 <= row["miou"] <= 1.0
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert main([*args, "--out", str(tmp_path / "q2")]) == 0  # reference statistics now come from the cache
    again = json.loads((tmp_path / "q2" / "quality.json").read_text())
    assert again["inception"]["reference_cached"] is True
    assert again["results"][0]["fid"] == pytest.approx(report["results"][0]["fid"], rel=1e-6)
    assert "FID" in capsys.readouterr().out
