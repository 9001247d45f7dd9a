"""The second recipe audit (issue 23): the options it needed behave as documented and the recipes use them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from distill.engine.context import StepContext
from distill.errors import ConfigError
from distill.losses import build_loss
from distill.vgg import VGG16Features

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _ctx(batch: int) -> StepContext:
    gen = torch.Generator().manual_seed(0)
    s, t = torch.rand(batch, 3, 16, 16, generator=gen), torch.rand(batch, 3, 16, 16, generator=gen)
    return StepContext(step=0, real_a=s, real_b=None, paired=False, student=torch.nn.Identity(), student_out=s,
                       teacher_out=t)


def test_crd_batch_sum_is_the_mean_times_the_batch() -> None:
    ctx = _ctx(3)
    mean = build_loss({"name": "crd"})(ctx)
    total = build_loss({"name": "crd", "batch_reduction": "sum"})(ctx)
    assert total.item() == pytest.approx(3 * mean.item(), rel=1e-6)
    with pytest.raises(ConfigError, match="batch_reduction"):
        build_loss({"name": "crd", "batch_reduction": "max"})


def test_vgg_raw_input_skips_the_imagenet_statistics() -> None:
    vgg = VGG16Features(layers=("relu1_2",))
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    normed = vgg(x)[0]
    vgg.imagenet_norm = False
    raw = vgg(x)[0]
    first = vgg.features[:2]  # conv1_1 + relu on (x+1)/2 itself
    assert torch.allclose(raw, vgg.features[2:4](first((x + 1) / 2)), atol=1e-6)
    assert not torch.allclose(raw, normed)
    with pytest.raises(ConfigError, match="input_norm"):
        build_loss({"name": "perceptual", "vgg16": "off", "input_norm": "bgr"})


def _loss(recipe: str) -> list[dict]:
    return yaml.safe_load((CONFIGS / recipe).read_text())["loss"]


def test_recipes_follow_the_official_code() -> None:
    for recipe in ("cityscapes/crd.yaml", "edges2shoes/crd.yaml"):
        terms = {t["name"]: t for t in _loss(recipe)}
        assert terms["crd"]["batch_reduction"] == "sum" and terms["perceptual"]["weight"] == 2.0
        assert "teacher_adv" not in terms, recipe
    for recipe in ("horse2zebra/crd.yaml", "summer2winter/crd.yaml"):
        raw = yaml.safe_load((CONFIGS / recipe).read_text())
        assert raw["teacher"]["update_every"] == 4 and raw["train"]["decay_start"] == raw["train"]["steps"] // 2
    for recipe in sorted(CONFIGS.glob("*/*.yaml")):
        if recipe.parent.name != "synth" and recipe.stem.split("_")[0] in ("crd", "omgd"):
            perceptual = [t for t in _loss(recipe.relative_to(CONFIGS)) if t["name"] == "perceptual"]
            assert perceptual and perceptual[0]["input_norm"] == "raw", recipe
    for recipe in ("cityscapes/omgd.yaml", "edges2shoes/omgd.yaml"):
        assert [t["weight"] for t in _loss(recipe) if t["name"] == "tv"] == [2e-5]  # 1e-5 per teacher, two teachers
