"""Exact ONNX graph rewrites that make convolutional generators faster on CPU runtimes (per target).

Torch-free passes on an ``onnx.ModelProto``. Each pass computes the same function as the graph it
replaces (up to float32 rounding: re-associated sums), and :func:`optimize_model` is applied to the
deployed ``model.onnx`` and, for a fair speedup, to the teacher graph it is timed against.

Why they help (ONNX Runtime's CPU provider, MLAS): convolutions run fastest in the blocked ``NCHWc``
layout, whose block is 8 (AVX2) or 16 (AVX-512) channels.

- :func:`convtranspose_to_subpixel`: ``ConvTranspose`` (kernel 3, stride 2, pads 1, output_padding 1)
  has no NCHWc kernel (it runs as GEMM + col2im). It equals a 2x2 ``Conv`` producing ``4 * C_out``
  channels on the input zero-padded by one row/column at the bottom/right, followed by
  ``DepthToSpace(2)`` (sub-pixel convolution, Shi et al. 2016): output pixel ``(2m + a, 2n + b)`` of a
  stride-2 transposed convolution only sees input taps ``m, m + 1`` (``n, n + 1``), with the phase
  ``(a, b)`` choosing which of the 3x3 kernel taps apply.
- :func:`conv_to_space_to_depth`: a stride-1 ``Conv`` with few output channels at full resolution (the
  7x7 head ``16 -> 3`` of a ResNet generator) wastes most of an NCHWc block (3 of 16 lanes). On a
  space-to-depth input (2x2 pixels folded into channels) the same convolution is a ``ceil((k+1)/2)``
  kernel producing ``4 * C_out`` channels at half resolution, then ``DepthToSpace(2)``.

Measured (ONNX Runtime 1.31 CPU, 2 intra-op threads without spinning, AVX-512, 1x3x256x256, interleaved
with the teacher, ``benchmarks/export_speed.py``): mobile_resnet_9blocks ngf 16 42.0 -> 34.4 ms median,
resnet_9blocks ngf 64 1026 -> 1009 ms (the teacher is not slowed). The head conv goes from about a fifth
of the student's time to about a tenth; ``DepthToSpace`` costs about 3 ms of what the rewrites save.

:func:`optimize_model` applies every pass and returns the model with a list of what it changed;
:func:`optimize_verified` also checks the result against the input graph in ONNX Runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)

# Ops that keep (N, C, H, W)'s spatial size: evenness of H, W propagates through them.
_SAME_SPATIAL = frozenset({"Relu", "LeakyRelu", "Tanh", "Sigmoid", "InstanceNormalization", "BatchNormalization", "Identity", "Clip"})


@dataclass
class GraphIndex:
    """Producer / consumer maps and initializers of a graph, rebuilt after each pass."""

    graph: onnx.GraphProto
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)
    inits: dict[str, onnx.TensorProto] = field(default_factory=dict)

    @classmethod
    def build(cls, graph: onnx.GraphProto) -> GraphIndex:
        idx = cls(graph)
        for node in graph.node:
            for out in node.output:
                idx.producer[out] = node
            for inp in node.input:
                idx.consumers.setdefault(inp, []).append(node)
        idx.inits = {t.name: t for t in graph.initializer}
        return idx

    def const(self, name: str) -> np.ndarray | None:
        """The value of an initializer or ``Constant`` output, else None."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def fresh(self, base: str) -> str:
        """A tensor name not used in the graph."""
        used = set(self.producer) | set(self.consumers) | set(self.inits)
        used |= {v.name for v in self.graph.input} | {v.name for v in self.graph.output}
        name, i = base, 0
        while name in used:
            i += 1
            name = f"{base}_{i}"
        self.inits.setdefault(name, onnx.TensorProto())  # reserve
        return name


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _add_init(graph: onnx.GraphProto, idx: GraphIndex, name: str, value: np.ndarray) -> str:
    name = idx.fresh(name)
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def _replace_node(graph: onnx.GraphProto, old: onnx.NodeProto, new_nodes: list[onnx.NodeProto]) -> None:
    """Put ``new_nodes`` where ``old`` was (keeps the topological order)."""
    nodes = list(graph.node)
    key = list(old.output)
    pos = next(i for i, n in enumerate(nodes) if list(n.output) == key)
    del graph.node[:]
    graph.node.extend(nodes[:pos] + new_nodes + nodes[pos + 1 :])


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _static_spatial(graph: onnx.GraphProto, name: str) -> tuple[int, int] | None:
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        if vi.name == name:
            dims = vi.type.tensor_type.shape.dim
            if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
                return int(dims[2].dim_value), int(dims[3].dim_value)
    return None


