"""The teacher side's interface (:class:`TeacherSide`, which is also ``teacher.mode: none``) and the helpers
every side uses: how G_t runs (train or eval mode) and whether the data is paired.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from distill.engine.config import RunConfig
from distill.engine.data import Batch
from distill.engine.device import DeviceContext
from distill.errors import ConfigError
from distill.losses import LossTerm
from distill.losses.context import StepContext

log = logging.getLogger(__name__)


MODES = ("none", "offline", "online")
TARGET_MODES = ("train", "eval")


def is_paired(config: RunConfig) -> bool:
    """Whether the recipe's batches carry the ground truth for their inputs (the aligned layout)."""
    return config.data.layout == "aligned"


def eval_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in inference mode, its train/eval mode restored."""
    was_training = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was_training)


def train_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in train mode (BatchNorm on batch statistics) without moving its running statistics.

    How a kept teacher snapshot gives train-mode targets while staying the snapshot it was.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0)·running + 0·batch
    model.train()
    try:
        return model(x)
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
        model.train(was_training)


def _real(batch_real: torch.Tensor | None, what: str) -> torch.Tensor:
    if batch_real is None:
        raise ConfigError(f"{what} needs the B images of the batch (a paired or unaligned dataset)")
    return batch_real


# --------------------------------------------------------------------------------------------- #
# the strategies


class TeacherSide:
    """No teacher (``teacher.mode: none``); the base of the other sides."""

    mode = "none"

    def __init__(self, config: RunConfig, rt: DeviceContext) -> None:
        self.config, self.rt = config, rt
        self.gan_mode, self.conditional = "lsgan", False

    @property
    def generator(self) -> nn.Module | None:
        """The G_t the student distils from at this step (None: no teacher generator)."""
        return None

    @property
    def discriminator(self) -> nn.Module | None:
        """D̄, the teacher discriminator the student's terms may score with."""
        return None

    def terms(self) -> list[LossTerm]:
        """Loss terms the side trains its teachers with (their schedules, setup and aux optimisers)."""
        return []

    def attach_taps(self, paths: Sequence[str]) -> None:
        """Tap ``paths`` of G_t for the student terms that read teacher features."""
        if paths and self.generator is None:
            raise ConfigError(f"loss terms tap teacher layers {list(paths)} but the recipe has no teacher generator")

    def setup(self, batch: Batch) -> list[nn.Module]:
        """Size what depends on the first batch; returns the modules to broadcast under torchrun."""
        return []

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def modules(self) -> dict[str, nn.Module]:
        return {}

    def checkpoints(self) -> dict[str, nn.Module]:
        return {}

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        return {}

    def fill(self, ctx: StepContext) -> None:
        """Put G_t(x) (no grad), its tapped features and D̄ into ``ctx``."""
        ctx.teacher_discriminator = self.discriminator
        ctx.teacher_gan_mode, ctx.teacher_conditional = self.gan_mode, self.conditional

    def discriminator_step(self, ctx: StepContext, active: Sequence[LossTerm]) -> dict[str, float]:
        return {}

    def after_step(self, done: int, held_out: list[Batch]) -> dict[str, float]:
        return {}

    def clear_taps(self) -> None:
        pass

    def formula(self) -> str:
        return ""

    def provenance(self) -> dict[str, Any]:
        return {}


NoTeacher = TeacherSide
