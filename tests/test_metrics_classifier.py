"""fid_classifier: a small classifier trained on labelled folders, Fréchet distance on its features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from distill.errors import DatasetError
from distill.metrics import (
    ClassifierConfig,
    classifier_features,
    fid_classifier,
    fit_folder_classifier,
    frechet_distance,
    load_classifier,
    load_labelled_folders,
    save_classifier,
    train_classifier,
)

SIZE = 16


def _bar(kind: int, rng: np.random.Generator) -> np.ndarray:
    """Class 0: a horizontal bar; class 1: a vertical bar; class 2: a filled square; on noise, uint8."""
    img = rng.integers(0, 40, (SIZE, SIZE)).astype(np.uint8)
    p = int(rng.integers(3, SIZE - 5))
    if kind == 0:
        img[p:p + 3, 2:-2] = 255
    elif kind == 1:
        img[2:-2, p:p + 3] = 255
    else:
        img[p - 2:p + 4, p - 2:p + 4] = 255
    return img


def _labelled_root(root, per_class: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for k in range(3):
            d = root / split / str(k)
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_bar(k, rng)).save(d / f"{i:03d}.png")
    return root


CFG = ClassifierConfig(image_size=SIZE, width=8, feature_dim=16, epochs=8, batch_size=16, lr=5e-3)


def test_folder_classifier_accuracy_distance_and_cache(tmp_path) -> None:
    root = _labelled_root(tmp_path / "data")
    trained = fit_folder_classifier(root, CFG, cache_dir=tmp_path / "cache")
    assert trained.classes == ["0", "1", "2"]
    assert trained.accuracy > 0.9  # the features separate the classes
    assert trained.real_features.shape == (45, 16) and not trained.cached

    train_x, train_y, _ = load_labelled_folders(root / "train", SIZE)
    assert train_x.shape == (90, 1, SIZE, SIZE) and float(train_x.min()) >= -1 and float(train_x.max()) <= 1
    real = trained.real_features
    same_mix = fid_classifier(real, train_x, trained)
    one_class = fid_classifier(real, train_x[train_y == 0], trained)
    noise = fid_classifier(real, torch.rand(60, 1, SIZE, SIZE) * 2 - 1, trained)
    assert fid_classifier(real, real, trained) == pytest.approx(0.0, abs=1e-6)
    assert 0 <= same_mix < min(one_class, noise)  # mode collapse and garbage both score worse than real data

    # the formula is FID's on the classifier's features
    fake = classifier_features(trained.model, train_x)
    expected = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert same_mix == pytest.approx(expected, rel=1e-4, abs=1e-6)

    # RGB inputs at another side are converted to the classifier's grey input size
    rgb = train_x.expand(-1, 3, -1, -1)
    assert fid_classifier(real, rgb, trained) == pytest.approx(same_mix, rel=1e-5)
    larger = torch.nn.functional.interpolate(train_x, size=2 * SIZE, mode="bilinear")
    assert fid_classifier(real, larger, trained) < one_class / 4

    again = fit_folder_classifier(root, CFG, cache_dir=tmp_path / "cache")
    assert again.cached and again.accuracy == pytest.approx(trained.accuracy)
    assert fid_classifier(again.real_features, train_x, again) == pytest.approx(same_mix, rel=1e-5)


def test_training_is_seeded_and_round_trips(tmp_path) -> None:
    root = _labelled_root(tmp_path / "data", per_class=12)
    x, y, _ = load_labelled_folders(root / "train", SIZE)
    state = torch.random.get_rng_state()
    a = train_classifier(x, y, CFG, held_out=(x, y))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    b = train_classifier(x, y, CFG)
    assert np.allclose(classifier_features(a.model, x), classifier_features(b.model, x))
    loaded = load_classifier(save_classifier(a, tmp_path / "clf"))
    assert loaded.accuracy == pytest.approx(a.accuracy)
    assert np.allclose(classifier_features(loaded.model, x), classifier_features(a.model, x), atol=1e-6)


def test_bad_folders_name_the_path(tmp_path) -> None:
    with pytest.raises(DatasetError, match="no test/ folder"):
        (tmp_path / "d" / "train" / "0").mkdir(parents=True)
        fit_folder_classifier(tmp_path / "d", CFG, cache_dir=tmp_path / "c")
    with pytest.raises(DatasetError, match="no class subfolders"):
        (tmp_path / "e").mkdir()
        load_labelled_folders(tmp_path / "e")
