"""The checkpoint format, and import of reference ``.pth`` files (pix2pix/CycleGAN and the GAN-compression ecosystem).

A checkpoint is a directory::

    config.json         {"format": "slimgan-checkpoint", "format_version": 1, "arch": ...,
                         "kwargs": {...}, "provenance": {...}}
    model.safetensors   the state dict

Loading needs nothing but the registry: no pickles. Reference ``.pth`` files are read with
``torch.load(..., weights_only=True)``, which refuses arbitrary objects.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from distill.errors import CheckpointError
from distill.registry import create_model, model_info

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "slimgan-checkpoint"
FORMAT_VERSION = 1
# Elements (parameters + buffers) a checkpoint may describe: 2 GB of fp32, 40x the largest zoo model.
MAX_PARAMS = 500_000_000
# What a checkpoint is, recorded in its provenance by whoever wrote it (``role``). Downstream names
# (export rows, bundle manifests, latency tables) come from here, never from the command that ran.
ROLES = ("teacher", "student", "discriminator")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_error(path: str | Path, exc: BaseException) -> CheckpointError:
    """One line naming ``path`` and the operating system's errno for a failed write (disk full, read-only,
    permission). safetensors reports I/O failures as its own error type with the errno in the text."""
    errno_ = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None)
    if errno_ is None:
        found = re.search(r"(?:code: |os error )(\d+)", str(exc))
        if found:
            errno_ = int(found.group(1))
            reason = os.strerror(errno_)
    if errno_ is not None:
        return CheckpointError(f"cannot write {path}: [Errno {errno_}] {reason or os.strerror(errno_)}")
    return CheckpointError(f"cannot write {path}: {type(exc).__name__}: {exc}")


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` to a temporary name in ``path``'s folder, then rename it onto ``path``.

    A reader never sees a half-written file, and a failed write (disk full) leaves neither the temporary
    file nor a damaged ``path`` behind: the error is one line with the path and the errno.
    """
    path = Path(path)
    # A name of our own rather than mkstemp's, so the file gets the umask's mode like any other output.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError":
            raise write_error(path, exc) from exc
        raise
    return path


