"""VEM: energy network shape and spectral norm, the Langevin update rule and its noise scale, the
EBM objective, the student gradient (Eq. 9) and the step order with reused negatives."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distill.losses.vem import VEM, EnergyNet, VEMConfig, ebm_loss, langevin_sample, mi_student_loss


class Quadratic(nn.Module):
    """E(t, s) = 0.5·a·Σ (t - s - c)² per sample: ∇_t E = a·(t - s - c)."""

    def __init__(self, a: float = 1.0, c: float = 0.0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.c = c

    def forward(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.a * (t - s - self.c).pow(2).flatten(1).sum(1)


def test_energy_net_output_shape_and_spectral_norm_everywhere():
    net = EnergyNet(in_channels=3, channels=4)
    out = net(torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16))
    assert out.shape == (2,)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    # ConvBlock 1 + ResBlock(C->2C) 2 + skip 1 + first ResBlock(2C->4C) 2 + skip 1 + 5 ResBlocks x 2 + Linear
    assert len(layers) == 1 + 3 + 3 + 10 + 1
    assert all(hasattr(m, "weight_orig") and hasattr(m, "weight_u") for m in layers)
    res = [m for m in net.blocks if type(m).__name__ == "ResBlock"]
    assert len(res) == 7 and [m.conv2.out_channels for m in res] == [8] + [16] * 6
    assert net.linear.in_features == 16 and net.linear.out_features == 1


def test_langevin_update_rule_matches_eq7():
    energy = Quadratic(a=2.0, c=0.5)
    s = torch.randn(2, 3, 4, 4)
    init = torch.randn(2, 3, 4, 4)
    gen = torch.Generator().manual_seed(7)
    out = langevin_sample(energy, s, steps=1, step_size=0.1, noise_std=0.005, init=init, generator=gen)
    noise = torch.randn(init.shape, generator=torch.Generator().manual_seed(7))
    expected = init - 0.5 * 0.1 * 2.0 * (init - s - 0.5) + 0.005 * noise
    torch.testing.assert_close(out, expected)
    assert energy.a.grad is None  # sampling does not touch θ's gradients
    # default initialisation is the student output itself
    start = langevin_sample(energy, s, steps=0)
    torch.testing.assert_close(start, s)


def test_langevin_noise_scale():
    energy = Quadratic(a=0.0)  # zero gradient: each step adds only N(0, σ²) noise
    s = torch.zeros(4, 3, 64, 64)
    out = langevin_sample(energy, s, steps=4, step_size=100.0, noise_std=0.005)
    assert (out - s).std().item() == pytest.approx(0.005 * 2.0, rel=0.03)  # sqrt(4) steps


def test_ebm_loss_hand_computed():
    energy = Quadratic(a=1.0)
    s = torch.zeros(2, 1, 1, 2)
    t = torch.ones(2, 1, 1, 2)  # E = 0.5·2 = 1 for both samples
    t_neg = torch.full((2, 1, 1, 2), 2.0)  # E = 0.5·8 = 4
    loss, stats = ebm_loss(energy, t, s, t_neg, reg=0.5)
    assert loss.item() == pytest.approx(1 - 4 + 0.5 * (1 + 16))
    assert stats == {"energy_pos": 1.0, "energy_neg": 4.0}


def test_student_gradient_is_eq9_and_leaves_theta_alone():
    torch.manual_seed(0)
    energy = EnergyNet(3, 4)
    t, t_neg = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    s = torch.randn(2, 3, 8, 8, requires_grad=True)
    mi_student_loss(energy, t, s, t_neg).backward()
    s1 = s.detach().clone().requires_grad_(True)
    (g_pos,) = torch.autograd.grad(energy(t, s1).mean(), s1)
    s2 = s.detach().clone().requires_grad_(True)
    (g_neg,) = torch.autograd.grad(energy(t_neg, s2).mean(), s2)
    # spectral norm's power iteration moves u between calls; compare loosely
    torch.testing.assert_close(s.grad, g_pos - g_neg, atol=1e-3, rtol=5e-2)


def test_vem_step_order_reuses_negatives_and_updates_only_the_ebm():
    torch.manual_seed(0)
    student = nn.Conv2d(3, 3, 3, padding=1)
    vem = VEM(VEMConfig(channels=4, langevin_steps=2, step_size=10.0, lambda_mi=0.1))
    x, y = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    before = [p.detach().clone() for p in vem.energy.parameters()]
    s = student(x)
    t_neg = vem.ebm_step(y, s.detach())
    changed = [not torch.equal(b, p) for b, p in zip(before, vem.energy.parameters(), strict=True)]
    assert any(changed) and set(vem.last_stats) == {"ebm_loss", "energy_pos", "energy_neg"}
    assert vem.last_negatives is t_neg and not t_neg.requires_grad
    after_ebm = [p.detach().clone() for p in vem.energy.parameters()]
    loss = vem.lambda_mi * vem.student_loss(y, s)
    loss.backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in vem.energy.parameters())
    assert all(torch.equal(a, p) for a, p in zip(after_ebm, vem.energy.parameters(), strict=True))
    with pytest.raises(RuntimeError, match="ebm_step"):
        vem.student_loss(y[:1], s[:1])


def test_vem_loss_term_in_a_step_context():
    from distill.losses import build_loss
    from distill.losses.context import StepContext

    torch.manual_seed(0)
    term = build_loss({"name": "vem", "weight": 0.1, "channels": 4, "langevin_steps": 2})
    student = nn.Conv2d(3, 3, 3, padding=1)
    x, y = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    ctx = StepContext(step=0, real_a=x, real_b=y, paired=True, student=student, student_out=student(x),
                      teacher_out=torch.zeros(2, 3, 16, 16))
    term.setup(ctx)
    assert list(term.aux_optimizers()) == ["ebm"] and list(term.student_parameters()) == []
    stats = term.aux_step(ctx)
    assert set(stats) == {"ebm_loss", "energy_pos", "energy_neg"}
    # paired data: the real target y, not the teacher output, is the positive
    s = ctx.student_out
    expected = term.vem.energy(y, s).mean() - term.vem.energy(term.vem.last_negatives, s).mean()
    assert term(ctx).item() == pytest.approx(expected.item(), abs=1e-3)
