"""Import of checkpoints as they circulate: wrapped in training checkpoints, prefixed by DataParallel or
torch.compile, saved on CUDA, or a known family under other module names and with affine InstanceNorm.

The reference generators below are written from the source repositories' class definitions
(pytorch-CycleGAN-and-pix2pix ResnetGenerator, the vintagify package's Generator, pytorch/examples DCGAN),
not from slimgan's modules; each test checks that the imported checkpoint reproduces the reference's
own forward pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.serialization
from torch import nn

from distill import create_model, load_checkpoint
from distill.checkpoint import checkpoint_role, read_checkpoint_config
from distill.errors import CheckpointError
from distill.importers import import_reference

CLI = [sys.executable, "-m", "slimgan.cli"]
VINTAGIFY = Path(__file__).resolve().parents[2] / "shared" / "models" / "vintagify_cyclegan" / "G_A2B_epoch33.pth"


# --- independent reference implementations ------------------------------------------------------------

class RefResidual(nn.Module):
    """One residual block; ``attr`` is the inner Sequential's name (``conv_block`` in pix2pix, ``block`` in
    vintagify)."""

    def __init__(self, dim: int, norm, attr: str):
        super().__init__()
        self.attr = attr
        setattr(self, attr, nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim)))

    def forward(self, x):
        return x + getattr(self, self.attr)(x)


class RefResnetGenerator(nn.Module):
    """pix2pix's ResnetGenerator with InstanceNorm (convs with bias), 9 blocks; ``affine`` and ``attr`` give
    vintagify's variant (affine InstanceNorm, residual Sequential named ``block``)."""

    def __init__(self, ngf: int = 64, affine: bool = False, attr: str = "conv_block", n_blocks: int = 9):
        super().__init__()

        def norm(c):
            return nn.InstanceNorm2d(c, affine=affine)

        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), norm(ngf), nn.ReLU(True),
                  nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1), norm(2 * ngf), nn.ReLU(True),
                  nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=2, padding=1), norm(4 * ngf), nn.ReLU(True)]
        layers += [RefResidual(4 * ngf, norm, attr) for _ in range(n_blocks)]
        layers += [nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, stride=2, padding=1, output_padding=1), norm(2 * ngf),
                   nn.ReLU(True),
                   nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1), norm(ngf), nn.ReLU(True),
                   nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class RefDCGANGenerator(nn.Module):
    """pytorch/examples dcgan/main.py Generator (64x64)."""

    def __init__(self, nz: int, ngf: int, nc: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.main(z)


class RefDCGANDiscriminator(nn.Module):
    """pytorch/examples dcgan/main.py Discriminator (64x64)."""

    def __init__(self, ndf: int, nc: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere, norm affines and running statistics included (so a norm that is dropped,
    skipped or mixed up shows in the output)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(11)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.2)
    return model.eval()


def _max_diff(ckpt: Path, reference: nn.Module, x: torch.Tensor) -> float:
    model = load_checkpoint(ckpt)
    with torch.no_grad():
        return float((model(x) - reference(x)).abs().max())


def _save_as_cuda(obj, path: Path) -> None:
    """torch.save with every storage recorded as ``cuda:0``, byte for byte what a save from a GPU writes
    (the location string in data.pkl is the only difference), so loading it needs map_location on a CPU."""
    original = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        torch.save(obj, path)
    finally:
        torch.serialization.location_tag = original


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, env=env)


# --- acceptance cases --------------------------------------------------------------------------------------

