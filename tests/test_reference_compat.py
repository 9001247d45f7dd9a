"""Compatibility with pytorch-CycleGAN-and-pix2pix state dicts.

The key names and shapes below are written down from the reference repository's
``ResnetGenerator``, ``UnetGenerator`` and ``NLayerDiscriminator`` (models/networks.py) at small widths,
not derived from slimgan's modules. The functional forwards recompute the reference's layer sequence
from a state dict alone, so an output mismatch would show a wrong layer order, padding or norm.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from distill import create_model, load_checkpoint
from distill.errors import CheckpointError
from distill.importers import import_reference


def resnet_9blocks_keys(ngf: int) -> dict[str, tuple[int, ...]]:
    """ResnetGenerator(3, 3, ngf, InstanceNorm, n_blocks=9): instance norm has no parameters, convs have bias."""
    keys = {
        "model.1.weight": (ngf, 3, 7, 7), "model.1.bias": (ngf,),
        "model.4.weight": (2 * ngf, ngf, 3, 3), "model.4.bias": (2 * ngf,),
        "model.7.weight": (4 * ngf, 2 * ngf, 3, 3), "model.7.bias": (4 * ngf,),
    }
    for block in range(10, 19):
        for conv in (1, 5):
            keys[f"model.{block}.conv_block.{conv}.weight"] = (4 * ngf, 4 * ngf, 3, 3)
            keys[f"model.{block}.conv_block.{conv}.bias"] = (4 * ngf,)
    keys.update({
        "model.19.weight": (4 * ngf, 2 * ngf, 3, 3), "model.19.bias": (2 * ngf,),  # ConvTranspose: (in, out, k, k)
        "model.22.weight": (2 * ngf, ngf, 3, 3), "model.22.bias": (ngf,),
        "model.26.weight": (3, ngf, 7, 7), "model.26.bias": (3,),
    })
    return keys


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def unet_256_keys(ngf: int) -> dict[str, tuple[int, ...]]:
    """UnetGenerator(3, 3, 8, ngf, BatchNorm): convs inside have no bias, the outermost upconv has one."""
    keys = {"model.model.0.weight": (ngf, 3, 4, 4), "model.model.3.weight": (2 * ngf, 3, 4, 4),
            "model.model.3.bias": (3,)}
    # (outer_nc, inner_nc) from the outermost inward, as the reference builds them.
    levels = [(ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf)] + [(8 * ngf, 8 * ngf)] * 3
    prefix = "model.model.1.model"
    for outer, inner in levels:
        keys[f"{prefix}.1.weight"] = (inner, outer, 4, 4)  # downconv
        keys.update(_bn(f"{prefix}.2", inner))  # downnorm
        keys[f"{prefix}.5.weight"] = (2 * inner, outer, 4, 4)  # upconv (ConvTranspose)
        keys.update(_bn(f"{prefix}.6", outer))  # upnorm
        prefix = f"{prefix}.3.model"
    keys[f"{prefix}.1.weight"] = (8 * ngf, 8 * ngf, 4, 4)  # innermost: downrelu, downconv, uprelu, upconv, upnorm
    keys[f"{prefix}.3.weight"] = (8 * ngf, 8 * ngf, 4, 4)
    keys.update(_bn(f"{prefix}.4", 8 * ngf))
    return keys


def basic_d_keys(ndf: int, input_nc: int) -> dict[str, tuple[int, ...]]:
    """NLayerDiscriminator(input_nc, ndf, n_layers=3, BatchNorm)."""
    keys = {"model.0.weight": (ndf, input_nc, 4, 4), "model.0.bias": (ndf,),
            "model.2.weight": (2 * ndf, ndf, 4, 4), "model.5.weight": (4 * ndf, 2 * ndf, 4, 4),
            "model.8.weight": (8 * ndf, 4 * ndf, 4, 4), "model.11.weight": (1, 8 * ndf, 4, 4),
            "model.11.bias": (1,)}
    for idx, c in ((3, 2 * ndf), (6, 4 * ndf), (9, 8 * ndf)):
        keys.update(_bn(f"model.{idx}", c))
    return keys


CASES = {
    "resnet_9blocks": ({"ngf": 4}, resnet_9blocks_keys(4)),
    "unet_256": ({"ngf": 2, "norm": "batch"}, unet_256_keys(2)),
    "basic": ({"ndf": 4, "input_nc": 6}, basic_d_keys(4, 6)),
}


@pytest.mark.parametrize("arch", sorted(CASES))
def test_state_dict_keys_and_shapes_match_reference(arch):
    kwargs, expected = CASES[arch]
    got = {k: tuple(v.shape) for k, v in create_model(arch, **kwargs).state_dict().items()}
    assert got == expected


def _random_reference_state(expected: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in expected.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.2
    return state


def reference_resnet_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The reference ResnetGenerator with instance norm, written layer by layer from its definition."""
    def inorm(t):
        return F.instance_norm(t, eps=1e-5)

    h = F.conv2d(F.pad(x, (3, 3, 3, 3), mode="reflect"), sd["model.1.weight"], sd["model.1.bias"])
    h = F.relu(inorm(h))
    for i in (4, 7):
        h = F.relu(inorm(F.conv2d(h, sd[f"model.{i}.weight"], sd[f"model.{i}.bias"], stride=2, padding=1)))
    for b in range(10, 19):
        p = f"model.{b}.conv_block"
        r = F.relu(inorm(F.conv2d(F.pad(h, (1,) * 4, mode="reflect"), sd[f"{p}.1.weight"], sd[f"{p}.1.bias"])))
        r = inorm(F.conv2d(F.pad(r, (1,) * 4, mode="reflect"), sd[f"{p}.5.weight"], sd[f"{p}.5.bias"]))
        h = h + r
    for i in (19, 22):
        h = F.conv_transpose2d(h, sd[f"model.{i}.weight"], sd[f"model.{i}.bias"], stride=2, padding=1, output_padding=1)
        h = F.relu(inorm(h))
    h = F.conv2d(F.pad(h, (3, 3, 3, 3), mode="reflect"), sd["model.26.weight"], sd["model.26.bias"])
    return torch.tanh(h)


