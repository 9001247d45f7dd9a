"""Exact graph rewrites of export.optimize, each checked in ONNX Runtime on a tiny hand-built graph."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.optimize import (
    GraphIndex,
    conv_to_space_to_depth,
    convtranspose_to_subpixel,
    optimize_model,
    optimize_verified,
    spatial_is_even,
)
from export.runtimes.onnxruntime import make_session

RNG = np.random.default_rng(0)


def _model(nodes, inits, in_shape, out_name="y") -> onnx.ModelProto:
    """A one-input, one-output opset-17 model; spatial dims named when given as strings."""
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [None] * 4)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return make_session(model.SerializeToString()).run(None, {"x": x})[0]


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _x(*shape: int) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def _convtranspose_model(c_in=5, c_out=3, bias=True, **attrs) -> onnx.ModelProto:
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1], **attrs}
    inits = {"w": RNG.standard_normal((c_in, c_out, *attrs["kernel_shape"]))}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = RNG.standard_normal(c_out)
        inputs.append("b")
    node = helper.make_node("ConvTranspose", inputs, ["y"], **attrs)
    return _model([node], inits, [None, c_in, "h", "w"])


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_convtranspose_to_subpixel_is_exact(split: bool, bias: bool) -> None:
    model = _convtranspose_model(bias=bias)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert convtranspose_to_subpixel(rewritten, split_phases=split) == 1
    onnx.checker.check_model(rewritten, full_check=True)
    assert "ConvTranspose" not in _ops(rewritten) and _ops(rewritten)[-1] == "DepthToSpace"
    assert _ops(rewritten).count("Conv") == (4 if split else 1)
    for shape in [(1, 5, 6, 6), (2, 5, 7, 4)]:  # odd sizes too: out = 2 * in always
        x = _x(*shape)
        ref, out = _run(model, x), _run(rewritten, x)
        assert out.shape == ref.shape == (shape[0], 3, 2 * shape[2], 2 * shape[3])
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_convtranspose_other_geometry_is_left_alone() -> None:
    model = _convtranspose_model(pads=[0, 0, 0, 0], output_padding=[0, 0])
    assert convtranspose_to_subpixel(model) == 0
    assert _ops(model) == ["ConvTranspose"]


def _head_model(in_shape, c_in=6, c_out=3, k=7, pad=3) -> onnx.ModelProto:
    """Reflect-pad then an unpadded k x k conv with few outputs, then tanh (a generator head)."""
    inits = {"w": RNG.standard_normal((c_out, c_in, k, k)) * 0.1, "b": RNG.standard_normal(c_out), "pads": np.array([0, 0, pad, pad, 0, 0, pad, pad])}
    inits_np = {k_: v for k_, v in inits.items() if k_ != "pads"}
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["xp"], mode="reflect"),
        helper.make_node("Conv", ["xp", "w", "b"], ["c"], kernel_shape=[k, k]),
        helper.make_node("Tanh", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
        [numpy_helper.from_array(v.astype(np.float32), k_) for k_, v in inits_np.items()]
        + [numpy_helper.from_array(inits["pads"].astype(np.int64), "pads")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("k", [3, 7])
def test_conv_to_space_to_depth_is_exact(k: int) -> None:
    model = _head_model([None, 6, "h", "w"], k=k, pad=k // 2)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert conv_to_space_to_depth(rewritten, even_inputs=True) == 1
    onnx.checker.check_model(rewritten, full_check=True)
    assert _ops(rewritten) == ["Pad", "SpaceToDepth", "Conv", "DepthToSpace", "Tanh"]
    for shape in [(1, 6, 8, 8), (2, 6, 12, 20)]:
        x = _x(*shape)
        np.testing.assert_allclose(_run(rewritten, x), _run(model, x), rtol=1e-5, atol=1e-5)


def test_space_to_depth_needs_provably_even_sizes() -> None:
    dynamic = _head_model([None, 6, "h", "w"])
    assert conv_to_space_to_depth(dynamic, even_inputs=False) == 0  # nothing says H, W are even
    odd = _head_model([1, 6, 9, 8])
    assert conv_to_space_to_depth(odd, even_inputs=True) == 0  # the static shape says H is odd
    wide = _head_model([1, 6, 8, 8], c_out=8)
    assert conv_to_space_to_depth(wide, even_inputs=True) == 0  # enough outputs to fill a block already


def test_spatial_is_even_follows_upsampling_and_padding() -> None:
    model = _convtranspose_model(c_in=4, c_out=4)
    nodes = list(model.graph.node) + [
        helper.make_node("Relu", ["y"], ["r"]),
        helper.make_node("Pad", ["r", "p3"], ["odd"], mode="reflect"),
        helper.make_node("Pad", ["r", "p2"], ["even"], mode="reflect"),
    ]
    model.graph.initializer.extend([
        numpy_helper.from_array(np.array([0, 0, 3, 3, 0, 0, 3, 2], np.int64), "p3"),
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p2"),
    ])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    idx = GraphIndex.build(model.graph)
    assert spatial_is_even(idx, "y") and spatial_is_even(idx, "r") and spatial_is_even(idx, "even")
    assert not spatial_is_even(idx, "odd")
    assert not spatial_is_even(idx, "x") and spatial_is_even(idx, "x", even_inputs=True)


def _generator_tail() -> onnx.ModelProto:
    """ConvTranspose -> InstanceNorm -> Relu -> reflect pad 3 -> 7x7 conv to 3 channels -> tanh."""
    c = 16
    inits = {
        "wt": RNG.standard_normal((c, c, 3, 3)) * 0.2, "bt": RNG.standard_normal(c),
        "s": np.ones(c), "z": np.zeros(c),
        "wh": RNG.standard_normal((3, c, 7, 7)) * 0.05, "bh": RNG.standard_normal(3),
    }
    nodes = [
        helper.make_node("ConvTranspose", ["x", "wt", "bt"], ["t"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
        helper.make_node("InstanceNormalization", ["t", "s", "z"], ["n"], epsilon=1e-5),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Pad", ["r", "pads"], ["p"], mode="reflect"),
        helper.make_node("Conv", ["p", "wh", "bh"], ["h"], kernel_shape=[7, 7]),
        helper.make_node("Tanh", ["h"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "tail",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, c, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()]
        + [numpy_helper.from_array(np.array([0, 0, 3, 3, 0, 0, 3, 3], np.int64), "pads")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_optimize_model_rewrites_a_generator_tail_exactly() -> None:
    model = _generator_tail()
    optimized, notes = optimize_model(model)  # odd graph input allowed: the head's input is 2 * in
    assert len(notes) == 2
    ops = _ops(optimized)
    assert "ConvTranspose" not in ops and "SpaceToDepth" in ops and ops.count("DepthToSpace") == 2
    for shape in [(1, 16, 5, 7), (2, 16, 8, 8)]:
        x = _x(*shape)
        np.testing.assert_allclose(_run(optimized, x), _run(model, x), rtol=1e-5, atol=1e-5)
    assert _ops(model)[0] == "ConvTranspose"  # the input model is not modified


def test_optimize_verified_checks_and_reports() -> None:
    model = _generator_tail()
    optimized, notes = optimize_verified(model, [_x(1, 16, 6, 6), _x(2, 16, 5, 9)])
    assert "SpaceToDepth" in _ops(optimized)
    assert len(notes) == 1 and notes[0].startswith("optimised") and "max abs diff" in notes[0]
    plain = _convtranspose_model(pads=[0, 0, 0, 0], output_padding=[0, 0])
    same, none = optimize_verified(plain, [_x(1, 5, 4, 4)])
    assert same is plain and none == []


def test_export_onnx_ships_the_optimised_graph_with_torch_parity(tmp_path) -> None:
    import torch

    from distill.registry import create_model
    from export.onnx_export import export_onnx

    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=4).eval()
    x = torch.rand(2, 3, 32, 40) * 2 - 1
    opt = export_onnx(model, tmp_path / "opt.onnx", x[:1], input_kind="image")
    plain = export_onnx(model, tmp_path / "plain.onnx", x[:1], input_kind="image", optimize=False)
    ops = _ops(onnx.load(str(tmp_path / "opt.onnx")))
    assert "ConvTranspose" not in ops and "SpaceToDepth" in ops and opt.optimized and opt.dynamic_spatial
    assert "ConvTranspose" in _ops(onnx.load(str(tmp_path / "plain.onnx"))) and not plain.optimized
    with torch.no_grad():
        ref = model(x).numpy()
    out = make_session(tmp_path / "opt.onnx").run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_optimisation_targets_choose_their_passes() -> None:
    """OpenVINO keeps ConvTranspose (its kernel beats the phase split) but takes the space-to-depth head."""
    import torch

    from distill import create_model
    from export.onnx_export import export_onnx

    model = create_model("mobile_resnet_9blocks", ngf=4).eval()
    with tempfile.TemporaryDirectory() as tmp:
        x = torch.rand(1, 3, 32, 32) * 2 - 1
        result = export_onnx(model, Path(tmp) / "m.onnx", x, targets={"openvino": Path(tmp) / "m.openvino.onnx"})
        ort_ops = [n.op_type for n in onnx.load(str(result.path)).graph.node]
        ov_ops = [n.op_type for n in onnx.load(str(result.variants["openvino"])).graph.node]
        assert "ConvTranspose" not in ort_ops and "ConvTranspose" in ov_ops
        assert "SpaceToDepth" in ov_ops and "SpaceToDepth" in ort_ops
        with torch.no_grad():
            ref = model(x).numpy()
        out = make_session(result.variants["openvino"]).run(None, {"input": x.numpy()})[0]
        assert np.max(np.abs(out - ref)) < 1e-4
    with pytest.raises(ValueError, match="unknown optimisation target"):
        optimize_model(onnx.ModelProto(), target="nope")
