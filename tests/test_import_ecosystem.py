"""Import of the GAN-compression ecosystem's checkpoints: keys, forwards, inference, conventions, plugins.

The key/shape lists below are written down from the reference repositories' class definitions
(mit-han-lab/gan-compression, snap-research/CAT, bytedance/OMGD, pytorch/examples) at small widths,
not derived from slimgan's modules. The functional forwards recompute a reference's layer sequence from
a state dict alone, so a wrong layer order, padding, norm or clamp shows as an output mismatch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distill import create_model, load_checkpoint
from distill.errors import CheckpointError, ConfigError
from distill.importers import import_reference, infer_architecture, infer_candidates

CLI = [sys.executable, "-m", "slimgan.cli"]


def _random_state(expected: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in expected.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(5)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.2
    return state


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# --- GAN Compression -------------------------------------------------------------------------------

def sub_mobile_keys(c: list[int], output_nc: int = 3) -> dict[str, tuple[int, ...]]:
    """SubMobileResnetGenerator(3, 3, config=c, InstanceNorm): SeparableConv2d = conv.0 (depthwise, bias),
    conv.1 InstanceNorm (no params), conv.2 (pointwise, bias); dropout always at conv_block.4."""
    keys = {"model.1.weight": (c[0], 3, 7, 7), "model.1.bias": (c[0],),
            "model.4.weight": (2 * c[1], c[0], 3, 3), "model.4.bias": (2 * c[1],),
            "model.7.weight": (4 * c[2], 2 * c[1], 3, 3), "model.7.bias": (4 * c[2],)}
    d = 4 * c[2]
    for i in range(9):
        oc = 4 * c[3 + i // 3]
        p = f"model.{10 + i}.conv_block"
        keys.update({f"{p}.1.conv.0.weight": (d, 1, 3, 3), f"{p}.1.conv.0.bias": (d,),
                     f"{p}.1.conv.2.weight": (oc, d, 1, 1), f"{p}.1.conv.2.bias": (oc,),
                     f"{p}.6.conv.0.weight": (oc, 1, 3, 3), f"{p}.6.conv.0.bias": (oc,),
                     f"{p}.6.conv.2.weight": (d, oc, 1, 1), f"{p}.6.conv.2.bias": (d,)})
    keys.update({"model.19.weight": (d, 2 * c[6], 3, 3), "model.19.bias": (2 * c[6],),
                 "model.22.weight": (2 * c[6], c[7], 3, 3), "model.22.bias": (c[7],),
                 "model.26.weight": (output_nc, c[7], 7, 7), "model.26.bias": (output_nc,)})
    return keys


def reference_sub_mobile_forward(sd, x):
    """GAN Compression's SubMobileResnetGenerator.forward with instance norm, from its definition."""
    def inorm(t):
        return F.instance_norm(t, eps=1e-5)

    def sep(t, p):
        w = sd[f"{p}.conv.0.weight"]
        t = F.conv2d(t, w, sd[f"{p}.conv.0.bias"], groups=w.shape[0])
        return F.conv2d(inorm(t), sd[f"{p}.conv.2.weight"], sd[f"{p}.conv.2.bias"])

    def rpad(t, n):
        return F.pad(t, (n,) * 4, mode="reflect")

    h = x.clamp(-1, 1)
    h = F.relu(inorm(F.conv2d(rpad(h, 3), sd["model.1.weight"], sd["model.1.bias"])))
    for i in (4, 7):
        h = F.relu(inorm(F.conv2d(h, sd[f"model.{i}.weight"], sd[f"model.{i}.bias"], stride=2, padding=1)))
    for b in range(10, 19):
        p = f"model.{b}.conv_block"
        r = F.relu(inorm(sep(rpad(h, 1), f"{p}.1")))
        h = h + inorm(sep(rpad(r, 1), f"{p}.6"))
    for i in (19, 22):
        h = F.relu(inorm(F.conv_transpose2d(h, sd[f"model.{i}.weight"], sd[f"model.{i}.bias"], stride=2, padding=1,
                                            output_padding=1)))
    return torch.tanh(F.conv2d(rpad(h, 3), sd["model.26.weight"], sd["model.26.bias"]))


