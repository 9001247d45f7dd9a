"""What the phone runtimes (LiteRT, Core ML, ncnn, ExecuTorch, ONNX Runtime Mobile) share.

- :func:`require_packages`: the one-line error naming the extra when a converter package is missing
  (``Runtime.available`` checks only what loading needs, so a phone-side install can run an artifact
  it cannot make).
- :class:`StaticShapeSession`: most phone artifacts are compiled for one input shape (batch 1 at the
  export resolution); ``run`` takes any batch of that per-sample shape and runs it sample by sample,
  and a different spatial size is a one-line error that says how to re-export.
- :func:`eval_copy` / :func:`example_input`: what the PyTorch-side converters trace.
- :func:`host_description`: the label a host measurement carries (CPU model, cores, threads), so a
  latency measured here on a runtime's x86 kernels is never read as a phone number.
- :class:`MobileRuntime`: ``convert`` returns a :class:`~export.runtimes.base.ConvertResult`;
  ``parity_rows`` loads each checked artifact and compares it under the runtime's gate;
  ``load_from_bundle`` finds the artifact for a role in the manifest. Export runs all three in a child
  process (:mod:`export.isolation`), never in its own.

No torch at module level: sessions are created in the server and the benchmark without it.
"""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from export.runtimes.base import ConvertResult, Runtime, Session
from slimgan.errors import MissingDependencyError, SlimganError

# What an artifact's describe() reports as its device class when timed here.
HOST_LABEL = "host"


class MobileRuntime(Runtime):
    """A phone runtime. ``available`` asks whether ``module_name`` is *installed* without importing it:
    several of these packages import torch (coremltools, executorch), and listing runtimes must stay
    cheap and torch-free. ``gates`` maps each artifact role that parity checks to its gate
    (``export.parity``); ``runs_here`` says whether the artifacts can execute on this machine.
    """

    gates: dict[str, str] = {}
    convert_modules: tuple[str, ...] = ()  # packages ``convert`` needs beyond ``module_name``
    # Third-party native code: export converts, loads and checks it only in a child process
    # (export.isolation / export.targets.export_phone_targets), never in its own.
    isolated: bool = True

    def available(self) -> tuple[bool, str]:
        return self._installed((self.module_name or "",))

    def require_convert(self) -> None:
        """Raise the one-line :class:`MissingDependencyError` unless this runtime can convert here."""
        ok, reason = self._installed((self.module_name or "", *self.convert_modules), purpose="converting")
        if not ok:
            raise MissingDependencyError(reason)

    def _installed(self, modules: tuple[str, ...], purpose: str = "") -> tuple[bool, str]:
        from importlib.util import find_spec

        for module in modules:
            top = module.split(".")[0]
            try:
                found = find_spec(top) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return False, self.install_hint(f"{purpose + ' needs ' if purpose else ''}python package {top!r}, which is not installed")
        return True, "ok"

    def runs_here(self) -> tuple[bool, str]:
        return self.available()

    def gate_for(self, role: str, result: ConvertResult) -> str:
        """The parity gate of artifact ``role`` (``export.parity``)."""
        return self.gates[role]

    def parity_rows(self, bundle_dir: Path, result: ConvertResult, reference: Any, inputs: np.ndarray, *,
                    threads: int = 1, data_range: float = 2.0, label: str = "student", module: Any = None) -> list[dict[str, Any]]:
        """One row per checked artifact of ``result``: a fresh session on the file, run on ``inputs``,
        compared with ``reference`` under :meth:`gate_for` (``label`` names the model: its role)."""
        from export.parity import compare

        rows = []
        for role in self.gates:
            fname = self.artifacts[role]
            if fname not in result.files:
                continue
            session = self.load(Path(bundle_dir) / fname, threads=threads)
            try:
                row = compare(f"{label}: torch vs {self.name} ({fname})", session.run(np.asarray(inputs, np.float32)),
                              np.asarray(reference), self.gate_for(role, result), data_range=data_range)
            finally:
                session.close()
            row["runtime"] = self.name
            rows.append(row)
        return rows

    def artifact_path(self, bundle_dir: str | Path, manifest: Any, role: str = "model") -> Path:
        """The bundle file for ``role``: one of this runtime's artifact roles (``tflite-fp16``), else its main artifact."""
        if role not in self.artifacts:
            role = next(iter(self.artifacts))
        files = manifest.get("files", {}) if isinstance(manifest, dict) else getattr(manifest, "files", {}) or {}
        path = Path(bundle_dir) / files.get(role, self.artifacts[role])
        if not path.exists():
            raise SlimganError(f"{path} is missing: export the bundle with --targets {self.name}")
        return path

    def load_from_bundle(self, bundle_dir: str | Path, manifest: Any, role: str = "model", *,
                         threads: int | None = None, device: str = "cpu", **opts: Any) -> Session:
        """A session on the bundle's artifact for ``role`` (see :meth:`artifact_path`), with this runtime's
        options (``threads``, ``device``, and what :meth:`load` takes)."""
        return self.load(self.artifact_path(bundle_dir, manifest, role), threads=threads, device=device, **opts)