def test_renamed_blocks_and_affine_instance_norm_reproduce(tmp_path):
    ref = _randomise(RefResnetGenerator(ngf=4, affine=True, attr="block"), seed=1)
    torch.save(ref.state_dict(), tmp_path / "G_A2B.pth")
    run = _cli("import", str(tmp_path / "G_A2B.pth"), "--out", str(tmp_path / "g"))
    assert run.returncode == 0, run.stderr
    first = run.stdout.splitlines()[0]
    assert first.startswith("inferred: resnet_9blocks(") and "norm=instance_affine" in first
    assert "renamed block -> conv_block" in first
    config = read_checkpoint_config(tmp_path / "g")
    assert config["kwargs"]["norm"] == "instance_affine" and config["kwargs"]["ngf"] == 4
    renamed = config["provenance"]["import"]["renamed"]
    assert renamed["modules"] == {"block": "conv_block"}
    assert renamed["keys"]["model.10.block.1.weight"] == "model.10.conv_block.1.weight"
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert _max_diff(tmp_path / "g", ref, x) <= 1e-5


def test_dcgan_saved_on_cuda_inside_a_training_checkpoint(tmp_path):
    netG = _randomise(RefDCGANGenerator(nz=8, ngf=4, nc=3), seed=2)
    netD = _randomise(RefDCGANDiscriminator(ndf=4, nc=3), seed=3)
    opt = torch.optim.Adam(netG.parameters())
    netG.train()
    netG(torch.randn(2, 8, 1, 1)).mean().backward()
    opt.step()  # an optimizer state with tensors of its own, as a real training checkpoint has
    netG.eval()
    path = tmp_path / "dcgan_epoch_24.pth"
    _save_as_cuda({"epoch": 24, "netG_state_dict": netG.state_dict(), "netD_state_dict": netD.state_dict(),
                   "optimizerG_state_dict": opt.state_dict()}, path)
    if not torch.cuda.is_available():  # the file really says cuda: a plain load fails on this machine
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    run = _cli("import", str(path), "--out", str(tmp_path / "g"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("inferred: dcgan(nz=8, ngf=4, nc=3, image_size=64)")
    assert "unwrapped state dict under 'netG_state_dict'" in run.stdout
    config = read_checkpoint_config(tmp_path / "g")
    assert config["provenance"]["import"]["found_at"]["path"] == ["netG_state_dict"]
    assert checkpoint_role(tmp_path / "g") == "teacher"
    z = torch.randn(4, 8)
    model = load_checkpoint(tmp_path / "g")
    with torch.no_grad():
        assert float((model(z) - netG(z.view(4, 8, 1, 1))).abs().max()) <= 1e-5


def test_resnet_in_epoch_state_dict_with_dataparallel_prefix(tmp_path):
    ref = _randomise(RefResnetGenerator(ngf=4), seed=4)
    wrapped = nn.DataParallel(ref)  # the real wrapper's keys: module.model.1.weight, ...
    state = wrapped.state_dict()
    assert next(iter(state)).startswith("module.")
    torch.save({"epoch": 7, "state_dict": state}, tmp_path / "latest.pth")
    run = _cli("import", str(tmp_path / "latest.pth"), "--out", str(tmp_path / "g"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("inferred: resnet_9blocks(") and "norm=instance," in run.stdout
    assert "state dict under 'state_dict'" in run.stdout and "DataParallel prefix 'module.'" in run.stdout
    found = read_checkpoint_config(tmp_path / "g")["provenance"]["import"]["found_at"]
    assert found == {"path": ["state_dict"], "subset": "", "stripped_prefixes": ["module."]}
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert _max_diff(tmp_path / "g", ref, x) <= 1e-5


def test_torch_compile_prefix_under_a_generator_key(tmp_path):
    ref = _randomise(RefResnetGenerator(ngf=2, n_blocks=6), seed=5)
    compiled = torch.compile(ref)  # compilation is lazy: state_dict alone names the keys _orig_mod.*
    state = compiled.state_dict()
    assert next(iter(state)).startswith("_orig_mod.")
    torch.save({"G": state, "step": 100}, tmp_path / "g.pt")
    out = import_reference(tmp_path / "g.pt", None, tmp_path / "g")
    config = read_checkpoint_config(out)
    assert config["arch"] == "resnet_6blocks"
    assert config["provenance"]["import"]["found_at"]["stripped_prefixes"] == ["_orig_mod."]
    assert _max_diff(out, ref, torch.rand(1, 3, 32, 32) * 2 - 1) <= 1e-5


def test_ema_weights_win_and_equal_candidates_need_key(tmp_path):
    g = _randomise(RefResnetGenerator(ngf=2, n_blocks=6), seed=6)
    g_ema = _randomise(RefResnetGenerator(ngf=2, n_blocks=6), seed=7)
    torch.save({"g": g.state_dict(), "g_ema": g_ema.state_dict()}, tmp_path / "ckpt.pt")
    out = import_reference(tmp_path / "ckpt.pt", None, tmp_path / "ema")
    assert read_checkpoint_config(out)["provenance"]["import"]["found_at"]["path"] == ["g_ema"]
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert _max_diff(out, g_ema, x) <= 1e-5

    torch.save({"netG_A": g.state_dict(), "netG_B": g_ema.state_dict()}, tmp_path / "cyclegan.pth")
    with pytest.raises(CheckpointError, match=r"holds 2 models.*netG_A.*netG_B.*--key"):
        import_reference(tmp_path / "cyclegan.pth", None, tmp_path / "x")
    out = import_reference(tmp_path / "cyclegan.pth", None, tmp_path / "b", key="netG_B")
    assert _max_diff(out, g_ema, x) <= 1e-5


def test_whole_gan_in_one_dict_takes_the_generator(tmp_path):
    """A Lightning-style state dict: generator.* and discriminator.* side by side."""
    g = _randomise(RefDCGANGenerator(nz=4, ngf=2, nc=1), seed=8)
    d = _randomise(RefDCGANDiscriminator(ndf=2, nc=1), seed=9)
    state = {**{f"generator.{k}": v for k, v in g.state_dict().items()},
             **{f"discriminator.{k}": v for k, v in d.state_dict().items()}}
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "gan.ckpt")
    out = import_reference(tmp_path / "gan.ckpt", None, tmp_path / "g")
    config = read_checkpoint_config(out)
    assert config["arch"] == "dcgan" and config["provenance"]["import"]["found_at"]["subset"] == "generator."
    z = torch.randn(2, 4)
    with torch.no_grad():
        assert float((load_checkpoint(out)(z) - g(z.view(2, 4, 1, 1))).abs().max()) <= 1e-5


def test_no_match_names_closest_family_and_first_disagreeing_layer(tmp_path):
    ref = RefResnetGenerator(ngf=2, affine=True, attr="block", n_blocks=7)  # no 7-block ResNet is registered
    torch.save(ref.state_dict(), tmp_path / "g7.pth")
    run = _cli("import", str(tmp_path / "g7.pth"), "--out", str(tmp_path / "x"))
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "closest is resnet_" in lines[0] and "norm=instance_affine" in lines[0]
    assert "disagrees at tensor 69 of 78, 'model.17.weight'" in lines[0] and "model.17.conv_block.1.weight" in lines[0]
    assert not (tmp_path / "x").exists()


def test_roles_follow_the_family_and_role_overrides(tmp_path):
    student = _randomise(create_model("mobile_resnet_9blocks", ngf=4), seed=10)
    torch.save(student.state_dict(), tmp_path / "latest_net_G.pth")
    # Uniform widths fit mobile_resnet and sub_mobile_resnet alike (both students); the flag picks one.
    run = _cli("import", str(tmp_path / "latest_net_G.pth"), "--arch", "mobile_resnet_9blocks", "--out", str(tmp_path / "s"))
    assert run.returncode == 0, run.stderr
    assert "(student)" in run.stdout and checkpoint_role(tmp_path / "s") == "student"
    import_reference(tmp_path / "latest_net_G.pth", "mobile_resnet_9blocks", tmp_path / "t", role="teacher")
    assert checkpoint_role(tmp_path / "t") == "teacher"
    sub = _randomise(create_model("sub_mobile_resnet_9blocks", config="4_4_8_4_8_8_4_4"), seed=11)
    torch.save(sub.state_dict(), tmp_path / "sub.pth")
    assert checkpoint_role(import_reference(tmp_path / "sub.pth", None, tmp_path / "sub")) == "student"
    teacher = _randomise(RefResnetGenerator(ngf=2), seed=12)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pth")
    assert checkpoint_role(import_reference(tmp_path / "teacher.pth", None, tmp_path / "tt")) == "teacher"


# --- wrong inputs: one line that says what to do ------------------------------------------------------

def test_photo_and_text_files_are_one_line_errors(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    (tmp_path / "notes.pth").write_text("not weights")
    for name, says in (("photo.png", "is a PNG image"), ("notes.pth", "not a PyTorch file")):
        run = _cli("import", str(tmp_path / name), "--out", str(tmp_path / "x"))
        assert run.returncode != 0
        assert run.stdout == "" and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert says in run.stderr and "Traceback" not in run.stderr and "file an issue" not in run.stderr


def test_a_pth_where_a_checkpoint_directory_belongs_names_slimgan_import(tmp_path):
    torch.save(RefResnetGenerator(ngf=1, n_blocks=6).state_dict(), tmp_path / "latest_net_G.pth")
    run = _cli("info", str(tmp_path / "latest_net_G.pth"))
    assert run.returncode != 0 and len(run.stderr.strip().splitlines()) == 1
    assert "latest_net_G.pth is a PyTorch file, not a slimgan checkpoint directory" in run.stderr
    assert f"slimgan import {tmp_path / 'latest_net_G.pth'} --out DIR" in run.stderr
    with pytest.raises(CheckpointError, match="convert it with `slimgan import"):
        load_checkpoint(tmp_path / "latest_net_G.pth")


def test_safetensors_file_imports(tmp_path):
    from safetensors.torch import save_file

    ref = _randomise(RefResnetGenerator(ngf=2, n_blocks=6), seed=13)
    save_file(ref.state_dict(), str(tmp_path / "g.safetensors"))
    out = import_reference(tmp_path / "g.safetensors", None, tmp_path / "g")
    assert _max_diff(out, ref, torch.rand(1, 3, 16, 16) * 2 - 1) <= 1e-5


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_a_failed_write_is_one_line_and_leaves_no_temp_files(tmp_path):
    """A real write failure: the child may write no file over 4 KiB (EFBIG, errno 27), as a full disk
    stops a write (ENOSPC) part way."""
    ref = _randomise(RefResnetGenerator(ngf=4), seed=14)
    torch.save(ref.state_dict(), tmp_path / "g.pth")
    (tmp_path / "out").mkdir()
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY)); "
            "from slimgan.cli import main; sys.exit(main(sys.argv[1:]))")
    run = subprocess.run([sys.executable, "-c", code, "import", str(tmp_path / "g.pth"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert f"cannot write {tmp_path / 'out' / 'model.safetensors'}: [Errno 27]" in lines[0]
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.skipif(not VINTAGIFY.is_file(), reason=f"the shared vintagify generator is not at {VINTAGIFY}")
def test_real_vintagify_generator_reproduces(tmp_path):
    run = _cli("import", str(VINTAGIFY), "--out", str(tmp_path / "v"))
    assert run.returncode == 0, run.stderr
    assert "renamed block -> conv_block" in run.stdout and "norm=instance_affine" in run.stdout
    ref = RefResnetGenerator(ngf=64, affine=True, attr="block")
    ref.load_state_dict(torch.load(VINTAGIFY, map_location="cpu", weights_only=True), strict=True)
    ref.eval()
    assert sum(p.numel() for p in ref.parameters()) == 11_388_675
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert _max_diff(tmp_path / "v", ref, x) <= 1e-5
    assert json.loads((tmp_path / "v" / "config.json").read_text())["provenance"]["role"] == "teacher"
