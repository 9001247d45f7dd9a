"""Recipes: unknown keys are errors that name them; --set overrides existing fields only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from distill.engine.config import RunConfig, load_config, save_config
from distill.engine.factory import check_method
from distill.errors import ConfigError
from slimgan.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_unknown_key_is_an_error_that_names_it(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"train": {"steps": 5, "stepz": 3}}))
    with pytest.raises(ConfigError, match=r"unknown key 'stepz' in r\.yaml\.train.*valid keys there: steps"):
        load_config(recipe)
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_config(raw={"trian": {}})


def test_unknown_key_exits_2_with_one_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("student: {arch: resnet_6blocks, nfg: 8}\n")
    code = main(["distill", "--config", str(recipe), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "unknown key 'nfg'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_set_overrides_and_rejects_missing_fields():
    cfg = load_config(raw={"loss": [{"name": "l1_teacher", "weight": 1.0}]},
                      overrides=["train.steps=200", "loss.0.weight=2.5", "student.kwargs.ngf=8",
                                 "discriminator.arch=basic", "eval.inception_weights=/w.pth"])
    assert cfg.train.steps == 200 and isinstance(cfg.train.steps, int)
    assert cfg.loss[0]["weight"] == 2.5
    assert cfg.student.kwargs == {"ngf": 8}
    assert cfg.discriminator.arch == "basic" and cfg.discriminator.gan_mode == "lsgan"
    with pytest.raises(ConfigError, match="--set train.stepz: unknown key 'stepz'"):
        load_config(raw={}, overrides=["train.stepz=1"])
    with pytest.raises(ConfigError, match="not an index"):
        load_config(raw={}, overrides=["loss.0.weight=1"])
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config(raw={}, overrides=["train.steps=many"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(raw={}, overrides=["train.steps"])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(REPO / "configs/synth/kd_gan.yaml", ["train.steps=7"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg and isinstance(again, RunConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.steps = 3  # type: ignore[misc]


# configs/search/ holds `slimgan search` settings, not training recipes.
@pytest.mark.parametrize("recipe", sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml")
                                          if "search" not in p.relative_to(REPO).parts))
def test_every_shipped_recipe_parses_and_passes_the_method_check(recipe, tmp_path):
    load_config(REPO / recipe)
    weights = tmp_path / "inception.pth"  # only its existence is checked before a run
    weights.write_bytes(b"")
    check_method(load_config(REPO / recipe, [f"eval.inception_weights={weights}"]))


def test_a_method_name_registered_twice_is_refused_and_unknown_names_suggest():
    from distill.engine.factory import METHODS, method_class
    from distill.engine.methods import register_method

    with pytest.raises(ConfigError, match="method 'generator' is registered twice"):
        register_method("generator")(type("Other", (), {}))
    assert method_class("generator").__name__ == "GeneratorMethod"  # the first registration stands
    with pytest.raises(ConfigError, match=r"unknown method 'stylegan' \(did you mean 'stylegan2'\?\); choose one of"):
        method_class("stylegan")
    assert {"generator", "cyclegan", "stylegan2"} <= set(METHODS.names())


def test_stylegan2_options_keep_the_recipe_keywords():
    """method.kwargs reach StyleGAN2's options dataclass; an unknown key is one ConfigError."""
    from distill.engine.schema import method_arguments
    from distill.engine.stylegan2_method import StyleGAN2Method

    names = [n for n, _ in method_arguments(StyleGAN2Method)]
    assert names == ["r1", "d_reg_every", "pl_weight", "g_reg_every", "pl_batch_shrink", "pl_decay", "mixing", "ema",
                     "ema_kimg", "ema_rampup"]
    cfg = load_config(raw={"method": {"name": "stylegan2", "kwargs": {"r1x": 1.0}},
                           "student": {"arch": "stylegan2", "kwargs": {"image_size": 16, "channels": 8, "nz": 8}},
                           })
    import torch

    from distill.engine.device import DeviceContext
    from distill.engine.factory import build_method

    with pytest.raises(ConfigError, match="method 'stylegan2':.*r1x"):
        build_method(cfg, DeviceContext(torch.device("cpu")), {})
