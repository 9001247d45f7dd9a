"""A generator to evaluate, from either contract: a checkpoint directory (torch) or a bundle (ONNX Runtime).

:func:`load_generator` returns a callable ``gen(x) -> y`` on torch tensors (images in [-1, 1] or latents
(B, nz)) with ``task``, ``arch``, ``runtime`` and ``latent_size`` attributes, so the quality harness
treats both alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.errors import ConfigError


class Generator:
    """A callable generator with its metadata (see module docstring)."""

    def __init__(self, fn: Any, task: str, arch: str, runtime: str, latent_size: int | None) -> None:
        self.fn, self.task, self.arch, self.runtime, self.latent_size = fn, task, arch, runtime, latent_size

    def __call__(self, x: Any) -> Any:
        return self.fn(x)


def load_generator(path: str | Path, threads: int | None = None) -> Generator:
    """Open a checkpoint directory (``config.json``) in torch or a bundle (``manifest.json``) in ONNX Runtime."""
    import torch

    path = Path(path)
    if (path / "manifest.json").is_file():
        import numpy as np

        from export.manifest import Manifest
        from export.runtimes.onnxruntime import make_session

        manifest = Manifest.load(path)
        session = make_session(manifest.model_path(path, "fp32"), threads=threads)
        input_name = session.get_inputs()[0].name

        def run(x: torch.Tensor) -> torch.Tensor:
            y = session.run(None, {input_name: x.detach().cpu().numpy().astype(np.float32)})[0]
            return torch.from_numpy(np.asarray(y, dtype=np.float32))

        latent = manifest.preprocessing.latent_size
        return Generator(run, manifest.task, manifest.arch, "onnxruntime", latent)
    if (path / "config.json").is_file():
        from distill.checkpoint import load_checkpoint
        from distill.registry import model_info

        model = load_checkpoint(path)
        cfg = model.slimgan_config
        info = model_info(cfg["arch"])

        def run_torch(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(x)

        task = "generate" if info.input_kind == "latent" else "translate"
        return Generator(run_torch, task, cfg["arch"], "torch", cfg["kwargs"].get("nz"))
    raise ConfigError(f"{path} is neither a checkpoint directory (config.json) nor a bundle (manifest.json)")
