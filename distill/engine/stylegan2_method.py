"""The ``stylegan2`` training method: StyleGAN2's regularised GAN step (Karras et al. 2020, §4-5) on the
generator method's terms, for teacher training and for distilling StyleGAN2 students.

On top of :class:`~distill.engine.methods.GeneratorMethod` (loss terms, its D, the teacher side):

- mixing regularisation: with probability ``mixing`` a sample's layers after a random cutoff take the
  w of a second latent (teacher and student get the same second latent and cutoff);
- lazy R1 on D every ``d_reg_every`` steps: ``(γ/2)·E||∇_x D(x)||²`` on real images, times
  ``d_reg_every`` (the paper's lazy regularisation);
- path-length regularisation on G every ``g_reg_every`` steps: ``(||J_wᵀ y||₂ - a)²`` with
  ``y ~ N(0, I)/√(HW)`` and ``a`` the running mean of the lengths (decay 0.01), weight ``pl_weight``
  times ``g_reg_every`` on a batch ``pl_batch_shrink`` times smaller;
- an exponential moving average of G (half-life ``ema_kimg`` thousand images, ramped up over the
  first ``ema_rampup`` of the images seen), saved as ``student/`` and used for evaluation; the raw
  generator is saved as ``generator/``;
- with a teacher generator (CAGC-style distillation): G_t and G_s see the same latents and the same
  per-layer noise, so ``l1_teacher`` compares images that differ only by the networks.

The non-saturating logistic loss is the discriminator's ``gan_mode: vanilla`` (the adversarial term
``adv`` then is ``softplus(-D(G(z)))``).
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.engine.config import RunConfig
from distill.engine.data import Batch
from distill.engine.device import DeviceContext, set_requires_grad
from distill.engine.methods import GeneratorMethod, register_method
from distill.engine.teachers import eval_forward
from distill.errors import ConfigError
from distill.losses.context import StepContext


def r1_penalty(discriminator: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """``E ||∇_x D(x)||²`` on real images (Mescheder et al. 2018), with a graph for the D step."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def path_length(generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Per-sample ``||J_wᵀ y||₂`` with ``y ~ N(0, I)/√(HW)``, over every layer's w (StyleGAN2 Eq. 4)."""
    w = generator.mapping(z)
    ws = w.unsqueeze(1).repeat(1, generator.n_latent, 1)  # (B, n_latent, w_dim)
    image = generator.synthesis(ws)
    y = torch.randn_like(image) / math.sqrt(image.shape[2] * image.shape[3])
    (grad,) = torch.autograd.grad((image * y).sum(), ws, create_graph=True)
    return grad.pow(2).sum(2).mean(1).sqrt()  # (B,)


