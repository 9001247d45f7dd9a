"""Channel pruning of a teacher into a narrower student of the same family, initialised from its weights.

``prune_model(teacher, ratio, method)`` returns the student that ``create_model`` builds at ``ratio``
times the family's width argument (``ngf``, ``channels``), with each channel group filled from the
teacher channels ranked most important, and the kept indices recorded for the student's config.

Which channels belong together is found by tracing, not written per family: one forward pass runs
under a ``TorchFunctionMode`` that labels every channel (dimension 1 of activations) and follows
the labels through layers (a conv's output is a new group; its input dimension must keep the same
channels as whatever produced its input), element-wise ops (a residual ``x + f(x)`` ties the
channels of both operands into one group, which is the skip-connection constraint of ResNets),
concatenations (a U-Net's skip ``cat([x, f(x)])`` gives the next layer an input made of two
groups, each pruned on its own) and reshapes. The model's input and output channels are fixed.
Layers whose arithmetic the tracer cannot follow declare their channel rule: the standard ones here with
:func:`channel_rule`, a family's own layers (StyleGAN2's modulated convolution, which builds per-sample
weights) in its registry entry (``@register_model(..., pruning={"rules": ...})``, :func:`model_pruning`).

Importance (per channel, summed over the group's producing weights):

- ``l1``: L1 norm of the weights that produce the channel (Li et al. 2017; CAGC's and GCC's baseline);
- ``gradient``: first-order Taylor estimate of the output change when the channel is removed,
  ``E_r[(Σ w ⊙ ∂<G(x), r>/∂w)²]`` with r ~ N(0, I) over generated (or ``calib``) inputs;
- ``content``: the same restricted to a content mask, ``<m ⊙ G(x), r>`` (CAGC's content-aware
  importance; the mask comes from a callable or a folder of mask images, since the face-parsing
  network CAGC used has no weights here).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from distill.errors import ConfigError
from distill.registry import create_model, model_info, model_meta

log = logging.getLogger(__name__)

METHODS = ("l1", "gradient", "content")
Label = tuple[int, int]  # (group id, index in the group)

# ops that reduce over dimensions: losing the channel dimension there mixes nothing into a later layer
_REDUCTIONS = {"mean", "sum", "var", "std", "amax", "amin", "norm", "var_mean", "std_mean", "max", "min", "square"}
_BINARY = {"add", "sub", "mul", "div", "lerp", "where", "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__",
           "__isub__", "__mul__", "__rmul__", "__imul__", "__truediv__", "__rtruediv__", "__itruediv__", "add_",
           "mul_", "sub_", "div_", "maximum", "minimum"}

_RULES: dict[type, Callable[[ChannelTracer, str, nn.Module, tuple, Any], None]] = {}


def channel_rule(*classes: type) -> Callable:
    """Declare how a layer maps channels: ``rule(tracer, prefix, module, inputs, output)``.

    The tracer does not look inside a module that has a rule; the rule labels ``output`` with
    :meth:`ChannelTracer.track` and ties parameter dimensions with :meth:`ChannelTracer.couple`.
    """

    def decorator(fn: Callable) -> Callable:
        for cls in classes:
            _RULES[cls] = fn
        return fn

    return decorator


@dataclass
class Member:
    """Dimension ``dim`` of parameter/buffer ``name``: channel labels per position; ``out``: it produces them."""

    name: str
    dim: int
    labels: list[Label]
    out: bool = False


@dataclass
class ChannelGroups:
    """The traced structure: groups (root id -> size), fixed groups, and parameter dimensions."""

    sizes: dict[int, int]
    fixed: set[int]
    members: dict[tuple[str, int], Member]
    parent: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._roots: dict[int, int] = {}
        for g in self.parent:
            r = g
            while self.parent.get(r, r) != r:
                r = self.parent[r]
            self._roots[g] = r
        self._member_roots = {k: [(self.root(g), i) for g, i in m.labels] for k, m in self.members.items()}
        # per group: the parameter dimensions that hold it (producing ones first, for names and l1)
        self.keys_of: dict[int, list[tuple[str, int]]] = {}
        self.producers_of: dict[int, list[tuple[str, int]]] = {}
        for key, labels in self._member_roots.items():
            for r in dict.fromkeys(r for r, _ in labels):
                self.keys_of.setdefault(r, []).append(key)
                if self.members[key].out:
                    self.producers_of.setdefault(r, []).append(key)
        self._names = {}
        for r in self.sizes:
            key = (self.producers_of.get(r) or self.keys_of.get(r) or [None])[0]
            self._names[r] = f"{key[0]}:{key[1]}" if key else f"group{r}"

    def root(self, g: int) -> int:
        return self._roots.get(g, g)

    def roots(self) -> list[int]:
        return sorted(self.sizes)

    def member_roots(self, key: tuple[str, int]) -> list[Label]:
        return self._member_roots[key]

    def name(self, root: int) -> str:
        """A readable name: the first parameter dimension that produces the group (``model.1.weight:0``)."""
        return self._names[root]

    def scores(self, values: dict[str, torch.Tensor], reduce: Callable[[torch.Tensor, int], torch.Tensor],
               producers_only: bool = True) -> dict[int, torch.Tensor]:
        """Per group, per channel: the sum of ``reduce(values[name], dim)`` over the group's (producing,
        at least 2-d) parameter dimensions, or over all of them when it has no such producer."""
        per_key: dict[tuple[str, int], torch.Tensor] = {}
        out = {}
        for r, size in self.sizes.items():
            keys = [k for k in self.keys_of.get(r, []) if k[0] in values]
            if producers_only:
                keys = [k for k in self.producers_of.get(r, []) if k[0] in values and values[k[0]].ndim >= 2] or keys
            score = torch.zeros(size, dtype=torch.float64)
            for key in keys:
                if key not in per_key:
                    per_key[key] = reduce(values[key[0]].detach().double(), key[1])
                labels = self._member_roots[key]
                pos = [p for p, (rr, _) in enumerate(labels) if rr == r]
                score.index_add_(0, torch.tensor([labels[p][1] for p in pos], dtype=torch.long), per_key[key][pos])
            out[r] = score
        return out


class ChannelTracer(TorchFunctionMode):
    """Follows channel labels through one forward pass of ``model`` (see the module docstring)."""

    def __init__(self, model: nn.Module, rules: dict[type, Callable] | None = None):
        super().__init__()
        self.model = model
        self.rules = {**_RULES, **(rules or {})}
        self.names = {id(t): n for n, t in [*model.named_parameters(), *model.named_buffers()]}
        self.tensors: dict[int, tuple[torch.Tensor, list[Label], int]] = {}
        self.sizes: dict[int, int] = {}
        self.parent: dict[int, int] = {}
        self.fixed: set[int] = set()
        self.members: dict[tuple[str, int], Member] = {}
        self.depth = 0
        self._params = dict([*model.named_parameters(), *model.named_buffers()])

    # -- groups ----------------------------------------------------------------------------------
    def new_group(self, size: int, fixed: bool = False) -> list[Label]:
        g = len(self.sizes)
        self.sizes[g] = size
        self.parent[g] = g
        if fixed:
            self.fixed.add(g)
        return [(g, i) for i in range(size)]

    def _root(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def unify(self, a: Sequence[Label], b: Sequence[Label]) -> None:
        """The channels at each position of ``a`` and ``b`` are the same channels."""
        if len(a) != len(b):
            self.fix(a)
            self.fix(b)
            return
        for (ga, ia), (gb, ib) in zip(a, b, strict=True):
            ra, rb = self._root(ga), self._root(gb)
            if ia != ib:  # the same channel at different offsets: a pairing the pruner cannot keep consistent
                self.fixed.update((ra, rb))
            elif ra != rb:
                self.parent[rb] = ra
                if rb in self.fixed:
                    self.fixed.add(ra)

    def fix(self, labels: Iterable[Label]) -> None:
        self.fixed.update(self._root(g) for g, _ in labels)

    def member(self, name: str, dim: int, out: bool = False) -> list[Label]:
        """Labels of dimension ``dim`` of parameter ``name`` (a new group the first time)."""
        key = (name, dim)
        if key not in self.members:
            self.members[key] = Member(name, dim, self.new_group(self._params[name].shape[dim]), out)
        elif out:
            self.members[key].out = True
        return self.members[key].labels

    def couple(self, name: str, dim: int, labels: Sequence[Label] | None, out: bool = False) -> None:
        """Dimension ``dim`` of ``name`` indexes the channels ``labels`` (None: an untraced input)."""
        key = (name, dim)
        if key not in self.members and labels is not None and len(labels) == self._params[name].shape[dim]:
            self.members[key] = Member(name, dim, list(labels), out)  # e.g. a concatenation of two groups
            return
        own = self.member(name, dim, out)
        if labels is not None:
            self.unify(own, labels)

    # -- tensors ---------------------------------------------------------------------------------
    def track(self, t: torch.Tensor, labels: list[Label], dim: int = 1) -> None:
        self.tensors[id(t)] = (t, labels, dim)

    def labels(self, t: Any) -> list[Label] | None:
        entry = self.tensors.get(id(t)) if isinstance(t, torch.Tensor) else None
        return entry[1] if entry is not None and entry[0] is t else None

    def _entry(self, t: Any) -> tuple[list[Label], int] | None:
        entry = self.tensors.get(id(t)) if isinstance(t, torch.Tensor) else None
        return (entry[1], entry[2]) if entry is not None and entry[0] is t else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0:
            self._follow(getattr(func, "__name__", ""), args, kwargs, out)
        return out

    def _follow(self, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        if not isinstance(out, torch.Tensor):
            return
        if name == "cat":
            tensors = list(args[0]) if args else list(kwargs.get("tensors", []))
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            entries = [self._entry(t) for t in tensors]
            if not any(entries):
                return
            if dim % out.ndim == 1:
                parts: list[Label] = []
                for t, e in zip(tensors, entries, strict=True):
                    parts += e[0] if e and e[1] == 1 else self.new_group(t.shape[1], fixed=True)
                self.track(out, parts, 1)
            else:
                first = next(e for e in entries if e)
                for e in entries:
                    if e:
                        self.unify(first[0], e[0])
                self.track(out, first[0], first[1])
            return
        flat = [a for a in args if isinstance(a, torch.Tensor)] + [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
        tracked = [(t, self._entry(t)) for t in flat if self._entry(t)]
        if not tracked:
            return
        t0, (labels, dim0) = tracked[0]
        d_out = self._out_dim(t0, dim0, out, len(labels))
        if name in _BINARY:
            if d_out is None:
                self.fix(labels)
                return
            for t in flat:
                k = d_out - (out.ndim - t.ndim)
                e = self._entry(t)
                if e is not None:
                    if e[1] == k:
                        self.unify(labels, e[0])
                    elif t.ndim and t.shape[e[1]] > 1:
                        self.fix(e[0])
                elif id(t) in self.names and 0 <= k < t.ndim and t.shape[k] == len(labels) and len(labels) > 1:
                    self.couple(self.names[id(t)], k, labels)
            self.track(out, labels, d_out)
            return
        for _t, (other, _) in tracked[1:]:  # any other op: labelled inputs beyond the first are mixed in
            if other is not labels:
                self.fix(other)
        if d_out is not None:
            self.track(out, labels, d_out)
        elif name not in _REDUCTIONS:
            self.fix(labels)

    @staticmethod
    def _out_dim(t: torch.Tensor, dim: int, out: torch.Tensor, size: int) -> int | None:
        """Where the tracked dimension went: the same index, else the same index from the end."""
        if dim < out.ndim and out.shape[dim] == size and (out.ndim == t.ndim or dim == 1):
            return dim
        neg = dim - t.ndim + out.ndim
        if 0 <= neg < out.ndim and out.shape[neg] == size:
            return neg
        return None

    # -- modules with rules --------------------------------------------------------------------------
    def run(self, *inputs: Any, **kwargs: Any) -> ChannelGroups:
        handles = []
        prefixes = {id(m): n for n, m in self.model.named_modules()}
        for module in self.model.modules():
            rule = self.rules.get(type(module))
            if rule is None:
                continue
            handles.append(module.register_forward_pre_hook(self._enter))
            handles.append(module.register_forward_hook(self._make_exit(rule, prefixes[id(module)])))
        for x in inputs:
            if isinstance(x, torch.Tensor):
                self.track(x, self.new_group(x.shape[1], fixed=True), 1)
        try:
            with self:
                out = self.model(*inputs, **kwargs)
        finally:
            for h in handles:
                h.remove()
        labels = self.labels(out)
        if labels is not None:
            self.fix(labels)
        roots = {self._root(g) for g in self.sizes}
        return ChannelGroups({r: self.sizes[r] for r in roots}, {self._root(g) for g in self.fixed},
                             self.members, dict(self.parent))

    def _enter(self, module: nn.Module, inputs: tuple) -> None:
        self.depth += 1

    def _make_exit(self, rule: Callable, prefix: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            self.depth -= 1
            if self.depth == 0:
                rule(self, f"{prefix}." if prefix else "", module, inputs, output)

        return hook


# -- rules for the standard layers --------------------------------------------------------------------


def linear_like(tr: ChannelTracer, p: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor,
                 transposed: bool = False, groups: int = 1) -> None:
    labels = tr.labels(x)
    in_dim, out_dim = (0, 1) if transposed else (1, 0)
    if groups == 1:
        tr.couple(p + "weight", in_dim, labels)
        out_labels = tr.member(p + "weight", out_dim, out=True)
    elif labels is not None and groups == x.shape[1] == out.shape[1]:  # depthwise: channels pass through
        tr.couple(p + "weight", 0, labels, out=True)
        out_labels = labels
    else:
        if labels is not None:
            tr.fix(labels)
        out_labels = tr.member(p + "weight", out_dim, out=True)
        tr.fix(out_labels)
    if getattr(module, "bias", None) is not None:
        tr.couple(p + "bias", 0, out_labels, out=True)
    tr.track(out, out_labels, 1)


@channel_rule(nn.Conv2d, nn.Linear)
def _conv_rule(tr: ChannelTracer, p: str, m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
    linear_like(tr, p, m, inputs[0], out, groups=getattr(m, "groups", 1))


@channel_rule(nn.ConvTranspose2d)
def _conv_transpose_rule(tr: ChannelTracer, p: str, m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
    linear_like(tr, p, m, inputs[0], out, transposed=True, groups=m.groups)


@channel_rule(nn.BatchNorm2d, nn.InstanceNorm2d, nn.BatchNorm1d)
def _norm_rule(tr: ChannelTracer, p: str, m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
    labels = tr.labels(inputs[0])
    for name in ("weight", "bias", "running_mean", "running_var"):
        if getattr(m, name, None) is not None:
            tr.couple(p + name, 0, labels, out=name in ("weight", "bias"))
    if labels is not None:
        tr.track(out, labels, 1)




# -- importance --------------------------------------------------------------------------------------


def example_input(model: nn.Module, batch: int = 2, size: int | None = None) -> torch.Tensor:
    """An input of the generator's real distribution: N(0, 1) latents or images in [-1, 1]."""
    cfg = model.slimgan_config
    info, kw = model_info(cfg["arch"]), cfg["kwargs"]
    if info.input_kind == "latent":
        return torch.randn(batch, kw["nz"])
    side = size or max(32, info.size_multiple)
    return torch.rand(batch, kw.get("input_nc", kw.get("nc", 3)), side, side) * 2 - 1


