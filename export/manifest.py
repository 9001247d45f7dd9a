"""The bundle manifest: everything a server needs to run an exported generator without torch.

This module must not import torch (``serve/`` reads it). A bundle directory holds::

    manifest.json   this schema
    model.onnx      fp32 ONNX (always)
    model.xml, model.bin   OpenVINO IR (fp32 weights; compiled at ``runtimes.openvino.precision``)
    model.fp16.onnx, model.int8.onnx, model.int8.xml/.bin, model.plan   (when asked for)
    parity.json, speed.json

It is the one schema of a bundle: every field is typed here, with its range or choices in the field's
metadata, and :meth:`Manifest.from_dict` (``Manifest.load``) is a strict load. A field of the wrong type
or out of range, an unknown field, or a file name that leaves the bundle is a :class:`ManifestError`
naming the field (``manifest field 'preprocessing.scale' must be ...``). ``checksums`` maps each file
the bundle lists to its sha256 (:func:`file_sha256`); a reader verifies them before trusting the files.
"""

from __future__ import annotations

import hashlib
import json
import math
import types
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Union, get_args, get_origin, get_type_hints

from slimgan.errors import ConfigError

MANIFEST_NAME = "manifest.json"
BUNDLE_FORMAT = "slimgan-bundle"
BUNDLE_FORMAT_VERSION = 1
TASKS = ("translate", "generate")


class ManifestError(ConfigError):
    """A manifest.json that is missing, malformed or from a newer slimgan."""


MAX_SIDE = 4096  # static spatial size of a served graph
MAX_LATENT = 1 << 20  # floats in one latent row
MAX_BATCH = 4096
MAX_TEXT = 4096


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# Rules: a field's range or choices, in ``field(metadata={"rule": ...})``. Each returns None when the
# (already type-checked) value is fine, else what is wrong with it.
def int_range(lo: int, hi: int) -> Any:
    return lambda v: None if v is None or lo <= v <= hi else f"must be an integer in [{lo}, {hi}], got {v!r}"


def magnitude(bound: float = 1e6, nonzero: bool = False) -> Any:
    def rule(v: Any) -> str | None:
        if abs(v) > bound or (nonzero and v == 0):
            return f"must be a finite {'non-zero ' if nonzero else ''}number of magnitude at most {bound:g}, got {v!r}"
        return None

    return rule


def choices(*options: str) -> Any:
    return lambda v: None if v is None or v in options else f"must be one of {', '.join(options)}, got {v!r}"


def _low_high(v: Any) -> str | None:
    if v is None or (len(v) == 2 and v[0] < v[1]):
        return None
    return f"must be [low, high] with finite low < high, got {v!r}"


def _shape(v: list) -> str | None:
    if not 2 <= len(v) <= 4:
        return f"must be a list of 2 to 4 dimensions, got {v!r}"
    for d in v:
        if (isinstance(d, str) and not 0 < len(d) <= 64) or (_is_int(d) and not 1 <= d <= MAX_LATENT):
            return f"dimensions must be names or integers in [1, {MAX_LATENT}], got {d!r}"
    return None


def _fixed_size(v: Any) -> str | None:
    if v is None or (len(v) == 2 and all(1 <= d <= MAX_SIDE for d in v)):
        return None
    return f"must be [H, W] with each side in [1, {MAX_SIDE}], got {v!r}"


def _non_negative(v: Any) -> str | None:
    return None if v is None or all(d >= 0 for d in v) else f"must be a list of non-negative integers, got {v!r}"


