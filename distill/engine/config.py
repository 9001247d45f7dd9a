"""Recipes: YAML read with ``yaml.safe_load`` into frozen dataclasses; unknown keys are errors.

A recipe has the sections of :class:`RunConfig`. ``--set section.key=value`` overrides any field
(the value is parsed as YAML, so ``--set train.steps=200`` is an int and ``--set eval.every=null``
is None); the key must exist (``loss.0.weight`` indexes the loss list; ``*.kwargs.*`` is free).

Paths may contain ``{out}`` (the run directory) and, when relative, are taken from the current
directory; a recipe path named inside a recipe (``teacher.auto.recipe``) is also looked up next to
the recipe that names it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distill.errors import ConfigError
from distill.safe_yaml import parse_yaml, read_yaml


@dataclass(frozen=True)
class SynthConfig:
    """Generate a procedural dataset into ``data.root`` when it is missing (``distill.data.synthesize``)."""

    task: str = "paired"  # paired | unpaired | unconditional
    num: int = 200
    num_test: int = 16
    size: int = 64
    seed: int = 0


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they are read (pix2pix / CycleGAN layouts)."""

    root: str = ""
    layout: str = "aligned"  # aligned | unaligned | folder
    direction: str = "AtoB"
    load_size: int = 0
    crop_size: int = 0
    flip: bool = False
    max_train: int = 0  # use only the first N training samples (0: all)
    synth: SynthConfig | None = None


@dataclass(frozen=True)
class PruneConfig:
    """Make ``student.init`` by pruning the teacher generator when it is missing (``slimgan prune``).

    ratio: fraction of the width kept; method: l1 | gradient | content (content needs ``masks``, a
    folder of mask images); calib: images to score on (image-to-image teachers).
    """

    ratio: float = 0.5  # fraction of the teacher's width kept
    method: str = "l1"  # channel importance: l1 | gradient | content
    calib: str = ""  # folder of images to score channels on (image-to-image teachers)
    masks: str = ""  # folder of content masks (method content)
    seed: int = 0  # seed of the latents or calibration order used for scoring


@dataclass(frozen=True)
class ModelConfig:
    """A registered architecture: ``arch`` plus ``ngf`` / ``ndf`` or a ``width`` multiplier, other args in ``kwargs``.

    ``init``: an optional checkpoint directory to start from. ``prune``: write ``init`` by pruning the
    teacher generator when it does not exist yet.
    """

    arch: str = ""
    width: float | None = None
    ngf: int | None = None
    ndf: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    init: str = ""
    prune: PruneConfig | None = None


@dataclass(frozen=True)
class DiscriminatorConfig:
    """A discriminator and its GAN objective.

    gan_mode: lsgan | vanilla (non-saturating BCE) | hinge | wgangp.
    conditional: D sees ``cat(input, image)`` (pix2pix); its ``input_nc`` is set to match.
    lr: its Adam learning rate (default ``train.lr``).
    """

    arch: str = ""
    width: float | None = None
    ndf: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    init: str = ""
    gan_mode: str = "lsgan"
    conditional: bool = False
    gp_weight: float = 10.0
    lr: float | None = None


@dataclass(frozen=True)
class TeacherAutoConfig:
    """Train the teacher with ``recipe`` when ``teacher.checkpoint`` is missing.

    The run goes to ``out``; its ``teacher/`` becomes the teacher generator and its
    ``discriminator/`` the teacher discriminator. ``share_data`` hands this run's ``data`` section
    to it; ``set`` adds ``key=value`` overrides; ``steps`` overrides ``train.steps``.
    """

    recipe: str = ""
    steps: int | None = None
    out: str = "{out}/cache/teacher"
    share_data: bool = True
    set: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CycleConfig:
    """A CycleGAN pair's objective (Zhu et al. 2017; the reference's defaults).

    lambda_cycle: λ_cyc on |G_B(G_A(a)) - a|₁ + |G_A(G_B(b)) - b|₁.
    lambda_identity: λ_id, relative to λ_cyc, on |G_A(b) - b|₁ + |G_B(a) - a|₁ (0 turns it off).
    pool_size: the history of generated images each D is trained on (0: the current fakes only).
    """

    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50


