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

from slimgan.errors import ConfigError, MissingDependencyError


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
    # The parity check, for runtimes whose conversion depends on it (OpenVINO ships the reduced
    # precision only when it passes): PyTorch's outputs on ``inputs``, None when export skips checks.
    reference: np.ndarray | None = None
    inputs: np.ndarray | None = None
    threads: int = 1
    label: str = "student"  # what the rows call the model (its role)
    data_range: float = 2.0  # the output's span, for PSNR / SSIM


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


@dataclass(frozen=True)
class BundleFiles:
    """The part of a manifest :meth:`Runtime.load_from_bundle` reads: ``files`` (role -> file name) and
    ``runtimes`` (role -> how export checked it, e.g. ``{"precision": "bf16"}``). A
    :class:`export.manifest.Manifest` is one; export's speed check builds one for the teacher's files."""

    files: dict[str, str]
    runtimes: dict[str, Any] = field(default_factory=dict)


class Session:
    """A loaded model: ``run`` maps an NCHW float32 batch to the output batch (float32).

    :meth:`describe` is shared: the runtime's name and version, device, threads, precision and file,
    from the attributes a session sets, plus :meth:`details` (runtime-specific settings).
    """

    input_name: str = "input"
    output_name: str = "output"
    runtime_name: str = ""
    version: str | None = None
    device: str = "cpu"
    threads: int | None = None
    precision: str = "fp32"
    path: Path | None = None

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def run_with(self, x: np.ndarray, controls: dict[str, np.ndarray]) -> np.ndarray:
        """``run`` with extra graph inputs (StyleGAN2's ``truncation``); runtimes without them refuse."""
        if controls:
            raise MissingDependencyError(f"runtime {self.runtime_name or type(self).__name__} cannot feed {', '.join(controls)}")
        return self.run(x)

    def details(self) -> dict[str, Any]:
        """Runtime-specific settings for :meth:`describe` (providers, compile properties...)."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime_name,
            "version": self.version,
            "device": self.device,
            "threads": self.threads,
            "precision": self.precision,
            **self.details(),
            "file": self.path.name if self.path is not None else None,
        }

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

    def convert_problem(self, options: dict[str, Any]) -> str | None:
        """Why :meth:`convert` cannot run here with ``options`` (None when it can); export notes it and
        leaves the artifact out instead of failing."""
        ok, reason = self.available()
        return None if ok else reason

    def convert(self, ctx: ConvertContext) -> ConvertResult:  # pragma: no cover - interface
        """Write this runtime's artifact(s) into ``ctx.bundle_dir``; return what was written."""
        raise NotImplementedError

    def file_roles(self, result: ConvertResult) -> dict[str, str]:
        """Manifest ``files`` entries (role -> name) for what ``result`` wrote."""
        return {role: name for role, name in self.artifacts.items() if name in result.files}

    def gate(self, precision: str) -> str:
        """The :mod:`export.parity` gate of an artifact at ``precision``."""
        return {"fp16": "fp16", "f16": "fp16", "bf16": "bf16", "int8": "int8"}.get(precision, "fp32")

    def row_name(self, label: str, result: ConvertResult) -> str:
        return f"{label}: torch vs {self.name} ({result.files[0]})"

    def parity_rows(self, bundle_dir: Path, result: ConvertResult, reference: Any, inputs: np.ndarray, *,
                    label: str = "student", threads: int = 1, data_range: float = 2.0) -> list[dict[str, Any]]:
        """This runtime's parity rows for ``result`` against ``reference`` outputs on ``inputs``.

        The default loads the main artifact and compares it with :mod:`export.parity`'s rule for the
        artifact's precision; a runtime that cannot run here (Core ML off macOS) overrides this.
        """
        from export.parity import compare

        session = self.load(Path(bundle_dir) / result.files[0], threads=threads)
        try:
            out = session.run(inputs)
        finally:
            session.close()
        row = compare(self.row_name(label, result), out, reference, self.gate(result.precision), data_range=data_range)
        return [row]

    def bundle_options(self, manifest: Any, role: str) -> dict[str, Any]:
        """Load options recorded in the bundle for ``role`` (none by default)."""
        return {}

    def load_from_bundle(self, bundle_dir: str | Path, manifest: Any, role: str = "model", *,
                         threads: int | None = None, device: str = "cpu", **opts: Any) -> Session:
        """Load this runtime's artifact for ``role`` from a bundle, with the runtime's own options.

        Every caller (serve, ``bench latency``, the INT8 benchmark, export's speed check) loads through
        here, so thread counts, performance hints and precision policy live in one place per runtime.
        ``manifest``: a :class:`export.manifest.Manifest` or a :class:`BundleFiles`. ``opts`` override
        the recorded options (``precision="f32"`` to time the true fp32 beside a reduced default).
        """
        name = manifest.files.get(role) if isinstance(manifest.files, dict) else None
        if name is None:
            raise ConfigError(f"bundle {bundle_dir} has no {role} file for runtime {self.name}")
        return self.load(Path(bundle_dir) / name, threads=threads, device=device, **{**self.bundle_options(manifest, role), **opts})

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any) -> Session:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Version and defaults of this runtime (``{"name": ..., "version": None}`` when not installed)."""
        return {"name": self.name, "version": None}

    def __repr__(self) -> str:
        return f"<Runtime {self.name}>"
