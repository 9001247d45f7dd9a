"""``configs/SCHEMA.md``: the recipe format, generated from the config dataclasses and the registries.

Nothing here lists the keys by hand: the sections and keys come from walking :class:`RunConfig`'s
dataclasses (types from their annotations, defaults from their fields), the meanings from each
field's trailing ``# comment`` and from ``name: text`` entries in its class docstring, with
:data:`MEANINGS` filling in keys that carry neither. The loss terms and training methods come from
their registries (constructor arguments and defaults from their signatures). A key added to a
config dataclass therefore appears on the next regeneration::

    python -m distill.engine.schema            # rewrite configs/SCHEMA.md
    python -m distill.engine.schema --check    # exit 1 when it is stale (the test suite does this)
    slimgan schema [--check]                   # the same through the CLI
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import re
import sys
import tokenize
import types
import typing
from pathlib import Path
from typing import Any

from distill.engine.config import RunConfig

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "configs" / "SCHEMA.md"

# Meanings for keys whose dataclass has no comment or docstring entry for them ("Class.key").
MEANINGS: dict[str, str] = {
    "RunConfig.method": "the training method that drives each step",
    "RunConfig.data": "the dataset",
    "RunConfig.student": "the generator this run trains: the student (``slimgan distill``) or the teacher "
                         "(``slimgan train``; teacher recipes may call this section ``generator``)",
    "RunConfig.teacher": "the teacher to distil from",
    "RunConfig.discriminator": "the student's own discriminator (null: none; e.g. pure KD recipes)",
    "RunConfig.loss": "the student objective: a list of weighted terms, ``{name, weight, start?, stop?, ...}`` "
                      "(see *Loss terms* below); ``L_G = Σ weight·term`` is printed at start",
    "RunConfig.train": "the training loop and its learning-rate schedule",
    "RunConfig.eval": "held-out evaluation and sample grids",
    "RunConfig.description": "free text, kept in the resolved config.yaml",
    "SynthConfig.num": "training samples to generate",
    "SynthConfig.num_test": "held-out samples to generate",
    "SynthConfig.size": "image side in pixels",
    "SynthConfig.seed": "generation seed (the same seed gives the same files)",
    "SynthConfig.task": "which layout to generate",
    "DataConfig.root": "dataset folder (or the cache folder that ``synth`` fills); may contain ``{out}``",
    "DataConfig.layout": "pix2pix ``aligned`` (A|B side by side in train/ and test/), CycleGAN ``unaligned`` "
                         "(trainA/ trainB/ testA/ testB/) or an image ``folder`` (unconditional)",
    "DataConfig.direction": "``AtoB`` (left half is the input) or ``BtoA`` (right half is the input)",
    "DataConfig.load_size": "resize images to this side before cropping (0: keep the files' size)",
    "DataConfig.crop_size": "random crop side when training, centre crop when evaluating (0: no crop)",
    "DataConfig.flip": "random horizontal flips when training",
    "DataConfig.synth": "make a procedural dataset into ``root`` when it is missing (null: never)",
    "ModelConfig.arch": "a registered architecture (``slimgan info --arch NAME``)",
    "ModelConfig.width": "multiplier on the family's default ngf (0.25: a quarter-width student)",
    "ModelConfig.ngf": "generator width (overrides ``width``)",
    "ModelConfig.ndf": "discriminator width (for discriminator architectures)",
    "ModelConfig.kwargs": "other constructor arguments (``norm``, ``use_dropout``, ``input_nc``, ``nz``, ...)",
    "DiscriminatorConfig.arch": "a registered discriminator (``basic``, ``n_layers``, ``dcgan_discriminator``, ...)",
    "DiscriminatorConfig.width": "multiplier on the family's default ndf",
    "DiscriminatorConfig.ndf": "discriminator width (overrides ``width``)",
    "DiscriminatorConfig.kwargs": "other constructor arguments (``n_layers``, ``norm``, ...)",
    "DiscriminatorConfig.init": "an optional checkpoint directory to start from",
    "DiscriminatorConfig.gp_weight": "gradient-penalty weight for ``wgangp``",
    "TeacherAutoConfig.recipe": "teacher recipe (YAML) to run when the teacher checkpoint is missing",
    "TeacherAutoConfig.steps": "override the teacher recipe's ``train.steps``",
    "TeacherAutoConfig.out": "run directory of the teacher run; its ``teacher/`` is the teacher generator",
    "TeacherAutoConfig.share_data": "train the teacher on this recipe's ``data`` section",
    "TeacherAutoConfig.set": "``key=value`` overrides for the teacher recipe",
    "ExtraTeacherConfig.model": "its generator",
    "TeacherConfig.checkpoint": "teacher generator checkpoint directory (offline mode)",
    "TeacherConfig.discriminator": "teacher discriminator checkpoint D̄ (teacher-guided adversarial terms, DGL-GAN)",
    "TeacherConfig.model": "online mode: the teacher generator to build and train",
    "TeacherConfig.online_discriminator": "online mode: the teacher's own discriminator",
    "TeacherConfig.loss": "online mode: the teacher's objective (loss terms, as the student's)",
    "TeacherConfig.auto": "train the teacher first when ``checkpoint`` is missing",
    "TrainConfig.steps": "optimiser steps",
    "TrainConfig.batch_size": "images per step (per process under torchrun)",
    "TrainConfig.lr": "Adam learning rate (generator; discriminators use their own ``lr`` or this)",
    "TrainConfig.beta1": "Adam β1",
    "TrainConfig.beta2": "Adam β2",
    "TrainConfig.log_every": "write a metrics.csv row (and a progress line when not on a terminal) every N steps",
    "TrainConfig.sample_every": "write samples/step_N.png every N steps (0: at the end only)",
    "TrainConfig.eval_every": "evaluate on held-out data (and update best/) every N steps (0: at the end only)",
    "TrainConfig.save_every": "write the checkpoints and state.pt every N steps (0: at the end only)",
    "TrainConfig.amp": "mixed precision on CUDA (ignored on CPU)",
    "TrainConfig.seed": "seed of the data order, crops, latents and initialisation",
    "TrainConfig.progress": "show progress (a bar on a terminal, one line per log_every otherwise); "
                            "``--no-progress`` sets it false",
    "EvalConfig.num": "held-out samples evaluated",
    "EvalConfig.batch_size": "evaluation batch size",
    "EvalConfig.num_samples": "rows in each sample grid",
    "MethodConfig.name": "a registered training method (see *Training methods* below)",
    "MethodConfig.kwargs": "method arguments; any key other than ``name`` in the section goes here",
}


# ------------------------------------------------------------------------------------ extraction
def _field_comments(cls: type) -> dict[str, str]:
    """``{field: trailing comment}`` from the class source (``name: type = default  # comment``)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        line = lines[tok.start[0] - 1]
        m = re.match(r"\s*(\w+)\s*:", line)
        if m and m.group(1) in names and line.index("#") > 0:
            comments[m.group(1)] = tok.string.lstrip("#").strip()
    return comments


def _docstring_entries(cls: type) -> tuple[str, dict[str, str]]:
    """(intro, ``{field: text}``) from ``name: text`` (or ``a / b: text``) entries in the class docstring."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    if doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature, no real docstring
        return "", {}
    names = sorted((f.name for f in dataclasses.fields(cls)), key=len, reverse=True)
    alt = "|".join(re.escape(n) for n in names)
    # an entry starts a docstring line or a sentence: ``name: text`` or ``a / b: text``
    pattern = re.compile(rf"(^|\n|\. )[ \t]*((?:{alt})(?:\s*/\s*(?:{alt}))*):\s")
    text = re.sub(r"``(\w+)``:", r"\1:", doc)
    matches = list(pattern.finditer(text))
    intro = " ".join((text[: matches[0].start() + len(matches[0].group(1))] if matches else text).split())
    entries: dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() + len(matches[i + 1].group(1)) if i + 1 < len(matches) else len(text)
        body = " ".join(text[m.end():end].split())
        for name in re.split(r"\s*/\s*", m.group(2)):
            entries.setdefault(name, body)
    return intro, entries


def type_name(tp: Any) -> str:
    """A readable annotation: ``int | None``, ``list[dict[str, Any]]``, ``TeacherConfig``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "None"
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]" if args else getattr(origin, "__name__", str(origin))
    if tp is Any:
        return "Any"
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        return "{...}" if dataclasses.is_dataclass(value) else value
    return "(required)"


