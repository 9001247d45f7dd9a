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


@dataclass(frozen=True)
class ConvertResult:
    """What one :meth:`Runtime.convert` call produced; nothing shared is mutated to hand it back.

    ``files``: the artifact names written, relative to the bundle folder (first: the one to load).
    ``precision``: the numeric format of the main artifact (``fp32``, ``fp16``, ``bf16``, ``int8``...).
    ``report``: runtime-specific facts for the manifest and the log (op counts, delegate coverage,
    the engine's build settings). ``rows``: parity rows the runtime measured while converting (each a
    dict as :mod:`export.parity` writes them); most runtimes leave this empty and are checked by
    :meth:`Runtime.parity_rows` after conversion.
    """

    files: tuple[str, ...] = ()
    precision: str = "fp32"
    report: dict[str, Any] = field(default_factory=dict)
    rows: tuple[dict[str, Any], ...] = ()


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

    def convert(self, ctx: ConvertContext) -> ConvertResult:  # pragma: no cover - interface
        """Write this runtime's artifact(s) into ``ctx.bundle_dir``; return what was written."""
        raise NotImplementedError

    def parity_rows(self, bundle_dir: Path, result: ConvertResult, reference: Any, inputs: np.ndarray) -> list[dict[str, Any]]:
        """This runtime's parity rows for ``result`` against ``reference`` outputs on ``inputs``.

        The default loads the main artifact and compares it with :mod:`export.parity`'s rule for the
        artifact's precision; a runtime that cannot run here (Core ML off macOS) overrides this.
        """
        raise NotImplementedError

    def load_from_bundle(self, bundle_dir: str | Path, manifest: Any, role: str = "model", *,
                         threads: int | None = None, device: str = "cpu", **opts: Any) -> Session:
        """Load this runtime's artifact for ``role`` from a bundle, with the runtime's own options.

        Every caller (serve, ``bench latency``, the INT8 benchmark, export's speed check) loads through
        here, so thread counts, performance hints and precision policy live in one place per runtime.
        """
        raise NotImplementedError

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any) -> Session:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Version and defaults of this runtime (``{"name": ..., "version": None}`` when not installed)."""
        return {"name": self.name, "version": None}

    def __repr__(self) -> str:
        return f"<Runtime {self.name}>"
