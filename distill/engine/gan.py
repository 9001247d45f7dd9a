"""The discriminator update every method shares, and CycleGAN's history of generated images."""

from __future__ import annotations

import torch
from torch import nn

from distill.engine.device import DeviceContext, set_requires_grad
from distill.losses.adversarial import discriminator_loss, gradient_penalty


def update_discriminator(rt: DeviceContext, d: nn.Module, opt: torch.optim.Optimizer, real: torch.Tensor,
                         fake: torch.Tensor, mode: str, gp_weight: float = 10.0,
                         fake_weight: float = 1.0) -> float:
    """One step of ``d`` on real vs detached ``fake`` (inputs already as d sees them); d is frozen afterwards.

    Leaving d frozen is what lets a generator step back-propagate through it without touching its
    weights (CRD's sg(D̄), and the student's own D during the student step).
    """
    fake = fake.detach()
    set_requires_grad([d], True)
    with rt.autocast():
        loss = discriminator_loss(d(real), d(fake), mode, fake_weight)
        if mode == "wgangp":
            loss = loss + gp_weight * gradient_penalty(d, real, fake)
    rt.optimize(loss, opt)
    set_requires_grad([d], False)
    return float(loss.detach())


class ImagePool(nn.Module):
    """The history of generated images D is trained on (Shrivastava et al. 2017; CycleGAN's pool of 50).

    Each query image enters the pool while it has room; once full, with probability ½ the query
    returns a stored image and stores the new one in its place, else it returns the new image. The
    pool is a buffer (saved in ``state.pt``) and draws from torch's RNG, so a resumed run continues
    with the same history.
    """

    def __init__(self, size: int = 50) -> None:
        super().__init__()
        self.size = int(size)
        self.register_buffer("images", torch.zeros(0))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def allocate(self, image_shape: torch.Size, device: torch.device) -> None:
        """Make room for ``size`` images of ``image_shape`` (C, H, W); done once, before any resume."""
        if self.size > 0 and self.images.shape[1:] != tuple(image_shape):
            self.images = torch.zeros(self.size, *image_shape, device=device)
            self.count.zero_()

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        if self.size <= 0:
            return images.detach()
        if self.images.shape[1:] != images.shape[1:]:
            self.allocate(images.shape[1:], images.device)
        out = []
        for image in images.detach():
            n = int(self.count)
            if n < self.size:
                self.images[n] = image
                self.count += 1
                out.append(image)
            elif float(torch.rand(())) > 0.5:
                i = int(torch.randint(0, self.size, ()))
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image)
        return torch.stack(out)
