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
import platform
from collections.abc import Mapping
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
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = directory / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT, "arch": cfg["arch"]})
    tmp.replace(directory / WEIGHTS_NAME)
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
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint directory, with the types of its entries checked."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
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


def patch_instance_norm_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop InstanceNorm running statistics that old reference checkpoints carry (pytorch < 0.4).

    The reference's ``__patch_instance_norm_state_dict`` removes ``running_mean`` / ``running_var``
    (when the module keeps none) and ``num_batches_tracked`` from InstanceNorm modules; this does the
    same for every InstanceNorm in ``model``.
    """
    state = dict(state)
    for name, module in model.named_modules():
        if not isinstance(module, nn.modules.instancenorm._InstanceNorm):
            continue
        prefix = f"{name}." if name else ""
        for attr in ("running_mean", "running_var", "num_batches_tracked"):
            if getattr(module, attr, None) is None:
                state.pop(prefix + attr, None)
    return state


def read_reference_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a reference ``.pth`` with ``weights_only=True``; unwrap ``state_dict`` / ``module.`` prefixes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"reference checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler's refusal is the user's problem to see, in one line
        raise CheckpointError(f"{path} cannot be read as a weights-only state dict: {_unpickle_reason(exc)}") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    state = {str(k): v for k, v in obj.items()}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _unpickle_reason(exc: Exception) -> str:
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
        raise CheckpointError(f"{path} cannot be read as a weights-only training state: {_unpickle_reason(exc)}") from exc
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} does not hold a training state (got {type(state).__name__})")
    for key, kind in TRAINING_STATE_KEYS.items():
        if key not in state:
            raise CheckpointError(f"{path} has no {key!r} entry; it is not a slimgan state.pt or it is damaged")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise CheckpointError(f"{path}: {key!r} has the wrong type ({type(state[key]).__name__})")
    return dict(state)


def import_reference(
    path: str | Path, arch: str | None, out: str | Path, role: str | None = None, **kwargs: Any
) -> Path:
    """Convert a reference ``.pth`` (pix2pix/CycleGAN, GAN Compression, CAT, OMGD, pytorch/examples) into a checkpoint.

    ``arch=None``: the architecture and every width are inferred from the keys and shapes
    (:mod:`distill.infer_arch`); two fitting families are an error naming both. With ``arch`` given,
    unspecified widths are still read off the file and the result must fit it key for key: the error
    names the first key that disagrees. ``config.json`` provenance records what was inferred, the
    source repository's pixel convention (:mod:`distill.conventions`) and what was dropped.

    ``role`` (recorded in the provenance): ``teacher`` by default for a generator, since a reference
    model is what one distills from; ``student`` for a reference model one means to deploy as is.
    """
    from distill.conventions import convention_for_family
    from distill.infer_arch import first_disagreement, infer_architecture, infer_candidates

    raw = read_reference_state_dict(path)
    if arch is None:
        inferred = infer_architecture(raw, source=str(path))
        arch, resolved, how = inferred.arch, {**inferred.kwargs, **kwargs}, "inferred from keys and shapes"
    else:
        matches = [c for c in infer_candidates(raw) if c.arch == arch]
        inferred = matches[0] if matches else None
        resolved = {**(inferred.kwargs if inferred else {}), **kwargs}
        how = "given (--arch) and checked against the keys and shapes"
    info = model_info(arch)
    model = create_model(arch, **resolved)
    state = patch_instance_norm_state_dict(model, raw)
    problem = first_disagreement(model.state_dict(), state)
    if problem:
        args = ", ".join(f"{k}={v}" for k, v in model.slimgan_config["kwargs"].items() if k != "config" or isinstance(v, str))
        raise CheckpointError(f"{path} is not {arch}({args}): {problem}; check --arch and the widths")
    load_state_dict_checked(model, state, source=str(path))
    dropped = sorted(set(raw) - set(state))
    kinds: dict[str, int] = {}
    for key in dropped:
        kinds[key.rsplit(".", 1)[-1]] = kinds.get(key.rsplit(".", 1)[-1], 0) + 1
    provenance: dict[str, Any] = {
        "imported_from": str(Path(path).resolve()),
        "source_sha256": file_sha256(path),
        "reference": info.reference,
        "role": role or ("discriminator" if info.role == "discriminator" else "teacher"),
        "architecture": how,
        "convention": convention_for_family(info.family, info.value_range),
        "import": {
            "source_keys": len(raw), "kept_keys": len(state), "dropped_keys": len(dropped),
            "dropped_by_name": kinds,
            "dropped_reason": "InstanceNorm buffers the model does not keep "
                              "(running_mean / running_var / num_batches_tracked), dropped as the reference's loader does",
        },
    }
    if inferred is not None:
        provenance["inferred"] = inferred.to_dict()
        provenance["inferred_summary"] = inferred.summary()
    return save_checkpoint(model, out, provenance=provenance)


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
