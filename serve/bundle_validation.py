"""Start-up checks on a bundle, before the server trusts anything in it.

A bundle is a directory someone else may have written. Before a model is built from it:

- ``manifest.json`` loads strictly through :class:`export.manifest.Manifest`, the one bundle schema:
  every field has its type and a sane range (a string ``scale`` would otherwise pass start-up and
  fail every request; a 100000-pixel ``fixed_size`` would make the warm-up allocate
  ``max_batch x 3 x H x W`` floats), and no field is unknown;
- every file the manifest names is a relative path without ``..`` that resolves (symlinks
  followed) to a regular file inside the bundle;
- every file in ``checksums`` is there and has that sha256 (a half-written or edited bundle is
  refused); a manifest without ``checksums`` (from before they were written) is served with a warning;
- the served ONNX graph parses, and its first input and output agree with the manifest's shapes.

Any failure is a :class:`~slimgan.errors.ConfigError` naming the bundle and the field, which
``slimgan serve`` prints as one line before it binds. The files are read once, here and by the
backend at load; nothing re-reads them while serving, so a bundle changed on disk is picked up only
by a restart.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from export.manifest import MANIFEST_NAME, MAX_LATENT, MAX_SIDE, Manifest, file_sha256, relative_path_problem
from slimgan.errors import ConfigError

MAX_MANIFEST_BYTES = 1024 * 1024
log = logging.getLogger(__name__)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _inside(bundle: Path, name: str, field: str, where: str, allow_dir: bool = False) -> Path:
    """``bundle/name`` resolved; it must be a regular file (or, with ``allow_dir``, a folder such as a Core ML
    package) inside the (resolved) bundle."""
    if problem := relative_path_problem(name):
        raise ConfigError(f"{where}: {field} {problem}")
    root = bundle.resolve()
    target = (bundle / name).resolve()
    if not target.is_relative_to(root):
        raise ConfigError(f"{where}: {field} {name!r} resolves outside the bundle (to {target})")
    if not target.exists():
        raise ConfigError(f"{where}: {field} {name!r} is missing")
    if not target.is_file() and not (allow_dir and target.is_dir()):
        raise ConfigError(f"{where}: {field} {name!r} is not a regular file")
    return target


def _check_graph(path: Path, manifest: Manifest, field: str, where: str) -> None:
    """The ONNX file parses, and its first input / output agree with the manifest's shapes."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # protobuf DecodeError and friends: the file is not an ONNX model
        raise ConfigError(f"{where}: {field} {path.name} is not a readable ONNX model ({type(exc).__name__})") from exc
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs or not graph.output:
        raise ConfigError(f"{where}: {field} {path.name} has no graph input or output")
    for kind, value, spec in (("input", inputs[0], manifest.input), ("output", graph.output[0], manifest.output)):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        if len(dims) != len(spec.shape):
            raise ConfigError(
                f"{where}: manifest field '{kind}.shape' {spec.shape} has rank {len(spec.shape)}, "
                f"but {path.name}'s {kind} {value.name!r} has rank {len(dims)}"
            )
        for axis, (declared, actual) in enumerate(zip(spec.shape, dims, strict=True)):
            # an int must match a static axis; a named (dynamic) axis must not be static in the graph
            # beyond the batch axis, or requests would be fed sizes the graph refuses
            if (_is_int(declared) and actual is not None and declared != actual) or (
                isinstance(declared, str) and actual is not None and axis > 0
            ):
                raise ConfigError(
                    f"{where}: manifest field '{kind}.shape' says {spec.shape}, but {path.name}'s {kind} "
                    f"{value.name!r} has {[d if d is not None else '?' for d in dims]}"
                )


