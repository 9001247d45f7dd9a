"""The search space of ``slimgan search`` and the genes that name one sub-network.

A sub-network is a dict of genes::

    {"stem": 16, "down": 32, "trunk": 64, "inner": [64, 64, 64], "depth": 9,
     "up1": 32, "up2": 16, "block": "separable", "upsample": "deconv", "norm": "instance"}

``inner`` gives the residual blocks' inner width per group (block ``i`` of the nine slots belongs to
group ``i * groups // max_depth``, GAN Compression's grouping); ``depth`` keeps the first blocks. The genes
above are the reference, ``mobile_resnet_9blocks`` at ngf 16. :func:`to_kwargs` turns genes into the
constructor arguments of the ``searchable_resnet`` zoo model.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

from distill.errors import ConfigError
from distill.models.searchable_resnet_generator import BLOCKS, NORMS, UPSAMPLES

WIDTH_GENES = ("stem", "down", "trunk", "up1", "up2")
CHOICE_GENES = ("block", "upsample", "norm")

REFERENCE_GENES: dict[str, Any] = {
    "stem": 16, "down": 32, "trunk": 64, "inner": [64, 64, 64], "depth": 9,
    "up1": 32, "up2": 16, "block": "separable", "upsample": "deconv", "norm": "instance",
}


@dataclass(frozen=True)
class SearchSpace:
    """Choices per gene. The largest of each width (and depth) sizes the supernet."""

    stem: tuple[int, ...] = (8, 12, 16)
    down: tuple[int, ...] = (16, 24, 32)
    trunk: tuple[int, ...] = (32, 48, 64)
    inner: tuple[int, ...] = (16, 32, 48, 64)
    depth: tuple[int, ...] = (4, 5, 6, 7, 8, 9)
    up1: tuple[int, ...] = (16, 24, 32)
    up2: tuple[int, ...] = (8, 12, 16)
    block: tuple[str, ...] = BLOCKS
    upsample: tuple[str, ...] = UPSAMPLES
    norm: tuple[str, ...] = NORMS
    groups: int = 3

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> SearchSpace:
        """From a recipe's ``space:`` mapping; unknown keys and empty or invalid choices are refused."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"search space has no gene {', '.join(map(repr, unknown))}; genes: {', '.join(sorted(known))}")
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key == "groups":
                kwargs[key] = int(value)
                continue
            if not isinstance(value, list | tuple) or not value:
                raise ConfigError(f"search space {key}: expected a non-empty list of choices, got {value!r}")
            kwargs[key] = tuple(value)
        space = cls(**kwargs)
        space.validate()
        return space

    def validate(self) -> None:
        for name in (*WIDTH_GENES, "inner", "depth"):
            if any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in getattr(self, name)):
                raise ConfigError(f"search space {name}: choices must be positive ints, got {list(getattr(self, name))}")
        for name, allowed in (("block", BLOCKS), ("upsample", UPSAMPLES), ("norm", NORMS)):
            bad = [v for v in getattr(self, name) if v not in allowed]
            if bad:
                raise ConfigError(f"search space {name}: {bad} not among {', '.join(allowed)}")
        if not 1 <= self.groups <= max(self.depth):
            raise ConfigError(f"search space groups={self.groups} must be between 1 and the largest depth {max(self.depth)}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def max_depth(self) -> int:
        return max(self.depth)

    def largest(self, rng: random.Random | None = None) -> dict[str, Any]:
        """Widest and deepest; the categorical genes drawn by ``rng`` (first choice without one)."""
        genes: dict[str, Any] = {g: max(getattr(self, g)) for g in WIDTH_GENES}
        genes.update(inner=[max(self.inner)] * self.groups, depth=self.max_depth)
        for g in CHOICE_GENES:
            choices = getattr(self, g)
            genes[g] = rng.choice(choices) if rng else choices[0]
        return genes

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """A uniformly drawn sub-network (GAN Compression's channel sampling, extended to every gene)."""
        genes: dict[str, Any] = {g: rng.choice(getattr(self, g)) for g in (*WIDTH_GENES, *CHOICE_GENES)}
        genes.update(inner=[rng.choice(self.inner) for _ in range(self.groups)], depth=rng.choice(self.depth))
        return genes

    def mutate(self, genes: dict[str, Any], rng: random.Random, prob: float = 0.2) -> dict[str, Any]:
        """Each gene (each group's inner width too) redrawn with probability ``prob``."""
        child = json.loads(json.dumps(genes))
        for g in (*WIDTH_GENES, *CHOICE_GENES, "depth"):
            if rng.random() < prob:
                child[g] = rng.choice(getattr(self, g))
        child["inner"] = [rng.choice(self.inner) if rng.random() < prob else w for w in child["inner"]]
        return child

    def crossover(self, a: dict[str, Any], b: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        child = {g: (a if rng.random() < 0.5 else b)[g] for g in (*WIDTH_GENES, *CHOICE_GENES, "depth")}
        child["inner"] = [(x if rng.random() < 0.5 else y) for x, y in zip(a["inner"], b["inner"], strict=True)]
        return child

    def contains(self, genes: dict[str, Any]) -> bool:
        if len(genes["inner"]) != self.groups or any(w > max(self.inner) for w in genes["inner"]):
            return False
        return all(genes[g] <= max(getattr(self, g)) for g in (*WIDTH_GENES, "depth")) and all(
            genes[g] in getattr(self, g) for g in CHOICE_GENES)


def block_group(index: int, groups: int, max_depth: int) -> int:
    return min(groups - 1, index * groups // max_depth)


def to_kwargs(genes: dict[str, Any], max_depth: int = 9) -> dict[str, Any]:
    """Genes -> ``searchable_resnet`` constructor arguments (without input_nc / output_nc)."""
    groups = len(genes["inner"])
    blocks = [int(genes["inner"][block_group(i, groups, max_depth)]) for i in range(int(genes["depth"]))]
    return {
        "stem": int(genes["stem"]), "down": int(genes["down"]), "trunk": int(genes["trunk"]),
        "blocks": blocks, "up": [int(genes["up1"]), int(genes["up2"])],
        "block": genes["block"], "upsample": genes["upsample"], "norm": genes["norm"],
    }


def arch_key(genes: dict[str, Any], max_depth: int = 9) -> str:
    """A canonical string naming the architecture (the latency cache's key)."""
    return json.dumps(to_kwargs(genes, max_depth), sort_keys=True, separators=(",", ":"))
