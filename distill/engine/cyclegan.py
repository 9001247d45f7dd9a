"""A CycleGAN pair (Zhu et al. 2017): G_A: A→B, G_B: B→A, D_A on B images, D_B on A images.

One implementation serves both the ``cyclegan`` teacher-training method and the online CycleGAN
teacher that CRD and OMGD train alongside the student on unpaired data::

    L_G = GAN(D_A(G_A(a))) + GAN(D_B(G_B(b))) + λ_cyc·(|G_B(G_A(a)) - a|₁ + |G_A(G_B(b)) - b|₁)
          + λ_id·λ_cyc·(|G_A(b) - b|₁ + |G_B(a) - a|₁)
    L_D = ½[gan(D_A(b), D_A(pool_B(G_A(a)))) ... ] per discriminator (pix2pix's halving)

λ_cyc = 10 and λ_id = 0.5 as the reference; each D is trained on a 50-image history of generated
images (the reference's ``ImagePool``). The G step runs with both D frozen, the D step after it on the
same (detached) fakes, as the reference's ``optimize_parameters``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.engine.builders import adam, build_discriminator, build_generator, generator_config, mirrored
from distill.engine.config import CycleConfig, DiscriminatorConfig, ModelConfig, RunConfig
from distill.engine.device import DeviceContext, set_requires_grad
from distill.engine.gan import ImagePool
from distill.errors import ConfigError
from distill.losses.adversarial import discriminator_loss, generator_loss, gradient_penalty


class CycleGANPair(nn.Module):
    """G_A, G_B, D_A, D_B and the two image pools; :meth:`step` is one CycleGAN iteration."""

    def __init__(self, g_a: nn.Module, d_cfg: DiscriminatorConfig, weights: CycleConfig | None = None,
                 g_b_cfg: ModelConfig | None = None) -> None:
        super().__init__()
        if d_cfg is None:
            raise ConfigError("a CycleGAN pair needs a discriminator section (D_A and D_B are built from it)")
        if d_cfg.conditional:
            raise ConfigError("a CycleGAN discriminator sees one image: set conditional: false")
        self.weights, self.d_cfg = weights or CycleConfig(), d_cfg
        self.g_a = g_a
        self.g_b = build_generator(g_b_cfg or mirrored(generator_config(g_a)))
        self.d_a, self.d_b = build_discriminator(d_cfg, self.g_a), build_discriminator(d_cfg, self.g_b)
        self.pool_b, self.pool_a = ImagePool(self.weights.pool_size), ImagePool(self.weights.pool_size)  # fakes of B, of A

    def allocate_pools(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.pool_b.allocate(b.shape[1:], b.device)
        self.pool_a.allocate(a.shape[1:], a.device)

    def optimizers(self, cfg: RunConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """(G_A + G_B, D_A + D_B), as the reference's two optimisers."""
        g = adam(list(self.g_a.parameters()) + list(self.g_b.parameters()), cfg.train.lr, cfg)
        d = adam(list(self.d_a.parameters()) + list(self.d_b.parameters()), self.d_cfg.lr or cfg.train.lr, cfg)
        return g, d

    def generator_terms(self, a: torch.Tensor, b: torch.Tensor,
                        fake_b: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({GAN_A, GAN_B, cycle_A, cycle_B, idt_A, idt_B}, G_B(b)), unweighted; ``fake_b`` = G_A(a) if given."""
        mode = self.d_cfg.gan_mode
        fake_b = self.g_a(a) if fake_b is None else fake_b  # (B, C, H, W)
        fake_a = self.g_b(b)
        terms = {
            "GAN_A": generator_loss(self.d_a(fake_b), mode),
            "GAN_B": generator_loss(self.d_b(fake_a), mode),
            "cycle_A": F.l1_loss(self.g_b(fake_b), a),
            "cycle_B": F.l1_loss(self.g_a(fake_a), b),
        }
        if self.weights.lambda_identity > 0:
            terms["idt_A"] = F.l1_loss(self.g_a(b), b)
            terms["idt_B"] = F.l1_loss(self.g_b(a), a)
        return terms, fake_a

    def generator_total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        lc, li = self.weights.lambda_cycle, self.weights.lambda_identity
        total = terms["GAN_A"] + terms["GAN_B"] + lc * (terms["cycle_A"] + terms["cycle_B"])
        if li > 0:
            total = total + lc * li * (terms["idt_A"] + terms["idt_B"])
        return total

    def step(self, rt: DeviceContext, a: torch.Tensor, b: torch.Tensor, opt_g: torch.optim.Optimizer,
             opt_d: torch.optim.Optimizer, on_fake_b=None) -> tuple[dict[str, float], torch.Tensor]:
        """G step (D frozen), then D step on pooled fakes. Returns (logs, G_A(a) detached).

        ``on_fake_b(G_A(a))`` is called right after G_A(a) is computed (before any other G_A forward),
        so an online teacher can collect the features tapped from that forward.
        """
        if b is None:
            raise ConfigError("a CycleGAN pair needs unaligned data with A and B images (data.layout: unaligned)")
        set_requires_grad([self.d_a, self.d_b], False)
        with rt.autocast():
            fake_b = self.g_a(a)  # (B, C, H, W)
            if on_fake_b is not None:
                on_fake_b(fake_b)
            terms, fake_a = self.generator_terms(a, b, fake_b)
            total = self.generator_total(terms)
        rt.optimize(total, opt_g)
        mode, gp = self.d_cfg.gan_mode, self.d_cfg.gp_weight
        loss_d = self._d_loss(a, b, self.pool_b.query(fake_b), self.pool_a.query(fake_a), rt, mode, gp)
        rt.optimize(loss_d, opt_d)
        set_requires_grad([self.d_a, self.d_b], False)
        logs = {k: float(v.detach()) for k, v in terms.items()}
        logs.update(G_total=float(total.detach()), D=float(loss_d.detach()))
        return logs, fake_b.detach()

    def _d_loss(self, a, b, fake_b, fake_a, rt, mode, gp):
        set_requires_grad([self.d_a, self.d_b], True)
        with rt.autocast():
            loss = discriminator_loss(self.d_a(b), self.d_a(fake_b.detach()), mode) + discriminator_loss(
                self.d_b(a), self.d_b(fake_a.detach()), mode)
            if mode == "wgangp":
                loss = loss + gp * (gradient_penalty(self.d_a, b, fake_b) + gradient_penalty(self.d_b, a, fake_a))
        return loss

    def formula(self, prefix: str = "") -> str:
        lc, li, mode = self.weights.lambda_cycle, self.weights.lambda_identity, self.d_cfg.gan_mode
        idt = f" + {lc * li:g}·(idt_A + idt_B)" if li > 0 else ""
        return (f"L_G{prefix} = GAN_A + GAN_B + {lc:g}·(cycle_A + cycle_B){idt};  "
                f"L_D{prefix} = {mode}(D_A, pool_{self.weights.pool_size}) + {mode}(D_B, pool_{self.weights.pool_size})")