HZ_CONFIG = [16, 16, 32, 16, 32, 32, 16, 16]  # GAN Compression's horse->zebra student


def test_sub_mobile_keys_match_reference_and_config_forms():
    expected = sub_mobile_keys(HZ_CONFIG)
    assert _shapes(create_model("sub_mobile_resnet_9blocks", config="16_16_32_16_32_32_16_16")) == expected
    assert _shapes(create_model("sub_mobile_resnet_9blocks", config=HZ_CONFIG)) == expected
    # GAN Compression's published "retrained" horse->zebra student: 0.357 M parameters.
    assert sum(v.numel() for v in create_model("sub_mobile_resnet_9blocks").parameters()) == 356_867
    with pytest.raises(ConfigError, match="8 \\(or 6\\)"):
        create_model("sub_mobile_resnet_9blocks", config="16_16_32")


def test_legacy_sub_mobile_blocks_follow_reference():
    """LegacySubMobileResnetGenerator 24_24_24_32_20_16: blocks 0, 3, 6 expand 96 -> 128, the others keep 96."""
    keys = _shapes(create_model("legacy_sub_mobile_resnet_9blocks", config="24_24_24_32_20_16"))
    inner = [keys[f"model.{10 + i}.conv_block.1.conv.2.weight"][0] for i in range(9)]
    assert inner == [128, 96, 96] * 3
    assert keys["model.19.weight"] == (96, 40, 3, 3) and keys["model.22.weight"] == (40, 16, 3, 3)


def test_mobile_resnet_batch_norm_keeps_reference_separable_conv():
    """GAN Compression's SeparableConv2d always has InstanceNorm inside and biased convs, whatever the norm."""
    keys = _shapes(create_model("mobile_resnet_9blocks", ngf=4, norm="batch"))
    assert keys["model.10.conv_block.1.conv.0.bias"] == (16,)
    assert "model.10.conv_block.1.conv.1.weight" not in keys
    assert keys["model.10.conv_block.2.weight"] == (16,)  # the block's own norm is the BatchNorm


