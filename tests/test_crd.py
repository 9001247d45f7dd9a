"""CRD: content slicing, RKD distance/angle against hand-computed values, the frozen teacher
discriminator, the in-house VGG-16 loader and the perceptual loss."""

from __future__ import annotations

import math

import pytest
import torch

from distill.errors import CheckpointError, ConfigError
from distill.losses.crd import (
    count_units,
    crd_loss,
    default_patch_size,
    distance_relation,
    frozen,
    rkd_angle,
    rkd_distance,
    slice_units,
)
from distill.losses.perceptual import build_perceptual, gram_matrix
from distill.vgg import VGG16_CFG, load_vgg16

# Three 2-D points: a 3-4-5 right triangle (teacher) and a unit right isoceles triangle (student).
TEACHER = torch.tensor([[[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]])  # (B=1, N=3, D=2)
STUDENT = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])


def _huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def test_distance_relation_of_three_known_vectors():
    # pairwise distances 3, 4, 5; mu = mean of the 6 non-zero ordered distances = 4
    expected = torch.tensor([[0, 3, 4], [3, 0, 5], [4, 5, 0]], dtype=torch.float32) / 4
    torch.testing.assert_close(distance_relation(TEACHER)[0], expected, atol=1e-5, rtol=0)


def test_rkd_distance_hand_computed():
    mu_s = (1 + 1 + math.sqrt(2)) / 3
    diffs = [1 / mu_s - 3 / 4, 1 / mu_s - 4 / 4, math.sqrt(2) / mu_s - 5 / 4]
    expected = 2 * sum(_huber(d) for d in diffs) / 9  # ordered pairs, mean over N^2 = 9 entries
    assert rkd_distance(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-4)
    # distance relations are scale invariant: a scaled copy costs nothing
    assert rkd_distance(2.5 * TEACHER, TEACHER).item() == pytest.approx(0.0, abs=1e-6)


def test_rkd_angle_hand_computed():
    # teacher angles at the vertices (3,0) and (0,4): cos = 0.6 and 0.8; student: 1/sqrt(2) at both;
    # the right angle at the origin matches; each differing angle appears twice (i,k) and (k,i)
    a, b = 1 / math.sqrt(2) - 0.6, 1 / math.sqrt(2) - 0.8
    expected = 2 * (_huber(a) + _huber(b)) / 27
    assert rkd_angle(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-4)
    # chunking over anchors gives the same value
    assert rkd_angle(STUDENT, TEACHER, chunk=1).item() == pytest.approx(expected, rel=1e-4)
    assert rkd_angle(3.0 * TEACHER + 1.0, TEACHER).item() == pytest.approx(0.0, abs=1e-6)


def test_slicing_counts_and_contents():
    x = torch.randn(2, 3, 64, 64)
    counts = {g: slice_units(x, g, 32).shape[1] for g in ("column", "row", "patch")}
    assert counts == {"column": 64, "row": 64, "patch": 4} == count_units(64, 64, 32)
    assert sum(counts.values()) == 64 + 64 + 4
    torch.testing.assert_close(slice_units(x, "column", 32)[:, 5], x[:, :, :, 5].reshape(2, -1))
    torch.testing.assert_close(slice_units(x, "row", 32)[:, 7], x[:, :, 7, :].reshape(2, -1))
    torch.testing.assert_close(slice_units(x, "patch", 32)[:, 1], x[:, :, :32, 32:].reshape(2, -1))
    assert default_patch_size(256) == 32 and default_patch_size(64) == 8 and default_patch_size(512) == 64


