"""Pruning a teacher into a narrower student of the same family (``slimgan prune``).

For every listed family: the student is the constructor at the pruned width, initialised from the
teacher's kept channels, and placing its weights back at the kept positions of a teacher-shaped model
(zeros elsewhere) computes exactly what the student computes -- which only holds when every producer
and consumer of each channel was sliced consistently. Skip connections: a ResNet's residual stream is
one group kept identically in every block; a U-Net's up-convolution input is two groups (the skip and
the inner block) pruned separately.
"""

from __future__ import annotations

import json

import pytest
import torch

from distill import create_model, load_checkpoint, save_checkpoint
from distill.errors import ConfigError
from distill.profile import count_params
from distill.prune import _index_lists, example_input, prune_model, trace_channels, unprune_state_dict

FAMILIES = [
    ("stylegan2", {"image_size": 16, "channels": 16, "nz": 8, "n_mlp": 2}),
    ("dcgan", {"ngf": 8, "nz": 8, "image_size": 16}),
    ("resnet_6blocks", {"ngf": 8}),
    ("mobile_resnet_9blocks", {"ngf": 8}),
    ("unet_128", {"ngf": 4}),
]


def _randomise_norms(model: torch.nn.Module) -> None:
    """Give BatchNorm non-trivial statistics and affine parameters, so a misplaced channel shows."""
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("arch,kwargs", FAMILIES, ids=[f[0] for f in FAMILIES])
@pytest.mark.parametrize("method", ["l1", "gradient"])
def test_pruned_then_unpruned_round_trip(arch: str, kwargs: dict, method: str) -> None:
    torch.manual_seed(0)
    teacher = create_model(arch, **kwargs)
    _randomise_norms(teacher)
    result = prune_model(teacher, 0.5, method, num_batches=1, batch_size=2)
    student = result.student
    expected = create_model(arch, **{**kwargs, teacher_width_arg(arch): kwargs[teacher_width_arg(arch)] // 2})
    assert student.slimgan_config == expected.slimgan_config
    assert count_params(student) < count_params(teacher) / 2
    # channel bookkeeping: every pruned group kept exactly its share, indices sorted and unique
    for name, kept in result.kept.items():
        assert len(kept) == result.sizes[name] // 2 and kept == sorted(set(kept)), name
    shaped = create_model(arch, **kwargs)
    shaped.load_state_dict(unprune_state_dict(student, teacher, result.kept))
    x = example_input(teacher, 2)
    student.eval()
    shaped.eval()
    with torch.no_grad():
        torch.testing.assert_close(shaped(x), student(x), atol=2e-5, rtol=1e-4)


def teacher_width_arg(arch: str) -> str:
    from distill.registry import model_info

    return model_info(arch).width_arg


def test_ratio_one_keeps_the_teacher() -> None:
    torch.manual_seed(0)
    teacher = create_model("resnet_6blocks", ngf=8).eval()
    student = prune_model(teacher, 1.0, "l1").student.eval()
    x = example_input(teacher, 1)
    with torch.no_grad():
        torch.testing.assert_close(student(x), teacher(x))


def test_l1_keeps_the_largest_filters() -> None:
    torch.manual_seed(0)
    teacher = create_model("dcgan", ngf=8, nz=8, image_size=16)
    first = teacher.main[0].weight  # ConvTranspose (nz, 2·ngf, 4, 4): dim 1 is the output channel
    with torch.no_grad():
        first.mul_(0.01)
        first[:, [1, 5, 6, 9, 12, 13, 14, 15]] *= 1000.0  # 8 of 16 channels made dominant
    result = prune_model(teacher, 0.5, "l1")
    assert result.kept["main.0.weight:1"] == [1, 5, 6, 9, 12, 13, 14, 15]


def test_resnet_residual_stream_is_one_group() -> None:
    teacher = create_model("resnet_6blocks", ngf=8)
    groups = trace_channels(teacher)
    roots = {groups.root(groups.members[(f"model.{i}.conv_block.5.weight", 0)].labels[0][0]) for i in range(10, 16)}
    assert len(roots) == 1  # every block's output is added to the same stream
    inner = {groups.root(groups.members[(f"model.{i}.conv_block.1.weight", 0)].labels[0][0]) for i in range(10, 16)}
    assert len(inner) == 6 and not inner & roots  # each block's inner channels prune on their own
    result = prune_model(teacher, 0.5, "l1")
    stream = [k for k in result.kept if groups.root(groups.members[tuple_key(k)].labels[0][0]) in roots]
    assert len(stream) == 1


def tuple_key(name: str) -> tuple[str, int]:
    key, dim = name.rsplit(":", 1)
    return key, int(dim)


def test_unet_skip_concatenation_prunes_both_halves_separately() -> None:
    teacher = create_model("unet_128", ngf=4)
    groups = trace_channels(teacher)
    key = ("model.model.1.model.5.weight", 0)  # ConvTranspose input: cat([skip, inner block output])
    runs = []
    for r, _ in groups.member_roots(key):
        if not runs or runs[-1] != r:
            runs.append(r)
    assert len(runs) == 2 and runs[0] != runs[1]
    skip = groups.root(groups.members[("model.model.1.model.1.weight", 0)].labels[0][0])
    assert runs[0] == skip  # the first half is the down-conv output this block received
    result = prune_model(teacher, 0.5, "l1")
    by_root = {groups.root(groups.members[tuple_key(n)].labels[0][0]): k for n, k in result.kept.items()}
    kept_roots = {r: by_root.get(r, list(range(groups.sizes[r]))) for r in groups.sizes}
    positions = _index_lists(groups, key, kept_roots)
    half = groups.sizes[runs[0]]
    assert positions == kept_roots[runs[0]] + [half + i for i in kept_roots[runs[1]]]


def test_image_and_latent_channels_are_never_pruned() -> None:
    groups = trace_channels(create_model("stylegan2", image_size=16, channels=16, nz=8, n_mlp=2))
    rgb = groups.root(groups.members[("to_rgb1.conv.weight", 1)].labels[0][0])
    latent = groups.root(groups.members[("style.1.weight", 1)].labels[0][0])
    assert rgb in groups.fixed and latent in groups.fixed
    mean_w = groups.root(groups.members[("mean_w", 0)].labels[0][0])
    assert mean_w == groups.root(groups.members[("style.2.weight", 0)].labels[0][0])  # w̄ pruned with w


def test_content_needs_a_mask_and_uses_it(tmp_path) -> None:
    torch.manual_seed(0)
    teacher = create_model("dcgan", ngf=4, nz=8, image_size=16)
    with pytest.raises(ConfigError, match="mask"):
        prune_model(teacher, 0.5, "content")
    left = prune_model(teacher, 0.5, "content", mask_fn=lambda x: (torch.arange(16) < 8).float().expand(x.shape[0], 1, 16, 16))
    right = prune_model(teacher, 0.5, "content", mask_fn=lambda x: (torch.arange(16) >= 8).float().expand(x.shape[0], 1, 16, 16))
    assert left.kept != right.kept  # the importance follows the content region
    from PIL import Image

    masks = tmp_path / "masks"
    masks.mkdir()
    arr = (torch.arange(16) < 8).float().expand(16, 16).numpy() * 255
    Image.fromarray(arr.astype("uint8")).save(masks / "0.png")
    from distill.prune import mask_folder

    from_folder = prune_model(teacher, 0.5, "content", mask_fn=mask_folder(masks))
    assert from_folder.kept == left.kept


def test_slimgan_prune_cli_on_the_acceptance_teacher(tmp_path, capsys) -> None:
    from slimgan.cli import main

    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    save_checkpoint(create_model("stylegan2", image_size=32, channels=64), teacher_dir)
    assert main(["prune", str(teacher_dir), "--ratio", "0.5", "--out", str(student_dir)]) == 0
    teacher, student = load_checkpoint(teacher_dir), load_checkpoint(student_dir)
    assert count_params(student) < count_params(teacher) / 2
    config = json.loads((student_dir / "config.json").read_text())
    pruned = config["provenance"]["pruned"]
    assert pruned["ratio"] == 0.5 and pruned["method"] == "l1" and pruned["teacher_kwargs"]["channels"] == 64
    assert config["kwargs"]["channels"] == 32
    assert all(len(g["kept"]) == g["teacher_channels"] // 2 for g in pruned["groups"].values())
    capsys.readouterr()
    assert main(["prune", str(teacher_dir), "--ratio", "1.5", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--ratio" in err and len(err.strip().splitlines()) == 1