def require_packages(runtime: Any, *modules: str, purpose: str = "convert") -> None:
    """Import each of ``modules`` or raise :class:`MissingDependencyError` naming ``runtime.extra``."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingDependencyError(
                runtime.install_hint(f"{purpose} needs the python package {module!r}")
            ) from None
        except Exception as exc:  # noqa: BLE001 - a broken install raises OSError/RuntimeError on import
            raise MissingDependencyError(
                runtime.install_hint(f"{purpose} needs {module!r}, which failed to import ({type(exc).__name__}: {exc})")
            ) from None


def package_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (a pip name), or None."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_description(threads: int | None) -> dict[str, Any]:
    """Where a host measurement was taken: this machine's CPU, core count and the threads used."""
    return {
        "measured_on": HOST_LABEL,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "threads": threads,
    }


def eval_copy(module: Any) -> Any:
    """A deep copy of ``module`` in eval mode, so a converter's rewrites never touch the caller's model."""
    import copy

    if module is None:
        raise SlimganError("this runtime converts from the PyTorch module; the export context has none")
    return copy.deepcopy(module).eval()


def example_input(shape: tuple[int, ...], seed: int = 0) -> Any:
    """A torch tensor of ``shape`` in the generators' input range (uniform [-1, 1]; N(0, 1) for latents)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    if len(shape) == 2:
        return torch.randn(*shape, generator=gen)
    return torch.rand(*shape, generator=gen) * 2 - 1


def static_shape(ctx_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a static-shape artifact is compiled for: batch 1 and the export's per-sample shape."""
    if not ctx_shape:
        raise SlimganError("the export context gives no example input shape")
    return (1, *(int(d) for d in ctx_shape[1:]))


class StaticShapeSession:
    """Mixin for sessions over artifacts compiled at one input shape ``self.shape`` (batch first).

    Subclasses implement ``_run_one(x)`` for an array of exactly ``self.shape``; :meth:`run` splits a
    larger batch into such pieces and concatenates the outputs.
    """

    shape: tuple[int, ...] = ()
    path: Path

    def _run_one(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        per_sample = tuple(self.shape[1:])
        if tuple(x.shape[1:]) != per_sample:
            want = "x".join(str(d) for d in per_sample)
            got = "x".join(str(d) for d in x.shape[1:])
            raise SlimganError(
                f"{self.path.name} was converted for inputs of {want} per sample, got {got}; "
                f"re-export with --res/--height/--width for that size"
            )
        step = int(self.shape[0]) or 1
        if x.shape[0] == step:
            return np.asarray(self._run_one(x), dtype=np.float32)
        if x.shape[0] % step:
            raise SlimganError(f"{self.path.name} runs batches of {step}; got a batch of {x.shape[0]}")
        return np.concatenate([np.asarray(self._run_one(x[i : i + step]), dtype=np.float32) for i in range(0, x.shape[0], step)])


def rewrite_for_xnnpack(module: Any) -> int:
    """Replace the two layers XNNPACK has no kernel for, in place; returns how many were replaced.

    Used before LiteRT and ExecuTorch conversion (both run on XNNPACK on a phone's CPU): reflection
    padding becomes concatenated slices (exact: the same elements copied) and an ``InstanceNorm2d``
    without affine parameters or running statistics becomes ``(x - mean) * rsqrt(var + eps)`` over H, W
    (the same arithmetic, fp32 rounding apart), written so the mean runs over the spatial axes and a
    converter can keep the channels-last layout XNNPACK works in.
    """
    import torch
    from torch import nn

    class SlicedReflectionPad2d(nn.Module):
        def __init__(self, padding: tuple[int, int, int, int]) -> None:
            super().__init__()
            self.padding = padding

        def forward(self, x):  # (B, C, H, W)
            left, right, top, bottom = self.padding
            x = torch.cat([x[:, :, :, i : i + 1] for i in range(left, 0, -1)] + [x]
                          + [x[:, :, :, -2 - i : -1 - i] for i in range(right)], dim=3)
            return torch.cat([x[:, :, i : i + 1] for i in range(top, 0, -1)] + [x]
                             + [x[:, :, -2 - i : -1 - i] for i in range(bottom)], dim=2)

    class ExplicitInstanceNorm2d(nn.Module):
        def __init__(self, eps: float) -> None:
            super().__init__()
            self.eps = eps

        def forward(self, x):  # (B, C, H, W)
            centred = x - x.mean((2, 3), keepdim=True)
            return centred * torch.rsqrt((centred * centred).mean((2, 3), keepdim=True) + self.eps)

    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReflectionPad2d):
                setattr(parent, name, SlicedReflectionPad2d(tuple(int(p) for p in child.padding)))
            elif isinstance(child, nn.InstanceNorm2d) and not child.affine and not child.track_running_stats:
                setattr(parent, name, ExplicitInstanceNorm2d(float(child.eps)))
            else:
                continue
            replaced += 1
    return replaced