def test_crd_loss_zero_for_teacher_and_gradient_otherwise():
    torch.manual_seed(0)
    t = torch.rand(2, 3, 16, 16) * 2 - 1
    loss, parts = crd_loss(t.clone(), t, patch=4)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert set(parts) == {f"{g}/{k}" for g in ("column", "row", "patch") for k in ("distance", "angle")}
    s = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    loss, parts = crd_loss(s, t, patch=4)
    expected = sum(parts[f"{g}/distance"] + 2 * parts[f"{g}/angle"] for g in ("column", "row", "patch"))
    assert loss.item() == pytest.approx(expected, rel=1e-5) and loss.item() > 0
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_frozen_discriminator_step_leaves_weights_unchanged():
    torch.manual_seed(0)
    d_bar = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(4, 1, 3))
    student = torch.nn.Conv2d(3, 3, 3, padding=1)
    opt_s = torch.optim.Adam(student.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in d_bar.state_dict().items()}
    x = torch.randn(2, 3, 12, 12)
    with frozen(d_bar):
        loss = (d_bar(student(x)) - 1).pow(2).mean()  # LSGAN generator loss through sg(D̄)
    loss.backward()
    opt_s.step()
    assert all(p.grad is None for p in d_bar.parameters())
    assert all(torch.equal(before[k], v) for k, v in d_bar.state_dict().items())
    assert all(p.requires_grad for p in d_bar.parameters())  # restored for D̄'s own update
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0


def _fake_vgg16_file(path, with_classifier: bool = True) -> None:
    """A torchvision-format vgg16 state dict (random values, real key names and shapes)."""
    state, idx, cin = {}, 0, 3
    for v in VGG16_CFG:
        if v == "M":
            idx += 1
            continue
        state[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3) * 0.05
        state[f"features.{idx}.bias"] = torch.zeros(v)
        cin, idx = v, idx + 2
    if with_classifier:
        state["classifier.0.weight"] = torch.zeros(8, 8)
    torch.save(state, path)


def test_vgg16_loads_torchvision_format_and_perceptual_loss(tmp_path):
    path = tmp_path / "vgg16.pth"
    _fake_vgg16_file(path)
    vgg = load_vgg16(path)
    assert "features.28.weight" not in vgg.state_dict()  # only up to relu4_3 is kept
    ref = torch.load(path, weights_only=True)
    torch.testing.assert_close(vgg.state_dict()["features.21.weight"], ref["features.21.weight"])
    feats = vgg(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512]
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]

    loss = build_perceptual({"vgg16": str(path)})
    t = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-7)
    s = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    value = loss(s, t)
    value.backward()
    assert value.item() > 0 and s.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.vgg.parameters())


def test_perceptual_must_be_path_or_off(tmp_path):
    assert build_perceptual("off") is None and build_perceptual(False) is None  # YAML `off` is False
    with pytest.raises(ConfigError, match="off"):
        build_perceptual(None)
    with pytest.raises(CheckpointError, match="not found"):
        build_perceptual(str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(CheckpointError, match="missing"):
        load_vgg16(bad)


def test_gram_matrix_hand_computed():
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, C=2, H=1, W=2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(gram_matrix(x), expected)


def test_crd_and_teacher_adv_terms_in_a_step_context():
    from distill.losses import build_loss
    from distill.losses.context import StepContext

    torch.manual_seed(0)
    student = torch.nn.Conv2d(3, 3, 3, padding=1)
    d_bar = torch.nn.Conv2d(6, 1, 4, stride=2)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    t = torch.rand(2, 3, 16, 16) * 2 - 1
    ctx = StepContext(step=0, real_a=x, real_b=None, paired=False, student=student, student_out=student(x),
                      teacher_out=t, teacher_discriminator=d_bar)
    crd = build_loss({"name": "crd", "weight": 25.0, "patch": 4})
    expected, _ = crd_loss(ctx.student_out, t, patch=4)
    assert crd(ctx).item() == pytest.approx(expected.item(), rel=1e-6)
    adv = build_loss({"name": "teacher_adv", "conditional": True})
    before = d_bar.weight.detach().clone()
    adv(ctx).backward()
    assert d_bar.weight.grad is None and torch.equal(before, d_bar.weight)
    assert student.weight.grad is not None
    off = build_loss({"name": "perceptual", "vgg16": False})
    assert off(ctx).item() == 0.0 and "vgg16=off" in repr(off)
    with pytest.raises(ConfigError):
        build_loss({"name": "perceptual"})