def _not_a_bundle(bundle: Path, where: str) -> ConfigError:
    """The error for a path without ``manifest.json``: what it looks like, and the command that makes a bundle."""
    if bundle.is_file() and bundle.suffix in (".pth", ".pt", ".ckpt"):
        return ConfigError(f"{where}: {bundle.name} is a PyTorch checkpoint file, not a bundle; "
                           f"run `slimgan import {bundle}` and then `slimgan export` on the result, and serve that")
    if not bundle.is_dir():
        return ConfigError(f"{where}: not a directory")
    if (bundle / "config.json").is_file() and (bundle / "model.safetensors").is_file():
        return ConfigError(f"{where}: this is a slimgan checkpoint, not a bundle; run `slimgan export {bundle} "
                           f"--out BUNDLE` first, then `slimgan serve BUNDLE`")
    return ConfigError(f"{where}: {MANIFEST_NAME} is missing (make a bundle with `slimgan export CHECKPOINT --out DIR`)")


def verify_checksums(bundle: Path, manifest: Manifest, where: str) -> None:
    """Every file in ``checksums`` is inside the bundle and has its sha256 (nothing to check without them)."""
    if not manifest.checksums:
        return
    for name, expected in manifest.checksums.items():
        path = _inside(bundle, name, f"manifest field 'checksums.{name}'", where, allow_dir=True)
        if file_sha256(path) != expected:
            raise ConfigError(f"{where}: {name} does not match its sha256 in manifest field 'checksums' (the bundle "
                              "was changed or not completely written; export it again)")


def validate_bundle(bundle: Path, precision: str = "fp32", check_files: bool = True) -> Manifest:
    """The bundle's manifest, once every field, file, checksum and the served graph have been checked."""
    where = f"bundle {bundle}"
    if not (bundle / MANIFEST_NAME).exists() and not (bundle / MANIFEST_NAME).is_symlink():
        raise _not_a_bundle(bundle, where)
    manifest_path = _inside(bundle, MANIFEST_NAME, "file", where)
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ConfigError(f"{where}: {MANIFEST_NAME} is over {MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(manifest_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{where}: {MANIFEST_NAME} is not valid JSON") from exc
    manifest = Manifest.from_dict(data, source=where)
    _check_consistency(manifest, where)
    if check_files:
        verify_checksums(bundle, manifest, where)
        for role, name in manifest.files.items():
            path = _inside(bundle, name, f"manifest field 'files.{role}'", where, allow_dir=True)
            if role == precision and path.suffix == ".onnx":
                _check_graph(path, manifest, f"manifest field 'files.{role}'", where)
        if not manifest.checksums:  # said only of a bundle that is served, so a refusal stays one line
            log.warning("%s: manifest.json has no checksums (a bundle from an older slimgan), so its files are "
                        "not verified; export it again to have them checked", where)
    return manifest


def _check_consistency(manifest: Manifest, where: str) -> None:
    shape = manifest.input.shape
    if manifest.task == "translate":
        if len(shape) != 4:
            raise ConfigError(f"{where}: manifest field 'input.shape' must be [batch, C, H, W] for translate")
        channels = 1 if manifest.preprocessing.color == "L" else 3
        if _is_int(shape[1]) and shape[1] != channels:
            raise ConfigError(
                f"{where}: manifest field 'input.shape' has {shape[1]} channels but preprocessing.color "
                f"{manifest.preprocessing.color!r} gives {channels}"
            )
        for d in shape[2:]:
            if _is_int(d) and d > MAX_SIDE:
                raise ConfigError(f"{where}: manifest field 'input.shape' side {d} is over {MAX_SIDE}")
    else:
        latent = [d for d in shape[1:] if _is_int(d)]
        if math.prod(latent or [1]) > MAX_LATENT:
            raise ConfigError(f"{where}: manifest field 'input.shape' latent of {math.prod(latent)} floats is over {MAX_LATENT}")
    out = manifest.output.shape
    if len(out) != 4:
        raise ConfigError(f"{where}: manifest field 'output.shape' must be [batch, C, H, W]")
    if any(_is_int(d) and d > MAX_SIDE for d in out[2:]):
        raise ConfigError(f"{where}: manifest field 'output.shape' has a side over {MAX_SIDE}")