def _fmt_default(value: Any) -> str:
    if value == "{...}":
        return "(section defaults)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def _dataclasses_in(tp: Any) -> list[type]:
    if dataclasses.is_dataclass(tp):
        return [tp]
    return [c for a in typing.get_args(tp) for c in _dataclasses_in(a)]


def walk(root: type = RunConfig) -> list[tuple[str, type]]:
    """``(section path, dataclass)`` in document order: ``("", RunConfig)``, ``("data", DataConfig)``, ..."""
    out: list[tuple[str, type]] = []
    seen: set[tuple[str, type]] = set()

    def visit(path: str, cls: type) -> None:
        if (path, cls) in seen:
            return
        seen.add((path, cls))
        out.append((path, cls))
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            list_of = typing.get_origin(typing.get_args(tp)[0] if typing.get_args(tp) and
                                        typing.get_origin(tp) in (typing.Union, types.UnionType) else tp) is list
            for sub in _dataclasses_in(tp):
                visit(f"{path + '.' if path else ''}{f.name}{'[]' if list_of else ''}", sub)

    visit("", root)
    return out


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section_table(path: str, cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    intro, entries = _docstring_entries(cls)
    title = f"`{path}`" if path else "top level"
    lines = [f"### {title} ({cls.__name__})", ""]
    if intro:
        lines += [_md(intro), ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        parts = [p for p in (entries.get(f.name) or MEANINGS.get(f"{cls.__name__}.{f.name}"),
                             comments.get(f.name)) if p]
        meaning = "; ".join(dict.fromkeys(parts)) or "(undocumented)"
        lines.append(f"| `{f.name}` | `{_md(type_name(hints[f.name]))}` | {_md(_fmt_default(_default(f)))} | {_md(meaning)} |")
    return lines + [""]


def _first_paragraph(obj: Any) -> str:
    doc = inspect.cleandoc(obj.__doc__ or "")
    return " ".join(doc.split("\n\n")[0].split())


def loss_table() -> list[str]:
    from distill.losses import LOSSES, list_losses

    lines = ["## Loss terms (`loss:` and `teacher.loss:` entries)", "",
             "Every entry takes `name` (below), `weight` (default 1), `start` (a step, or a fraction of "
             "`train.steps` when in (0, 1); default 0) and `stop` (a step; default none); the other keys "
             "are the term's own arguments.", "",
             "| name | arguments (default) | what it is |", "|---|---|---|"]
    for name in list_losses():
        cls = LOSSES.get(name)
        params = [p for p in inspect.signature(cls.__init__).parameters.values()
                  if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        args = ", ".join(f"`{p.name}`" + ("" if p.default is p.empty else f" ({p.default!r})") for p in params) or "—"
        lines.append(f"| `{name}` | {_md(args)} | {_md(_first_paragraph(cls))} |")
    return lines + [""]


def method_arguments(cls: type) -> list[tuple[str, Any]]:
    """(name, default) of a method's own arguments: its ``options`` dataclass's fields, or the keyword
    arguments its constructor takes after (config, rt, paths)."""
    options = getattr(cls, "options", None)
    if options is not None and dataclasses.is_dataclass(options):
        return [(f.name, f.default) for f in dataclasses.fields(options)]
    params = list(inspect.signature(cls.__init__).parameters.values())[4:]
    return [(p.name, p.default) for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def method_table() -> list[str]:
    from distill.engine.factory import METHODS

    lines = ["## Training methods (`method.name`)", "", "| name | arguments (default) | what it is |", "|---|---|---|"]
    for name, cls in METHODS.items():
        args = ", ".join(f"`{n}`" + ("" if d is inspect.Parameter.empty else f" ({d!r})")
                         for n, d in method_arguments(cls)) or "—"
        lines.append(f"| `{name}` | {_md(args)} | {_md(_first_paragraph(cls))} |")
    return lines + [""]


def render_schema() -> str:
    """The whole ``configs/SCHEMA.md`` text."""
    lines = [
        "# Recipe schema",
        "",
        "<!-- Generated by `python -m distill.engine.schema` from the config dataclasses "
        "(distill/engine/config.py) and the loss / method registries. Do not edit by hand. -->",
        "",
        "A recipe is YAML read with `yaml.safe_load` into these frozen dataclasses; an unknown key is an "
        "error that names it. Any key can be overridden from the command line with "
        "`--set section.key=value` (the value is parsed as YAML; `loss.0.weight` indexes the loss list). "
        "Paths may contain `{out}` (the run directory). `slimgan info CKPT --layers` lists the module "
        "paths that `feature_kd` / `channel_distillation` `layers` entries name.",
        "",
        "## Sections",
        "",
    ]
    documented: dict[type, str] = {}
    for path, cls in walk():
        if cls in documented:
            lines += [f"### `{path}` ({cls.__name__})", "", f"The keys of `{documented[cls]}` above.", ""]
            continue
        documented[cls] = path or "top level"
        lines += section_table(path, cls)
    lines += loss_table()
    lines += method_table()
    return "\n".join(lines).rstrip() + "\n"


def write_schema(path: str | Path = SCHEMA_PATH) -> Path:
    path = Path(path)
    path.write_text(render_schema())
    return path


def schema_is_current(path: str | Path = SCHEMA_PATH) -> bool:
    path = Path(path)
    return path.is_file() and path.read_text() == render_schema()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.engine.schema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(SCHEMA_PATH), help=f"file to write (default {SCHEMA_PATH})")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from the dataclasses")
    args = parser.parse_args(argv)
    if args.check:
        if schema_is_current(args.out):
            print(f"{args.out} is up to date")
            return 0
        print(f"{args.out} is stale; regenerate it with: python -m distill.engine.schema", file=sys.stderr)
        return 1
    print(f"wrote {write_schema(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
