"""Reading a ``.pth`` the way people save them: find every tensor dict inside, whatever wraps it.

A generator's weights rarely sit at the top of the file. Training scripts save ``{"epoch": 7,
"state_dict": ...}``, ``{"netG_state_dict": ..., "optimizerG": ...}``, rosinality's ``{"g": ..., "g_ema":
...}``; ``DataParallel`` prefixes every key with ``module.`` and ``torch.compile`` with ``_orig_mod.``; one
dict may hold a whole GAN under ``generator.`` / ``discriminator.``. :func:`tensor_dicts` returns every
candidate with where it was found and what was stripped, and the importer keeps those a family fits.

The file is read with ``torch.load(map_location="cpu", weights_only=True)``: tensors saved on a GPU load on
a CPU-only machine, and nothing but tensors and plain containers is unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from distill.checkpoint import unpickle_reason
from distill.errors import CheckpointError

State = dict[str, torch.Tensor]

# Prefixes that wrappers add to every key: nn.DataParallel / DistributedDataParallel, torch.compile.
WRAPPER_PREFIXES = {"module.": "DataParallel", "_orig_mod.": "torch.compile"}
_MAX_DEPTH = 6


@dataclass
class TensorDict:
    """One dict of tensors found in a file: ``path`` of keys leading to it (empty at the top level),
    wrapper prefixes stripped from its keys, and the shared key prefix taken from a larger dict."""

    state: State
    path: tuple[str, ...] = ()
    stripped: list[str] = field(default_factory=list)
    subset: str = ""

    def where(self) -> str:
        """``netG_state_dict`` / ``state_dict['generator.']`` / ``the top level`` for messages."""
        loc = ".".join(self.path) if self.path else "the top level"
        return f"{loc}[{self.subset!r}]" if self.subset else loc

    def unwrapped(self) -> list[str]:
        """What was taken off to reach the state dict, in words (empty for a bare state dict)."""
        parts = []
        if self.path:
            parts.append(f"state dict under {'.'.join(self.path)!r}")
        if self.subset:
            parts.append(f"keys under {self.subset!r}")
        parts += [f"{WRAPPER_PREFIXES[p]} prefix {p!r}" for p in self.stripped]
        return parts

    def to_dict(self) -> dict[str, Any]:
        return {"path": list(self.path), "subset": self.subset, "stripped_prefixes": list(self.stripped)}


def load_pth(path: str | Path) -> Any:
    """``torch.load`` a reference file on the CPU, weights only; every failure is one line naming ``path``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"reference checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; `slimgan import` takes a .pth / .pt file")
    with open(path, "rb") as fh:
        head = fh.read(16)
    kind = sniff(head)
    if kind == "safetensors":
        return _load_safetensors(path)
    if kind != "torch":
        raise CheckpointError(f"{path} is {kind}, not a PyTorch weights file (.pth / .pt / .safetensors)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler's refusal is the user's problem to see, in one line
        raise CheckpointError(f"{path} cannot be read as a weights-only PyTorch file: {unpickle_reason(exc)}") from exc


_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"%PDF", "a PDF document"),
          (b"\x1f\x8b", "a gzip archive"), (b"ONNX", "an ONNX model"))


def sniff(head: bytes) -> str:
    """``torch`` (zip or legacy pickle), ``safetensors``, or what else the first bytes say the file is."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return "torch"
    if len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 1 << 30:
        return "safetensors"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if not head:
        return "empty"
    return "not a PyTorch file (neither a zip archive nor a pickle)"


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # the library's own checks, as one line
        raise CheckpointError(f"{path} cannot be read as a safetensors file: {exc}") from exc


def _strip_wrappers(state: State) -> tuple[State, list[str]]:
    stripped: list[str] = []
    changed = True
    while changed and state:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped.append(prefix)
                changed = True
    return state, stripped


def _subsets(found: TensorDict) -> list[TensorDict]:
    """The dict's key groups by first name (``generator.``, ``netG.``) when it holds several modules."""
    heads: dict[str, int] = {}
    for key in found.state:
        head, dot, _ = key.partition(".")
        if dot and not head.isdigit():
            heads[head] = heads.get(head, 0) + 1
    if len(heads) < 2:
        return []
    out = []
    for head in heads:
        prefix = head + "."
        sub = {k[len(prefix):]: v for k, v in found.state.items() if k.startswith(prefix)}
        sub, stripped = _strip_wrappers(sub)
        out.append(TensorDict(sub, found.path, found.stripped + stripped, subset=prefix))
    return out


def _walk(obj: Any, path: tuple[str, ...], depth: int, out: list[TensorDict]) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(obj, Mapping):
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj):
            state, stripped = _strip_wrappers(tensors)
            found = TensorDict(state, path, stripped)
            out.append(found)
            out.extend(_subsets(found))
            return
        for key, value in obj.items():
            _walk(value, (*path, str(key)), depth + 1, out)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _walk(value, (*path, str(i)), depth + 1, out)


def tensor_dicts(obj: Any) -> list[TensorDict]:
    """Every dict of tensors inside a loaded file, outermost first, with wrapper prefixes removed."""
    out: list[TensorDict] = []
    _walk(obj, (), 0, out)
    return out


def select_path(found: list[TensorDict], key: str, source: str) -> list[TensorDict]:
    """The candidates at ``key`` (``netG`` or ``state.netG`` or ``state_dict[generator.]``); error if none."""
    chosen = [f for f in found if key in (".".join(f.path), f.where(), f.path[-1] if f.path else "")]
    if not chosen:
        places = ", ".join(sorted({f.where() for f in found})) or "none"
        raise CheckpointError(f"{source} has no tensor dict at {key!r}; it has: {places}")
    return chosen