@dataclass(frozen=True)
class ExtraTeacherConfig:
    """One more online teacher trained beside the main one (OMGD's complementary wide and deep teachers).

    name: its label (``deep``): checkpoints go to ``teacher_<name>/`` (and ``teacher_<name>_best/``).
    model: its generator. online_discriminator / loss: its own D and teacher objective; when left out
    they copy ``teacher.online_discriminator`` / ``teacher.loss`` (fresh modules, never shared).
    """

    name: str = ""
    model: ModelConfig | None = None
    online_discriminator: DiscriminatorConfig | None = None
    loss: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher: generator G_t and/or discriminator D̄.

    mode: ``offline`` (frozen, ``no_grad``), ``online`` (trained concurrently with its own
    discriminator ``online_discriminator`` and ``loss`` terms, as in OMGD / CRD), or ``none``.
    use_generator: False when only D̄ is used (DGL-GAN).
    train_discriminator: update D̄ in the discriminator step (DGL-GAN ablation) instead of freezing it.
    extra: more online teachers (OMGD: ``model`` is the wide teacher, ``extra: [{name: deep, model:
    ...}]`` the deep one); their outputs reach the terms in ``ctx.extras["extra_teacher_outs"]``,
    where the output-level OMGD terms sum over them. Feature taps stay on the main teacher.
    eval_every: online teachers only: every that many steps evaluate each online teacher on the
    held-out split and keep its best weights (crd §4.1: "existing teachers are replaced if
    better-performing ones are found"); the student then distils from the best teacher, which is
    saved as ``teacher_best/``. Before the first evaluation it distils from the current teacher.
    0 turns selection off. eval_metric: what "better" means: fid (the crd paper's; needs
    ``eval.inception_weights``), psnr_gt (paired data), cycle_psnr (CycleGAN teachers: PSNR of
    G_B(G_A(a)) to a, this toolkit's stand-in when no Inception weights exist); "" picks fid, then
    psnr_gt, then cycle_psnr, whichever the run can compute.
    cyclegan: online teachers only: each online teacher is a CycleGAN pair (``model`` is G_A, G_B
    mirrors it, ``online_discriminator`` builds D_A and D_B) trained by the cycle objective on
    unpaired data instead of ``loss``; D_A is the student's D̄ (crd §3.3 updating-freezing).
    target_mode: online teachers only: ``train`` (default) gives the student the teacher's
    train-mode output, as the OMGD and CRD reference code does (BatchNorm teachers then use batch
    statistics); ``eval`` gives the inference-mode output.
    update_every: online teachers only: the teachers take their step on every N-th student step
    (OMGD's ``n_dis``: 4 for its CycleGAN runs, 3 for Cityscapes, 1 otherwise); 1 = every step.
    discriminator_gan_mode: D̄'s objective when its checkpoint does not record one (an imported
    reference discriminator); checkpoints this toolkit writes carry it.
    """

    mode: str = "offline"
    checkpoint: str = ""
    discriminator: str = ""
    use_generator: bool = True
    train_discriminator: bool = False
    model: ModelConfig | None = None
    online_discriminator: DiscriminatorConfig | None = None
    loss: list[dict[str, Any]] = field(default_factory=list)
    auto: TeacherAutoConfig | None = None
    extra: list[ExtraTeacherConfig] = field(default_factory=list)
    eval_every: int = 0
    eval_metric: str = ""
    cyclegan: CycleConfig | None = None
    target_mode: str = "train"
    update_every: int = 1
    discriminator_gan_mode: str = ""


@dataclass(frozen=True)
class TrainConfig:
    """The loop: Adam(lr, (beta1, beta2)), constant until ``decay_start`` then linear decay to zero.

    lr_policy: ``linear`` (pix2pix / CycleGAN: constant, then linear decay to zero) or ``constant``
    (StyleGAN2 / BigGAN, kept by DGL-GAN). decay_start: step where the decay begins (None: half of
    ``steps``, as pix2pix's n_epochs / n_epochs_decay). ``*_every`` of 0 means only at the end.
    device: auto | cpu | cuda[:N].
    """

    steps: int = 1000
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_policy: str = "linear"
    decay_start: int | None = None
    log_every: int = 10
    sample_every: int = 0
    eval_every: int = 0
    save_every: int = 0
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: PSNR/SSIM to teacher and ground truth, Variance of Laplacian, FID.

    best_metric: the metric that selects ``best/`` ("" picks psnr_gt, then psnr_teacher, then fid).
    inception_weights: a pytorch-fid Inception weights file; FID is computed only when set.
    """

    num: int = 16
    batch_size: int = 8
    best_metric: str = ""
    inception_weights: str = ""
    num_samples: int = 4


@dataclass(frozen=True)
class MethodConfig:
    """Which training method drives the step (``generator`` by default, ``cyclegan``); extra keys go to it."""

    name: str = "generator"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    """A whole recipe."""

    method: MethodConfig = field(default_factory=MethodConfig)
    data: DataConfig = field(default_factory=DataConfig)
    student: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    discriminator: DiscriminatorConfig | None = None
    loss: list[dict[str, Any]] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    description: str = ""


# --------------------------------------------------------------------------------------------- #
# dict <-> dataclass


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _convert(tp: Any, value: Any, where: str) -> Any:
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where} must not be empty")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if origin is list or tp is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item_tp = (typing.get_args(tp) or (Any,))[0]
        if dataclasses.is_dataclass(item_tp):
            return [_convert(item_tp, v, f"{where}.{i}") for i, v in enumerate(value)]
        return list(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from ``data``; an unknown key is a :class:`ConfigError` that names it.

    ``MethodConfig`` is special: keys other than ``name`` go to its ``kwargs``.
    """
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    data = dict(data)
    if cls is MethodConfig:
        data = {"name": data.pop("name", "generator"), "kwargs": {**data.pop("kwargs", {}), **data}}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; valid keys there: {', '.join(names)}")
    values = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**values)


def to_dict(config: Any) -> dict[str, Any]:
    """The resolved config as plain data (what ``config.yaml`` holds)."""
    return dataclasses.asdict(config)


# --------------------------------------------------------------------------------------------- #
# overrides


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set expects section.key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects section.key=value, got {item!r}")
    try:
        value = parse_yaml(raw, f"--set {key}") if raw.strip() else ""
    except ConfigError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
    return key.split("."), value


def apply_override(raw: dict[str, Any], item: str) -> dict[str, Any]:
    """Apply one ``a.b.c=value`` to the raw recipe dict, checking the path against :class:`RunConfig`."""
    parts, value = _parse_override(item)
    if parts[0] == "generator":  # teacher recipes' name for the trained model
        parts[0] = "student"
    tp: Any = RunConfig
    node: Any = raw
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        tp, _ = _strip_optional(tp)
        if dataclasses.is_dataclass(tp):
            names = [f.name for f in dataclasses.fields(tp)]
            if tp is MethodConfig and part not in names:
                node = node.setdefault("kwargs", {}) if isinstance(node, dict) else node
                tp = Any
            elif part not in names:
                raise ConfigError(f"--set {where}: unknown key {part!r}; valid keys: {', '.join(names)}")
            else:
                tp = _hints(tp)[part]
        elif typing.get_origin(tp) is list or tp is list:
            if not part.isdigit() or not isinstance(node, list) or int(part) >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(f"--set {where}: {part!r} is not an index of a list of {size}")
            if last:
                node[int(part)] = value
                return raw
            node, tp = node[int(part)], (typing.get_args(tp) or (Any,))[0]
            continue
        else:  # dicts (kwargs, loss entries): free keys
            tp = Any
        if not isinstance(node, dict):
            raise ConfigError(f"--set {where}: the parent is not a mapping")
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {} if typing.get_origin(_strip_optional(tp)[0]) is not list else []
            node = node[part]
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                raw: dict[str, Any] | None = None) -> RunConfig:
    """Read a recipe (or take ``raw``), apply ``--set`` overrides, and validate it into a :class:`RunConfig`."""
    if raw is None:
        if path is None:
            raise ConfigError("no recipe given")
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"recipe {path} does not exist")
        raw = read_yaml(path) or {}  # aliases refused before anything expands them
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    raw = _deep_copy(raw)
    if "generator" in raw and "student" not in raw:  # teacher recipes may call the trained model so
        raw["student"] = raw.pop("generator")
    for item in overrides:
        apply_override(raw, item)
    return from_dict(RunConfig, raw, "config" if path is None else Path(path).name)


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


def save_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def resolve_path(value: str, out: str | Path, base: str | Path | None = None) -> Path:
    """Expand ``{out}`` and ``~``; a relative path is taken from the current directory, else from ``base``."""
    p = Path(str(value).replace("{out}", str(out))).expanduser()
    if not p.is_absolute() and base is not None and not p.exists() and (Path(base) / p).exists():
        return Path(base) / p
    return p
