"""Every registered architecture: forward, backward, save/load round trip, determinism in eval."""

from __future__ import annotations

import json

import pytest
import torch

from distill import create_model, list_models, load_checkpoint, save_checkpoint
from distill.errors import ConfigError
from distill.profile import count_macs, count_params
from distill.registry import model_info

# Tiny constructor arguments per architecture, and the input each one eats.
TINY = {
    "resnet_9blocks": ({"ngf": 4}, (2, 3, 32, 32)),
    "resnet_6blocks": ({"ngf": 4, "norm": "batch", "use_dropout": True}, (2, 3, 32, 32)),
    "mobile_resnet_9blocks": ({"ngf": 4}, (2, 3, 32, 32)),
    "searchable_resnet": ({"stem": 4, "down": 8, "trunk": 8, "blocks": "8_8", "up": "8_4"}, (2, 3, 32, 32)),
    "unet_128": ({"ngf": 4}, (2, 3, 128, 128)),
    "unet_256": ({"ngf": 2, "norm": "instance"}, (1, 3, 256, 256)),
    "unet_deepest_256": ({"ngf": 1}, (1, 3, 256, 256)),
    "basic": ({"ndf": 4, "input_nc": 6}, (2, 6, 64, 64)),
    "n_layers": ({"ndf": 4, "n_layers": 2}, (2, 3, 32, 32)),
    "dcgan": ({"nz": 8, "ngf": 4, "image_size": 32}, (2, 8)),
    "dcgan_discriminator": ({"ndf": 4, "image_size": 32}, (2, 3, 32, 32)),
    "sngan": ({"nz": 8, "ngf": 8, "image_size": 16, "spectral_norm": True}, (2, 8)),
    "sngan_discriminator": ({"ndf": 8, "image_size": 16}, (2, 3, 16, 16)),
    "sub_mobile_resnet_9blocks": ({"config": "4_4_8_4_8_8_4_4"}, (2, 3, 16, 16)),
    "legacy_sub_mobile_resnet_9blocks": ({"config": "4_4_4_8_4_4"}, (2, 3, 16, 16)),
    "inception_9blocks": ({"ngf": 4, "channels_reduction_factor": 2, "kernel_sizes": [1, 3], "norm_affine": True}, (2, 3, 16, 16)),
    "mobile_resnet_deepest": ({"ngf": 4}, (2, 3, 16, 16)),
    "transformer_net": ({"ngf": 4}, (2, 3, 16, 16)),
    "stylegan2": ({"image_size": 16, "channels": 8, "nz": 8, "n_mlp": 1}, (2, 8)),
    "stylegan2_discriminator": ({"image_size": 16, "channels": 8}, (2, 3, 16, 16)),
}
UNBOUNDED = {"stylegan2"}  # StyleGAN2 has no output tanh (images are clipped when written, as the reference does)


def test_every_registered_model_has_a_tiny_case():
    assert sorted(TINY) == list_models()


def _input(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    if model_info(name).input_kind == "latent":
        return torch.randn(*shape, generator=gen)
    lo, hi = model_info(name).value_range
    return torch.rand(*shape, generator=gen) * (hi - lo) + lo


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_backward_roundtrip_determinism(name, tmp_path):
    kwargs, shape = TINY[name]
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    x = _input(name, shape)
    info = model_info(name)

    out = model(x)
    if info.role == "generator":
        size = kwargs.get("image_size", shape[-1])
        assert out.shape == (shape[0], 3, size, size)
        if name not in UNBOUNDED and info.value_range == (-1.0, 1.0):
            assert out.abs().max() <= 1.0  # tanh output range
    else:
        assert out.shape[0] == shape[0]
    out.float().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a, b), "eval mode must be deterministic (dropout / batch stats off)"

    save_checkpoint(model, tmp_path / "ckpt", provenance={"test": name})
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["arch"] == name and config["provenance"]["test"] == name
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), a)
    assert count_params(loaded) == count_params(model)


def test_width_multiplier_scales_ngf():
    student = create_model("resnet_9blocks", width=0.25)
    assert student.slimgan_config["kwargs"]["ngf"] == 16
    assert count_params(student) == count_params(create_model("resnet_9blocks", ngf=16))
    d = create_model("basic", width=0.5)
    assert d.slimgan_config["kwargs"]["ndf"] == 32


def test_unknown_arch_and_kwarg_are_named():
    with pytest.raises(ConfigError, match="unknown architecture 'resnet_12blocks'.*resnet_9blocks"):
        create_model("resnet_12blocks")
    with pytest.raises(ConfigError, match="'ndf'"):
        create_model("resnet_9blocks", ndf=4)
    with pytest.raises(ConfigError, match="power of two"):
        create_model("dcgan", image_size=48)


def test_reference_sizes_params_and_macs():
    teacher = create_model("resnet_9blocks", ngf=64)
    assert count_params(teacher) == 11_378_179  # the CycleGAN paper's 11.4 M
    assert abs(count_macs(teacher, res=256) / 1e9 - 56.8) < 0.1  # ConvTranspose by output size
    student = create_model("mobile_resnet_9blocks", ngf=16)
    assert abs(count_macs(student, res=256) / 1e9 - 1.41) < 0.02  # OMGD / CRD student
    assert abs(count_params(student) / 1e6 - 0.14) < 0.01


def test_registry_entries_carry_declared_metadata_and_suggest_names():
    from distill.registry import MODELS, model_info, model_meta

    assert "rules" in model_meta("stylegan2")["pruning"] and model_meta("stylegan2")["pruning"]["forward_kwargs"]
    assert "pruning" not in model_meta("resnet_9blocks")
    with pytest.raises(ConfigError, match=r"unknown architecture 'resnet_9block' \(did you mean 'resnet_9blocks'\?\)"):
        model_info("resnet_9block")
    with pytest.raises(ConfigError, match="architecture 'dcgan' is registered twice"):
        MODELS.register("dcgan", object())
    # a constructor with an options dataclass keeps its keyword defaults in the registry
    assert model_info("inception_9blocks").defaults["kernel_sizes"] == (3, 5, 7)
    assert create_model("inception_9blocks", ngf=8, norm="batch").slimgan_config["kwargs"]["norm"] == "batch"
