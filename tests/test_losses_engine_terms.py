"""Each loss term of the engine against a value computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from distill.errors import ConfigError
from distill.losses import build_loss, format_formula, list_losses
from distill.losses.adversarial import discriminator_loss, generator_loss, gradient_penalty
from distill.losses.context import StepContext

S = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2) student output
T = torch.tensor([[[[0.0, 2.0], [3.0, 6.0]]]])  # teacher output: diffs 1, 0, 0, -2
Y = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]])  # target: diffs 0, 1, 2, 3


class Scale(nn.Module):
    def __init__(self, k: float):
        super().__init__()
        self.k = k

    def forward(self, x):
        return self.k * x


def ctx(**kw) -> StepContext:
    base = dict(step=0, real_a=torch.zeros(1, 1, 2, 2), real_b=Y, paired=True, student=nn.Identity(),
                teacher=nn.Identity(), student_out=S.clone().requires_grad_(True), teacher_out=T)
    base.update(kw)
    return StepContext(**base)


def value(spec: dict, c: StepContext) -> float:
    return float(build_loss(spec)(c).detach())


def test_reconstruction_terms_match_hand_values():
    c = ctx()
    assert value({"name": "l1_teacher"}, c) == pytest.approx((1 + 0 + 0 + 2) / 4)
    assert value({"name": "mse_teacher"}, c) == pytest.approx((1 + 0 + 0 + 4) / 4)
    assert value({"name": "l1_target"}, c) == pytest.approx((0 + 1 + 2 + 3) / 4)
    assert value({"name": "mse_target"}, c) == pytest.approx((0 + 1 + 4 + 9) / 4)
    assert value({"name": "recon"}, c) == pytest.approx(1.5)  # paired: to the target
    assert value({"name": "recon", "p": 2}, ctx(paired=False)) == pytest.approx(1.25)  # unpaired: to the teacher
    with pytest.raises(ConfigError, match="paired"):
        value({"name": "l1_target"}, ctx(paired=False))


def test_reconstruction_gradient_reaches_student_only():
    c = ctx()
    build_loss({"name": "mse_teacher"})(c).backward()
    # d/ds mean((s - t)^2) = 2 (s - t) / n
    assert torch.allclose(c.student_out.grad, 2 * (S - T) / 4)


def test_gan_objectives_match_hand_values():
    x = torch.tensor([0.0, 2.0])
    assert float(generator_loss(x, "lsgan")) == pytest.approx(((0 - 1) ** 2 + (2 - 1) ** 2) / 2)
    assert float(generator_loss(x, "vanilla")) == pytest.approx((math.log(2) + math.log(1 + math.exp(-2))) / 2)
    assert float(generator_loss(x, "vanilla", saturating=True)) == pytest.approx(
        (math.log(1 - 0.5) + math.log(1 - 1 / (1 + math.exp(-2)))) / 2)
    assert float(generator_loss(x, "hinge")) == pytest.approx(-1.0)
    assert float(generator_loss(x, "wgangp")) == pytest.approx(-1.0)
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-2.0, 0.5])
    assert float(discriminator_loss(real, fake, "lsgan")) == pytest.approx(0.5 * ((0.25 + 1) / 2 + (4 + 0.25) / 2))
    assert float(discriminator_loss(real, fake, "hinge")) == pytest.approx((0.5 + 0) / 2 + (0 + 1.5) / 2)
    assert float(discriminator_loss(real, fake, "wgangp")) == pytest.approx(-0.75 - 1.25)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert float(discriminator_loss(real, fake, "vanilla")) == pytest.approx(
        0.5 * ((sp(-0.5) + sp(-2.0)) / 2 + (sp(-2.0) + sp(0.5)) / 2))
    with pytest.raises(ConfigError, match="gan_mode"):
        generator_loss(x, "nope")


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = sum(3 x): the gradient is 3 everywhere, ||grad|| = 3 sqrt(4) = 6 per sample -> (6 - 1)^2
    d = lambda x: 3 * x.flatten(1).sum(1)  # noqa: E731
    gp = gradient_penalty(d, torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2))
    assert float(gp) == pytest.approx(25.0)


def test_adv_term_uses_the_discriminator_and_mode():
    c = ctx(discriminator=Scale(0.5), gan_mode="lsgan")  # logits 0.5, 1, 1.5, 2
    assert value({"name": "adv"}, c) == pytest.approx((0.25 + 0 + 0.25 + 1) / 4)
    assert value({"name": "adv", "gan_mode": "hinge"}, c) == pytest.approx(-1.25)
    cond = ctx(discriminator=lambda x: x[:, :1] + x[:, 1:], conditional=True, gan_mode="hinge")
    assert value({"name": "adv"}, cond) == pytest.approx(-2.5)  # cat(real_a = 0, S) summed on channels
    with pytest.raises(ConfigError, match="discriminator"):
        value({"name": "adv"}, ctx())


def test_feature_kd_with_and_without_adapters():
    fs = {"a": torch.ones(1, 2, 2, 2)}  # (B, C_s=2, H, W)
    ft = {"a": torch.full((1, 3, 2, 2), 2.0)}  # (B, C_t=3, H, W)
    c = ctx(student_feats=fs, teacher_feats=ft)
    term = build_loss({"name": "feature_kd", "layers": ["a"]})
    term.setup(c)
    assert term.adapters[0].weight.shape == (3, 2, 1, 1)
    with torch.no_grad():
        term.adapters[0].weight.fill_(0.5)  # f(s) = 0.5 * (1 + 1) + bias 0.25 = 1.25 per channel
        term.adapters[0].bias.fill_(0.25)
    assert float(term(c)) == pytest.approx((2.0 - 1.25) ** 2)
    plain = build_loss({"name": "feature_kd", "layers": [["a", "b"]], "adapter": False})
    c2 = ctx(student_feats={"a": torch.tensor([[[[1.0, 3.0]]]])}, teacher_feats={"b": torch.tensor([[[[0.0, 0.0]]]])})
    assert float(plain(c2)) == pytest.approx((1 + 9) / 2)
    assert plain.student_layers() == ["a"] and plain.teacher_layers() == ["b"]


def test_kd_gan_mse_and_joint_schemes():
    sq = 1 + 0 + 0 + 4  # Eq. (3) as written: ||G_t(z) - G_s(z)||² summed over the image (one image)
    assert value({"name": "kd_gan", "scheme": "mse"}, ctx()) == pytest.approx(sq)
    assert value({"name": "kd_gan", "scheme": "mse", "reduction": "mean"}, ctx()) == pytest.approx(sq / 4)
    two = ctx(student_out=torch.cat([S, S]), teacher_out=torch.cat([T, T + 1]))  # batch of 2: mean over z
    assert value({"name": "kd_gan", "scheme": "mse"}, two) == pytest.approx((sq + (0 + 1 + 1 + 9)) / 2)
    c = ctx(discriminator=Scale(0.0), gan_mode="vanilla")  # D(G_s(z)) = 0: log(1 - σ(0)) = -log 2
    alpha = 0.25
    joint = value({"name": "kd_gan", "scheme": "joint", "alpha": alpha}, c)
    assert joint == pytest.approx(alpha * -math.log(2) + (1 - alpha) * sq)
    ns = value({"name": "kd_gan", "scheme": "joint", "alpha": alpha, "saturating": False, "reduction": "mean"}, c)
    assert ns == pytest.approx(alpha * math.log(2) + (1 - alpha) * sq / 4)
    # α on D's generated-image term (Eq. 4 as written) is an option, off by default
    assert build_loss({"name": "kd_gan", "scheme": "joint", "alpha": alpha}).discriminator_fake_weight() == 1.0
    on = build_loss({"name": "kd_gan", "scheme": "joint", "alpha": alpha, "alpha_on_discriminator": True})
    assert on.discriminator_fake_weight() == alpha
    real, fake = torch.tensor([0.3]), torch.tensor([-0.2])
    expected = 0.5 * (math.log1p(math.exp(-0.3)) + alpha * math.log1p(math.exp(-0.2)))
    assert float(discriminator_loss(real, fake, "vanilla", fake_weight=alpha)) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="alpha"):
        build_loss({"name": "kd_gan", "alpha": 2.0})
    with pytest.raises(ConfigError, match="reduction"):
        build_loss({"name": "kd_gan", "reduction": "max"})


def test_dgl_gan_is_the_teacher_discriminator_hinge_term():
    c = ctx(teacher=None, teacher_out=None, teacher_discriminator=Scale(2.0), teacher_gan_mode="hinge")
    assert value({"name": "dgl_gan"}, c) == pytest.approx(-2.5 * 2)  # -mean(D̄(G(z))), D̄'s recorded objective
    assert value({"name": "dgl_gan", "gan_mode": "lsgan"}, c) == pytest.approx(((2 * S - 1) ** 2).mean().item())
    term = build_loss({"name": "dgl_gan", "weight": 0.1, "start": 10})
    assert not term.active(9) and term.active(10)
    frac = build_loss({"name": "dgl_gan", "start": 0.25})
    frac.resolve_schedule(40)
    assert frac.start == 10
    with pytest.raises(ConfigError, match="teacher.discriminator"):
        value({"name": "dgl_gan"}, ctx())


def test_registry_errors_and_formula():
    assert {"adv", "l1_teacher", "feature_kd", "kd_gan", "dgl_gan"} <= set(list_losses())
    with pytest.raises(ConfigError, match="unknown loss term 'l3'"):
        build_loss({"name": "l3"})
    with pytest.raises(ConfigError, match="'alfa'"):
        build_loss({"name": "kd_gan", "alfa": 0.1})
    terms = [build_loss({"name": "adv", "weight": 1}), build_loss({"name": "dgl_gan", "weight": 0.1, "start": 5})]
    assert format_formula(terms) == "L_G = 1·adv + 0.1·dgl_gan[5<=step]"
