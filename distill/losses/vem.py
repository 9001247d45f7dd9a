"""VEM: variational energy-based mutual information for GAN distillation (vem paper §3-4, A.3).

The student maximises a variational lower bound Ĩ(T; S) = H(T) + E[log q_θ(t|s)] (Eq. 2) with an
energy-based variational distribution q_θ(t|s) = exp(-E_θ(t, s)) / Z_θ(s) (Eq. 4):

    L_student = L_algo - λ_MI · Ĩ(T; S)                                            (Eq. 10)

Three pieces, one training step:

1. **EBM step** (θ updated; student and teacher fixed), gradient of Eq. 6 plus the squared-energy
   regulariser of A.3:  L_θ = mean E_θ(t, s) - mean E_θ(t̃, s) + γ·(mean E_θ(t, s)² + mean E_θ(t̃, s)²).
   :func:`ebm_loss`, optimised with Adam lr 1e-4 (:class:`VEM`).
2. **Negatives** t̃ ~ q_θ(·|s) by K-step short-run Langevin dynamics (Eq. 7) initialised at the
   student output (§4.1.3):  t̃_k = t̃_{k-1} - (λ/2)·∇_t E_θ(t̃_{k-1}, s) + w_k,  w_k ~ N(0, σ²I).
   :func:`langevin_sample`. K = 10, λ = 100 (50 for Cityscapes / FFHQ), σ = 0.005 (§5.3).
3. **Student term** (θ fixed), whose φ-gradient is Eq. 9:
   -Ĩ ≙ mean E_θ(t, G_s(x)) - mean E_θ(t̃, G_s(x)), reusing t̃ from step 1 (no extra MCMC).
   :func:`mi_student_loss`. For paired data t is the real target y instead of G_t(x) (§5.3).

Energy network (Fig. 4): concat(t, s) → 3×3 avg-pool stride 2 → ConvBlock(C) → ResBlock(2C) →
6× ResBlock(4C) → ReLU → global average pool → Linear(1); spectral norm on every conv and linear.

Choices where the paper is silent:
- Eq. 7 writes w_k ~ N(0, λI); the implementation details (§5.3) give a noise std of 0.005, which is
  what this code uses (``noise_std``), independent of the step size.
- avg-pool padding 1 (so 64² → 32²); LeakyReLU slope 0.2; ResBlock = conv3×3 → LeakyReLU → conv3×3,
  added to the input (through a spectral-normed 1×1 conv when the channel count changes), then
  LeakyReLU; no further downsampling inside the ResBlocks (none is drawn in Fig. 4).
- γ (energy regulariser weight) = 1.0 by default; the paper gives no value.
- Langevin samples are not clamped to the image range.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from distill.losses.base import LossTerm, register_loss
from distill.losses.context import StepContext


def _sn_conv(cin: int, cout: int, k: int = 3) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, kernel_size=k, padding=k // 2))


class ConvBlock(nn.Module):
    """3×3 spectral-normed conv + LeakyReLU (Fig. 4)."""

    def __init__(self, cin: int, cout: int, slope: float = 0.2) -> None:
        super().__init__()
        self.conv = _sn_conv(cin, cout)
        self.act = nn.LeakyReLU(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class ResBlock(nn.Module):
    """Two 3×3 spectral-normed convs with LeakyReLU and a residual connection (Fig. 4)."""

    def __init__(self, cin: int, cout: int, slope: float = 0.2) -> None:
        super().__init__()
        self.conv1 = _sn_conv(cin, cout)
        self.conv2 = _sn_conv(cout, cout)
        self.skip = _sn_conv(cin, cout, k=1) if cin != cout else nn.Identity()
        self.act = nn.LeakyReLU(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.skip(x) + self.conv2(self.act(self.conv1(x))))


class EnergyNet(nn.Module):
    """E_θ(t, s) → one scalar energy per sample, shape (B,). Fig. 4 of the vem paper.

    ``channels`` is C (32; 8 for horse→zebra); ``in_channels`` is the channel count of t (and s).
    """

    def __init__(self, in_channels: int = 3, channels: int = 32, n_res4: int = 6, slope: float = 0.2) -> None:
        super().__init__()
        c = channels
        self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
        blocks: list[nn.Module] = [ConvBlock(2 * in_channels, c, slope), ResBlock(c, 2 * c, slope)]
        blocks += [ResBlock(2 * c if i == 0 else 4 * c, 4 * c, slope) for i in range(n_res4)]
        self.blocks = nn.Sequential(*blocks)
        self.linear = spectral_norm(nn.Linear(4 * c, 1))

    def forward(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) x2 -> (B,)
        h = self.pool(torch.cat([t, s], dim=1))  # (B, 2C_img, H/2, W/2)
        h = F.relu(self.blocks(h))  # (B, 4C, H/2, W/2)
        return self.linear(h.mean(dim=(2, 3))).squeeze(1)


def langevin_sample(
    energy: nn.Module,
    s: torch.Tensor,
    steps: int = 10,
    step_size: float = 100.0,
    noise_std: float = 0.005,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Short-run Langevin MCMC (Eq. 7) from t̃_0 = ``init`` (default: the student output ``s``).

    t̃_k = t̃_{k-1} - (step_size/2)·∇_t Σ_b E(t̃_{k-1}, s) + noise_std·ε_k,  ε_k ~ N(0, I).
    Returns t̃_K, detached. θ receives no gradient (only ∇_t is taken); ``s`` is treated as fixed.
    """
    s = s.detach()
    t = (s if init is None else init).detach().clone()
    with torch.enable_grad():
        for _ in range(steps):
            t.requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(t, s).sum(), t)
            noise = torch.randn(t.shape, generator=generator, dtype=t.dtype, device=t.device)
            t = (t.detach() - 0.5 * step_size * grad + noise_std * noise).detach()
    return t