def reference_basic_d_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The reference NLayerDiscriminator (n_layers=3, BatchNorm) in eval mode."""
    def bn(t, i):
        p = f"model.{i}"
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"], False)

    h = F.leaky_relu(F.conv2d(x, sd["model.0.weight"], sd["model.0.bias"], stride=2, padding=1), 0.2)
    for conv, norm, stride in ((2, 3, 2), (5, 6, 2), (8, 9, 1)):
        h = F.leaky_relu(bn(F.conv2d(h, sd[f"model.{conv}.weight"], stride=stride, padding=1), norm), 0.2)
    return F.conv2d(h, sd["model.11.weight"], sd["model.11.bias"], padding=1)


def test_import_reproduces_reference_outputs(tmp_path):
    sd = _random_reference_state(resnet_9blocks_keys(4), seed=3)
    # Old reference checkpoints (pytorch < 0.4) carry InstanceNorm running stats; the import drops them.
    sd_old = dict(sd, **{"model.2.running_mean": torch.zeros(4), "model.2.running_var": torch.ones(4),
                         "model.11.conv_block.2.num_batches_tracked": torch.tensor(3)})
    torch.save(sd_old, tmp_path / "latest_net_G.pth")
    import_reference(tmp_path / "latest_net_G.pth", "resnet_9blocks", tmp_path / "g", ngf=4)
    model = load_checkpoint(tmp_path / "g")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model(x), reference_resnet_forward(sd, x), atol=1e-5)

    sd_d = _random_reference_state(basic_d_keys(4, 6), seed=4)
    torch.save(sd_d, tmp_path / "latest_net_D.pth")
    import_reference(tmp_path / "latest_net_D.pth", "basic", tmp_path / "d", ndf=4, input_nc=6)
    d = load_checkpoint(tmp_path / "d")
    x6 = torch.rand(2, 6, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(d(x6), reference_basic_d_forward(sd_d, x6), atol=1e-5)


def test_import_unet_state_dict_roundtrip(tmp_path):
    sd = _random_reference_state(unet_256_keys(2), seed=5)
    torch.save({"state_dict": sd}, tmp_path / "unet.pth")  # wrapped dicts are unwrapped
    import_reference(tmp_path / "unet.pth", "unet_256", tmp_path / "u", ngf=2)
    loaded = load_checkpoint(tmp_path / "u").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())


def test_wrong_width_names_first_mismatching_key(tmp_path):
    torch.save(_random_reference_state(resnet_9blocks_keys(4), seed=0), tmp_path / "g.pth")
    with pytest.raises(CheckpointError, match=r"'model\.1\.weight' has shape \(4, 3, 7, 7\).*\(8, 3, 7, 7\)"):
        import_reference(tmp_path / "g.pth", "resnet_9blocks", tmp_path / "out", ngf=8)
    # resnet_6blocks puts its upsampler where resnet_9blocks has a residual block: caught by shape or key.
    with pytest.raises(CheckpointError, match="check --arch"):
        import_reference(tmp_path / "g.pth", "resnet_6blocks", tmp_path / "out", ngf=4)
    with pytest.raises(CheckpointError, match=r"'model\.1\.weight' \(4, 3, 7, 7\) is missing from the file"):
        torch.save(_random_reference_state(basic_d_keys(4, 3), seed=0), tmp_path / "d.pth")
        import_reference(tmp_path / "d.pth", "resnet_9blocks", tmp_path / "out", ngf=4)


def test_import_refuses_pickled_objects(tmp_path):
    import fractions

    # Any class outside the weights-only allow-list must be refused, not instantiated.
    torch.save({"model.1.weight": fractions.Fraction(1, 3)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights-only"):
        import_reference(tmp_path / "evil.pth", "resnet_9blocks", tmp_path / "out", ngf=4)
    assert not (tmp_path / "out").exists()


def test_import_cli_error_is_one_line(tmp_path):
    torch.save(_random_reference_state(resnet_9blocks_keys(4), seed=0), tmp_path / "g.pth")
    proc = subprocess.run(
        [sys.executable, "-m", "slimgan.cli", "import", str(tmp_path / "g.pth"), "--arch", "unet_256",
         "--ngf", "4", "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "check --arch" in proc.stderr
