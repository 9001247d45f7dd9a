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
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a slimgan checkpoint: {CONFIG_NAME} is missing")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    for key in ("arch", "kwargs"):
        if key not in config:
            raise CheckpointError(f"{path} has no {key!r} entry")
    if config.get("format_version", 1) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {config['format_version']}; this slimgan reads up to {FORMAT_VERSION}"
        )
    return config


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu", eval_mode: bool = True) -> nn.Module:
    """Rebuild the module recorded in ``directory`` and load its weights (strictly). Returns it in eval mode."""
    directory = Path(directory)
    config = read_checkpoint_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_NAME}")
    model = create_model(config["arch"], **config["kwargs"])
    state = load_file(str(weights), device="cpu")
    load_state_dict_checked(model, state, source=str(weights))
    model.slimgan_checkpoint = {"path": str(directory), "sha256": file_sha256(weights), "config": config}
    model.to(device)
    return model.eval() if eval_mode else model


def load_state_dict_checked(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the first mismatching key and both shapes."""
    expected = model.state_dict()
    for key, value in state.items():
        if key in expected and tuple(expected[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source}: key {key!r} has shape {tuple(value.shape)} but the model expects "
                f"{tuple(expected[key].shape)}; check --arch and the width (--ngf / --ndf)"
            )
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key {missing[0]!r} ({len(missing)} missing)")
        if unexpected:
            parts.append(f"unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)")
        raise CheckpointError(f"{source} does not match the architecture: {'; '.join(parts)}; check --arch")
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
        raise CheckpointError(
            f"{path} cannot be read as a weights-only state dict ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    state = {str(k): v for k, v in obj.items()}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def import_reference(path: str | Path, arch: str | None, out: str | Path, **kwargs: Any) -> Path:
    """Convert a reference ``.pth`` (pix2pix/CycleGAN, GAN Compression, CAT, OMGD, pytorch/examples) into a checkpoint.

    ``arch=None``: the architecture and every width are inferred from the keys and shapes
    (:mod:`distill.infer_arch`); two fitting families are an error naming both. With ``arch`` given,
    unspecified widths are still read off the file and the result must fit it key for key: the error
    names the first key that disagrees. ``config.json`` provenance records what was inferred and the
    source repository's pixel convention (:mod:`distill.conventions`).
    """
    from distill.conventions import convention_for_family
    from distill.infer_arch import first_disagreement, infer_architecture, infer_candidates

    state = read_reference_state_dict(path)
    if arch is None:
        inferred = infer_architecture(state, source=str(path))
        arch, resolved, how = inferred.arch, {**inferred.kwargs, **kwargs}, "inferred from keys and shapes"
    else:
        matches = [c for c in infer_candidates(state) if c.arch == arch]
        inferred = matches[0] if matches else None
        resolved = {**(inferred.kwargs if inferred else {}), **kwargs}
        how = "given (--arch) and checked against the keys and shapes"
    info = model_info(arch)
    model = create_model(arch, **resolved)
    state = patch_instance_norm_state_dict(model, state)
    problem = first_disagreement(model.state_dict(), state)
    if problem:
        args = ", ".join(f"{k}={v}" for k, v in model.slimgan_config["kwargs"].items() if k != "config" or isinstance(v, str))
        raise CheckpointError(f"{path} is not {arch}({args}): {problem}; check --arch and the widths")
    load_state_dict_checked(model, state, source=str(path))
    provenance: dict[str, Any] = {
        "imported_from": str(Path(path).resolve()),
        "source_sha256": file_sha256(path),
        "reference": info.reference,
        "architecture": how,
        "convention": convention_for_family(info.family, info.value_range),
    }
    if inferred is not None:
        provenance["inferred"] = inferred.to_dict()
        provenance["inferred_summary"] = inferred.summary()
    return save_checkpoint(model, out, provenance=provenance)
