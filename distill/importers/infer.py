"""Which registered architecture, at which widths, a reference state dict is: from key names and shapes.

Each family has a reader that proposes ``(arch, kwargs)`` from the keys it recognises; every proposal
is then *verified* by building the model and comparing every key and shape, so a reader can be
simple and a wrong guess never gets through. Two verified proposals from different families are an
ambiguity, reported with the flags that pick either one.

What leaves no trace in the weights is reported as assumed: dropout in U-Nets (the layer sits at the
end of a block and has no parameters), dropout rates, CAT's activation function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from distill.errors import CheckpointError, SlimganError

State = Mapping[str, torch.Tensor]


@dataclass
class Inferred:
    """One architecture that fits a state dict exactly."""

    arch: str
    kwargs: dict[str, Any]
    family: str
    source: str
    assumed: list[str] = field(default_factory=list)
    widths: str = ""  # a short width description for the one-line summary (e.g. the config string)

    def flags(self) -> str:
        """The ``slimgan import`` flags that select exactly this."""
        parts = [f"--arch {self.arch}"]
        for key, value in self.kwargs.items():
            if key == "config" and isinstance(value, str):
                parts.append(f"--config {value}")
            elif key in ("ngf", "ndf", "norm", "n_layers", "nz", "image_size"):
                parts.append(f"--{key.replace('_', '-')} {value}")
        return " ".join(parts)

    def summary(self) -> str:
        shown = {k: v for k, v in self.kwargs.items() if k != "config" or isinstance(v, str)}
        args = ", ".join(f"{k}={v}" for k, v in shown.items())
        line = f"{self.arch}({args})"
        if self.widths:
            line += f" widths {self.widths}"
        line += f" [{self.source}]"
        if self.assumed:
            line += f"; assumed: {'; '.join(self.assumed)}"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "kwargs": self.kwargs, "family": self.family, "source": self.source,
                "assumed": list(self.assumed), "widths": self.widths}


def _shape(state: State, key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return None if value is None else tuple(value.shape)


def _norm(state: State, conv_key: str, norm_key: str) -> str:
    """The norm after ``conv_key``: batch (affine weight and running stats), instance_affine (affine weight,
    no running stats), instance (no weight, the conv has a bias), else none.

    pix2pix's BatchNorm is affine and tracks statistics; its InstanceNorm keeps neither unless built with
    ``affine=True``, and only InstanceNorm gives the convs a bias. Old (pytorch < 0.4) InstanceNorm
    checkpoints carry running stats without a weight: still instance.
    """
    if f"{norm_key}.weight" in state:
        return "batch" if f"{norm_key}.running_mean" in state else "instance_affine"
    return "instance" if f"{conv_key}.bias" in state else "none"


def _io(state: State, first: str, last: str, transposed_last: bool = False) -> dict[str, int]:
    w_in, w_out = state[first], state[last]
    return {"input_nc": int(w_in.shape[1]), "output_nc": int(w_out.shape[1] if transposed_last else w_out.shape[0])}


def _last_index(state: State, prefix: str) -> int:
    idx = [int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()]
    return max(idx) if idx else -1


# --- readers: state -> proposals -------------------------------------------------------------------

def _resnet_like(state: State) -> list[Inferred]:
    """pix2pix ResnetGenerator, GAN Compression mobile / sub_mobile, OMGD mobile_resnet_deepest."""
    if _shape(state, "model.1.weight") is None or len(_shape(state, "model.1.weight")) != 4:
        return []
    if _shape(state, "model.1.weight")[2:] != (7, 7):
        return []
    last = _last_index(state, "model.")
    io = _io(state, "model.1.weight", f"model.{last}.weight")
    ngf = int(state["model.1.weight"].shape[0])
    norm = _norm(state, "model.1", "model.2")
    out: list[Inferred] = []
    if "model.7.conv_block.1.weight" in state:  # an expansion block right after the first downsampler
        out.append(Inferred("mobile_resnet_deepest", {**io, "ngf": ngf, "norm": norm}, "mobile_resnet_deepest", "OMGD",
                            ["dropout_rate 0 (no trace in the weights)"]))
        return out
    blocks = []
    i = 10
    while any(k.startswith(f"model.{i}.conv_block.") for k in state):
        blocks.append(i)
        i += 1
    if not blocks:
        return []
    if f"model.{blocks[0]}.conv_block.1.weight" in state:  # plain 3x3 residual blocks
        # The second conv sits at index 5, or at 6 when a dropout layer precedes it (index 6 is a BatchNorm otherwise).
        dropout = len(_shape(state, f"model.{blocks[0]}.conv_block.6.weight") or ()) == 4
        arch = {9: "resnet_9blocks", 6: "resnet_6blocks"}.get(len(blocks))
        if arch:
            assumed = ["dropout layer present (rate 0.5 in pix2pix; OMGD always inserts it)"] if dropout else []
            out.append(Inferred(arch, {**io, "ngf": ngf, "norm": norm, "use_dropout": dropout}, "resnet",
                                "pytorch-CycleGAN-and-pix2pix", assumed))
        return out
    if f"model.{blocks[0]}.conv_block.1.conv.0.weight" not in state or len(blocks) != 9:
        return []
    d = int(state["model.7.weight"].shape[0])
    inner = [int(state[f"model.{b}.conv_block.1.conv.2.weight"].shape[0]) for b in blocks]
    up0 = int(state["model.19.weight"].shape[1]) if "model.19.weight" in state else -1
    up1 = int(state["model.22.weight"].shape[1]) if "model.22.weight" in state else -1
    if all(w == d for w in inner) and d == 4 * ngf:
        out.append(Inferred("mobile_resnet_9blocks", {**io, "ngf": ngf, "norm": norm, "use_dropout": False}, "mobile_resnet",
                            "GAN Compression / OMGD", ["dropout off (no trace in the weights)"]))
    c1 = int(state["model.4.weight"].shape[0])
    stage = [inner[0], inner[3], inner[6]]
    if (norm != "batch" and c1 % 2 == 0 and d % 4 == 0 and up0 % 2 == 0 and all(w % 4 == 0 for w in stage)
            and all(inner[j] == stage[j // 3] for j in range(9))):
        channels = [ngf, c1 // 2, d // 4, *(w // 4 for w in stage), up0 // 2, up1]
        config = "_".join(map(str, channels))
        out.append(Inferred("sub_mobile_resnet_9blocks", {**io, "config": config, "norm": norm}, "sub_mobile_resnet",
                            "GAN Compression", ["dropout_rate 0 (no trace in the weights)"]))
    # The legacy layout: the first block of each three has the searched width, the others the trunk's.
    if (norm != "batch" and c1 % 2 == 0 and d % 4 == 0 and up0 % 2 == 0 and all(w % 4 == 0 for w in stage)
            and all(inner[j] == d for j in range(9) if j % 3) and any(w != d for w in stage)):
        head = [ngf, c1 // 2, d // 4]
        if stage[0] == stage[1] == stage[2]:  # GAN Compression's 6-number form
            channels = [*head, stage[0] // 4, up0 // 2, up1]
        else:
            channels = [*head, *(w // 4 for w in stage), up0 // 2, up1]
        config = "_".join(map(str, channels))
        out.append(Inferred("legacy_sub_mobile_resnet_9blocks", {**io, "config": config, "norm": norm}, "sub_mobile_resnet",
                            "GAN Compression (legacy)", ["dropout_rate 0 (no trace in the weights)"]))
    return out


def _unet_like(state: State) -> list[Inferred]:
    """pix2pix UnetGenerator (also OMGD's U-Net students) and OMGD's UnetDeepestGenerator."""
    first = _shape(state, "model.model.0.weight")
    if first is None or len(first) != 4 or first[2:] != (4, 4):
        return []
    deepest = "model.model.1.conv_block.1.weight" in state
    sub_outer, sub_mid = (3, 5) if deepest else (1, 3)
    up_outer = 7 if deepest else 3
    levels, prefix = 1, f"model.model.{sub_outer}"
    while f"{prefix}.model.1.weight" in state:
        levels += 1
        nxt = f"{prefix}.model.{sub_mid}"
        if f"{nxt}.model.1.weight" not in state:
            break
        prefix = nxt
    ngf = int(first[0])
    norm = _norm(state, f"model.model.{sub_outer}.model.1", f"model.model.{sub_outer}.model.2")
    io = _io(state, "model.model.0.weight", f"model.model.{up_outer}.weight", transposed_last=True)
    if deepest:
        if levels != 8:
            return []
        return [Inferred("unet_deepest_256", {**io, "ngf": ngf, "norm": norm}, "unet_deepest", "OMGD",
                         ["dropout_rate 0 (no trace in the weights)"])]
    arch = {8: "unet_256", 7: "unet_128"}.get(levels)
    if arch is None:
        return []
    return [Inferred(arch, {**io, "ngf": ngf, "norm": norm, "use_dropout": False}, "unet", "pytorch-CycleGAN-and-pix2pix / OMGD",
                     ["use_dropout leaves no trace in U-Net weights (eval output is the same either way)"])]


def _patchgan(state: State) -> list[Inferred]:
    first = _shape(state, "model.0.weight")
    if first is None or len(first) != 4 or first[2:] != (4, 4) or "model.1.weight" in state:
        return []
    convs = sorted(int(k.split(".")[1]) for k in state if k.startswith("model.") and k.endswith(".weight")
                   and len(state[k].shape) == 4)
    if len(convs) < 2 or int(state[f"model.{convs[-1]}.weight"].shape[0]) != 1:
        return []
    n_layers = len(convs) - 2
    ndf, input_nc = int(first[0]), int(first[1])
    norm = _norm(state, f"model.{convs[1]}", f"model.{convs[1] + 1}") if n_layers >= 1 else "batch"
    src = "pytorch-CycleGAN-and-pix2pix"
    if n_layers == 3:
        return [Inferred("basic", {"input_nc": input_nc, "ndf": ndf, "norm": norm}, "patchgan", src)]
    return [Inferred("n_layers", {"input_nc": input_nc, "ndf": ndf, "n_layers": n_layers, "norm": norm}, "patchgan", src)]


def _dcgan(state: State) -> list[Inferred]:
    first = _shape(state, "main.0.weight")
    if first is None or len(first) != 4 or "main.1.running_mean" not in state:
        return []
    convs = sorted(int(k.split(".")[1]) for k in state if k.startswith("main.") and k.endswith(".weight") and len(state[k].shape) == 4)
    last = _shape(state, f"main.{convs[-1]}.weight")
    image_size = 2 ** (len(convs) + 1)
    return [Inferred("dcgan", {"nz": int(first[0]), "ngf": int(last[0]), "nc": int(last[1]), "image_size": image_size}, "dcgan",
                     "pytorch/examples dcgan")]


def _transformer_net(state: State) -> list[Inferred]:
    w = _shape(state, "conv1.conv2d.weight")
    if w is None or "res1.conv1.conv2d.weight" not in state:
        return []
    return [Inferred("transformer_net", {"ngf": int(w[0])}, "transformer_net", "pytorch/examples fast_neural_style")]


def _inception(state: State) -> list[Inferred]:
    if "down_sampling.1.weight" not in state or "up_sampling.0.weight" not in state:
        return []
    down = [int(state[f"down_sampling.{i}.weight"].shape[0]) for i in (1, 4, 7)]
    up = [int(state[f"up_sampling.{i}.weight"].shape[1]) for i in (0, 3)]
    blocks = []
    for b in range(9):
        res, dw = [], []
        j = 0
        while f"features.{b}.res_ops.{j}.1.0.weight" in state:
            c, _, k, _ = state[f"features.{b}.res_ops.{j}.1.0.weight"].shape
            res.append([int(k), int(c)])
            j += 1
        j = 0
        while f"features.{b}.dw_ops.{j}.2.0.weight" in state:
            c, _, k, _ = state[f"features.{b}.dw_ops.{j}.2.0.weight"].shape
            dw.append([int(k), int(c)])
            j += 1
        blocks.append({"res": res, "dw": dw})
    affine = "down_sampling.2.weight" in state
    track = "down_sampling.2.running_mean" in state
    norm = "instance" if "down_sampling.1.bias" in state else "batch"
    io = {"input_nc": int(state["down_sampling.1.weight"].shape[1]), "output_nc": int(state["up_sampling.7.weight"].shape[0])}
    kernel_sizes = sorted({k for blk in blocks for k, _ in blk["res"] + blk["dw"]}) or [3, 5, 7]
    config = {"down": down, "blocks": blocks, "up": up}
    if all(blk == blocks[0] for blk in blocks):
        shape = f"9 x (res {' '.join(f'{k}:{c}' for k, c in blocks[0]['res'])}; dw {' '.join(f'{k}:{c}' for k, c in blocks[0]['dw'])})"
    else:
        shape = " | ".join(f"{sum(c for _, c in blk['res'])}+{sum(c for _, c in blk['dw'])}" for blk in blocks) + " (res+dw per block)"
    widths = f"down {'_'.join(map(str, down))}, blocks {shape}, up {'_'.join(map(str, up))}"
    kwargs = {**io, "ngf": down[0], "kernel_sizes": kernel_sizes, "norm": norm, "norm_affine": affine,
              "norm_track_running_stats": track, "config": config}
    return [Inferred("inception_9blocks", kwargs, "inception", "CAT", ["active_fn nn.ReLU, dropout_rate 0, norm_epsilon 1e-5 (no trace in the weights)"],
                     widths=widths)]


READERS: list[Callable[[State], list[Inferred]]] = [_resnet_like, _unet_like, _patchgan, _dcgan, _transformer_net, _inception]


def fits(arch: str, kwargs: dict[str, Any], state: State) -> str | None:
    """None when ``create_model(arch, **kwargs)`` has exactly ``state``'s keys and shapes, else the first difference."""
    from distill.registry import create_model

    try:
        with torch.device("meta"):
            model = create_model(arch, **kwargs)
    except SlimganError as exc:
        return str(exc)
    state = patch_instance_norm_state_dict(model, dict(state))
    return first_disagreement(model.state_dict(), state)


def patch_instance_norm_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop InstanceNorm running statistics that old reference checkpoints carry (pytorch < 0.4).

    The reference's ``__patch_instance_norm_state_dict`` removes ``running_mean`` / ``running_var``
    (when the module keeps none) and ``num_batches_tracked`` from InstanceNorm modules; this does the
    same for every InstanceNorm in ``model``.
    """
    state = dict(state)
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.modules.instancenorm._InstanceNorm):
            continue
        prefix = f"{name}." if name else ""
        for attr in ("running_mean", "running_var", "num_batches_tracked"):
            if getattr(module, attr, None) is None:
                state.pop(prefix + attr, None)
    return state


def first_disagreement(expected: Mapping[str, torch.Tensor], state: State) -> str | None:
    """The first key (in the model's order) that is missing, extra or of another shape; None if all agree."""
    for key, value in expected.items():
        if key not in state:
            return f"key {key!r} {tuple(value.shape)} is missing from the file"
        if tuple(state[key].shape) != tuple(value.shape):
            return f"key {key!r} has shape {tuple(state[key].shape)} in the file but {tuple(value.shape)} in the model"
    extra = [k for k in state if k not in expected]
    if extra:
        return f"key {extra[0]!r} {tuple(state[extra[0]].shape)} in the file has no place in the model"
    return None


def infer_candidates(state: State) -> list[Inferred]:
    """Every verified (arch, kwargs) that fits ``state`` exactly."""
    found: list[Inferred] = []
    for reader in READERS:
        try:
            proposals = reader(state)
        except (KeyError, IndexError, ValueError, TypeError):  # a partial match of another family's keys
            continue
        found += [p for p in proposals if fits(p.arch, p.kwargs, state) is None]
    return found


def infer_architecture(state: State, source: str = "state dict") -> Inferred:
    """The single family and widths that fit ``state``; CheckpointError when none or several do."""
    found = infer_candidates(state)
    if not found:
        keys = ", ".join(list(state)[:3])
        raise CheckpointError(
            f"{source}: no known architecture has these keys and shapes (first keys: {keys}); give --arch NAME "
            "(and its widths), or register the architecture as a slimgan.models plugin"
        )
    if len(found) > 1:
        options = "; ".join(f"{c.arch} [{c.source}]: {c.flags()}" for c in found)
        raise CheckpointError(f"{source} fits {len(found)} architectures with the same keys and shapes: {options}; "
                              "pick one with --arch")
    return found[0]
