"""A roofline latency predictor for devices that are not at hand.

Per layer ``l`` of the ONNX graph (shapes from ONNX shape inference at the benchmark's input size):
``MACs_l`` (Conv / ConvTranspose by output size as in :mod:`distill.profile`, Gemm, MatMul) and the bytes
it moves ``B_l`` = weights + input activations + output activations. On a device with peak compute ``P``
(FLOP/s) and bandwidth ``W`` (B/s) the roofline (Williams et al. 2009) gives the ideal time

    t_ideal = sum_l max(2 MACs_l / P, B_l / W)

No real runtime reaches it. The predictor is *calibrated* on the machine it runs on: this CPU's achievable
peak is measured (an ONNX Runtime reference convolution for ``P_host``, a large array copy for
``W_host``), the model's ideal host time is computed with them, and the model is timed for real:
``efficiency = t_ideal_host / t_measured_host``. The prediction for a device is then
``t_ideal_device / efficiency``, assuming the device runs the model's layer mix as efficiently as this
CPU does against its own peaks. Device peaks are datasheet values (:mod:`benchmarks.devices`), so
predictions are estimates: they are always labelled ``"predicted"`` and sit next to measured values
where a device is present.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.devices import Device, get_device

log = logging.getLogger(__name__)

PREDICTED = "predicted"
_MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class LayerCost:
    """MACs and bytes moved by one ONNX node at fp32 (``weight_bytes`` from initializers)."""

    name: str
    op: str
    macs: int
    weight_bytes: int
    activation_bytes: int  # inputs read + outputs written

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"bytes": self.bytes}


_ELEM_SIZE = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}  # onnx TensorProto elem types


def layer_costs(model_path: str | Path, input_shape: tuple[int, ...]) -> list[LayerCost]:
    """Per-node costs of an ONNX model whose first input is fixed to ``input_shape``."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(model_path))
    init_names = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in init_names]
    first = graph_inputs[0]
    dims = first.type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ValueError(f"{model_path}: input {first.name} has rank {len(dims)}, asked for shape {input_shape}")
    for dim, size in zip(dims, input_shape, strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = int(size)
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    if _has_unknown_compute_shapes(inferred):
        inferred = _fold_constants(model, first.name, input_shape) or inferred

    shapes: dict[str, tuple[list[int], int]] = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            shapes[vi.name] = ([d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim], tt.elem_type)
    weights: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in inferred.graph.initializer}
    for node in inferred.graph.node:  # Constant nodes hold weights too (some exporters fold them so)
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            weights[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def nbytes(name: str) -> int:
        if name in weights:
            return int(weights[name].nbytes)
        if name not in shapes:
            return 0
        dims, elem = shapes[name]
        if any(d < 0 for d in dims):
            return 0
        return int(math.prod(dims)) * _ELEM_SIZE.get(elem, 4)

    def shape(name: str) -> list[int] | None:
        if name in weights:
            return list(weights[name].shape)
        dims = shapes.get(name, (None, 0))[0]
        return dims if dims is not None and all(d >= 0 for d in dims) else None

    costs = []
    unknown = 0
    for i, node in enumerate(inferred.graph.node):
        if node.op_type == "Constant":
            continue
        ins = [n for n in node.input if n]
        w_bytes = sum(nbytes(n) for n in ins if n in weights)
        a_bytes = sum(nbytes(n) for n in ins if n not in weights) + sum(nbytes(n) for n in node.output if n)
        macs = 0
        if node.op_type in _MAC_OPS:
            out = shape(node.output[0])
            w = shape(ins[1]) if len(ins) > 1 else None
            a = shape(ins[0])
            if out is None or w is None or a is None:
                unknown += 1
            elif node.op_type in ("Conv", "ConvTranspose"):
                # every output position costs prod(w) / C_out MACs per output channel: batch * prod(w) * spatial
                macs = out[0] * math.prod(w) * math.prod(out[2:])
            else:  # Gemm / MatMul: (..., M, K) x (K, N)
                k = a[-1]
                macs = math.prod(out) * k
        costs.append(LayerCost(node.name or f"{node.op_type}_{i}", node.op_type, int(macs), w_bytes, a_bytes))
    if unknown:
        log.warning("%s: %d compute layers have unknown shapes and count 0 MACs", model_path, unknown)
    return costs


def _has_unknown_compute_shapes(model: Any) -> bool:
    known = {vi.name for vi in list(model.graph.value_info) + list(model.graph.output)
             if vi.type.tensor_type.HasField("shape")
             and all(d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim)}
    return any(n.op_type in _MAC_OPS and n.output[0] not in known for n in model.graph.node)


def _fold_constants(model: Any, input_name: str, input_shape: tuple[int, ...]) -> Any | None:
    """onnxsim at a fixed input shape: folds shape arithmetic (e.g. reflection pads) so shapes resolve."""
    from onnx import shape_inference

    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model, overwrite_input_shapes={input_name: list(input_shape)})
    except Exception as exc:  # noqa: BLE001 - onnxsim is a best-effort helper here
        log.debug("onnxsim could not fold the graph: %s", exc)
        return None
    return shape_inference.infer_shapes(simplified, data_prop=True) if ok else None


