"""The settings of one ``slimgan search`` run, from code defaults or a recipe (``configs/search/*.yaml``).

Two scales: the default (sized to finish within about 80 minutes on two idle cores, retries included: every training stage
also has a wall-clock limit, so a slower machine trains fewer steps rather than running over) and
``--quick``, a smoke test of the whole pipeline in minutes.

Recipe layout (every section and key optional)::

    supernet: {steps, batch, crop, lr, seed, time_limit_s}
    finetune: {steps, batch, crop, lr, seed, time_limit_s}
    search:   {population, generations, time_limit_s, tolerance_db, final_tolerance_db, retries, seed}
    data:     {holdout_every, max_photos}
    latency:  {rounds, min_time_s}
    space:    {stem: [...], down: [...], trunk: [...], inner: [...], depth: [...], up1: [...], up2: [...],
               block: [...], upsample: [...], norm: [...], groups: 3}
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distill.errors import ConfigError
from distill.safe_yaml import read_yaml
from distill.search.space import SearchSpace
from distill.search.train import TrainSettings


@dataclass
class SearchStage:
    population: int = 12
    generations: int = 3
    time_limit_s: float = 900.0
    tolerance_db: float = 0.3
    final_tolerance_db: float = 0.5
    retries: int = 2
    seed: int = 0


@dataclass
class DataSettings:
    holdout_every: int = 5
    max_photos: int | None = 150  # the teacher runs once per photo: this bounds that stage's time


@dataclass
class LatencySettings:
    rounds: int = 3
    min_time_s: float = 0.25


@dataclass
class SearchRecipe:
    supernet: TrainSettings = field(default_factory=lambda: TrainSettings(steps=3000, batch=4, crop=128, lr=1e-3,
                                                                          time_limit_s=30 * 60))
    finetune: TrainSettings = field(default_factory=lambda: TrainSettings(steps=1500, batch=4, crop=128, lr=2e-4,
                                                                          time_limit_s=6 * 60))
    search: SearchStage = field(default_factory=SearchStage)
    data: DataSettings = field(default_factory=DataSettings)
    latency: LatencySettings = field(default_factory=LatencySettings)
    space: SearchSpace = field(default_factory=SearchSpace)
    smoke_test: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = {k: asdict(getattr(self, k)) for k in ("supernet", "finetune", "search", "data", "latency")}
        return {**out, "space": self.space.to_dict(), "smoke_test": self.smoke_test}


def quick_recipe() -> SearchRecipe:
    """Minutes on a laptop: a few photos, a short supernet, one generation. Labelled a smoke test."""
    return SearchRecipe(
        supernet=TrainSettings(steps=80, batch=2, crop=64, lr=2e-3, time_limit_s=120),
        finetune=TrainSettings(steps=20, batch=2, crop=64, lr=5e-4, time_limit_s=30),
        search=SearchStage(population=6, generations=1, time_limit_s=180),
        data=DataSettings(holdout_every=4, max_photos=12),
        latency=LatencySettings(rounds=2, min_time_s=0.1),
        smoke_test=True,
    )


_SECTIONS = {"supernet": TrainSettings, "finetune": TrainSettings, "search": SearchStage, "data": DataSettings,
             "latency": LatencySettings}


def _section(base: Any, values: Any, name: str, source: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {name} must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: {name} has no key {', '.join(map(repr, unknown))}; keys: {', '.join(sorted(known))}")
    for key, value in values.items():
        current = getattr(base, key)
        if isinstance(current, int | float) and not isinstance(current, bool) and not isinstance(value, int | float):
            if value is not None or key not in ("time_limit_s", "max_photos"):
                raise ConfigError(f"{source}: {name}.{key} must be a number, got {value!r}")
    return dataclasses.replace(base, **values)


def load_recipe(path: str | Path | None, quick: bool = False) -> SearchRecipe:
    """The quick or default recipe, with a recipe file's values on top."""
    recipe = quick_recipe() if quick else SearchRecipe()
    if not path:
        return recipe
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a search recipe must be a mapping")
    unknown = sorted(set(data) - set(_SECTIONS) - {"space"})
    if unknown:
        raise ConfigError(f"{path}: unknown section {', '.join(map(repr, unknown))}; sections: "
                          f"{', '.join(sorted([*_SECTIONS, 'space']))}")
    for name in _SECTIONS:
        if name in data:
            setattr(recipe, name, _section(getattr(recipe, name), data[name], name, str(path)))
    if "space" in data:
        recipe.space = SearchSpace.from_dict(data["space"])
    return recipe