def spatial_is_even(idx: GraphIndex, name: str, even_inputs: bool = False, depth: int = 0) -> bool:
    """True when tensor ``name`` (N, C, H, W) provably has even H and W for every valid input size.

    Proof by local structure: a known static shape, a stride-2 ``ConvTranspose`` whose output is exactly
    twice its input, ``DepthToSpace`` with an even block, a ``Pad`` with even total pads on H and W of an
    even tensor, or a shape-preserving op on one; graph inputs count as even when ``even_inputs`` (the
    model's size multiple is even).
    """
    static = _static_spatial(idx.graph, name)
    if static is not None:
        return static[0] % 2 == 0 and static[1] % 2 == 0
    if depth > 64:
        return False
    if any(v.name == name for v in idx.graph.input):
        return even_inputs
    node = idx.producer.get(name)
    if node is None:
        return False
    if node.op_type in _SAME_SPATIAL:
        return spatial_is_even(idx, node.input[0], even_inputs, depth + 1)
    if node.op_type == "DepthToSpace":
        return int(_attrs(node)["blocksize"]) % 2 == 0
    if node.op_type == "ConvTranspose":
        a = _attrs(node)
        k, s = a.get("kernel_shape", [0, 0]), a.get("strides", [1, 1])
        p, op = a.get("pads", [0, 0, 0, 0]), a.get("output_padding", [0, 0])
        # out = s * (in - 1) + k - p_begin - p_end + output_padding; = s * in when the rest sums to s.
        return "output_shape" not in a and all(
            s[i] % 2 == 0 and k[i] - p[i] - p[i + 2] + op[i] == s[i] for i in range(2)
        )
    if node.op_type == "Pad" and len(node.input) > 1:
        pads = idx.const(node.input[1])
        if pads is None or pads.size != 8 or (len(node.input) > 3 and node.input[3]):
            return False
        return all((pads[i] + pads[i + 4]) % 2 == 0 for i in (2, 3)) and spatial_is_even(idx, node.input[0], even_inputs, depth + 1)
    if node.op_type in ("Add", "Mul", "Sub") and len(node.input) == 2:
        return any(spatial_is_even(idx, i, even_inputs, depth + 1) and idx.const(i) is None for i in node.input)
    return False


def _plain_conv(a: dict, ndim_kernel: int = 2) -> bool:
    return (
        a.get("group", 1) == 1
        and list(a.get("dilations", [1] * ndim_kernel)) == [1] * ndim_kernel
        and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )


# ------------------------------------------------------------------------------------------------
# ConvTranspose(k3, s2, p1, op1) -> Conv(k2, 4 C_out, pads bottom/right 1) + DepthToSpace(2)
# ------------------------------------------------------------------------------------------------

# For a stride-2, kernel-3, pad-1 transposed convolution (1-D): out[2m] = x[m] w[1];
# out[2m + 1] = x[m] w[2] + x[m + 1] w[0]. _TAP[phase][d] = kernel index used on x[m + d] (None: none).
_TAP = ((1, None), (2, 0))