def model_pruning(model: nn.Module) -> dict[str, Any]:
    """What the model's registry entry declares for pruning (``@register_model(..., pruning={...})``):
    ``rules`` (a callable returning ``{layer class: rule}`` for layers the tracer cannot follow) and
    ``forward_kwargs`` (arguments of the traced forward pass)."""
    cfg = getattr(model, "slimgan_config", None)
    return dict(model_meta(cfg["arch"]).get("pruning") or {}) if cfg else {}


def trace_channels(model: nn.Module, example: torch.Tensor | None = None) -> ChannelGroups:
    declared = model_pruning(model)
    rules = declared["rules"]() if "rules" in declared else None
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return ChannelTracer(model, rules).run(example if example is not None else example_input(model),
                                                   **declared.get("forward_kwargs", {}))
    finally:
        model.train(was)


def _sum(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.transpose(0, dim).reshape(t.shape[dim], -1).sum(1)


def _l1(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.abs().transpose(0, dim).reshape(t.shape[dim], -1).sum(1)


MaskFn = Callable[[torch.Tensor], torch.Tensor]


def mask_folder(folder: str | Path) -> MaskFn:
    """A mask callable from a folder of mask images (white = content), used in sorted order, resized."""
    from PIL import Image

    from distill.data.datasets import list_images, read_image, to_tensor

    files = list_images(folder)
    state = {"next": 0}

    def fn(images: torch.Tensor) -> torch.Tensor:
        masks = []
        for _ in range(images.shape[0]):
            img = read_image(files[state["next"] % len(files)], channels=1)
            state["next"] += 1
            img = img.resize((images.shape[-1], images.shape[-2]), Image.BILINEAR)
            masks.append((to_tensor(img) + 1) / 2)
        return torch.stack(masks).to(images)

    return fn


def taylor_scores(model: nn.Module, groups: ChannelGroups, inputs: Iterable[torch.Tensor],
                  mask_fn: MaskFn | None = None, probes: int = 4, seed: int = 0) -> dict[int, torch.Tensor]:
    """``E[(Σ_{producers of c} w ⊙ ∂<m ⊙ G(x), r>/∂w)²]`` per channel c of every group (first-order Taylor)."""
    params = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(seed)
    totals = {r: torch.zeros(s, dtype=torch.float64) for r, s in groups.sizes.items()}
    was = model.training
    model.eval()
    try:
        count = 0
        for x in inputs:
            with torch.no_grad():
                mask = None
                if mask_fn is not None:
                    mask = mask_fn(model(x)).to(x.dtype)
            for _ in range(probes):
                model.zero_grad(set_to_none=True)
                out = model(x)
                r = torch.randn(out.shape, generator=gen).to(out)
                target = out * mask if mask is not None else out
                (target * r).sum().backward()
                wg = {n: p.detach() * p.grad for n, p in params.items() if p.grad is not None}
                for root, score in groups.scores(wg, _sum, producers_only=False).items():
                    totals[root] += score**2
                count += 1
        model.zero_grad(set_to_none=True)
    finally:
        model.train(was)
    return {r: t / max(1, count) for r, t in totals.items()}


# -- pruning ---------------------------------------------------------------------------------------


@dataclass
class PruneResult:
    student: nn.Module
    kept: dict[str, list[int]]
    sizes: dict[str, int]
    record: dict[str, Any]


def student_kwargs(teacher: nn.Module, ratio: float) -> dict[str, Any]:
    cfg = teacher.slimgan_config
    info = model_info(cfg["arch"])
    if not 0 < ratio <= 1:
        raise ConfigError(f"--ratio must be in (0, 1] (the fraction of channels kept), got {ratio}")
    kwargs = dict(cfg["kwargs"])
    kwargs[info.width_arg] = max(1, int(round(kwargs[info.width_arg] * ratio)))
    return kwargs


def _index_lists(groups: ChannelGroups, key: tuple[str, int], kept: dict[int, list[int] | set[int]]) -> list[int]:
    """Positions along parameter dimension ``key`` whose channel is kept."""
    return [pos for pos, (r, i) in enumerate(groups.member_roots(key)) if i in kept[r]]


def prune_model(teacher: nn.Module, ratio: float, method: str = "l1", *, inputs: Iterable[torch.Tensor] | None = None,
                mask_fn: MaskFn | None = None, num_batches: int = 4, batch_size: int = 8, seed: int = 0) -> PruneResult:
    """Prune ``teacher`` (built by ``create_model``) to ``ratio`` of its width; see the module docstring.

    ``inputs``: batches to score ``gradient`` / ``content`` on (default: ``num_batches`` generated
    batches: latents, or images in [-1, 1]). ``mask_fn(images) -> (B, 1, H, W)`` gives the content
    mask for ``content``.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown pruning method {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "content" and mask_fn is None:
        raise ConfigError("pruning method 'content' needs a content mask: --masks DIR (or mask_fn in Python)")
    cfg = teacher.slimgan_config
    teacher = teacher.cpu()
    torch.manual_seed(seed)
    example = example_input(teacher)
    student = create_model(cfg["arch"], **student_kwargs(teacher, ratio))
    tg = trace_channels(teacher, example)
    sg = trace_channels(student, example)
    t_state, s_state = teacher.state_dict(), student.state_dict()
    if set(t_state) != set(s_state):
        raise ConfigError(f"{cfg['arch']}: teacher and student at ratio {ratio} have different layers")
    # each teacher group -> the student's group at the same parameter dimensions (its size = channels kept)
    mapping: dict[int, int] = {}
    for key in tg.members:
        if key not in sg.members:
            raise ConfigError(f"{cfg['arch']}: tracing found {key[0]} dim {key[1]} in the teacher only")
        t_runs, s_runs = _runs(tg.member_roots(key)), _runs(sg.member_roots(key))
        if len(t_runs) != len(s_runs):
            raise ConfigError(f"{cfg['arch']}: channel groups of teacher and student differ at {key[0]}")
        for rt, rs in zip(t_runs, s_runs, strict=True):
            if mapping.setdefault(rt, rs) != rs:
                raise ConfigError(f"{cfg['arch']}: channel groups of teacher and student differ at {key[0]}")
    target = {rt: sg.sizes[rs] for rt, rs in mapping.items()}
    for rt, k in target.items():
        if rt in tg.fixed and k != tg.sizes[rt]:
            raise ConfigError(
                f"{cfg['arch']}: channels {tg.name(rt)} cannot be pruned (they reach the input or output, or are "
                "mixed by an op the tracer cannot follow), but the narrower constructor changes them")
    if method == "l1":
        scores = tg.scores(dict(teacher.named_parameters()), _l1)
    else:
        if inputs is None:
            gen = torch.Generator().manual_seed(seed)
            inputs = [_sample_like(example, batch_size, gen) for _ in range(num_batches)]
        scores = taylor_scores(teacher, tg, inputs, mask_fn if method == "content" else None, seed=seed)
    kept: dict[int, list[int]] = {}
    for r, size in tg.sizes.items():
        k = target.get(r, size)
        order = torch.argsort(scores[r] if r in scores else torch.zeros(size), descending=True, stable=True)
        kept[r] = sorted(int(i) for i in order[:k])
    kept_sets = {r: set(v) for r, v in kept.items()}
    new_state = {}
    for name, value in t_state.items():
        out = value
        for dim in range(value.ndim):
            if (name, dim) in tg.members:
                out = out.index_select(dim, torch.tensor(_index_lists(tg, (name, dim), kept_sets), dtype=torch.long))
        if tuple(out.shape) != tuple(s_state[name].shape):
            raise ConfigError(f"{cfg['arch']}: {name} pruned to {tuple(out.shape)} but the student has "
                              f"{tuple(s_state[name].shape)}; the tracer missed a channel dependency there")
        new_state[name] = out.clone()
    student.load_state_dict(new_state)
    _match_runtime_scales(student, teacher)
    named = {tg.name(r): kept[r] for r in tg.sizes if target.get(r, tg.sizes[r]) != tg.sizes[r]}
    sizes = {tg.name(r): tg.sizes[r] for r in tg.sizes if target.get(r, tg.sizes[r]) != tg.sizes[r]}
    record = {"ratio": ratio, "method": method, "teacher_kwargs": cfg["kwargs"],
              "groups": {n: {"teacher_channels": sizes[n], "kept": named[n]} for n in named}}
    src = getattr(teacher, "slimgan_checkpoint", None)
    if src:
        record.update(teacher=src["path"], teacher_sha256=src["sha256"])
    student.slimgan_pruned = record
    return PruneResult(student, named, sizes, record)


def _runs(labels: list[Label]) -> list[int]:
    """The groups along one dimension in order, one entry per run (a concatenation [A, B] gives [A, B])."""
    runs: list[int] = []
    for r, _ in labels:
        if not runs or runs[-1] != r:
            runs.append(r)
    return runs


def _match_runtime_scales(model: nn.Module, reference: nn.Module) -> None:
    """Equalised-learning-rate layers multiply ``weight`` by a fan-in dependent ``scale`` at run time
    (StyleGAN2); rescale the stored weights so that ``model`` computes with ``reference``'s effective weights."""
    ref = dict(reference.named_modules())
    with torch.no_grad():
        for name, module in model.named_modules():
            other = ref.get(name)
            scale, ref_scale = getattr(module, "scale", None), getattr(other, "scale", None)
            if isinstance(scale, float) and isinstance(ref_scale, float) and scale != ref_scale:
                module.weight.mul_(ref_scale / scale)


def _sample_like(example: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
    if example.ndim == 2:
        return torch.randn(batch, example.shape[1], generator=gen)
    return torch.rand(batch, *example.shape[1:], generator=gen) * 2 - 1


def unprune_state_dict(student: nn.Module, teacher_like: nn.Module, kept: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """The student's weights placed at their kept positions in a teacher-shaped state dict, zeros elsewhere.

    The teacher-shaped model then computes exactly what the student computes (pruned channels are
    produced and consumed by zero weights), which is what the tests check pruning against.
    """
    tg = trace_channels(teacher_like)
    by_name = {tg.name(r): r for r in tg.sizes}
    kept_roots = {r: list(range(s)) for r, s in tg.sizes.items()}
    for name, idx in kept.items():
        if name not in by_name:
            raise ConfigError(f"kept channels for unknown group {name!r}")
        kept_roots[by_name[name]] = idx
    kept_roots = {r: set(v) for r, v in kept_roots.items()}
    s_state = student.state_dict()
    full = {}
    for name, value in teacher_like.state_dict().items():
        target = torch.zeros_like(value)
        index = []
        for dim in range(value.ndim):
            ids = _index_lists(tg, (name, dim), kept_roots) if (name, dim) in tg.members else list(range(value.shape[dim]))
            shape = [1] * value.ndim
            shape[dim] = len(ids)
            index.append(torch.tensor(ids, dtype=torch.long).view(shape))
        if value.ndim:
            target[tuple(index)] = s_state[name]
        else:
            target = s_state[name].clone()
        full[name] = target
    shaped = copy.deepcopy(teacher_like)
    shaped.load_state_dict(full)
    _match_runtime_scales(shaped, student)
    return shaped.state_dict()


def prune_checkpoint(teacher_dir: str | Path, out: str | Path, ratio: float, method: str = "l1",
                     calib: str | Path | None = None, masks: str | Path | None = None, num_batches: int = 4,
                     batch_size: int = 8, seed: int = 0) -> PruneResult:
    """``slimgan prune``: load ``teacher_dir``, prune, write the student checkpoint to ``out``."""
    from distill.checkpoint import load_checkpoint, save_checkpoint

    teacher = load_checkpoint(teacher_dir)
    inputs = None
    if calib is not None:
        inputs = list(_calibration_batches(teacher, calib, batch_size, num_batches))
    result = prune_model(teacher, ratio, method, inputs=inputs, mask_fn=mask_folder(masks) if masks else None,
                         num_batches=num_batches, batch_size=batch_size, seed=seed)
    save_checkpoint(result.student, out, provenance={"pruned": result.record})
    return result


def _calibration_batches(teacher: nn.Module, calib: str | Path, batch_size: int, num_batches: int):
    """Batches of calibration images (image-to-image teachers) resized to a multiple of the size step."""
    from PIL import Image

    from distill.data.datasets import list_images, read_image, to_tensor

    info = model_info(teacher.slimgan_config["arch"])
    if info.input_kind != "image":
        raise ConfigError("--calib is for image-to-image teachers; a latent generator is scored on its own samples")
    nc = teacher.slimgan_config["kwargs"].get("input_nc", 3)
    files = list_images(calib)
    step = info.size_multiple
    batch: list[torch.Tensor] = []
    made, side = 0, 0
    for f in files:
        img = read_image(f, channels=nc)
        side = side or max(step, int(math.ceil(min(img.size) / step)) * step)  # one size per batch
        batch.append(to_tensor(img.resize((side, side), Image.BICUBIC)))
        if len(batch) == batch_size:
            yield torch.stack(batch)
            made, batch = made + 1, []
            if made == num_batches:
                return
    if batch:
        yield torch.stack(batch)


def ensure_pruned_init(student_cfg: Any, paths: dict[str, Path], config_dir: Path | None = None) -> None:
    """``student.prune``: write ``student.init`` by pruning the teacher generator, unless it exists already."""
    from distill.checkpoint import read_checkpoint_config
    from distill.registry import resolve_kwargs

    target = paths.get("student_init")
    if target is None:
        raise ConfigError("student.prune needs student.init: the checkpoint directory the pruned student goes to")
    if not target.is_dir():
        teacher = paths.get("teacher")
        if teacher is None:
            raise ConfigError("student.prune needs a teacher generator (teacher.checkpoint or teacher.auto)")
        p = student_cfg.prune

        def opt(value: str) -> Path | None:
            if not value:
                return None
            path = Path(value)
            return path if path.is_absolute() or config_dir is None or path.exists() else config_dir / path

        log.info("student.init %s missing: pruning %s to ratio %g (%s)", target, teacher, p.ratio, p.method)
        prune_checkpoint(teacher, target, p.ratio, p.method, calib=opt(p.calib), masks=opt(p.masks), seed=p.seed)
    made = read_checkpoint_config(target)
    kwargs = dict(student_cfg.kwargs)
    if student_cfg.width is not None:
        kwargs["width"] = student_cfg.width
    if student_cfg.ngf is not None:
        kwargs["ngf"] = student_cfg.ngf
    wanted = resolve_kwargs(student_cfg.arch, kwargs)
    if made["arch"] != student_cfg.arch or made["kwargs"] != wanted:
        raise ConfigError(f"student.init {target} holds {made['arch']}({made['kwargs']}) but the student section asks "
                          f"for {student_cfg.arch}({wanted}); match student.kwargs to the pruned width")
