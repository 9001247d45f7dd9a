"""``slimgan import``: a reference ``.pth`` (pix2pix/CycleGAN, GAN Compression, CAT, OMGD, pytorch/examples, or
a training checkpoint that wraps one) -> a slimgan checkpoint directory.

Every tensor dict in the file is a candidate (:mod:`distill.importers.reader`). A candidate fits a family
by its key names (:mod:`distill.importers.infer`) or, when its modules were named differently, by the
position, name and rank of its tensors (:mod:`distill.importers.structural`). Generators win over
discriminators and EMA weights over raw ones; two equally good candidates are an error that names both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.checkpoint import file_sha256, load_state_dict_checked, save_checkpoint
from distill.conventions import convention_for_family
from distill.errors import CheckpointError
from distill.importers.infer import (
    Inferred,
    first_disagreement,
    infer_candidates,
    patch_instance_norm_state_dict,
)
from distill.importers.reader import TensorDict, load_pth, select_path, tensor_dicts
from distill.importers.structural import closest, describe_renames, renamings
from distill.registry import create_model, model_info

# Families whose published checkpoints are compressed students (GAN Compression's mobile and searched
# sub-mobile generators, CAT's inception generators, OMGD's mobile students): imported as ``student``.
STUDENT_FAMILIES = frozenset({"mobile_resnet", "sub_mobile_resnet", "inception"})


@dataclass
class Match:
    """A candidate tensor dict, the architecture that fits it, and the key renaming that made it fit."""

    found: TensorDict
    inferred: Inferred | None
    arch: str
    kwargs: dict[str, Any]
    renamed: dict[str, str] | None = None

    def state(self) -> dict[str, torch.Tensor]:
        if not self.renamed:
            return dict(self.found.state)
        return {self.renamed[k]: v for k, v in self.found.state.items()}

    def notes(self) -> list[str]:
        notes = []
        if self.renamed:
            names = describe_renames(self.renamed)
            changed = sum(1 for k, v in self.renamed.items() if k != v)
            pairs = ", ".join(f"{a} -> {b}" for a, b in list(names.items())[:4])
            more = f" and {len(names) - 4} more" if len(names) > 4 else ""
            notes.append(f"renamed {pairs}{more} ({changed} keys, matched by layer order and shapes)")
        unwrapped = self.found.unwrapped()
        if unwrapped:
            notes.append("unwrapped " + ", ".join(unwrapped))
        return notes

    def rank(self) -> tuple[int, int, int]:
        """Lower is better: generators first, then EMA weights, then the outermost dict."""
        name = (self.found.path[-1] if self.found.path else "").lower()
        is_disc = model_info(self.arch).role == "discriminator"
        return (int(is_disc), int("ema" not in name), len(self.found.path))


def _fitting(found: TensorDict) -> list[Match]:
    """Every architecture that fits ``found`` by names, else by structure."""
    out = [Match(found, inf, inf.arch, inf.kwargs) for inf in infer_candidates(found.state)]
    if out:
        return out
    for _tpl, mapping in renamings(found.state):
        renamed = {mapping[k]: v for k, v in found.state.items()}
        out += [Match(found, inf, inf.arch, inf.kwargs, mapping) for inf in infer_candidates(renamed)]
    return out


def _describe(match: Match) -> str:
    return f"{match.found.where()}: {match.arch}"


def _pick(matches: list[Match], source: str) -> Match:
    best = min(m.rank() for m in matches)
    top = [m for m in matches if m.rank() == best]
    places = {id(m.found) for m in top}
    if len(places) > 1:
        options = "; ".join(_describe(m) for m in top)
        raise CheckpointError(f"{source} holds {len(places)} models that fit equally well ({options}); "
                              "pick one with --key")
    if len(top) > 1:
        options = "; ".join(f"{c.arch} [{c.inferred.source}]: {c.inferred.flags()}" for c in top if c.inferred)
        raise CheckpointError(f"{source} fits {len(top)} architectures with the same keys and shapes: {options}; "
                              "pick one with --arch")
    return top[0]


def _no_match(found: list[TensorDict], source: str) -> CheckpointError:
    largest = max(found, key=lambda f: len(f.state))
    keys = ", ".join(list(largest.state)[:3])
    where = f" in {largest.where()}" if largest.path or largest.subset else ""
    searched = f"; searched {len(found)} tensor dicts" if len(found) > 1 else ""
    return CheckpointError(
        f"{source}: no known architecture has these keys and shapes{where} (first keys: {keys}; "
        f"{closest(largest.state)}{searched}); give --arch NAME (and its widths), or register the architecture "
        "as a slimgan.models plugin"
    )


def _with_arch(found: list[TensorDict], arch: str, kwargs: dict[str, Any], source: str) -> Match:
    """The first candidate that ``arch`` (widths read off the file unless given) fits, by names or structure."""
    tried: list[tuple[Match, str]] = []
    for cand in found:
        options = [Match(cand, None, arch, {})]
        options += [Match(cand, None, arch, {}, mapping) for _tpl, mapping in renamings(cand.state)]
        for option in options:
            inferred = next((c for c in infer_candidates(option.state()) if c.arch == arch), None)
            option.inferred = inferred
            option.kwargs = {**(inferred.kwargs if inferred else {}), **kwargs}
            model = create_model(arch, **option.kwargs)
            problem = first_disagreement(model.state_dict(), patch_instance_norm_state_dict(model, option.state()))
            if problem is None:
                return option
            option.kwargs = model.slimgan_config["kwargs"]
            tried.append((option, problem))
    option, problem = min(tried, key=lambda t: (t[0].rank(), t[0].renamed is not None))
    args = ", ".join(f"{k}={v}" for k, v in option.kwargs.items() if k != "config" or isinstance(v, str))
    where = f" ({option.found.where()})" if option.found.path or option.found.subset else ""
    raise CheckpointError(f"{source}{where} is not {arch}({args}): {problem}; check --arch and the widths")


def find_model(path: str | Path, arch: str | None = None, key: str | None = None, **kwargs: Any) -> Match:
    """The model in ``path``: which tensor dict, which architecture and widths, which renaming."""
    source = str(path)
    found = tensor_dicts(load_pth(path))
    if not found:
        raise CheckpointError(f"{source} holds no tensors; it is not a model's weights")
    if key:
        found = select_path(found, key, source)
    if arch is not None:
        return _with_arch(found, arch, kwargs, source)
    matches = [m for cand in found for m in _fitting(cand)]
    if not matches:
        raise _no_match(found, source)
    match = _pick(matches, source)
    match.kwargs = {**match.kwargs, **kwargs}
    return match


def default_role(arch: str) -> str:
    """``discriminator`` for a discriminator, ``student`` for the compression papers' student families,
    ``teacher`` for every other generator (a reference model is what one distills from)."""
    info = model_info(arch)
    if info.role == "discriminator":
        return "discriminator"
    return "student" if info.family in STUDENT_FAMILIES else "teacher"


def import_reference(
    path: str | Path, arch: str | None, out: str | Path, role: str | None = None, key: str | None = None,
    **kwargs: Any,
) -> Path:
    """Convert a reference ``.pth`` into a checkpoint directory at ``out``.

    ``arch=None``: the architecture and every width are inferred from the keys and shapes (or, for renamed
    modules, from the layer order and shapes); two fitting families are an error naming both. With ``arch``
    given, unspecified widths are still read off the file and the result must fit it key for key: the
    error names the first key that disagrees. ``key`` picks one tensor dict in a file that holds several.
    ``config.json`` provenance records what was inferred, renamed and unwrapped, the source repository's
    pixel convention (:mod:`distill.conventions`) and what was dropped.

    ``role`` (recorded in the provenance) defaults to :func:`default_role`.
    """
    match = find_model(path, arch, key, **kwargs)
    info = model_info(match.arch)
    model = create_model(match.arch, **match.kwargs)
    raw = match.state()
    state = patch_instance_norm_state_dict(model, raw)
    load_state_dict_checked(model, state, source=str(path))
    provenance = _provenance(path, match, raw, state, role)
    if arch is not None:
        provenance["architecture"] = "given (--arch) and checked against the keys and shapes"
    provenance["reference"] = info.reference
    provenance["convention"] = convention_for_family(info.family, info.value_range)
    return save_checkpoint(model, out, provenance=provenance)


def _provenance(path: str | Path, match: Match, raw: dict, state: dict, role: str | None) -> dict[str, Any]:
    dropped = sorted(set(raw) - set(state))
    kinds: dict[str, int] = {}
    for name in dropped:
        kinds[name.rsplit(".", 1)[-1]] = kinds.get(name.rsplit(".", 1)[-1], 0) + 1
    how = "inferred from keys and shapes" if not match.renamed else "inferred from layer order and shapes"
    prov: dict[str, Any] = {
        "imported_from": str(Path(path).resolve()),
        "source_sha256": file_sha256(path),
        "role": role or default_role(match.arch),
        "architecture": how,
        "import": {
            "source_keys": len(raw), "kept_keys": len(state), "dropped_keys": len(dropped),
            "dropped_by_name": kinds,
            "dropped_reason": "InstanceNorm buffers the model does not keep "
                              "(running_mean / running_var / num_batches_tracked), dropped as the reference's loader does",
            "found_at": match.found.to_dict(),
        },
    }
    if match.renamed:
        prov["import"]["renamed"] = {
            "modules": describe_renames(match.renamed),
            "keys": {k: v for k, v in match.renamed.items() if k != v},
            "matched_by": "layer order, parameter names and shapes",
        }
    notes = match.notes()
    if match.inferred is not None:
        prov["inferred"] = match.inferred.to_dict()
        prov["inferred_summary"] = "; ".join([match.inferred.summary(), *notes])
    elif notes:
        prov["inferred_summary"] = "; ".join([match.arch, *notes])
    return prov