def total_macs(costs: list[LayerCost]) -> int:
    return sum(c.macs for c in costs)


def ideal_time_s(costs: list[LayerCost], peak_flops: float, bandwidth_bps: float, bytes_scale: float = 1.0) -> float:
    """Roofline time: ``sum_l max(2 MACs_l / P, bytes_scale * B_l / W)`` in seconds."""
    return sum(max(2.0 * c.macs / peak_flops, bytes_scale * c.bytes / bandwidth_bps) for c in costs)


def compute_bound_fraction(costs: list[LayerCost], peak_flops: float, bandwidth_bps: float,
                           bytes_scale: float = 1.0) -> float:
    """Share of the ideal time spent in compute-bound layers (the rest is memory-bound)."""
    total = ideal_time_s(costs, peak_flops, bandwidth_bps, bytes_scale)
    compute = sum(2.0 * c.macs / peak_flops for c in costs
                  if 2.0 * c.macs / peak_flops >= bytes_scale * c.bytes / bandwidth_bps)
    return compute / total if total > 0 else 0.0


# ----------------------------------------------------------------------------------- host calibration
def _reference_conv(channels: int, size: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.05, "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], "reference_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def measure_host(threads: int | None, channels: int = 128, size: int = 56, min_time_s: float = 0.3) -> dict[str, float]:
    """This machine's achievable peaks: ONNX Runtime 3x3 convolution GFLOP/s and array-copy GB/s."""
    from export.runtime import make_session, time_session

    session = make_session(_reference_conv(channels, size), threads=threads)
    x = np.random.default_rng(0).standard_normal((1, channels, size, size)).astype(np.float32)
    stats = time_session(lambda: session.run(None, {"x": x}), warmup_s=0.1, min_runs=5, min_time_s=min_time_s)
    macs = channels * channels * 9 * size * size
    gflops = 2.0 * macs / (stats["median_ms"] / 1e3) / 1e9

    src = np.ones(16 * 2**20 // 4, np.float32)  # 16 MiB, beyond typical L2
    dst = np.empty_like(src)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    gbs = 2.0 * src.nbytes / float(np.median(times)) / 1e9  # read + write
    return {"peak_gflops": gflops, "bandwidth_gbs": gbs, "reference_conv_ms": stats["median_ms"],
            "threads": threads or 0}


def calibrate(costs: list[LayerCost], measured_ms: float, host: dict[str, float]) -> float:
    """``efficiency = t_ideal_host / t_measured_host`` (1.0 means the model runs at this CPU's roofline)."""
    ideal = ideal_time_s(costs, host["peak_gflops"] * 1e9, host["bandwidth_gbs"] * 1e9) * 1e3
    return ideal / measured_ms if measured_ms > 0 else float("nan")


def predict(costs: list[LayerCost], device: Device | str, efficiency: float, precision: str | None = None,
            threads: int | None = None) -> dict[str, Any]:
    """Predicted latency of the costed model on ``device``; every result carries ``"label": "predicted"``."""
    device = get_device(device) if isinstance(device, str) else device
    precision = precision or device.default_precision
    if precision not in device.peak_gflops:
        precision = "fp32"
    bytes_scale = {"fp32": 1.0, "fp16": 0.5, "int8": 0.25}.get(precision, 1.0)
    peak = device.peak(precision, threads)
    bw = device.bandwidth_gbs * 1e9
    ideal_ms = ideal_time_s(costs, peak, bw, bytes_scale) * 1e3
    return {
        "label": PREDICTED,
        "device": device.name,
        "precision": precision,
        "threads": threads if device.kind == "cpu" else None,
        "ideal_ms": ideal_ms,
        "efficiency": efficiency,
        "predicted_ms": ideal_ms / efficiency if efficiency and efficiency > 0 else None,
        "compute_bound_fraction": compute_bound_fraction(costs, peak, bw, bytes_scale),
        "macs": total_macs(costs),
        "bytes": sum(c.bytes for c in costs),
    }
