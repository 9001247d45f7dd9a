"""StyleGAN2 zoo entries: the modulated convolution against a per-sample reference, the FIR resampling
against upfirdn2d written out, the truncation trick and its tracked mean w, rosinality's key layout,
and the ``stylegan2`` training method (R1, path length, EMA) on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distill import create_model, load_checkpoint, save_checkpoint
from distill.models.stylegan2 import (
    ModulatedConv2d,
    StyleGAN2Generator,
    Upsample,
    estimate_mean_w,
    load_rosinality_state_dict,
    resolution_channels,
)

TINY = {"image_size": 16, "channels": 8, "nz": 8, "n_mlp": 2}


def reference_modconv(conv: ModulatedConv2d, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 Eq. 1-3 by hand: one modulated, demodulated weight per sample, one conv per sample."""
    outs = []
    for b in range(x.shape[0]):
        s = conv.modulation.weight @ w[b] * conv.modulation.scale + conv.modulation.bias * conv.modulation.lr_mul
        weight = conv.weight[0] * conv.scale * s.view(1, -1, 1, 1)  # w'_ijk = s_i·w_ijk
        if conv.demodulate:
            weight = weight / torch.sqrt((weight**2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        xb = x[b : b + 1]
        if conv.upsample:
            y = F.conv_transpose2d(xb, weight.transpose(0, 1), stride=2)
            y = reference_upfirdn(y, conv.blur.kernel, up=1, pad=conv.blur.pad)
        else:
            y = F.conv2d(xb, weight, padding=conv.padding)
        outs.append(y)
    return torch.cat(outs)


def reference_upfirdn(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """upfirdn2d's native path written out: zero insertion, pad, true convolution (flipped kernel) per channel."""
    b, c, h, w = x.shape
    if up > 1:
        z = torch.zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = torch.flip(kernel, [0, 1]).view(1, 1, *kernel.shape).repeat(c, 1, 1, 1)
    return F.conv2d(x, k, groups=c)


@pytest.mark.parametrize("upsample,demodulate", [(False, True), (True, True), (False, False)])
def test_modulated_conv_matches_per_sample_reference(upsample: bool, demodulate: bool) -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 6, 3 if demodulate else 1, w_dim=7, demodulate=demodulate, upsample=upsample)
    with torch.no_grad():
        conv.modulation.weight.normal_()
        conv.modulation.bias.uniform_(0.5, 1.5)
    x, w = torch.randn(3, 5, 8, 8), torch.randn(3, 7)
    out = conv(x, w)
    assert out.shape == (3, 6, 16, 16) if upsample else (3, 6, 8, 8)
    torch.testing.assert_close(out, reference_modconv(conv, x, w), atol=1e-5, rtol=1e-4)


def test_upsample_matches_upfirdn2d_with_an_asymmetric_kernel() -> None:
    up = Upsample(4)
    up.kernel.copy_(torch.arange(16.0).view(4, 4) / 30)
    from distill.models.stylegan2 import depthwise_kernel

    up.weight.copy_(depthwise_kernel(up.kernel, 4, flip=False))
    x = torch.randn(2, 4, 5, 5)
    ref = reference_upfirdn(x, up.kernel, up=2, pad=(up.pad0, (up.kernel.shape[0] - 2) // 2))
    torch.testing.assert_close(up(x), ref, atol=1e-5, rtol=1e-5)


def test_generator_and_discriminator_build_at_the_acceptance_size() -> None:
    g = create_model("stylegan2", image_size=32, channels=64)
    d = create_model("stylegan2_discriminator", image_size=32, channels=64)
    z = torch.randn(3, g.nz)
    with torch.no_grad():
        x = g(z)
        logits = d(x)
    assert x.shape == (3, 3, 32, 32) and logits.shape == (3,)
    assert torch.isfinite(x).all() and torch.isfinite(logits).all()


def test_width_shrinks_every_layer_and_official_table_holds() -> None:
    # rosinality's table for channels=512, multiplier 2: 512 up to 32 px, then 512, 256, 128, 64, 32
    assert [resolution_channels(512, 2, r) for r in (4, 32, 64, 128, 256, 512, 1024)] == [512, 512, 512, 256, 128, 64, 32]
    assert [resolution_channels(512, 1, r) for r in (64, 128)] == [256, 128]
    half = create_model("stylegan2", width=0.5, image_size=16, nz=8, n_mlp=1)
    assert half.slimgan_config["kwargs"]["channels"] == 256 and half.w_dim == 256


def test_state_dict_keys_follow_rosinality() -> None:
    keys = set(create_model("stylegan2", **TINY).state_dict())
    for key in ("style.1.weight", "style.2.bias", "input.input", "conv1.conv.weight", "conv1.conv.modulation.weight",
                "conv1.conv.modulation.bias", "conv1.noise.weight", "conv1.activate.bias", "to_rgb1.conv.weight",
                "to_rgb1.bias", "convs.0.conv.blur.kernel", "convs.1.conv.weight", "to_rgbs.0.upsample.kernel",
                "noises.noise_0", "noises.noise_4"):
        assert key in keys, key
    dkeys = set(create_model("stylegan2_discriminator", image_size=16, channels=8).state_dict())
    for key in ("convs.0.0.weight", "convs.0.1.bias", "convs.1.conv1.0.weight", "convs.1.conv2.0.kernel",
                "convs.1.conv2.1.weight", "convs.1.skip.1.weight", "final_conv.0.weight", "final_linear.0.weight",
                "final_linear.1.bias"):
        assert key in dkeys, key


def test_rosinality_state_dict_loads_and_mean_w_is_estimated() -> None:
    torch.manual_seed(1)
    src = create_model("stylegan2", **TINY)
    state = {k: v for k, v in src.state_dict().items() if k != "mean_w"}  # rosinality keeps no mean w
    dst = create_model("stylegan2", **TINY)
    load_rosinality_state_dict(dst, state, mean_w_samples=512)
    torch.testing.assert_close(dst.mean_w, estimate_mean_w(src, 512))
    assert dst.mean_w.abs().sum() > 0
    z = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(dst.eval()(z), src.eval()(z))


def test_rosinality_train_checkpoint_file_loads(tmp_path) -> None:
    import argparse

    from distill.errors import CheckpointError
    from distill.models.stylegan2 import read_rosinality_checkpoint

    torch.manual_seed(3)
    g_ema = create_model("stylegan2", **TINY)
    d = create_model("stylegan2_discriminator", image_size=16, channels=8)
    drop = {k: v for k, v in g_ema.state_dict().items() if k != "mean_w"}
    path = tmp_path / "050000.pt"  # the layout rosinality's train.py saves
    torch.save({"g": drop, "d": d.state_dict(), "g_ema": drop, "g_optim": {}, "d_optim": {},
                "args": argparse.Namespace(size=16, latent=8, n_mlp=2)}, path)
    g = load_rosinality_state_dict(create_model("stylegan2", **TINY), read_rosinality_checkpoint(str(path)), 256)
    torch.testing.assert_close(g.conv1.conv.weight, g_ema.conv1.conv.weight)
    d2 = create_model("stylegan2_discriminator", image_size=16, channels=8)
    d2.load_state_dict(read_rosinality_checkpoint(str(path), "d"))
    with pytest.raises(CheckpointError, match="no 'nope'"):
        read_rosinality_checkpoint(str(path), "nope")


def test_truncation_trick() -> None:
    torch.manual_seed(2)
    g = create_model("stylegan2", **TINY)
    g.train()
    with torch.no_grad():
        for _ in range(3):
            g(torch.randn(16, 8))  # training-mode forwards track mean w
    assert g.mean_w.abs().sum() > 0
    g.eval()
    z = torch.randn(4, 8)
    with torch.no_grad():
        w = g.mapping(z)
        centre = g.synthesis(g.mean_w.expand(4, -1))
        torch.testing.assert_close(g(z, truncation=0.0), centre)  # ψ = 0: every latent gives the mean image
        torch.testing.assert_close(g(z, truncation=1.0), g.synthesis(w))
        half = g(z, truncation=0.5)
        torch.testing.assert_close(half, g.synthesis(g.mean_w + 0.5 * (w - g.mean_w)))
        per_sample = g(z, truncation=torch.tensor([[0.0], [0.5], [1.0], [0.5]]))
    torch.testing.assert_close(per_sample[1], half[1])
    torch.testing.assert_close(per_sample[0], centre[0])
    assert not torch.allclose(half, g(z))


def test_eval_noise_is_fixed_and_training_noise_is_fresh() -> None:
    g = create_model("stylegan2", **TINY)
    with torch.no_grad():
        g.noises.noise_0.normal_()
        for conv in [g.conv1, *g.convs]:
            conv.noise.weight.fill_(0.5)
        z = torch.randn(2, 8)
        g.eval()
        assert torch.equal(g(z), g(z))
        g.train()
        assert not torch.equal(g(z), g(z))
        noise = g.make_noise(2)
        assert torch.equal(g(z, noise=noise), g(z, noise=noise))


def test_mixing_uses_the_second_latent_after_the_cutoff() -> None:
    g = create_model("stylegan2", **TINY).eval()
    z1, z2 = torch.randn(2, 8), torch.randn(2, 8)
    with torch.no_grad():
        mixed = g(z1, mix_z=z2, mix_cutoff=2)
        w1, w2 = g.mapping(z1), g.mapping(z2)
        ws = torch.stack([w1, w1] + [w2] * (g.n_latent - 2), 1)
        torch.testing.assert_close(mixed, g.synthesis(ws))


def test_checkpoint_round_trip(tmp_path) -> None:
    g = create_model("stylegan2", **TINY)
    save_checkpoint(g, tmp_path / "g")
    back = load_checkpoint(tmp_path / "g")
    assert isinstance(back, StyleGAN2Generator)
    z = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(back(z), g.eval()(z))


def test_r1_and_path_length_match_their_definitions() -> None:
    from distill.engine.stylegan2_method import path_length, r1_penalty

    d = create_model("stylegan2_discriminator", image_size=16, channels=8)
    x = torch.randn(2, 3, 16, 16)
    xs = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(xs).sum(), xs)
    torch.testing.assert_close(r1_penalty(d, x), grad.pow(2).sum(dim=(1, 2, 3)).mean())

    g = create_model("stylegan2", **TINY)
    torch.manual_seed(5)
    lengths = path_length(g, torch.randn(3, 8))
    assert lengths.shape == (3,) and (lengths > 0).all()
    lengths.mean().backward()  # differentiable: the regulariser trains G
    assert g.style[1].weight.grad is not None and math.isfinite(float(g.style[1].weight.grad.abs().sum()))


def test_stylegan2_method_trains_with_regularisers_and_ema(tmp_path) -> None:
    from distill.engine.config import load_config
    from distill.engine.loop import run_training

    raw = {
        "data": {"root": str(tmp_path / "data"), "layout": "folder",
                 "synth": {"task": "unconditional", "num": 8, "num_test": 4, "size": 16, "seed": 0}},
        "method": {"name": "stylegan2", "r1": 1.0, "d_reg_every": 1, "pl_weight": 2.0, "g_reg_every": 1,
                   "mixing": 1.0, "ema_kimg": 0.01},
        "student": {"arch": "stylegan2", "kwargs": TINY},
        "discriminator": {"arch": "stylegan2_discriminator", "gan_mode": "vanilla", "kwargs": {"channels": 8}},
        "loss": [{"name": "adv", "weight": 1.0}],
        "teacher": {"mode": "none"},
        "train": {"steps": 2, "batch_size": 4, "lr": 0.002, "beta1": 0.0, "beta2": 0.99, "progress": False,
                  "log_every": 1},
        "eval": {"num": 4},
    }
    result = run_training(load_config(raw=raw), tmp_path / "run", kind="train", distributed=False)
    metrics = result["metrics"]
    assert metrics["D_r1"] >= 0 and metrics["G_path_length"] > 0
    ema, raw_g = load_checkpoint(tmp_path / "run" / "teacher"), load_checkpoint(tmp_path / "run" / "generator")
    init = create_model("stylegan2", **TINY)
    # the EMA moved away from the initial weights but is not the raw generator
    assert not torch.equal(ema.style[1].weight, raw_g.style[1].weight)
    assert load_checkpoint(tmp_path / "run" / "discriminator") is not None
    assert ema.state_dict().keys() == init.state_dict().keys()