def relative_path_problem(name: str) -> str | None:
    """Why ``name`` is not a relative path inside a bundle, or None."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or Path(name).is_absolute() or "\\" in name or ".." in pure.parts:
        return f"must be a relative path inside the bundle, got {name!r}"
    return None


def _files(v: dict) -> str | None:
    if not v:
        return "must map roles (fp32, fp16, int8, plan, ...) to file names"
    if "fp32" not in v:
        return "must name the fp32 ONNX model under 'fp32'"
    for role, name in v.items():
        if problem := relative_path_problem(name):
            return f"entry {role!r} {problem}"
    return None


def _checksums(v: dict) -> str | None:
    for name, digest in v.items():
        if problem := relative_path_problem(name):
            return f"entry {name!r} {problem}"
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            return f"entry {name!r} must be a sha256 in lower-case hex, got {digest[:80]!r}"
    return None


def _rule(rule: Any) -> dict[str, Any]:
    return {"rule": rule}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. ``shape`` uses strings for dynamic axes (``"batch"``, ``"height"``)."""

    name: str
    shape: list[int | str] = field(metadata=_rule(_shape))
    dtype: str = field(default="float32", metadata=_rule(choices("float32", "float16")))
    # [-1, 1] for images; None for latents (N(0, 1))
    value_range: list[float] | None = field(default=None, metadata=_rule(_low_high))
    # "uniform" over value_range, or "normal" for latents
    distribution: str = field(default="uniform", metadata=_rule(choices("uniform", "normal")))


@dataclass(frozen=True)
class Preprocessing:
    """How a server turns an image into the input tensor (translate) or draws a latent (generate)."""

    color: str = field(default="RGB", metadata=_rule(choices("RGB", "L")))
    layout: str = field(default="NCHW", metadata=_rule(choices("NCHW")))
    # x_float = x_uint8 * scale + offset
    scale: float = field(default=1 / 127.5, metadata=_rule(magnitude(nonzero=True)))
    offset: float = field(default=-1.0, metadata=_rule(magnitude()))
    size_multiple: int = field(default=4, metadata=_rule(int_range(1, 1024)))  # pad/resize H and W to a multiple
    # [H, W] when the graph's spatial axes are static
    fixed_size: list[int] | None = field(default=None, metadata=_rule(_fixed_size))
    # generate: z has shape (B, latent_size), z ~ N(0, 1)
    latent_size: int | None = field(default=None, metadata=_rule(int_range(1, MAX_LATENT)))


@dataclass(frozen=True)
class Postprocessing:
    """How a server turns the output tensor into an 8-bit image: uint8 = clip((y - offset) / scale).

    ``rounding``: ``round`` to nearest, or ``truncate`` (floor) as pix2pix's ``tensor2im`` and
    fast-neural-style's ``save_image`` do, so served pixels match the source repository's own output.
    """

    color: str = field(default="RGB", metadata=_rule(choices("RGB", "L")))
    scale: float = field(default=1 / 127.5, metadata=_rule(magnitude(nonzero=True)))
    offset: float = field(default=-1.0, metadata=_rule(magnitude()))
    clip: list[float] = field(default_factory=lambda: [-1.0, 1.0], metadata=_rule(_low_high))
    rounding: str = field(default="round", metadata=_rule(choices("round", "truncate")))


@dataclass(frozen=True)
class RuntimeRecord:
    """``runtimes[name]``: how export checked and timed one runtime's artifact. Runtimes may add their own
    keys beside these (``extra``); the manifest keeps the record as a plain object."""

    precision: str | None = None
    files: list[str] = field(default_factory=list)
    input_shape: list[int] | None = field(default=None, metadata=_rule(_non_negative))
    extra = True  # other keys are allowed (runtime-specific details)


@dataclass(frozen=True)
class TruncationControl:
    """``controls.truncation``: StyleGAN2's ψ as a graph input (default 1)."""

    input: str
    shape: list[int | str] = field(metadata=_rule(_shape))
    default: float = field(default=1.0, metadata=_rule(magnitude(bound=2.0)))
    mean_w: str = ""
    formula: str = ""


