"""A roofline latency predictor for devices that are not at hand, explainable from its inputs.

A model is summarised by two totals from its ONNX graph at the benchmark's input size
(:func:`layer_costs`): ``MACs`` (Conv / ConvTranspose by output size as in :mod:`distill.profile`,
Gemm, MatMul) and ``bytes`` moved (every node's weights + input activations + output activations).
A device has a peak compute ``P`` (FLOP/s at a precision; a CPU's peak is scaled by
``min(threads, cores) / cores``) and a bandwidth ``W`` (B/s) from its datasheet
(:mod:`benchmarks.devices`). The roofline (Williams et al. 2009) bound is

    t_ideal = max(2 MACs / P, s_p · bytes / W)        (s_p = 1, 0.5, 0.25 for fp32, fp16, int8)

and the prediction is ``t_pred = t_ideal / η`` with one achievable fraction ``η`` in (0, 1],
calibrated on the machine the benchmark runs on and shared by every model and device of the run:
``η`` is the median over the measured ONNX Runtime cells of ``t_ideal_host / t_measured_host``,
where the host's peaks are measured (a reference convolution for ``P``, a large copy for ``W``),
capped at 1. What follows from the formula, and is tested:

- monotone: a model with fewer MACs *and* fewer bytes is never predicted slower;
- never faster than the device's peak: ``2 MACs / t_pred <= P`` and ``s_p bytes / t_pred <= W``;
- threads help a CPU at most ``min(threads, cores)`` times (bandwidth does not scale with threads).

What it leaves out is reported, not hidden: per-operator overhead, which dominates small students
(their measured time is far above the bound). :func:`validate` predicts the host itself with the
same ``η`` and reports ``measured / predicted`` for every measured cell, so a reader sees how far
the model is from this machine's numbers before trusting another device's. Every prediction is
labelled ``"predicted"``.
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


def total_bytes(costs: list[LayerCost]) -> int:
    return sum(c.bytes for c in costs)


def ideal_time_s(macs: int, nbytes: int, peak_flops: float, bandwidth_bps: float, bytes_scale: float = 1.0) -> float:
    """Roofline bound on the totals: ``max(2 MACs / P, bytes_scale * bytes / W)`` in seconds."""
    return max(2.0 * macs / peak_flops, bytes_scale * nbytes / bandwidth_bps)


def bound(macs: int, nbytes: int, peak_flops: float, bandwidth_bps: float, bytes_scale: float = 1.0) -> str:
    """``compute`` or ``memory``: which side of the roofline sets :func:`ideal_time_s`."""
    return "compute" if 2.0 * macs / peak_flops >= bytes_scale * nbytes / bandwidth_bps else "memory"


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
    from export.runtimes.onnxruntime import make_session
    from export.runtimes.timing import time_session

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


def host_ideal_ms(macs: int, nbytes: int, host: dict[str, float]) -> float:
    """The roofline bound on this machine, from its measured peaks (:func:`measure_host`)."""
    return ideal_time_s(macs, nbytes, host["peak_gflops"] * 1e9, host["bandwidth_gbs"] * 1e9) * 1e3


def calibrate(cells: list[tuple[int, int, float, dict[str, float]]]) -> float:
    """``η``: the median of ``t_ideal_host / t_measured`` over measured cells, capped at 1.

    ``cells``: ``(macs, bytes, measured_ms, host)`` per measured (model, threads), ``host`` the
    peaks measured at that thread count. One ``η`` for all models keeps predictions monotone.
    """
    ratios = [host_ideal_ms(m, b, h) / ms for m, b, ms, h in cells if ms and ms > 0]
    if not ratios:
        return float("nan")
    return float(min(1.0, np.median(ratios)))


def validate(cells: list[dict[str, Any]], efficiency: float) -> list[dict[str, Any]]:
    """Predict each measured host cell with ``efficiency`` and report ``measured / predicted``.

    ``cells``: ``{"model", "threads", "macs", "bytes", "measured_ms", "host"}``. A ratio far above 1
    means the model runs slower than the roofline explains (per-operator overhead, poor kernels).
    """
    rows = []
    for c in cells:
        predicted = host_ideal_ms(c["macs"], c["bytes"], c["host"]) / efficiency
        rows.append({"model": c["model"], "threads": c["threads"], "measured_ms": c["measured_ms"],
                     "predicted_ms": predicted, "measured_over_predicted": c["measured_ms"] / predicted,
                     "label": PREDICTED})
    return rows


def predict(macs: int, nbytes: int, device: Device | str, efficiency: float, precision: str | None = None,
            threads: int | None = None) -> dict[str, Any]:
    """Predicted latency of a model (``macs``, ``bytes`` at fp32) on ``device``; labelled ``"predicted"``.

    ``efficiency`` (η, from :func:`calibrate`) is capped at 1, so no prediction beats the peak.
    """
    device = get_device(device) if isinstance(device, str) else device
    precision = precision or device.default_precision
    if precision not in device.peak_gflops:
        precision = "fp32"
    bytes_scale = {"fp32": 1.0, "fp16": 0.5, "int8": 0.25}.get(precision, 1.0)
    peak = device.peak(precision, threads)
    bw = device.bandwidth_gbs * 1e9
    ideal_ms = ideal_time_s(macs, nbytes, peak, bw, bytes_scale) * 1e3
    eff = min(1.0, efficiency) if efficiency and efficiency > 0 else None
    return {
        "label": PREDICTED,
        "device": device.name,
        "precision": precision,
        "threads": (min(threads, device.cores) if threads else device.cores) if device.kind == "cpu" else None,
        "ideal_ms": ideal_ms,
        "efficiency": eff,
        "predicted_ms": ideal_ms / eff if eff else None,
        "bound": bound(macs, nbytes, peak, bw, bytes_scale),
        "macs": int(macs),
        "bytes": int(nbytes),
        "peak_gflops": peak / 1e9,
        "bandwidth_gbs": device.bandwidth_gbs,
    }
