"""Datasets: layouts, transforms, the synthetic generator, and the error cases."""

from __future__ import annotations

import hashlib

import pytest
import torch
from PIL import Image

from distill.data import (
    AlignedDataset,
    ImageFolderDataset,
    TransformConfig,
    UnalignedDataset,
    build_dataset,
    synthesize,
)
from distill.errors import DatasetError


def _digest(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


def test_synth_paired_layout_values_and_determinism(tmp_path):
    synthesize("paired", tmp_path / "a", num=6, size=32, seed=3)
    synthesize("paired", tmp_path / "b", num=6, size=32, seed=3)
    synthesize("paired", tmp_path / "c", num=6, size=32, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert len(list((tmp_path / "a" / "train").glob("*.png"))) == 6
    assert len(list((tmp_path / "a" / "test").glob("*.png"))) == 8

    ds = AlignedDataset(tmp_path / "a", "train", transform=TransformConfig(train=False))
    sample = ds[0]
    assert sample["A"].shape == sample["B"].shape == (3, 32, 32)
    for t in (sample["A"], sample["B"]):
        assert t.min() >= -1 and t.max() <= 1
    # A is an edge map: mostly white (1.0); B is a rendered scene: not.
    assert (sample["A"] == 1).float().mean() > 0.7
    assert (sample["B"] == 1).float().mean() < 0.1


def test_direction_swaps_halves(tmp_path):
    synthesize("paired", tmp_path, num=2, size=32)
    cfg = TransformConfig(train=False)
    ab, ba = AlignedDataset(tmp_path, transform=cfg)[0], AlignedDataset(tmp_path, direction="BtoA", transform=cfg)[0]
    assert torch.equal(ab["A"], ba["B"]) and torch.equal(ab["B"], ba["A"])


def test_crop_and_flip_keep_pairs_aligned(tmp_path):
    # A and B halves identical: any transform must keep them identical.
    (tmp_path / "train").mkdir()
    half = Image.effect_noise((40, 40), 64).convert("RGB")
    ab = Image.new("RGB", (80, 40))
    ab.paste(half, (0, 0))
    ab.paste(half, (40, 0))
    ab.save(tmp_path / "train" / "x.png")
    ds = AlignedDataset(tmp_path, transform=TransformConfig(load_size=36, crop_size=32, flip=True), seed=1)
    for _ in range(5):
        s = ds[0]
        assert s["A"].shape == (3, 32, 32)
        assert torch.equal(s["A"], s["B"])


def test_unpaired_and_unconditional_layouts(tmp_path):
    synthesize("unpaired", tmp_path / "u", num=5, size=32)
    assert {p.name for p in (tmp_path / "u").iterdir()} == {"trainA", "trainB", "testA", "testB"}
    ds = UnalignedDataset(tmp_path / "u", transform=TransformConfig(train=False))
    assert len(ds) == 5 and ds[0]["A"].shape == (3, 32, 32)
    synthesize("unconditional", tmp_path / "g", num=5, size=32)
    folder = ImageFolderDataset(tmp_path / "g")
    assert len(folder) == 5 and folder[0]["B"].shape == (3, 32, 32)
    assert isinstance(build_dataset("unaligned", tmp_path / "u"), UnalignedDataset)


def test_missing_and_empty_folders_are_named(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        AlignedDataset(tmp_path / "nope")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match=r"train holds no images"):
        AlignedDataset(tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset layout 'paired'"):
        build_dataset("paired", tmp_path)


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DatasetError, match="broken.png"):
        AlignedDataset(tmp_path)[0]


def test_odd_aligned_width_is_an_error(tmp_path):
    (tmp_path / "train").mkdir()
    Image.new("RGB", (65, 32)).save(tmp_path / "train" / "odd.png")
    with pytest.raises(DatasetError, match="odd.png is 65 pixels wide"):
        AlignedDataset(tmp_path)[0]


def test_synth_rejects_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="unknown synthetic task"):
        synthesize("video", tmp_path)
    with pytest.raises(DatasetError, match="multiple of 4"):
        synthesize("paired", tmp_path, size=30)
