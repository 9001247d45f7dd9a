"""OMGD terms (SSIM, TV, channel distillation), CAT kernel alignment and VID against hand values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from distill.losses.cat import kernel_alignment, kernel_alignment_loss
from distill.losses.omgd import attention_loss, channel_distillation, make_adapter, ssim_loss, total_variation
from distill.losses.vid import VIDLoss


def test_kernel_alignment_identical_is_one_and_hand_value():
    torch.manual_seed(0)
    f = torch.randn(4, 8, 5, 5)
    assert kernel_alignment(f, f.clone()).item() == pytest.approx(1.0, abs=1e-6)
    # invariant to scale and defined across different channel counts
    assert kernel_alignment(3 * f, f).item() == pytest.approx(1.0, abs=1e-6)
    # S rows orthogonal (K_S = I), T rows equal (K_T = 2·ones): <I, K_T> = 4, ||I|| = sqrt 2, ||K_T|| = 4
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1)
    t = torch.tensor([[1.0, 1.0], [1.0, 1.0]]).view(2, 2, 1, 1)
    assert kernel_alignment(s, t).item() == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    # the Gram-matrix form equals the paper's chw x chw form
    a, b = torch.randn(3, 2, 3, 3), torch.randn(3, 5, 2, 2)
    sa, tb = a.reshape(3, -1), b.reshape(3, -1)
    dense = (sa.T @ tb).norm() ** 2 / ((sa.T @ sa).norm() * (tb.T @ tb).norm())
    assert kernel_alignment(a, b).item() == pytest.approx(dense.item(), rel=1e-5)
    loss = kernel_alignment_loss([f, s], [f, t])
    assert loss.item() == pytest.approx(-(1 + 1 / math.sqrt(2)), rel=1e-5)


def test_total_variation_hand_computed():
    x = torch.tensor([[[[0.0, 1.0], [3.0, 5.0]]]])  # horizontal |1|+|2| = 3, vertical |3|+|4| = 7
    assert total_variation(x).item() == pytest.approx(10.0)


def test_attention_loss_hand_computed_and_adapters():
    t = torch.zeros(1, 2, 2, 2)
    t[0, 0] = 1.0  # GAP = (1, 0)
    s = torch.zeros(1, 2, 2, 2)
    s[0, 1] = 3.0  # GAP = (0, 3)
    assert attention_loss(t, s).item() == pytest.approx((1 + 9) / 2)  # (1/C)·||·||²
    adapter = make_adapter(1, 2)
    assert isinstance(adapter, nn.Conv2d) and adapter.kernel_size == (1, 1)
    s_narrow = torch.randn(1, 1, 2, 2, requires_grad=True)
    loss = channel_distillation([t], [s_narrow], [adapter])
    loss.backward()
    assert adapter.weight.grad is not None and s_narrow.grad is not None
    with pytest.raises(ValueError, match="channel mismatch"):
        channel_distillation([t], [s_narrow])


def test_ssim_loss_zero_for_identical_positive_otherwise():
    torch.manual_seed(0)
    t = torch.rand(1, 3, 16, 16) * 2 - 1
    assert ssim_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-6)
    s = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_(True)
    value = ssim_loss(s, t)
    value.backward()
    assert value.item() > 0.5 and s.grad.abs().sum() > 0


def test_vid_negative_log_likelihood_hand_value_and_learning():
    torch.manual_seed(0)
    vid = VIDLoss(3, 3)
    for m in vid.mean:
        if isinstance(m, nn.Conv2d):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
    t = torch.randn(2, 3, 4, 4)
    # μ = 0, σ² = 1: -log q = 0.5·log 1 + t²/2
    assert vid(torch.randn(2, 3, 4, 4), t).item() == pytest.approx((t.pow(2) / 2).mean().item(), rel=1e-5)
    assert torch.allclose(vid.variance(), torch.ones(3), atol=1e-5)

    vid = VIDLoss(3, 3)
    s = torch.randn(8, 3, 4, 4)
    target = 0.5 * s  # perfectly predictable from s: the NLL must fall as μ and σ² are learned
    opt = torch.optim.Adam(vid.parameters(), lr=1e-2)
    first = vid(s, target).item()
    for _ in range(200):
        opt.zero_grad()
        loss = vid(s, target)
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.5 and vid.variance().max().item() < 0.5