class _PathLengthMean(nn.Module):
    """The running mean ``a`` of path lengths, a buffer so ``state.pt`` restores it."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("value", torch.zeros(()))


@dataclass(frozen=True)
class StyleGAN2Options:
    """The ``method.kwargs`` of ``stylegan2`` (see the module docstring for each)."""

    r1: float = 10.0
    d_reg_every: int = 16
    pl_weight: float = 2.0
    g_reg_every: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    mixing: float = 0.9
    ema: bool = True
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05


@register_method("stylegan2")
class StyleGAN2Method(GeneratorMethod):
    """StyleGAN2's step around the generator method's; see the module docstring for each option."""

    options = StyleGAN2Options

    def __init__(self, config: RunConfig, rt: DeviceContext, paths: dict[str, Path], **kwargs: Any):
        opts = StyleGAN2Options(**kwargs)  # an unknown option is a TypeError, reported as the method's
        super().__init__(config, rt, paths)
        for name in ("mapping", "synthesis", "make_noise", "n_latent"):
            if not hasattr(self.student, name):
                raise ConfigError(f"method stylegan2 needs a StyleGAN2 student (arch stylegan2), got {config.student.arch!r}")
        if self.discriminator is None:
            raise ConfigError("method stylegan2 needs a discriminator section (e.g. arch: stylegan2_discriminator)")
        if opts.d_reg_every < 1 or opts.g_reg_every < 1 or opts.pl_batch_shrink < 1:
            raise ConfigError("method stylegan2: d_reg_every, g_reg_every and pl_batch_shrink must be >= 1")
        self.r1, self.d_reg_every = float(opts.r1), int(opts.d_reg_every)
        self.pl_weight, self.g_reg_every = float(opts.pl_weight), int(opts.g_reg_every)
        self.pl_batch_shrink, self.pl_decay, self.mixing = int(opts.pl_batch_shrink), float(opts.pl_decay), float(opts.mixing)
        self.ema_kimg, self.ema_rampup = float(opts.ema_kimg), opts.ema_rampup
        self.pl_mean = _PathLengthMean().to(rt.device)
        self.g_ema: nn.Module | None = None
        if opts.ema:
            self.g_ema = copy.deepcopy(self.student).eval()
            set_requires_grad([self.g_ema], False)
            self.generator = self.g_ema  # what best/ and the sample grids show
        self._mix_rng = random.Random(config.train.seed)

    # -- the step ------------------------------------------------------------------------------------
    def _mixing_args(self, z: torch.Tensor) -> dict[str, Any]:
        if self.mixing <= 0 or self._mix_rng.random() >= self.mixing:
            return {}
        n_latent = self.student.n_latent
        return {"mix_z": torch.randn_like(z), "mix_cutoff": self._mix_rng.randint(1, n_latent - 1)}

    def forward(self, ctx: StepContext, student: nn.Module) -> None:
        """G_t and G_s on the same z, mixing latent and noise; then the student's output with grad."""
        self.teacher.fill(ctx)
        z = ctx.real_a
        kwargs = self._mixing_args(z) if self.student.training else {}
        teacher = self.teacher.generator
        if teacher is not None and hasattr(teacher, "make_noise"):
            kwargs["noise"] = self.student.make_noise(z.shape[0])
            with torch.no_grad():
                ctx.teacher_out = teacher(z, **kwargs).detach()  # (B, C, H, W), the student's noise and mixing
        ctx.student_out = student(z, **kwargs)
        ctx.student_feats = self.student_taps.take()

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Lazy regularisation's Adam adjustment (StyleGAN2 appendix B, the official code): a network
        regularised every k steps gets lr·k/(k+1) and β^(k/(k+1)), so its effective step size stays that
        of regularising every step."""
        opts = super().build_optimizers()
        for name, every, on in (("G", self.g_reg_every, self.pl_weight > 0), ("D", self.d_reg_every, self.r1 > 0)):
            if on and name in opts:
                ratio = every / (every + 1)
                for group in opts[name].param_groups:
                    group["lr"] *= ratio
                    group["betas"] = tuple(b ** ratio for b in group["betas"])
        return opts

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        logs = super().train_step(batch, step)
        batch = batch.to(self.rt.device)
        if self.r1 > 0 and step % self.d_reg_every == 0:
            logs["D_r1"] = self._r1_step(batch)
        if self.pl_weight > 0 and step % self.g_reg_every == 0:
            logs.update(self._path_length_step(batch))
        if self.g_ema is not None:
            self._update_ema(step, batch.real_a.shape[0])
        return logs

    def _r1_step(self, batch: Batch) -> float:
        if batch.real_b is None:
            raise ConfigError("method stylegan2: R1 needs real images (an image-folder dataset)")
        d = self.discriminator
        set_requires_grad([d], True)
        penalty = r1_penalty(d, batch.real_b)
        loss = (self.r1 / 2) * penalty * self.d_reg_every
        self.rt.optimize(loss, self._optimizers["D"])
        set_requires_grad([d], False)
        return float(penalty.detach())

    def _path_length_step(self, batch: Batch) -> dict[str, float]:
        z = batch.real_a[: max(1, batch.real_a.shape[0] // self.pl_batch_shrink)]
        lengths = path_length(self.student, z)
        with torch.no_grad():
            mean = self.pl_mean.value + self.pl_decay * (lengths.mean() - self.pl_mean.value)
            self.pl_mean.value.copy_(mean)
        penalty = (lengths - self.pl_mean.value).pow(2).mean()
        loss = self.pl_weight * self.g_reg_every * penalty
        self.rt.optimize(loss, self._optimizers["G"])
        return {"G_path_length": float(lengths.mean().detach()), "G_pl_penalty": float(penalty.detach())}

    @torch.no_grad()
    def _update_ema(self, step: int, batch_size: int) -> None:
        """β = 0.5^(B / ema_nimg), ema_nimg ramped up as min(ema_kimg·1000, images seen·ema_rampup) (StyleGAN2-ADA)."""
        ema_nimg = self.ema_kimg * 1000
        if self.ema_rampup is not None:
            ema_nimg = min(ema_nimg, (step + 1) * batch_size * self.ema_rampup)
        beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.g_ema.parameters(), self.student.parameters(), strict=True):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.g_ema.buffers(), self.student.buffers(), strict=True):
            b_ema.copy_(b)

    # -- what is saved and shown ------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods = {**super().modules(), "pl_mean": self.pl_mean}
        if self.g_ema is not None:
            mods["student_ema"] = self.g_ema
        return mods

    def checkpoints(self) -> dict[str, nn.Module]:
        out = super().checkpoints()
        if self.g_ema is not None:
            out["generator"] = self.student
            out["student"] = self.g_ema
        return out

    @torch.no_grad()
    def predict(self, real_a: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().predict(real_a)
        if self.g_ema is not None:
            out["student"] = eval_forward(self.g_ema, real_a)
        return out

    def formula(self) -> str:
        text = super().formula()
        regs = []
        if self.r1 > 0:
            regs.append(f"every {self.d_reg_every} steps L_D += {self.r1:g}/2·{self.d_reg_every}·R1")
        if self.pl_weight > 0:
            regs.append(f"every {self.g_reg_every} steps L_G += {self.pl_weight:g}·{self.g_reg_every}·PL")
        if self.mixing > 0:
            regs.append(f"mixing p={self.mixing:g}")
        if self.g_ema is not None:
            regs.append(f"EMA half-life {self.ema_kimg:g} kimg")
        return text + (";  " + ", ".join(regs) if regs else "")

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "method": "stylegan2"}
