"""Start-up checks on a bundle, before the server trusts anything in it.

A bundle is a directory someone else may have written. Before a model is built from it:

- every ``manifest.json`` field has its type and a sane range (a string ``scale`` would otherwise
  pass start-up and fail every request; a 100000-pixel ``fixed_size`` would make the warm-up
  allocate ``max_batch x 3 x H x W`` floats);
- every file the manifest names is a relative path without ``..`` that resolves (symlinks
  followed) to a regular file inside the bundle;
- the served ONNX graph parses, and its first input and output agree with the manifest's shapes.

Any failure is a :class:`~slimgan.errors.ConfigError` naming the bundle and the field, which
``slimgan serve`` prints as one line before it binds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from slimgan.errors import ConfigError
from export.manifest import MANIFEST_NAME, Manifest

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_SIDE = 4096  # static spatial size of a served graph
MAX_LATENT = 1 << 20  # floats in one latent row
MAX_BATCH = 4096

Check = Callable[[Any], str | None]  # None when the value is fine, else what is wrong with it


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, int | float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(lo: int, hi: int, optional: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if not _is_int(v) or not lo <= v <= hi:
            return f"must be an integer in [{lo}, {hi}], got {v!r}"
        return None

    return check


def _num(nonzero: bool = False, bound: float = 1e6) -> Check:
    def check(v: Any) -> str | None:
        if not _is_num(v) or abs(v) > bound or (nonzero and v == 0):
            return f"must be a finite {'non-zero ' if nonzero else ''}number of magnitude at most {bound:g}, got {v!r}"
        return None

    return check


def _str(choices: tuple[str, ...] | None = None, optional: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, str) or len(v) > 4096:
            return f"must be a string, got {type(v).__name__}"
        if choices is not None and v not in choices:
            return f"must be one of {', '.join(choices)}, got {v!r}"
        return None

    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


def _range(optional: bool) -> Check:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, list) or len(v) != 2 or not all(_is_num(x) for x in v) or v[0] >= v[1]:
            return f"must be [low, high] with finite low < high, got {v!r}"
        return None

    return check


def _shape(v: Any) -> str | None:
    if not isinstance(v, list) or not 2 <= len(v) <= 4:
        return f"must be a list of 2 to 4 dimensions, got {v!r}"
    for d in v:
        if isinstance(d, str) and d and len(d) <= 64:
            continue
        if not _is_int(d) or not 1 <= d <= MAX_LATENT:
            return f"dimensions must be names or integers in [1, {MAX_LATENT}], got {d!r}"
    return None


def _fixed_size(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != 2 or not all(_is_int(d) and 1 <= d <= MAX_SIDE for d in v):
        return f"must be [H, W] with each side in [1, {MAX_SIDE}], got {v!r}"
    return None


def _files(v: Any) -> str | None:
    if not isinstance(v, dict) or not v:
        return "must map roles (fp32, fp16, int8, plan) to file names"
    if "fp32" not in v:
        return "must name the fp32 ONNX model under 'fp32'"
    for role, name in v.items():
        if not isinstance(name, str) or not name:
            return f"entry {role!r} must be a file name, got {name!r}"
        pure = PurePosixPath(name)
        if pure.is_absolute() or Path(name).is_absolute() or "\\" in name or ".." in pure.parts:
            return f"entry {role!r} must be a relative path inside the bundle, got {name!r}"
    return None


def _dict(v: Any) -> str | None:
    return None if isinstance(v, dict) else f"must be an object, got {type(v).__name__}"


def _int_list(optional: bool) -> Check:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, list) or not all(_is_int(d) and d >= 0 for d in v):
            return f"must be a list of non-negative integers, got {v!r}"
        return None

    return check


TENSOR: dict[str, Check] = {
    "name": _str(),
    "shape": _shape,
    "dtype": _str(("float32", "float16")),
    "value_range": _range(optional=True),
    "distribution": _str(("uniform", "normal")),
}
PREPROCESSING: dict[str, Check] = {
    "color": _str(("RGB", "L")),
    "layout": _str(("NCHW",)),
    "scale": _num(nonzero=True),
    "offset": _num(),
    "size_multiple": _int(1, 1024),
    "fixed_size": _fixed_size,
    "latent_size": _int(1, MAX_LATENT, optional=True),
}
POSTPROCESSING: dict[str, Check] = {
    "color": _str(("RGB", "L")),
    "scale": _num(nonzero=True),
    "offset": _num(),
    "clip": _range(optional=False),
}
NESTED = {"input": TENSOR, "output": TENSOR, "preprocessing": PREPROCESSING, "postprocessing": POSTPROCESSING}
MANIFEST: dict[str, Check] = {
    "name": _str(),
    "task": _str(("translate", "generate")),
    "arch": _str(),
    "opset": _int(1, 1000),
    "files": _files,
    "source_checkpoint": _str(),
    "source_sha256": _str(),
    "macs": _int(0, 10**18),
    "params": _int(0, 10**15),
    "dynamic_batch": _bool,
    "dynamic_spatial": _bool,
    "max_batch": _int(1, MAX_BATCH, optional=True),
    "arch_kwargs": _dict,
    "macs_input_shape": _int_list(optional=True),
    "created": _str(),
    "slimgan_version": _str(),
    "format": _str(),
    "format_version": _int(0, 10**6),
}


def check_manifest_fields(data: Any, where: str) -> None:
    """Type and range of every field present in a raw manifest (``Manifest.from_dict`` then checks
    which are required and rejects unknown ones)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: manifest must be a JSON object")
    for key, check in MANIFEST.items():
        if key in data and (problem := check(data[key])):
            raise ConfigError(f"{where}: manifest field {key!r} {problem}")
    for key, spec in NESTED.items():
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: manifest field {key!r} must be an object")
        for sub, check in spec.items():
            if sub in section and (problem := check(section[sub])):
                raise ConfigError(f"{where}: manifest field '{key}.{sub}' {problem}")


def _inside(bundle: Path, name: str, field: str, where: str) -> Path:
    """``bundle/name`` resolved; it must be a regular file inside the (resolved) bundle."""
    root = bundle.resolve()
    target = (bundle / name).resolve()
    if not target.is_relative_to(root):
        raise ConfigError(f"{where}: {field} {name!r} resolves outside the bundle (to {target})")
    if not target.exists():
        raise ConfigError(f"{where}: {field} {name!r} is missing")
    if not target.is_file():
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


def validate_bundle(bundle: Path, precision: str = "fp32", check_files: bool = True) -> Manifest:
    """The bundle's manifest, once every field, file and the served graph have been checked."""
    where = f"bundle {bundle}"
    if not bundle.is_dir():
        raise ConfigError(f"{where}: not a directory")
    manifest_path = _inside(bundle, MANIFEST_NAME, "file", where)
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ConfigError(f"{where}: {MANIFEST_NAME} is over {MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(manifest_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{where}: {MANIFEST_NAME} is not valid JSON") from exc
    check_manifest_fields(data, where)
    manifest = Manifest.from_dict(data, source=f"{where}: {MANIFEST_NAME}")
    _check_consistency(manifest, where)
    if check_files:
        for role, name in manifest.files.items():
            path = _inside(bundle, name, f"manifest field 'files.{role}'", where)
            if role == precision and path.suffix == ".onnx":
                _check_graph(path, manifest, f"manifest field 'files.{role}'", where)
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
