"""The runtime interface: one :class:`Runtime` per inference engine, registered by name.

A runtime knows how to turn the exported fp32 ONNX (and, where it needs it, the PyTorch module) into its
own artifact inside a bundle (:meth:`Runtime.convert`), load such an artifact into a :class:`Session`
(:meth:`Runtime.load`), say whether it is installed (:meth:`Runtime.available`, never raising
ImportError) and describe itself (:meth:`Runtime.describe`).

Importing this package, checking availability, loading and running must not import torch: ``serve/``
uses them and never imports torch. Only ``convert`` may import torch, lazily, inside the call.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slimgan.errors import MissingDependencyError


@dataclass
class ConvertContext:
    """What a runtime's ``convert`` gets.

    ``bundle_dir``: where artifacts are written. ``onnx_path``: the fp32 ONNX (``model.onnx``).
    ``module``: the PyTorch generator in eval mode, or None (converters that need it then fail in one
    line). ``example_shape``: a full NCHW (or ``(B, nz)``) input shape. ``calib``: calibration inputs
    as a float32 array in the model's input range, or None. ``options``: runtime-specific settings
    (e.g. ``{"int8": True}``, ``{"fp16": True, "batch": (1, 1, 8)}``).
    """

    bundle_dir: Path
    onnx_path: Path
    module: Any = None
    example_shape: tuple = ()
    calib: np.ndarray | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Session:
    """A loaded model: ``run`` maps an NCHW float32 batch to the output batch (float32)."""

    input_name: str = "input"
    output_name: str = "output"

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        """Release the session (device memory, thread pools)."""
        return None


class Runtime:
    """One inference engine. Subclasses set ``name`` / ``extra`` and implement the four methods.

    ``module_name`` is the importable package the runtime needs; :meth:`available` tries to import it
    and reports ``(False, "<name> needs <package>: pip install 'slimgan[<extra>]'")`` when it cannot.
    ``artifacts`` maps bundle file roles to file names this runtime can load (first: the default).
    """

    name: str = "base"
    extra: str | None = None
    module_name: str | None = None
    artifacts: dict[str, str] = {}

    def available(self) -> tuple[bool, str]:
        if self.module_name is None:
            return True, "ok"
        try:
            importlib.import_module(self.module_name)
        except ImportError:
            return False, self.install_hint(f"python package {self.module_name!r} not importable")
        except Exception as exc:  # noqa: BLE001 - a broken install raises OSError/RuntimeError on import
            return False, self.install_hint(f"python package {self.module_name!r} failed to import ({type(exc).__name__})")
        return True, "ok"

    def install_hint(self, problem: str) -> str:
        """One line: what is missing and the extra that installs it."""
        hint = f": pip install 'slimgan[{self.extra}]'" if self.extra else ""
        return f"runtime {self.name}: {problem}{hint}"

    def require(self) -> None:
        """Raise :class:`MissingDependencyError` (one line) when :meth:`available` is False."""
        ok, reason = self.available()
        if not ok:
            raise MissingDependencyError(reason)

    def convert(self, ctx: ConvertContext) -> list[str]:  # pragma: no cover - interface
        """Write this runtime's artifact(s) into ``ctx.bundle_dir``; return their names relative to it."""
        raise NotImplementedError

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any) -> Session:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Version and defaults of this runtime (``{"name": ..., "version": None}`` when not installed)."""
        return {"name": self.name, "version": None}

    def __repr__(self) -> str:
        return f"<Runtime {self.name}>"