def test_sub_mobile_old_pickle_import_inferred_and_checked(tmp_path):
    c = [4, 4, 8, 4, 8, 8, 4, 4]
    sd = _random_state(sub_mobile_keys(c), seed=1)
    path = tmp_path / "latest_net_G.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=False)  # GAN Compression's old-style pickles
    with open(path, "rb") as fh:
        assert fh.read(2) != b"PK"  # not a zip archive

    proc = subprocess.run([*CLI, "import", str(path), "--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("inferred: sub_mobile_resnet_9blocks(") and "config=4_4_8_4_8_8_4_4" in first
    assert "norm=instance" in first
    import_reference(path, "sub_mobile_resnet_9blocks", tmp_path / "b", config="4_4_8_4_8_8_4_4")  # what --arch --config call

    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["provenance"]["inferred"]["kwargs"]["config"] == "4_4_8_4_8_8_4_4"
    assert config["provenance"]["convention"]["rounding"] == "truncate"
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2  # beyond [-1, 1]: clamp
    ref = reference_sub_mobile_forward(sd, x)
    for d in ("a", "b"):
        with torch.no_grad():
            assert torch.allclose(load_checkpoint(tmp_path / d)(x), ref, atol=1e-5)

    # --arch given with a wrong configuration: the first disagreeing key is named.
    with pytest.raises(CheckpointError, match=r"'model\.10\.conv_block\.1\.conv\.2\.weight' has shape \(16, 32, 1, 1\) "
                                              r"in the file but \(32, 32, 1, 1\)"):
        import_reference(path, "sub_mobile_resnet_9blocks", tmp_path / "c", config="4_4_8_8_8_8_4_4")


def test_uniform_widths_are_ambiguous_between_mobile_and_sub_mobile(tmp_path):
    sd = create_model("mobile_resnet_9blocks", ngf=4).state_dict()
    torch.save(sd, tmp_path / "g.pth")
    with pytest.raises(CheckpointError) as err:
        import_reference(tmp_path / "g.pth", None, tmp_path / "o")
    msg = str(err.value)
    assert "mobile_resnet_9blocks" in msg and "sub_mobile_resnet_9blocks" in msg
    assert "--arch mobile_resnet_9blocks --ngf 4" in msg and "--config 4_4_4_4_4_4_4_4" in msg
    assert not (tmp_path / "o").exists()
    import_reference(tmp_path / "g.pth", "mobile_resnet_9blocks", tmp_path / "o")  # the flag resolves it
    assert load_checkpoint(tmp_path / "o").slimgan_config["kwargs"]["ngf"] == 4


# --- CAT -------------------------------------------------------------------------------------------

def cat_block_keys(p: str, d: int, res: list[tuple[int, int]], dw: list[tuple[int, int]]) -> dict[str, tuple[int, ...]]:
    """InvertedResidualChannels with affine InstanceNorm: res_ops.j = [pad, ConvBNReLU(0 conv, 1 norm), drop, pad, conv];
    dw_ops.j = [ConvBNReLU 1x1, pad, ConvBNReLU depthwise, drop, conv 1x1]; pw_bn."""
    keys: dict[str, tuple[int, ...]] = {}
    for j, (k, c) in enumerate(res):
        keys.update({f"{p}.res_ops.{j}.1.0.weight": (c, d, k, k), f"{p}.res_ops.{j}.1.0.bias": (c,),
                     f"{p}.res_ops.{j}.1.1.weight": (c,), f"{p}.res_ops.{j}.1.1.bias": (c,),
                     f"{p}.res_ops.{j}.4.weight": (d, c, k, k), f"{p}.res_ops.{j}.4.bias": (d,)})
    for j, (k, c) in enumerate(dw):
        keys.update({f"{p}.dw_ops.{j}.0.0.weight": (c, d, 1, 1), f"{p}.dw_ops.{j}.0.0.bias": (c,),
                     f"{p}.dw_ops.{j}.0.1.weight": (c,), f"{p}.dw_ops.{j}.0.1.bias": (c,),
                     f"{p}.dw_ops.{j}.2.0.weight": (c, 1, k, k), f"{p}.dw_ops.{j}.2.0.bias": (c,),
                     f"{p}.dw_ops.{j}.2.1.weight": (c,), f"{p}.dw_ops.{j}.2.1.bias": (c,),
                     f"{p}.dw_ops.{j}.4.weight": (d, c, 1, 1), f"{p}.dw_ops.{j}.4.bias": (d,)})
    keys.update({f"{p}.pw_bn.weight": (d,), f"{p}.pw_bn.bias": (d,)})
    return keys


def cat_keys(down: list[int], blocks: list[tuple[list, list]], up: list[int]) -> dict[str, tuple[int, ...]]:
    c0, c1, c2 = down
    keys = {}
    for idx, (cin, cout, k) in {1: (3, c0, 7), 4: (c0, c1, 3), 7: (c1, c2, 3)}.items():
        keys.update({f"down_sampling.{idx}.weight": (cout, cin, k, k), f"down_sampling.{idx}.bias": (cout,),
                     f"down_sampling.{idx + 1}.weight": (cout,), f"down_sampling.{idx + 1}.bias": (cout,)})
    for i, (res, dw) in enumerate(blocks):
        keys.update(cat_block_keys(f"features.{i}", c2, res, dw))
    for idx, (cin, cout) in {0: (c2, up[0]), 3: (up[0], up[1])}.items():
        keys.update({f"up_sampling.{idx}.weight": (cin, cout, 3, 3), f"up_sampling.{idx}.bias": (cout,),
                     f"up_sampling.{idx + 1}.weight": (cout,), f"up_sampling.{idx + 1}.bias": (cout,)})
    keys.update({"up_sampling.7.weight": (3, up[1], 7, 7), "up_sampling.7.bias": (3,)})
    return keys


def test_cat_teacher_keys_match_reference():
    # CAT's horse->zebra options at ngf 8: --norm_affine --channels_reduction_factor 6 --kernel_sizes 1 3 5
    branches = [(1, 32 // 6), (3, 32 // 6), (5, 32 // 6)]
    expected = cat_keys([8, 16, 32], [(branches, branches)] * 9, [16, 8])
    model = create_model("inception_9blocks", ngf=8, channels_reduction_factor=6, kernel_sizes=[1, 3, 5], norm_affine=True)
    assert _shapes(model) == expected


def test_cat_pruned_student_inferred_and_round_trips(tmp_path):
    """A pruned student: widths differ per layer, zero-width branches are left out (indices shift)."""
    blocks = [([(1, 3), (3, 2), (5, 1)], [(1, 2), (3, 1), (5, 2)])] * 4 + [([(3, 2)], [(5, 1)])] * 4 + [([], [])]
    expected = cat_keys([6, 10, 12], blocks, [9, 5])
    sd = _random_state(expected, seed=2)
    torch.save(sd, tmp_path / "best_net_G.pth", _use_new_zipfile_serialization=False)
    inferred = infer_architecture(sd)
    assert inferred.arch == "inception_9blocks" and inferred.kwargs["norm_affine"] is True
    layout = inferred.kwargs["config"]
    assert layout["down"] == [6, 10, 12] and layout["up"] == [9, 5]
    assert layout["blocks"][4] == {"res": [[3, 2]], "dw": [[5, 1]]} and layout["blocks"][8] == {"res": [], "dw": []}
    import_reference(tmp_path / "best_net_G.pth", None, tmp_path / "s")
    model = load_checkpoint(tmp_path / "s")
    assert _shapes(model) == expected
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        # block 8 has no branch: the reference returns its input unchanged
        blk = model.features[8]
        assert torch.equal(blk(torch.ones(1, 12, 4, 4)), torch.ones(1, 12, 4, 4))
        assert model(x).shape == (1, 3, 16, 16)


# --- OMGD ------------------------------------------------------------------------------------------

def expansion_keys(p: str, d: int, norm_batch: bool) -> dict[str, tuple[int, ...]]:
    """OMGD ResnetBlock / ExpansionResnetBlock: 1 conv1x1 4d, 2 n, 4 conv3x3, 5 n, 7 conv1x1 d, 8 n, 12 conv3x3, 13 n."""
    keys = {}
    for idx, (cout, cin, k) in {1: (4 * d, d, 1), 4: (4 * d, 4 * d, 3), 7: (d, 4 * d, 1), 12: (d, d, 3)}.items():
        keys[f"{p}.conv_block.{idx}.weight"] = (cout, cin, k, k)
        if norm_batch:
            n = f"{p}.conv_block.{idx + 1}"
            keys.update({f"{n}.weight": (cout,), f"{n}.bias": (cout,), f"{n}.running_mean": (cout,), f"{n}.running_var": (cout,),
                         f"{n}.num_batches_tracked": ()})
        else:
            keys[f"{p}.conv_block.{idx}.bias"] = (cout,)
    return keys


def test_omgd_unet_deepest_outermost_keys_match_reference():
    model = create_model("unet_deepest_256", ngf=2)
    keys = _shapes(model)
    # outermost: [downconv 0, RB 1, RB 2, submodule 3, RB(2ngf) 4, RB(2ngf) 5, relu, upconv 7, tanh]
    assert keys["model.model.0.weight"] == (2, 3, 4, 4) and "model.model.0.bias" not in keys
    for i, d in ((1, 2), (2, 2), (4, 4), (5, 4)):
        sub = {k: v for k, v in keys.items() if k.startswith(f"model.model.{i}.")}
        assert sub == expansion_keys(f"model.model.{i}", d, norm_batch=True)
    assert keys["model.model.7.weight"] == (4, 3, 4, 4) and keys["model.model.7.bias"] == (3,)
    # second level: [lrelu, downconv 1, downnorm 2, RB 3, RB 4, submodule 5, relu, upconv 7, upnorm 8, RB 9, RB 10, dropout]
    p = "model.model.3.model"
    assert keys[f"{p}.1.weight"] == (4, 2, 4, 4) and keys[f"{p}.7.weight"] == (8, 2, 4, 4)
    assert {k: v for k, v in keys.items() if k.startswith(f"{p}.9.")} == expansion_keys(f"{p}.9", 2, norm_batch=True)
    assert {k: v for k, v in keys.items() if k.startswith(f"{p}.3.")} == expansion_keys(f"{p}.3", 4, norm_batch=True)


def test_omgd_unet_student_is_pix2pix_unet_and_resnet_teacher_loads(tmp_path):
    # OMGD's UnetGenerator appends a parameter-free dropout to every middle block: same keys as pix2pix.
    sd = create_model("unet_256", ngf=2).state_dict()
    assert infer_architecture(sd).arch == "unet_256"
    # OMGD's ResnetGenerator always inserts the dropout layer: keys conv_block.6, as pix2pix with dropout.
    sd = create_model("resnet_9blocks", ngf=4, use_dropout=True).state_dict()
    got = infer_architecture(sd)
    assert got.arch == "resnet_9blocks" and got.kwargs["use_dropout"] is True


# --- pytorch/examples ------------------------------------------------------------------------------

def dcgan_examples_keys(nz: int, ngf: int, nc: int) -> dict[str, tuple[int, ...]]:
    """dcgan/main.py Generator: ConvTranspose at main.0/3/6/9/12 (no bias), BatchNorm at main.1/4/7/10."""
    keys = {}
    chans = [nz, 8 * ngf, 4 * ngf, 2 * ngf, ngf, nc]
    for i in range(5):
        keys[f"main.{3 * i}.weight"] = (chans[i], chans[i + 1], 4, 4)
        if i < 4:
            b = f"main.{3 * i + 1}"
            c = chans[i + 1]
            keys.update({f"{b}.weight": (c,), f"{b}.bias": (c,), f"{b}.running_mean": (c,), f"{b}.running_var": (c,),
                         f"{b}.num_batches_tracked": ()})
    return keys


def transformer_net_keys(ngf: int = 32) -> dict[str, tuple[int, ...]]:
    keys = {}

    def conv(name, cin, cout, k):
        keys[f"{name}.conv2d.weight"] = (cout, cin, k, k)
        keys[f"{name}.conv2d.bias"] = (cout,)

    def inorm(name, c):
        keys[f"{name}.weight"] = (c,)
        keys[f"{name}.bias"] = (c,)

    conv("conv1", 3, ngf, 9), inorm("in1", ngf)
    conv("conv2", ngf, 2 * ngf, 3), inorm("in2", 2 * ngf)
    conv("conv3", 2 * ngf, 4 * ngf, 3), inorm("in3", 4 * ngf)
    for i in range(1, 6):
        conv(f"res{i}.conv1", 4 * ngf, 4 * ngf, 3), inorm(f"res{i}.in1", 4 * ngf)
        conv(f"res{i}.conv2", 4 * ngf, 4 * ngf, 3), inorm(f"res{i}.in2", 4 * ngf)
    conv("deconv1", 4 * ngf, 2 * ngf, 3), inorm("in4", 2 * ngf)
    conv("deconv2", 2 * ngf, ngf, 3), inorm("in5", ngf)
    conv("deconv3", ngf, 3, 9)
    return keys


def reference_transformer_forward(sd, x):
    def cl(t, name, stride=1, up=False):
        w = sd[f"{name}.conv2d.weight"]
        if up:
            t = F.interpolate(t, mode="nearest", scale_factor=2)
        return F.conv2d(F.pad(t, (w.shape[-1] // 2,) * 4, mode="reflect"), w, sd[f"{name}.conv2d.bias"], stride=stride)

    def inorm(t, name):
        return F.instance_norm(t, weight=sd[f"{name}.weight"], bias=sd[f"{name}.bias"])

    y = F.relu(inorm(cl(x, "conv1"), "in1"))
    y = F.relu(inorm(cl(y, "conv2", 2), "in2"))
    y = F.relu(inorm(cl(y, "conv3", 2), "in3"))
    for i in range(1, 6):
        r = F.relu(inorm(cl(y, f"res{i}.conv1"), f"res{i}.in1"))
        y = y + inorm(cl(r, f"res{i}.conv2"), f"res{i}.in2")
    y = F.relu(inorm(cl(y, "deconv1", up=True), "in4"))
    y = F.relu(inorm(cl(y, "deconv2", up=True), "in5"))
    return cl(y, "deconv3")


def test_pytorch_examples_keys_match_reference():
    assert _shapes(create_model("dcgan", nz=100, ngf=64, image_size=64)) == dcgan_examples_keys(100, 64, 3)
    assert _shapes(create_model("transformer_net")) == transformer_net_keys(32)


def test_transformer_net_old_checkpoint_imports_with_its_convention(tmp_path):
    sd = _random_state(transformer_net_keys(4), seed=3)
    old = dict(sd, **{"in1.running_mean": torch.zeros(4), "in1.running_var": torch.ones(4),
                      "res2.in1.running_mean": torch.zeros(16), "res2.in1.running_var": torch.ones(16)})
    torch.save(old, tmp_path / "mosaic.pth", _use_new_zipfile_serialization=False)
    import_reference(tmp_path / "mosaic.pth", None, tmp_path / "t")
    model = load_checkpoint(tmp_path / "t")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 255  # ToTensor().mul(255)
    with torch.no_grad():
        assert torch.allclose(model(x), reference_transformer_forward(sd, x), atol=1e-3, rtol=1e-5)
    conv = json.loads((tmp_path / "t" / "config.json").read_text())["provenance"]["convention"]
    assert conv["input_range"] == [0.0, 255.0] and conv["rounding"] == "truncate"


def test_dcgan_examples_generator_imports(tmp_path):
    sd = _random_state(dcgan_examples_keys(10, 4, 3), seed=4)
    torch.save(sd, tmp_path / "netG_epoch_24.pth")
    got = infer_architecture(sd)
    assert (got.arch, got.kwargs) == ("dcgan", {"nz": 10, "ngf": 4, "nc": 3, "image_size": 64})
    import_reference(tmp_path / "netG_epoch_24.pth", None, tmp_path / "g")
    z = torch.randn(2, 10)
    with torch.no_grad():
        model = load_checkpoint(tmp_path / "g")
        h = z[:, :, None, None]
        for i in range(4):
            b = f"main.{3 * i + 1}"
            h = F.conv_transpose2d(h, sd[f"main.{3 * i}.weight"], stride=1 if i == 0 else 2, padding=0 if i == 0 else 1)
            h = F.relu(F.batch_norm(h, sd[f"{b}.running_mean"], sd[f"{b}.running_var"], sd[f"{b}.weight"], sd[f"{b}.bias"]))
        ref = torch.tanh(F.conv_transpose2d(h, sd["main.12.weight"], stride=2, padding=1))
        assert torch.allclose(model(z), ref, atol=1e-5)


# --- inference across families -----------------------------------------------------------------------

INFER_CASES = [
    ("resnet_9blocks", {"ngf": 4, "norm": "instance", "use_dropout": False, "input_nc": 1, "output_nc": 3}),
    ("resnet_6blocks", {"ngf": 4, "norm": "batch", "use_dropout": True}),
    ("resnet_9blocks", {"ngf": 4, "norm": "none"}),
    ("unet_256", {"ngf": 2, "norm": "batch"}),
    ("unet_128", {"ngf": 2, "norm": "instance", "output_nc": 1}),
    ("basic", {"ndf": 4, "input_nc": 6, "norm": "batch"}),
    ("n_layers", {"ndf": 4, "n_layers": 5, "norm": "instance"}),
    ("mobile_resnet_9blocks", {"ngf": 4, "norm": "batch"}),
    ("sub_mobile_resnet_9blocks", {"config": "8_4_8_4_8_12_4_8"}),
    ("legacy_sub_mobile_resnet_9blocks", {"config": "4_4_4_8_4_4"}),
    ("legacy_sub_mobile_resnet_9blocks", {"config": "4_4_4_8_6_2_4_4"}),
    ("unet_deepest_256", {"ngf": 1, "norm": "instance"}),
    ("mobile_resnet_deepest", {"ngf": 4}),
    ("dcgan", {"nz": 8, "ngf": 4, "image_size": 32}),
    ("transformer_net", {"ngf": 4}),
    ("inception_9blocks", {"ngf": 4, "channels_reduction_factor": 2, "kernel_sizes": [3, 5], "norm_affine": False}),
]


@pytest.mark.parametrize("arch,kwargs", INFER_CASES, ids=[f"{a}-{i}" for i, (a, _) in enumerate(INFER_CASES)])
def test_inference_recovers_family_and_widths(arch, kwargs):
    model = create_model(arch, **kwargs)
    found = infer_candidates(model.state_dict())
    assert len(found) == 1, [c.arch for c in found]
    got = found[0]
    assert got.arch == arch
    rebuilt = create_model(got.arch, **got.kwargs)
    assert _shapes(rebuilt) == _shapes(model)
    want = model.slimgan_config["kwargs"]
    # Every width the reader reports equals what the model was built with (a pruned CAT layout is
    # compared through the rebuilt shapes above; U-Net dropout leaves no trace).
    for key, value in got.kwargs.items():
        if key in ("kernel_sizes",) or isinstance(value, dict) or (key == "use_dropout" and arch.startswith("unet")):
            continue
        assert value == want[key], key


def test_unknown_keys_say_what_to_do(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="no known architecture.*--arch.*slimgan.models plugin"):
        import_reference(tmp_path / "x.pth", None, tmp_path / "o")


# --- conventions into the bundle and the server ----------------------------------------------------------

def test_serve_truncates_like_tensor2im():
    from export.manifest import Postprocessing
    from serve.imaging import to_uint8

    y = np.linspace(-1, 1, 4097, dtype=np.float32).reshape(1, 1, -1)
    ref = np.clip((y + 1) / 2.0 * 255.0, 0, 255).astype(np.uint8)  # pix2pix util.tensor2im
    got = to_uint8(y, Postprocessing(color="L", rounding="truncate"))[:, :, 0]
    assert np.array_equal(got, ref[0])
    rounded = to_uint8(y, Postprocessing(color="L"))[:, :, 0]
    assert (rounded.astype(int) - ref[0]).max() == 1  # round-to-nearest differs: the convention matters


def test_export_carries_convention_and_parity_uses_calib(tmp_path):
    from PIL import Image

    from export.bundle import export_bundle

    sd = _random_state(sub_mobile_keys([4, 4, 8, 4, 8, 8, 4, 4]), seed=6)
    torch.save(sd, tmp_path / "g.pth", _use_new_zipfile_serialization=False)
    import_reference(tmp_path / "g.pth", None, tmp_path / "ckpt")
    calib = tmp_path / "photos"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(calib / f"p{i}.png")
    result = export_bundle(tmp_path / "ckpt", tmp_path / "bundle", res=32, calib=calib, speed_rounds=1, speed_block_s=0.05,
                           optimize=False)
    assert result.ok
    parity = json.loads((tmp_path / "bundle" / "parity.json").read_text())
    assert parity["inputs"]["source"] == "calib" and parity["inputs"]["files"] == ["p0.png", "p1.png", "p2.png"]
    assert parity["inputs"]["shape"] == [3, 3, 32, 32]
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["postprocessing"]["rounding"] == "truncate"
    assert manifest["source_convention"]["name"] == "pix2pix"

    # A real server on loopback answers the photo with tensor2im's pixels of the PyTorch model's output.
    import httpx
    from serve_bundles import serve_in_thread

    from serve.app import create_app
    from serve.settings import ServeSettings

    photo = calib / "p1.png"
    with serve_in_thread(create_app(ServeSettings(bundles=[f"hz={tmp_path / 'bundle'}"], max_batch=1))) as base:
        resp = httpx.post(f"{base}/v2/models/hz/translate", files={"image": ("p1.png", photo.read_bytes(), "image/png")}, timeout=60)
    assert resp.status_code == 200, resp.text
    import io

    served = np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGB"))
    with torch.no_grad():
        t = torch.from_numpy(np.asarray(Image.open(photo), dtype=np.float32).transpose(2, 0, 1)[None] / 255.0)
        y = load_checkpoint(tmp_path / "ckpt")((t - 0.5) / 0.5)[0].numpy()  # ToTensor + Normalize(0.5, 0.5)
    ref = np.clip((np.transpose(y, (1, 2, 0)) + 1) / 2.0 * 255.0, 0, 255).astype(np.uint8)  # tensor2im
    assert served.shape == ref.shape
    assert np.abs(served.astype(int) - ref.astype(int)).max() <= 1


# --- plugins -----------------------------------------------------------------------------------------

PLUGIN_MODULE = '''
"""A user architecture registered through the slimgan.models entry point."""
import torch
from torch import nn

from distill.registry import register_model


class TinyNet(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1), nn.Tanh())

    def forward(self, x):
        return self.body(x)


@register_model("tiny_plugin_net", family="tiny_plugin", role="generator", task="translate", input_kind="image",
                reference="a test plugin")
def tiny_plugin_net(ngf: int = 4) -> TinyNet:
    return TinyNet(ngf)
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """A throwaway package actually pip-installed (into a folder put on PYTHONPATH)."""
    root = tmp_path_factory.mktemp("plugin")
    pkg = root / "src"
    (pkg / "tinyplug").mkdir(parents=True)
    (pkg / "tinyplug" / "__init__.py").write_text(PLUGIN_MODULE)
    (pkg / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "tinyplug"
        version = "0.0.1"

        [project.entry-points."slimgan.models"]
        tiny = "tinyplug"

        [tool.setuptools]
        packages = ["tinyplug"]
    '''))
    site = root / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                           "--target", str(site), str(pkg)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        # No offline build backend here (no setuptools/wheel in the environment): lay the package out as
        # pip would, with a real .dist-info that importlib.metadata discovers on the path.
        site.mkdir(exist_ok=True)
        (site / "tinyplug").mkdir(exist_ok=True)
        (site / "tinyplug" / "__init__.py").write_text(PLUGIN_MODULE)
        info = site / "tinyplug-0.0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.0.1\n")
        (info / "entry_points.txt").write_text("[slimgan.models]\ntiny = tinyplug\n")
    return site


def test_plugin_architecture_works_in_every_command(plugin_site, tmp_path, monkeypatch):
    import os

    from distill import registry
    from export.bundle import export_bundle
    from serve.served_model import build_models
    from serve.settings import ServeSettings

    # In this process: the installed distribution on the path, found through importlib.metadata.
    monkeypatch.syspath_prepend(str(plugin_site))
    registry.list_models()  # the zoo first, so the copy below holds it
    monkeypatch.setattr(registry.MODELS, "_plugins_loaded", False)
    monkeypatch.setattr(registry.MODELS, "_entries", dict(registry.MODELS._entries))  # the plugin leaves with the test
    monkeypatch.setattr(registry.MODELS, "_meta", dict(registry.MODELS._meta))
    assert "tiny_plugin_net" in registry.list_models("generator")
    import tinyplug

    model = create_model("tiny_plugin_net", ngf=6)
    assert isinstance(model, tinyplug.TinyNet)
    torch.save(tinyplug.TinyNet(6).state_dict(), tmp_path / "net.pth")

    # The CLI in a fresh process finds it the same way: import --arch, and a wrong width names the key.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([*CLI, "import", str(tmp_path / "net.pth"), "--arch", "tiny_plugin_net", "--ngf", "6",
                           "--out", str(tmp_path / "ckpt")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(CheckpointError, match="'body.0.weight'"):
        import_reference(tmp_path / "net.pth", "tiny_plugin_net", tmp_path / "bad", ngf=5)

    from distill.profile import describe

    assert describe(load_checkpoint(tmp_path / "ckpt"), res=32)["arch"] == "tiny_plugin_net"  # slimgan info
    result = export_bundle(tmp_path / "ckpt", tmp_path / "bundle", res=32, check=False, optimize=False)
    assert result.manifest.arch == "tiny_plugin_net"
    # serve needs neither torch nor the plugin: the bundle describes itself
    served = next(iter(build_models(ServeSettings(bundles=[str(tmp_path / "bundle")])).values()))
    served.load()
    try:
        out = served.backend.run(np.zeros((1, 3, 32, 32), dtype=np.float32))
        with torch.no_grad():
            ref = load_checkpoint(tmp_path / "ckpt")(torch.zeros(1, 3, 32, 32)).numpy()
        assert np.allclose(out, ref, atol=1e-5)
    finally:
        served.close()
