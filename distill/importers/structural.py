"""Structural matching: a known family saved under other module names.

Code that re-implements a published generator keeps its layers, their order and their shapes, but often
not its attribute names (``block`` for pix2pix's ``conv_block``, ``main`` for ``model``). Such a file is
matched by *position*: each registered architecture is built once per norm variant on the ``meta`` device
(no memory) as a template, and a file whose tensors line up with a template (same count; same parameter
name and rank at every position) is renamed to the template's keys. The family's reader then infers the
widths from the renamed dict and the usual check verifies every shape, so a coincidental line-up never
gets through.

When nothing fits, :func:`closest` names the template that lines up longest and the first tensor where
the file leaves it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import torch

State = Mapping[str, torch.Tensor]
Signature = tuple[tuple[str, int], ...]

# Norm variants tried for architectures that take ``norm``; dropout has no weights and so no variant.
_NORM_VARIANTS = ("instance", "instance_affine", "batch", "none")


@dataclass(frozen=True)
class Template:
    arch: str
    family: str
    role: str
    kwargs: tuple[tuple[str, object], ...]
    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def signature(self) -> Signature:
        return tuple((k.rsplit(".", 1)[-1], len(s)) for k, s in zip(self.keys, self.shapes, strict=True))

    def label(self) -> str:
        norm = dict(self.kwargs).get("norm")
        return f"{self.arch}" + (f" (norm={norm})" if norm else "")


def signature(state: State) -> Signature:
    """(parameter name, rank) of every tensor in order: what survives a rename of the modules."""
    return tuple((k.rsplit(".", 1)[-1], int(v.dim())) for k, v in state.items())


@functools.lru_cache(maxsize=1)
def templates() -> tuple[Template, ...]:
    """One template per registered architecture and norm variant (built on ``meta``, cached)."""
    from distill.registry import create_model, list_models, model_info

    out: list[Template] = []
    for arch in list_models():
        info = model_info(arch)
        variants = [{"norm": n} for n in _NORM_VARIANTS] if "norm" in info.defaults else [{}]
        for kwargs in variants:
            try:
                with torch.device("meta"):
                    model = create_model(arch, **kwargs)
            except Exception:  # a variant the family refuses (sub_mobile takes no batch norm)
                continue
            sd = model.state_dict()
            out.append(Template(arch, info.family, info.role, tuple(sorted(kwargs.items())), tuple(sd),
                                tuple(tuple(v.shape) for v in sd.values())))
    return tuple(out)


def renamings(state: State) -> list[tuple[Template, dict[str, str]]]:
    """Templates whose tensors line up with ``state`` position by position, each with its
    file-key -> template-key map (only templates whose names differ from the file's)."""
    sig = signature(state)
    out = []
    seen: set[tuple[str, ...]] = set()
    for tpl in templates():
        if tpl.signature != sig or tpl.keys == tuple(state) or tpl.keys in seen:
            continue
        seen.add(tpl.keys)
        out.append((tpl, dict(zip(state, tpl.keys, strict=True))))
    return out


def describe_renames(mapping: Mapping[str, str]) -> dict[str, str]:
    """The module-name changes behind a key map, e.g. ``{"block": "conv_block"}``."""
    names: dict[str, str] = {}
    for src, dst in mapping.items():
        a, b = src.split("."), dst.split(".")
        if len(a) == len(b):
            for x, y in zip(a, b, strict=True):
                if x != y:
                    names.setdefault(x, y)
        elif src != dst:
            names.setdefault(src.rsplit(".", 1)[0], dst.rsplit(".", 1)[0])
    return names


def _same_up_to_width(got: tuple[int, ...], want: tuple[int, ...], ratio: float) -> bool:
    """Every dimension equal, or the template's scaled by the file's width ratio (ngf 4 against 64)."""
    return len(got) == len(want) and all(g == w or abs(g - w * ratio) < 0.5 for g, w in zip(got, want, strict=True))


def _follow(tpl: Template, sig: Signature, shapes: list[tuple[int, ...]]) -> int:
    """How many leading tensors of the file follow the template: parameter name, rank, and shape up to width."""
    ratio = shapes[0][0] / tpl.shapes[0][0] if shapes and shapes[0] and tpl.shapes and tpl.shapes[0] else 1.0
    n = 0
    for (name, rank), want in zip(tpl.signature, tpl.shapes, strict=True):
        if n >= len(sig) or sig[n] != (name, rank) or not _same_up_to_width(shapes[n], want, ratio):
            break
        n += 1
    return n


def closest(state: State) -> str:
    """The template the file follows longest, and the first tensor where it stops following it."""
    sig = signature(state)
    keys = list(state)
    shapes = [tuple(v.shape) for v in state.values()]
    best: tuple[int, int, Template] | None = None
    for tpl in templates():
        n = _follow(tpl, sig, shapes)
        names = set(tpl.keys)
        score = (n, sum(1 for k in keys[:n] if k in names))
        if best is None or score > best[:2]:
            best = (*score, tpl)
    if best is None or best[0] == 0:
        return "no registered family starts like it"
    n, _, tpl = best
    total = len(tpl.keys)
    if n < len(sig) and n < total:
        want = f"{tpl.keys[n]!r} ({'x'.join(map(str, tpl.shapes[n])) or 'scalar'} at default widths)"
        where = f"disagrees at tensor {n + 1} of {len(sig)}, {keys[n]!r} {shapes[n]}, where {tpl.arch} has {want}"
    elif n < total:
        where = f"the file ends after {n} tensors, where {tpl.arch} has {total} (next: {tpl.keys[n]!r})"
    else:
        where = f"the file has {len(sig) - total} tensors more than {tpl.arch}, from {keys[n]!r}"
    return f"closest is {tpl.label()} [{tpl.family}]: the first {n} tensors line up; {where}"