def subpixel_weights(w: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """ConvTranspose weight ``(C_in, C_out, 3, 3)`` -> Conv weight ``(4 C_out, C_in, 2, 2)`` (+ bias x4).

    Output channel ``(2a + b) C_out + o`` is phase ``(a, b)`` of channel ``o``: the channel order of
    ``DepthToSpace(blocksize=2, mode="DCR")``.
    """
    c_in, c_out = w.shape[:2]
    conv = np.zeros((2, 2, c_out, c_in, 2, 2), dtype=w.dtype)
    for a in range(2):
        for bb in range(2):
            for dy in range(2):
                for dx in range(2):
                    ky, kx = _TAP[a][dy], _TAP[bb][dx]
                    if ky is not None and kx is not None:
                        conv[a, bb, :, :, dy, dx] = w[:, :, ky, kx].T
    bias = None if b is None else np.tile(b, 4).astype(b.dtype)
    return conv.reshape(4 * c_out, c_in, 2, 2), bias


def convtranspose_to_subpixel(model: onnx.ModelProto, split_phases: bool = False) -> int:
    """Rewrite every ``ConvTranspose(kernel 3, stride 2, pads 1, output_padding 1, group 1)`` in place.

    Returns the number of nodes rewritten. Exact: each output is the same sum of the same products.
    """
    graph = model.graph
    count = 0
    for node in list(graph.node):
        if node.op_type != "ConvTranspose":
            continue
        idx = GraphIndex.build(graph)
        a = _attrs(node)
        w = idx.const(node.input[1])
        b = idx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if (
            w is None
            or w.ndim != 4
            or w.shape[2:] != (3, 3)
            or not _plain_conv(a)
            or "output_shape" in a
            or list(a.get("strides", [1, 1])) != [2, 2]
            or list(a.get("pads", [0, 0, 0, 0])) != [1, 1, 1, 1]
            or list(a.get("output_padding", [0, 0])) != [1, 1]
        ):
            continue
        wc, bc = subpixel_weights(w, b)
        base = node.name or node.output[0]
        mid = idx.fresh(f"{base}.subpixel_out")
        new: list[onnx.NodeProto] = []
        if split_phases:
            # One conv per phase (a, b) with only its live taps: (1 + a) x (1 + b), same MACs as ConvTranspose.
            c_out = w.shape[1]
            parts = []
            for ph, (pa, pb) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                wp = wc[ph * c_out : (ph + 1) * c_out, :, : 1 + pa, : 1 + pb]
                inputs = [node.input[0], _add_init(graph, idx, f"{base}.subpixel_weight{ph}", np.ascontiguousarray(wp))]
                if bc is not None:
                    inputs.append(_add_init(graph, idx, f"{base}.subpixel_bias{ph}", bc[ph * c_out : (ph + 1) * c_out]))
                parts.append(idx.fresh(f"{base}.subpixel_phase{ph}"))
                new.append(helper.make_node("Conv", inputs, [parts[-1]], name=f"{base}/subpixel_conv{ph}", kernel_shape=[1 + pa, 1 + pb], pads=[0, 0, pa, pb], strides=[1, 1]))
            new.append(helper.make_node("Concat", parts, [mid], name=f"{base}/subpixel_concat", axis=1))
        else:
            inputs = [node.input[0], _add_init(graph, idx, f"{base}.subpixel_weight", wc)]
            if bc is not None:
                inputs.append(_add_init(graph, idx, f"{base}.subpixel_bias", bc))
            new.append(helper.make_node("Conv", inputs, [mid], name=f"{base}/subpixel_conv", kernel_shape=[2, 2], pads=[0, 0, 1, 1], strides=[1, 1]))
        new.append(helper.make_node("DepthToSpace", [mid], [node.output[0]], name=f"{base}/subpixel_d2s", blocksize=2, mode="DCR"))
        _replace_node(graph, node, new)
        count += 1
    _drop_unused_initializers(graph)
    return count


# ------------------------------------------------------------------------------------------------
# Conv(k, stride 1, few outputs) -> SpaceToDepth(2) + Conv(ceil((k+1)/2), 4 C_out) + DepthToSpace(2)
# ------------------------------------------------------------------------------------------------


def space_to_depth_weights(w: np.ndarray) -> np.ndarray:
    """Conv weight ``(C_out, C_in, k, k)`` (stride 1, no padding) -> ``(4 C_out, 4 C_in, k', k')``.

    With ``y = 2Y + a`` and input row ``y + i = 2(Y + j) + r`` (``r`` the phase inside a 2x2 cell), the
    tap ``i = 2j + r - a``; ``k' = k // 2 + 1`` covers every ``j`` with a valid ``i``.
    Channel orders: input ``(2 r_y + r_x) C_in + c`` (``SpaceToDepth``), output ``(2 a_y + a_x) C_out + o``
    (``DepthToSpace`` DCR).
    """
    c_out, c_in, kh, kw = w.shape
    kh2, kw2 = kh // 2 + 1, kw // 2 + 1
    out = np.zeros((2, 2, c_out, 2, 2, c_in, kh2, kw2), dtype=w.dtype)
    for ay in range(2):
        for ax in range(2):
            for ry in range(2):
                for rx in range(2):
                    for jy in range(kh2):
                        for jx in range(kw2):
                            iy, ix = 2 * jy + ry - ay, 2 * jx + rx - ax
                            if 0 <= iy < kh and 0 <= ix < kw:
                                out[ay, ax, :, ry, rx, :, jy, jx] = w[:, :, iy, ix]
    return out.reshape(4 * c_out, 4 * c_in, kh2, kw2)


def conv_to_space_to_depth(model: onnx.ModelProto, max_out_channels: int = 4, even_inputs: bool = False) -> int:
    """Rewrite stride-1, unpadded, odd-kernel ``Conv`` nodes with at most ``max_out_channels`` outputs.

    Applies only where the conv's input provably has even H and W (:func:`spatial_is_even`); then the
    output is even too (``H - k + 1`` with odd ``k``) and the rewrite is exact. Returns the count.
    """
    graph = model.graph
    count = 0
    for node in list(graph.node):
        if node.op_type != "Conv":
            continue
        idx = GraphIndex.build(graph)
        a = _attrs(node)
        w = idx.const(node.input[1])
        if (
            w is None
            or w.ndim != 4
            or w.shape[0] > max_out_channels
            or w.shape[2] % 2 == 0
            or w.shape[3] % 2 == 0
            or not _plain_conv(a)
            or list(a.get("strides", [1, 1])) != [1, 1]
            or any(a.get("pads", [0, 0, 0, 0]))
            or not spatial_is_even(idx, node.input[0], even_inputs)
        ):
            continue
        b = idx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        ws = space_to_depth_weights(w)
        base = node.name or node.output[0]
        s2d_out = idx.fresh(f"{base}.s2d_in")
        conv_out = idx.fresh(f"{base}.s2d_out")
        inputs = [s2d_out, _add_init(graph, idx, f"{base}.s2d_weight", ws)]
        if b is not None:
            inputs.append(_add_init(graph, idx, f"{base}.s2d_bias", np.tile(b, 4).astype(b.dtype)))
        new = [
            helper.make_node("SpaceToDepth", [node.input[0]], [s2d_out], name=f"{base}/s2d", blocksize=2),
            helper.make_node("Conv", inputs, [conv_out], name=f"{base}/s2d_conv", kernel_shape=list(ws.shape[2:]), strides=[1, 1]),
            helper.make_node("DepthToSpace", [conv_out], [node.output[0]], name=f"{base}/s2d_d2s", blocksize=2, mode="DCR"),
        ]
        _replace_node(graph, node, new)
        count += 1
    _drop_unused_initializers(graph)
    return count


Pass = Callable[[onnx.ModelProto], int]


# Which passes pay off differs per runtime (per-op profiles, 1x3x256x256, 1 thread, teacher and student
# alike): ONNX Runtime's CPU provider runs ConvTranspose as GEMM + col2im, so the per-phase split wins
# there, while OpenVINO's ConvolutionBackpropData kernel beats the split plus its Concat and
# DepthToSpace; both gain from the space-to-depth head.
TARGETS = ("onnxruntime", "openvino")


def _passes(target: str, even_inputs: bool) -> list[tuple[str, Pass]]:
    subpixel = ("ConvTranspose -> per-phase Conv + DepthToSpace", lambda m: convtranspose_to_subpixel(m, split_phases=True))
    s2d = ("few-output Conv -> SpaceToDepth + Conv + DepthToSpace", lambda m: conv_to_space_to_depth(m, even_inputs=even_inputs))
    if target == "onnxruntime":
        return [subpixel, s2d]
    if target == "openvino":
        return [s2d]
    raise ValueError(f"unknown optimisation target {target!r}; choose one of {', '.join(TARGETS)}")


def optimize_model(model: onnx.ModelProto, even_inputs: bool = False, target: str = "onnxruntime") -> tuple[onnx.ModelProto, list[str]]:
    """Apply ``target``'s passes to a copy of ``model``; returns ``(model, notes)`` naming what changed.

    ``even_inputs``: the graph inputs' H and W are always even (a model whose size multiple is even).
    ``target``: the runtime the graph is for (:data:`TARGETS`; see the comment above them).
    The transposed convolutions are split into one conv per output phase (same MACs as the original);
    the 2x2-kernel single-conv form (``split_phases=False``) does 16/9 the work and measured no faster.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.value_info[:]  # stale after rewrites; runtimes infer shapes themselves
    notes = []
    for name, fn in _passes(target, even_inputs):
        n = fn(out)
        if n:
            notes.append(f"{name}: {n} node(s)")
    return out, notes


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    from export.runtimes.onnxruntime import make_session

    sess = make_session(model.SerializeToString(), threads=2)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def optimize_verified(
    model: onnx.ModelProto, examples: list[np.ndarray], even_inputs: bool = False, atol: float = 1e-5, target: str = "onnxruntime"
) -> tuple[onnx.ModelProto, list[str]]:
    """:func:`optimize_model`, then check the result against ``model`` in ONNX Runtime on ``examples``.

    Every example must give the same output shape and a max abs difference within
    ``atol * (1 + max |reference|)``; otherwise the unoptimized model comes back with a note, never a
    silently different graph. Returns ``(model, notes)``; no notes when no pass applied.
    """
    optimized, changes = optimize_model(model, even_inputs=even_inputs, target=target)
    if not changes:
        return model, []
    try:
        onnx.checker.check_model(optimized, full_check=True)
        worst = 0.0
        for x in examples:
            ref, out = _run(model, x), _run(optimized, x)
            if ref.shape != out.shape:
                raise ValueError(f"output shape {out.shape} != {ref.shape} at input {x.shape}")
            err = float(np.max(np.abs(ref - out))) if ref.size else 0.0
            if not np.isfinite(err) or err > atol * (1.0 + float(np.max(np.abs(ref)))):
                raise ValueError(f"max abs diff {err:.3g} at input {x.shape}")
            worst = max(worst, err)
    except Exception as exc:  # noqa: BLE001 - checker, ORT or the comparison: any failure means fall back
        note = f"graph optimisation rejected ({exc}); graph left unoptimised"
        log.warning(note)
        return model, [note]
    shapes = ", ".join("x".join(str(d) for d in x.shape) for x in examples)
    return optimized, [f"optimised for {target} ({'; '.join(changes)}); verified vs unoptimised graph at {shapes}: max abs diff {worst:.3g}"]
