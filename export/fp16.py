"""FP16 conversion at the ONNX graph level: one ``model.fp16.onnx`` for ONNX Runtime and TensorRT.

Rules (the InstanceNorm-GAN FP16 failures in onnxruntime #10079, torch2trt #776 and TensorRT #2691
come from computing the normalisation statistics in half precision, where the sum of squares over a
64x64 or larger plane overflows 65504):

- graph inputs and outputs stay float32; Cast nodes convert at the boundary;
- nodes in :data:`KEEP_FP32` (normalisations, reductions, Pow/Sqrt/Exp/Log, Softmax, ...) run in
  float32 with Casts around them;
- every other float tensor (Conv, ConvTranspose, Relu, Add, Pad, Tanh, ... and their weights) is float16.

The Casts are explicit in the graph, so a strongly typed TensorRT network (TensorRT 11) builds exactly
these precisions, and ONNX Runtime CPU runs the model (falling back to float32 kernels where it has
no float16 kernel).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

KEEP_FP32: frozenset[str] = frozenset(
    {
        "InstanceNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "BatchNormalization",
        "ReduceMean",
        "ReduceSum",
        "ReduceSumSquare",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceProd",
        "ReduceMax",
        "ReduceMin",
        "Pow",
        "Sqrt",
        "Reciprocal",
        "Exp",
        "Log",
        "Softmax",
        "LogSoftmax",
        "Erf",
        "Cast",
        "CastLike",
        "Constant",
        "ConstantOfShape",
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Range",
        "Shape",
        "Size",
        "If",
        "Loop",
        "Scan",
    }
)
"""Op types that are computed in float32 in the fp16 model (overflow-prone or type-fixed)."""

# Inputs that the ONNX spec types independently of the data (must stay float32): index by op type.
_FIXED_FP32_INPUTS: dict[str, set[int]] = {"Resize": {1, 2}, "Upsample": {1}}


def _float_values(model: onnx.ModelProto) -> set[str]:
    """Names of every float32 tensor in the graph (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    names = set()
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            names.add(vi.name)
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT:
            names.add(init.name)
    return names


def convert_to_fp16(model: onnx.ModelProto, keep_fp32: Iterable[str] = KEEP_FP32) -> onnx.ModelProto:
    """Return a copy of ``model`` with float32 compute in float16 except ``keep_fp32`` op types.

    Graph IO keeps float32. Each float tensor crossing a precision boundary gets one Cast (shared by
    all consumers). Float32 initializers consumed by float16 nodes are stored as float16.
    """
    keep = frozenset(keep_fp32)
    src = onnx.ModelProto()
    src.CopyFrom(model)
    float_names = _float_values(src)
    g = src.graph
    # an initializer that is also a graph input is that input's default (overridable), not a weight
    inits = {i.name: i for i in g.initializer if i.name not in {vi.name for vi in g.input}}
    dtype: dict[str, int] = {}  # float tensor name -> current TensorProto elem type
    for vi in g.input:
        if vi.name in float_names:
            dtype[vi.name] = TensorProto.FLOAT
    for name in inits:
        if name in float_names:
            dtype[name] = TensorProto.FLOAT

    new_nodes: list[onnx.NodeProto] = []
    new_inits: dict[str, onnx.TensorProto] = {}
    casts: dict[tuple[str, int], str] = {}

    def as_type(name: str, want: int) -> str:
        if dtype.get(name) == want:
            return name
        key = (name, want)
        if key in casts:
            return casts[key]
        suffix = "fp16" if want == TensorProto.FLOAT16 else "fp32"
        if name in inits:
            arr = numpy_helper.to_array(inits[name])
            conv = arr.astype(np.float16 if want == TensorProto.FLOAT16 else np.float32)
            new_name = f"{name}__{suffix}"
            new_inits[new_name] = numpy_helper.from_array(conv, new_name)
        else:
            new_name = f"{name}__cast_{suffix}"
            new_nodes.append(helper.make_node("Cast", [name], [new_name], to=want, name=f"{new_name}_node"))
        casts[key] = new_name
        return new_name

    for node in g.node:
        compute_fp16 = node.op_type not in keep and node.domain in ("", "ai.onnx")
        want = TensorProto.FLOAT16 if compute_fp16 else TensorProto.FLOAT
        fixed = _FIXED_FP32_INPUTS.get(node.op_type, set())
        for i, name in enumerate(node.input):
            if not name or name not in dtype:
                continue
            target = TensorProto.FLOAT if i in fixed else want
            if node.op_type in ("Cast", "Shape", "Size"):
                continue  # these accept any float type
            node.input[i] = as_type(name, target)
        for out in node.output:
            if out in float_names:
                dtype[out] = want if node.op_type != "Cast" else TensorProto.FLOAT
        new_nodes.append(node)

    _cast_outputs_to_fp32(g, dtype, new_nodes)
    used = {name for node in new_nodes for name in node.input}
    kept_inits = [i for i in g.initializer if i.name in used] + [i for n, i in new_inits.items() if n in used]
    del g.node[:]
    g.node.extend(new_nodes)
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    del g.value_info[:]
    out_model = onnx.shape_inference.infer_shapes(src)
    out_model.producer_name = "slimgan-fp16"
    return out_model


def _cast_outputs_to_fp32(g: onnx.GraphProto, dtype: dict[str, int], nodes: list[onnx.NodeProto]) -> None:
    """Graph outputs computed in float16: renamed inside, cast back to float32 under the original name."""
    for out in g.output:
        if dtype.get(out.name) == TensorProto.FLOAT16:
            internal = f"{out.name}__fp16"
            for node in nodes:
                for i, name in enumerate(node.output):
                    if name == out.name:
                        node.output[i] = internal
                for i, name in enumerate(node.input):
                    if name == out.name:
                        node.input[i] = internal
            nodes.append(helper.make_node("Cast", [internal], [out.name], to=TensorProto.FLOAT, name=f"{out.name}_to_fp32"))


def fp16_node_precisions(model: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """Count nodes by op type and computed precision (``{"InstanceNormalization": {"float32": 41}}``).

    The precision of a node is the element type of its first float input, as the graph records it.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output)}
    types.update({i.name: i.data_type for i in inferred.graph.initializer})
    names = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16"}
    counts: dict[str, dict[str, int]] = {}
    for node in inferred.graph.node:
        if not node.input:
            continue
        t = types.get(node.input[0])
        if t not in names:
            continue
        bucket = counts.setdefault(node.op_type, {})
        bucket[names[t]] = bucket.get(names[t], 0) + 1
    return counts


def convert_file(src: str | Path, dst: str | Path) -> Path:
    """Convert an fp32 ONNX file to fp16, check it with ``onnx.checker`` (full) and save it."""
    model = convert_to_fp16(onnx.load(str(src)))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(dst))
    return Path(dst)
