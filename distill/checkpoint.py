"""The checkpoint format, and import of pytorch-CycleGAN-and-pix2pix ``.pth`` files.

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


def import_reference(path: str | Path, arch: str, out: str | Path, role: str | None = None, **kwargs: Any) -> Path:
    """Convert a pytorch-CycleGAN-and-pix2pix ``latest_net_G.pth`` (or ``_D``) into a slimgan checkpoint.

    ``role`` (recorded in the provenance): ``teacher`` by default for a generator, since a reference
    model is what one distills from; ``student`` for a reference model one means to deploy as is.
    """
    info = model_info(arch)
    model = create_model(arch, **kwargs)
    raw = read_reference_state_dict(path)
    state = patch_instance_norm_state_dict(model, raw)
    load_state_dict_checked(model, state, source=str(path))
    dropped = sorted(set(raw) - set(state))
    kinds: dict[str, int] = {}
    for key in dropped:
        kinds[key.rsplit(".", 1)[-1]] = kinds.get(key.rsplit(".", 1)[-1], 0) + 1
    role = role or ("discriminator" if info.role == "discriminator" else "teacher")
    return save_checkpoint(
        model,
        out,
        provenance={"imported_from": str(Path(path).resolve()), "source_sha256": file_sha256(path),
                    "reference": info.reference, "role": role,
                    "import": {"source_keys": len(raw), "kept_keys": len(state), "dropped_keys": len(dropped),
                               "dropped_by_name": kinds,
                               "dropped_reason": "InstanceNorm buffers the model does not keep "
                                                 "(running_mean / running_var / num_batches_tracked), "
                                                 "dropped as the reference's loader does"}},
    )


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