@dataclass(frozen=True)
class Controls:
    """``controls``: extra graph inputs a server may set, and what is fixed inside the graph."""

    truncation: TruncationControl | None = None
    noise: str | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    task: str = field(metadata=_rule(choices(*TASKS)))
    arch: str
    input: TensorSpec
    output: TensorSpec
    preprocessing: Preprocessing
    postprocessing: Postprocessing
    opset: int = field(metadata=_rule(int_range(1, 1000)))
    # role -> file name: "fp32", "fp16", "int8", "plan", "openvino", "openvino-int8" (+ "-weights")
    files: dict[str, str] = field(metadata=_rule(_files))
    source_checkpoint: str
    source_sha256: str
    # at ``macs_input_shape``; ConvTranspose counted by output size, as the papers do
    macs: int = field(metadata=_rule(int_range(0, 10**18)))
    params: int = field(metadata=_rule(int_range(0, 10**15)))
    dynamic_batch: bool = True
    dynamic_spatial: bool = False
    max_batch: int | None = field(default=None, metadata=_rule(int_range(1, MAX_BATCH)))
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    # the (batch 1) input shape ``macs`` was counted at
    macs_input_shape: list[int] | None = field(default=None, metadata=_rule(_non_negative))
    source_convention: dict[str, Any] = field(default_factory=dict)  # distill.conventions: the source repo's pixels
    role: str = ""  # what the source checkpoint is (its provenance): teacher | student | model
    # runtime name -> {"precision": ..., "files": [...]}: how each runtime's artifact was checked and timed
    runtimes: dict[str, Any] = field(default_factory=dict, metadata={"values": RuntimeRecord})
    preferred_runtime: str | None = None  # where the student ran fastest in speed.json (None: not measured)
    # extra graph inputs a server may set, and what is fixed inside the graph (StyleGAN2: truncation, noise)
    controls: dict[str, Any] = field(default_factory=dict, metadata={"schema": Controls})
    created: str = ""
    slimgan_version: str = ""
    format: str = field(default=BUNDLE_FORMAT, metadata=_rule(choices(BUNDLE_FORMAT)))
    format_version: int = field(default=BUNDLE_FORMAT_VERSION, metadata=_rule(int_range(0, 10**6)))
    # file name -> sha256 of every file the bundle lists (and its reports); empty in bundles from before it
    checksums: dict[str, str] = field(default_factory=dict, metadata=_rule(_checksums))

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ManifestError(f"manifest task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if "fp32" not in self.files:
            raise ManifestError("manifest files must name the fp32 ONNX model under 'fp32'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def public_dict(self) -> dict[str, Any]:
        """What a server may show to clients: no local paths."""
        data = self.to_dict()
        data.pop("source_checkpoint", None)
        return data

    def save(self, bundle_dir: str | Path) -> Path:
        path = Path(bundle_dir) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest") -> Manifest:
        """A strict load: every field typed and in range, no unknown field (:class:`ManifestError` names it)."""
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: manifest must be a JSON object")
        version = data.get("format_version", BUNDLE_FORMAT_VERSION)
        if _is_int(version) and version > BUNDLE_FORMAT_VERSION:
            raise ManifestError(
                f"{source}: format_version {version!r} is newer than this slimgan reads ({BUNDLE_FORMAT_VERSION})"
            )
        return _build(cls, data, source, "")

    @classmethod
    def load(cls, bundle_dir: str | Path) -> Manifest:
        bundle_dir = Path(bundle_dir)
        path = bundle_dir / MANIFEST_NAME
        if not bundle_dir.is_dir():
            raise ManifestError(f"bundle directory {bundle_dir} does not exist")
        if not path.is_file():
            raise ManifestError(f"{bundle_dir} is not a slimgan bundle: {MANIFEST_NAME} is missing")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    def model_path(self, bundle_dir: str | Path, role: str = "fp32") -> Path:
        if role not in self.files:
            raise ManifestError(f"bundle has no {role} model; it has: {', '.join(self.files)}")
        return Path(bundle_dir) / self.files[role]


def file_sha256(path: Path) -> str:
    """sha256 hex of a file; of a folder (a Core ML package), of its files' relative paths and contents in order."""
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(item.relative_to(path).as_posix().encode() + b"\0" + bytes.fromhex(file_sha256(item)))
        return digest.hexdigest()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_TYPE_WORDS = {str: "a string", int: "an integer", float: "a finite number", bool: "true or false"}


def _type_problem(value: Any, tp: Any) -> str | None:
    """Why ``value`` (parsed JSON) is not of type ``tp``, or None. Dataclass types are checked by the caller."""
    origin = get_origin(tp)
    if tp is Any or is_dataclass(tp):
        return None if tp is Any or isinstance(value, dict) else "must be an object"
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(options) < len(get_args(tp)):
            return None
        if any(_type_problem(value, a) is None for a in options):
            return None
        return f"must be {' or '.join(_describe(a) for a in options)}, got {_shown(value)}"
    if origin is list:
        if not isinstance(value, list):
            return f"must be a list, got {_shown(value)}"
        (item,) = get_args(tp)
        bad = next((v for v in value if _type_problem(v, item) is not None), _NONE)
        return None if bad is _NONE else f"must be a list of {_describe(item)}s, got {_shown(value)}"
    if origin is dict:
        if not isinstance(value, dict):
            return f"must be an object, got {_shown(value)}"
        _, item = get_args(tp)
        bad = next((k for k, v in value.items() if _type_problem(v, item) is not None), _NONE)
        return None if bad is _NONE else f"entry {bad!r} must be {_describe(item)}, got {_shown(value[bad])}"
    ok = {
        bool: isinstance(value, bool),
        int: _is_int(value),
        float: _is_num(value),
        str: isinstance(value, str) and len(value) <= MAX_TEXT,
    }.get(tp, True)
    return None if ok else f"must be {_TYPE_WORDS.get(tp, str(tp))}, got {_shown(value)}"


_NONE = object()


def _describe(tp: Any) -> str:
    if get_origin(tp) is list:
        return "a list"
    if get_origin(tp) is dict or is_dataclass(tp):
        return "an object"
    return _TYPE_WORDS.get(tp, getattr(tp, "__name__", str(tp)))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    """``cls(**data)`` after checking every key of ``data`` against ``cls``'s typed fields (recursively)."""
    where = prefix.rstrip(".") or "manifest"
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: manifest field {where!r} must be an object")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown and not getattr(cls, "extra", False):
        raise ManifestError(f"{source}: unknown manifest field '{prefix}{unknown[0]}'")
    missing = [n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING and n not in data]
    if missing:
        raise ManifestError(f"{source}: missing manifest field '{prefix}{missing[0]}'")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name not in known:
            continue
        kwargs[name] = _field_value(known[name], hints[name], value, source, f"{prefix}{name}")
    if getattr(cls, "extra", False):
        return data  # a record kept as a plain object: its known keys are checked
    return cls(**kwargs)


def _field_value(spec: Any, tp: Any, value: Any, source: str, path: str) -> Any:
    """``value`` checked against the field ``spec`` of type ``tp``: nested objects are built, records checked."""
    if problem := _type_problem(value, tp):
        raise ManifestError(f"{source}: manifest field '{path}' {problem}")
    nested = next((a for a in (tp, *get_args(tp)) if is_dataclass(a)), None)
    if nested is not None and value is not None:
        return _build(nested, value, source, path + ".")
    if (values := spec.metadata.get("values")) is not None:
        for key, item in value.items():
            _build(values, item, source, f"{path}.{key}.")
    if (schema := spec.metadata.get("schema")) is not None:
        _build(schema, value, source, path + ".")
    if (rule := spec.metadata.get("rule")) is not None and (problem := rule(value)):
        raise ManifestError(f"{source}: manifest field '{path}' {problem}")
    return value