def save_checkpoint(model: nn.Module, directory: str | Path, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` (built by ``create_model``) to ``directory`` as config.json + model.safetensors.

    DDP / DataParallel wrappers are unwrapped so ``.module.`` never leaks into the keys.
    """
    model = getattr(model, "module", model)
    cfg = getattr(model, "slimgan_config", None)
    if cfg is None:
        raise CheckpointError(
            f"{type(model).__name__} was not built by create_model, so its architecture cannot be recorded"
        )
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(directory, exc) from exc
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "arch": cfg["arch"]}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    from distill import __version__

    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": cfg["arch"],
        "kwargs": cfg["kwargs"],
        "provenance": {
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "slimgan_version": __version__,
            "torch_version": torch.__version__,
            "python": platform.python_version(),
            **dict(provenance or {}),
        },
    }
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(directory / CONFIG_NAME, lambda tmp: tmp.write_text(text))
    return directory


_PTH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".tar", ".pkl", ".safetensors")


def _not_a_directory(path: Path) -> str:
    """Why ``path`` is no checkpoint directory, and for a PyTorch file, the command that converts it."""
    if not path.exists():
        return f"checkpoint directory {path} does not exist"
    with open(path, "rb") as fh:
        head = fh.read(16)
    torch_file = head.startswith((b"PK\x03\x04", b"\x80")) or path.suffix.lower() in _PTH_SUFFIXES
    if torch_file:
        return (f"{path.name} is a PyTorch file, not a slimgan checkpoint directory: convert it with "
                f"`slimgan import {path} --out DIR`")
    return f"{path} is a file, not a slimgan checkpoint directory (config.json + model.safetensors)"


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint directory, with the types of its entries checked."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise CheckpointError(_not_a_directory(directory))
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a slimgan checkpoint: {CONFIG_NAME} is missing")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(config).__name__}")
    for key in ("arch", "kwargs"):
        if key not in config:
            raise CheckpointError(f"{path} has no {key!r} entry")
    if not isinstance(config["arch"], str):
        raise CheckpointError(f"{path}: 'arch' must be a string, got {config['arch']!r}")
    if not isinstance(config["kwargs"], dict):
        raise CheckpointError(f"{path}: 'kwargs' must be an object, got {type(config['kwargs']).__name__}")
    version = config.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: 'format_version' must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version}; this slimgan reads up to {FORMAT_VERSION}"
        )
    return config


def checkpoint_role(source: str | Path | Mapping[str, Any]) -> str:
    """``teacher``, ``student``, ``discriminator`` or ``model`` (unknown) from a checkpoint's provenance.

    ``source`` is a checkpoint directory or its parsed ``config.json``. Checkpoints written before
    roles were recorded are classified from what their provenance says: distilled from a teacher
    -> student; imported from a reference ``.pth`` -> teacher.
    """
    config = read_checkpoint_config(source) if isinstance(source, str | Path) else source
    prov = config.get("provenance") or {}
    if prov.get("role") in ROLES:
        return str(prov["role"])
    if model_info(config["arch"]).role == "discriminator":
        return "discriminator"
    if prov.get("teacher") or prov.get("teacher_sha256"):
        return "student"
    if prov.get("imported_from"):
        return "teacher"
    return "model"


# Element sizes of the safetensors dtypes torch can hold.
_SAFETENSORS_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own header limit


def read_weights_header(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, checked against the file's size; no data is read.

    Refuses a header that is truncated, not JSON, names an unknown dtype, gives a shape whose byte size
    differs from its data range, or points past the end of the file (a truncated file).
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is truncated: {size} bytes, not even a safetensors header length")
        n = int.from_bytes(head, "little")
        if n <= 0 or n > min(_MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path} is not a safetensors file (header length {n} for a {size}-byte file)")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: the safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not an object")
    data_bytes = size - 8 - n
    shapes: dict[str, tuple[int, ...]] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise CheckpointError(f"{path}: tensor {key!r} has a malformed header entry")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        itemsize = _SAFETENSORS_ITEMSIZE.get(dtype) if isinstance(dtype, str) else None
        if itemsize is None:
            raise CheckpointError(f"{path}: tensor {key!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {key!r} has a malformed shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets)
            or offsets[1] < offsets[0]
        ):
            raise CheckpointError(f"{path}: tensor {key!r} has malformed data_offsets {offsets!r}")
        if offsets[1] > data_bytes:
            raise CheckpointError(
                f"{path} is truncated: tensor {key!r} ends at byte {offsets[1]} of a {data_bytes}-byte data section"
            )
        if offsets[1] - offsets[0] != math.prod(shape) * itemsize:
            raise CheckpointError(f"{path}: tensor {key!r} of shape {tuple(shape)} does not fill its data range")
        shapes[key] = tuple(shape)
    return shapes


def _build_model(config: dict[str, Any], source: str) -> nn.Module:
    """``create_model`` from a checkpoint config, with any constructor failure as one line naming ``source``."""
    try:
        return create_model(config["arch"], **config["kwargs"])
    except CheckpointError:
        raise
    except Exception as exc:  # a wrong-typed or unknown kwarg fails anywhere inside the constructor
        raise CheckpointError(
            f"{source}: cannot build {config['arch']!r} from kwargs {config['kwargs']}: {type(exc).__name__}: {exc}"
        ) from exc


def load_checkpoint(
    directory: str | Path,
    device: str | torch.device = "cpu",
    eval_mode: bool = True,
    max_params: int = MAX_PARAMS,
) -> nn.Module:
    """Rebuild the module recorded in ``directory`` and load its weights (strictly). Returns it in eval mode.

    The architecture is first built on the ``meta`` device (no memory) and its state-dict shapes are
    compared with the safetensors header, so a ``config.json`` that disagrees with its weights, or
    describes more than ``max_params`` elements, is refused before anything is allocated.
    """
    directory = Path(directory)
    config = read_checkpoint_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_NAME}")
    header = read_weights_header(weights)
    with torch.device("meta"):
        skeleton = _build_model(config, str(directory / CONFIG_NAME))
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    total = sum(math.prod(shape) for shape in expected.values())
    if total > max_params:
        raise CheckpointError(
            f"{directory / CONFIG_NAME}: {config['arch']} with kwargs {config['kwargs']} has {total:,} "
            f"parameters, over the limit of {max_params:,}"
        )
    check_state_shapes(expected, header, source=str(weights))
    del skeleton
    model = _build_model(config, str(directory / CONFIG_NAME))
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors' own checks: one line, never a traceback
        raise CheckpointError(f"{weights} cannot be read: {exc}") from exc
    load_state_dict_checked(model, state, source=str(weights))
    model.slimgan_checkpoint = {"path": str(directory), "sha256": file_sha256(weights), "config": config}
    model.to(device)
    return model.eval() if eval_mode else model


def check_state_shapes(
    expected: Mapping[str, tuple[int, ...]], given: Mapping[str, tuple[int, ...]], source: str
) -> None:
    """CheckpointError naming the first key whose shape differs, or the missing / unexpected keys."""
    for key, shape in given.items():
        if key in expected and tuple(expected[key]) != tuple(shape):
            raise CheckpointError(
                f"{source}: key {key!r} has shape {tuple(shape)} but the model expects "
                f"{tuple(expected[key])}; check --arch and the width (--ngf / --ndf)"
            )
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key {missing[0]!r} ({len(missing)} missing)")
        if unexpected:
            parts.append(f"unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)")
        raise CheckpointError(f"{source} does not match the architecture: {'; '.join(parts)}; check --arch")


def load_state_dict_checked(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the first mismatching key and both shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_state_shapes(expected, {k: tuple(v.shape) for k, v in state.items()}, source)
    model.load_state_dict(state, strict=True)


def unpickle_reason(exc: Exception) -> str:
    """The line of a ``torch.load`` failure that says what was refused, without PyTorch's advice to
    retry with ``weights_only=False`` (which would run the file's code)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported global" in line or "Unsupported operand" in line or "WeightsUnpickler error" in line:
            return line.removeprefix("WeightsUnpickler error:").strip() + " (objects other than tensors are refused)"
    detail = next((line for line in lines if "weights_only" not in line and "trust the source" not in line), "")
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


TRAINING_STATE_KEYS = {"step": int, "modules": Mapping, "optimizers": Mapping, "schedulers": Mapping,
                       "scaler": Mapping, "rng": Mapping}


def read_training_state(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A run's ``state.pt`` (``weights_only=True``), with its top-level entries checked: one-line
    CheckpointError instead of an unpickler traceback or a KeyError halfway through a resume."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be read as a weights-only training state: {unpickle_reason(exc)}") from exc
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} does not hold a training state (got {type(state).__name__})")
    for key, kind in TRAINING_STATE_KEYS.items():
        if key not in state:
            raise CheckpointError(f"{path} has no {key!r} entry; it is not a slimgan state.pt or it is damaged")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise CheckpointError(f"{path}: {key!r} has the wrong type ({type(state[key]).__name__})")
    return dict(state)


def import_summary(directory: str | Path) -> str:
    """One line on what :func:`import_reference` kept and dropped, from the checkpoint's provenance."""
    prov = read_checkpoint_config(directory).get("provenance") or {}
    imp = prov.get("import") or {}
    if not imp:
        return f"{directory}: not an imported checkpoint"
    line = f"kept {imp['kept_keys']} of {imp['source_keys']} keys"
    if imp["dropped_keys"]:
        names = ", ".join(f"{k} x{v}" for k, v in sorted(imp["dropped_by_name"].items()))
        line += f"; dropped {imp['dropped_keys']} InstanceNorm buffers the model does not keep ({names})"
    else:
        line += "; dropped none"
    return line