def ebm_loss(energy: nn.Module, t: torch.Tensor, s: torch.Tensor, t_neg: torch.Tensor,
             reg: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """L_θ = mean E(t, s) - mean E(t̃, s) + reg·(mean E(t, s)² + mean E(t̃, s)²) (Eq. 6 + A.3).

    All inputs are detached here: only θ is optimised in this step.
    """
    s = s.detach()
    e_pos = energy(t.detach(), s)  # (B,)
    e_neg = energy(t_neg.detach(), s)  # (B,)
    loss = e_pos.mean() - e_neg.mean() + reg * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    return loss, {"energy_pos": float(e_pos.mean().detach()), "energy_neg": float(e_neg.mean().detach())}


def mi_student_loss(energy: nn.Module, t: torch.Tensor, s: torch.Tensor, t_neg: torch.Tensor) -> torch.Tensor:
    """-Ĩ(T; S) up to a φ-independent constant: mean E(t, s) - mean E(t̃, s), gradients to ``s`` only (Eq. 9).

    ``t`` (teacher output or real target) and ``t_neg`` are detached. θ is not updated by this term;
    the caller's student optimiser must not hold θ (the EBM has its own optimiser).
    """
    return energy(t.detach(), s).mean() - energy(t_neg.detach(), s).mean()


@dataclass(frozen=True)
class VEMConfig:
    """VEM hyper-parameters (vem §5.3, A.3, Table 6). ``lambda_mi`` is λ_MI of Eq. 10."""

    lambda_mi: float = 0.1
    channels: int = 32
    langevin_steps: int = 10
    step_size: float = 100.0
    noise_std: float = 0.005
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    energy_reg: float = 1.0


class VEM(nn.Module):
    """The energy network, its Adam optimiser and the step order of §3 (EBM step, then student term).

    Per training iteration::

        t_neg = vem.ebm_step(t, s.detach())      # θ update; negatives kept
        loss_s = vem.lambda_mi * vem.student_loss(t, s)   # reuses t_neg; add to L_algo

    ``t`` is G_t(x), or the real target y for paired data.
    """

    def __init__(self, config: VEMConfig | None = None, in_channels: int = 3) -> None:
        super().__init__()
        self.config = config or VEMConfig()
        self.energy = EnergyNet(in_channels, self.config.channels)
        self.optimizer = torch.optim.Adam(self.energy.parameters(), lr=self.config.lr, betas=self.config.betas)
        self.last_negatives: torch.Tensor | None = None
        self.last_stats: dict[str, float] = {}

    @property
    def lambda_mi(self) -> float:
        return self.config.lambda_mi

    def sample(self, s: torch.Tensor) -> torch.Tensor:
        c = self.config
        return langevin_sample(self.energy, s, c.langevin_steps, c.step_size, c.noise_std)

    def ebm_step(self, t: torch.Tensor, s: torch.Tensor, optimize=None) -> torch.Tensor:
        """Draw t̃ from the student output ``s``, take one Adam step on L_θ, keep and return t̃.

        ``optimize(loss, optimizer)`` (the engine's AMP/DDP-aware step) replaces the plain
        backward + step when given.
        """
        self.energy.train()
        t, s = t.detach().float(), s.detach().float()
        with torch.autocast(s.device.type, enabled=False):
            t_neg = self.sample(s)
            loss, stats = ebm_loss(self.energy, t, s, t_neg, self.config.energy_reg)
        if optimize is not None:
            optimize(loss, self.optimizer)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.last_negatives = t_neg
        self.last_stats = {"ebm_loss": float(loss.detach()), **stats}
        return t_neg

    def student_loss(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """-Ĩ(T; S) for the student, reusing the negatives of the last :meth:`ebm_step`.

        θ's ``requires_grad`` is switched off for the forward so the student's backward leaves the
        energy network's gradients untouched.
        """
        if self.last_negatives is None or self.last_negatives.shape != s.shape:
            raise RuntimeError("VEM.student_loss needs the negatives of an ebm_step on this batch first")
        params = list(self.energy.parameters())
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            with torch.autocast(s.device.type, enabled=False):
                return mi_student_loss(self.energy, t.float(), s.float(), self.last_negatives)
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.requires_grad_(flag)


@register_loss("vem")
class VEMTerm(LossTerm):
    """-Ĩ(T; S) for the student (Eq. 10); the recipe ``weight`` is λ_MI (0.1 default, Table 6).

    Composes with any L_algo: add ``{name: vem, weight: 0.1}`` to a recipe's loss list. Per step the
    engine calls :meth:`aux_step` (EBM update with fresh Langevin negatives from G_s(x)) before the
    student step, whose :meth:`forward` reuses those negatives. ``to``: ``auto`` (real y for paired
    data, G_t(x) otherwise; §5.3), ``teacher`` or ``target``. The energy network and its Adam live in
    the distiller's ``state.pt``, never in the student checkpoint; nothing runs at inference.
    ``lr_schedule``: ``fixed`` (default) keeps the EBM's Adam at ``lr`` for the whole run, as the
    paper gives it (1e-4); ``train`` lets it follow the student's ``train.lr_policy``.
    """

    def __init__(self, to: str = "auto", channels: int = 32, langevin_steps: int = 10, step_size: float = 100.0,
                 noise_std: float = 0.005, lr: float = 1e-4, beta1: float = 0.9, beta2: float = 0.999,
                 energy_reg: float = 1.0, lr_schedule: str = "fixed") -> None:
        super().__init__()
        if lr_schedule not in ("fixed", "train"):
            raise ValueError(f"lr_schedule must be fixed or train, got {lr_schedule!r}")
        self.target_of = to
        self.aux_lr_schedule = lr_schedule
        self.cfg = VEMConfig(lambda_mi=1.0, channels=int(channels), langevin_steps=int(langevin_steps),
                             step_size=float(step_size), noise_std=float(noise_std), lr=float(lr),
                             betas=(float(beta1), float(beta2)), energy_reg=float(energy_reg))
        self.vem: VEM | None = None

    def _target(self, ctx: StepContext) -> torch.Tensor:
        from distill.losses.omgd import teacher_targets

        return teacher_targets(ctx, self.target_of, self.name)[0]

    def setup(self, ctx: StepContext) -> None:
        if self.vem is None:
            self.vem = VEM(self.cfg, in_channels=ctx.student_out.shape[1]).to(ctx.device)
            # rebuild the optimiser on the moved parameters
            self.vem.optimizer = torch.optim.Adam(self.vem.energy.parameters(), lr=self.cfg.lr, betas=self.cfg.betas)

    def student_parameters(self):  # θ has its own optimiser
        return iter(())

    def aux_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"ebm": self.vem.optimizer} if self.vem is not None else {}

    def aux_step(self, ctx: StepContext) -> dict[str, float]:
        self.vem.ebm_step(self._target(ctx), ctx.student_out.detach(), ctx.optimize)
        return dict(self.vem.last_stats)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return self.vem.student_loss(self._target(ctx), ctx.student_out)
