"""Where a training step runs: device, AMP and distributed plumbing shared by the loop and the methods."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from distill.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is an error."""
    if name in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MissingDependencyError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        return torch.device(name)
    if name != "cpu":
        raise ConfigError(f"unknown device {name!r}; choose auto, cpu or cuda[:N]")
    return torch.device("cpu")


def set_requires_grad(modules: Iterable[nn.Module | None], flag: bool) -> None:
    for m in modules:
        if m is not None:
            for p in m.parameters():
                p.requires_grad_(flag)


class DeviceContext:
    """Where and how a step runs: device, AMP (CUDA only), the distributed group.

    ``optimize(loss, optimizer)`` is the one place a backward/step happens: zero_grad, (scaled)
    backward, all-reduce of gradients that DDP does not already average, (scaler) step.
    """

    def __init__(self, device: torch.device, amp: bool = False):
        self.device = device
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.amp = bool(amp and device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self._ddp_params: set[int] = set()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``module`` under torchrun (its gradients are averaged by DDP)."""
        if not self.distributed:
            return module
        self._ddp_params.update(id(p) for p in module.parameters())
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, broadcast_buffers=True)

    def broadcast_parameters(self, modules: Iterable[nn.Module]) -> None:
        """Make every rank start from rank 0's weights (for modules DDP does not wrap)."""
        if not self.distributed:
            return
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                dist.broadcast(t.data, 0)

    def optimize(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.distributed:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None and id(p) not in self._ddp_params:
                        dist.all_reduce(p.grad)
                        p.grad /= self.world
        self.scaler.step(optimizer)

    def end_step(self) -> None:
        self.scaler.update()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_distributed(device_name: str) -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): gloo on CPU, nccl on CUDA."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    use_cuda = device_name.startswith("cuda") or (device_name in ("", "auto") and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    log.info("joined process group: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True
