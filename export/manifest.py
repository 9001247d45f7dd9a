"""The bundle manifest: everything a server needs to run an exported generator without torch.

This module must not import torch (``serve/`` reads it). A bundle directory holds::

    manifest.json   this schema
    model.onnx      fp32 ONNX (always)
    model.xml, model.bin   OpenVINO IR (fp32 weights; compiled at ``runtimes.openvino.precision``)
    model.fp16.onnx, model.int8.onnx, model.int8.xml/.bin, model.plan   (when asked for)
    parity.json, speed.json

``Manifest.load(dir)`` validates the file and names the first bad field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from slimgan.errors import SlimganError

MANIFEST_NAME = "manifest.json"
BUNDLE_FORMAT = "slimgan-bundle"
BUNDLE_FORMAT_VERSION = 1
TASKS = ("translate", "generate")


class ManifestError(SlimganError):
    """A manifest.json that is missing, malformed or from a newer slimgan."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. ``shape`` uses strings for dynamic axes (``"batch"``, ``"height"``)."""

    name: str
    shape: list[int | str]
    dtype: str = "float32"
    value_range: list[float] | None = None  # [-1, 1] for images; None for latents (N(0, 1))
    distribution: str = "uniform"  # "uniform" over value_range, or "normal" for latents


@dataclass(frozen=True)
class Preprocessing:
    """How a server turns an image into the input tensor (translate) or draws a latent (generate)."""

    color: str = "RGB"  # "RGB" or "L"
    layout: str = "NCHW"
    scale: float = 1 / 127.5  # x_float = x_uint8 * scale + offset
    offset: float = -1.0
    size_multiple: int = 4  # pad/resize H and W to a multiple of this
    fixed_size: list[int] | None = None  # [H, W] when the graph's spatial axes are static
    latent_size: int | None = None  # generate: z has shape (B, latent_size), z ~ N(0, 1)


@dataclass(frozen=True)
class Postprocessing:
    """How a server turns the output tensor into an 8-bit image: uint8 = clip((y - offset) / scale).

    ``rounding``: ``round`` to nearest, or ``truncate`` (floor) as pix2pix's ``tensor2im`` and
    fast-neural-style's ``save_image`` do, so served pixels match the source repository's own output.
    """

    color: str = "RGB"
    scale: float = 1 / 127.5
    offset: float = -1.0
    clip: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    rounding: str = "round"


@dataclass(frozen=True)
class Manifest:
    name: str
    task: str
    arch: str
    input: TensorSpec
    output: TensorSpec
    preprocessing: Preprocessing
    postprocessing: Postprocessing
    opset: int
    files: dict[str, str]  # role -> file name: "fp32", "fp16", "int8", "plan", "openvino", "openvino-int8" (+ "-weights")
    source_checkpoint: str
    source_sha256: str
    macs: int  # at ``macs_input_shape``; ConvTranspose counted by output size, as the papers do
    params: int
    dynamic_batch: bool = True
    dynamic_spatial: bool = False
    max_batch: int | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    macs_input_shape: list[int] | None = None  # the (batch 1) input shape ``macs`` was counted at
    source_convention: dict[str, Any] = field(default_factory=dict)  # distill.conventions: the source repo's pixels
    role: str = ""  # what the source checkpoint is (its provenance): teacher | student | model
    # runtime name -> {"precision": ..., "files": [...]}: how each runtime's artifact was checked and timed
    runtimes: dict[str, Any] = field(default_factory=dict)
    preferred_runtime: str | None = None  # where the student ran fastest in speed.json (None: not measured)
    # extra graph inputs a server may set, and what is fixed inside the graph (StyleGAN2: truncation, noise)
    controls: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    slimgan_version: str = ""
    format: str = BUNDLE_FORMAT
    format_version: int = BUNDLE_FORMAT_VERSION

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
    def from_dict(cls, data: dict[str, Any], source: str = "manifest") -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: expected a JSON object")
        if data.get("format", BUNDLE_FORMAT) != BUNDLE_FORMAT:
            raise ManifestError(f"{source}: format is {data.get('format')!r}, expected {BUNDLE_FORMAT!r}")
        version = data.get("format_version", BUNDLE_FORMAT_VERSION)
        if not isinstance(version, int) or version > BUNDLE_FORMAT_VERSION:
            raise ManifestError(
                f"{source}: format_version {version!r} is newer than this slimgan reads ({BUNDLE_FORMAT_VERSION})"
            )
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is f.default_factory is _MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ManifestError(f"{source}: missing field {missing[0]!r}")
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            kwargs["input"] = _build(TensorSpec, kwargs["input"], f"{source}: input")
            kwargs["output"] = _build(TensorSpec, kwargs["output"], f"{source}: output")
            kwargs["preprocessing"] = _build(Preprocessing, kwargs["preprocessing"], f"{source}: preprocessing")
            kwargs["postprocessing"] = _build(Postprocessing, kwargs["postprocessing"], f"{source}: postprocessing")
            return cls(**kwargs)
        except TypeError as exc:
            raise ManifestError(f"{source}: {exc}") from exc

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
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    def model_path(self, bundle_dir: str | Path, role: str = "fp32") -> Path:
        if role not in self.files:
            raise ManifestError(f"bundle has no {role} model; it has: {', '.join(self.files)}")
        return Path(bundle_dir) / self.files[role]


_MISSING = fields(Manifest)[0].default  # dataclasses.MISSING without importing the private name


def _build(cls: type, data: Any, source: str) -> Any:
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected an object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ManifestError(f"{source}: unknown field {unknown[0]!r}")
    return cls(**data)
