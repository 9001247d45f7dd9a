"""Device profiles: nominal peak compute and memory bandwidth of the targets slimgan predicts for.

The numbers are vendor datasheet values (peak, not achievable): GPU FP32 = CUDA cores x 2 x clock; GPU
FP16 = dense Tensor Core rate where the GPU has Tensor Cores (x2 CUDA-core rate on Maxwell); CPU =
cores x SIMD FMA width x 2 x clock. The roofline predictor (:mod:`benchmarks.roofline`) scales them by an
efficiency calibrated on the machine it runs on, and labels every result "predicted".

Measurement profiles (which backends/threads a benchmark uses for a device class) live in
:data:`PROFILES`; ``slimgan bench latency --profile NAME`` fills ``--backends`` / ``--threads`` from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from distill.errors import ConfigError


@dataclass(frozen=True)
class Device:
    """One target. ``peak_gflops`` maps precision ("fp32", "fp16", "int8") to GFLOP/s (GOP/s for int8)."""

    name: str
    kind: str  # "gpu" or "cpu"
    description: str
    peak_gflops: dict[str, float]
    bandwidth_gbs: float  # DRAM bandwidth, GB/s
    cores: int = 1  # CPU cores the peak is summed over (per-thread peak = peak / cores)
    default_precision: str = "fp16"
    source: str = ""

    def peak(self, precision: str, threads: int | None = None) -> float:
        """Peak FLOP/s (not G) at ``precision``; for a CPU, scaled to ``min(threads, cores)`` cores."""
        if precision not in self.peak_gflops:
            raise ConfigError(f"{self.name} has no {precision} peak; it has: {', '.join(self.peak_gflops)}")
        peak = self.peak_gflops[precision] * 1e9
        if self.kind == "cpu" and threads:
            peak *= min(threads, self.cores) / self.cores
        return peak

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device(
            "jetson-nano", "gpu", "Jetson Nano 4GB: 128-core Maxwell GPU @ 921 MHz, 64-bit LPDDR4",
            {"fp32": 236.0, "fp16": 472.0}, 25.6,
            source="NVIDIA Jetson Nano datasheet (472 GFLOPS FP16), 25.6 GB/s",
        ),
        Device(
            "xavier-nx", "gpu", "Jetson Xavier NX: 384-core Volta GPU + 48 Tensor Cores @ 1100 MHz, 128-bit LPDDR4x",
            {"fp32": 845.0, "fp16": 6760.0, "int8": 13500.0}, 59.7,
            source="NVIDIA Jetson Xavier NX datasheet; Tensor Core FP16 = 48 x 128 FLOP/clk x 1.1 GHz",
        ),
        Device(
            "orin-nano", "gpu", "Jetson Orin Nano 8GB: 1024-core Ampere GPU + 32 Tensor Cores @ 625 MHz, 128-bit LPDDR5",
            {"fp32": 1280.0, "fp16": 10000.0, "int8": 20000.0}, 68.0,
            source="NVIDIA Jetson Orin Nano datasheet (40 sparse INT8 TOPS -> 20 dense, FP16 half of that)",
        ),
        Device(
            "orin-agx", "gpu", "Jetson AGX Orin 64GB: 2048-core Ampere GPU + 64 Tensor Cores @ 1.3 GHz, 256-bit LPDDR5",
            {"fp32": 5320.0, "fp16": 42500.0, "int8": 85000.0}, 204.8,
            source="NVIDIA Jetson AGX Orin datasheet (170 sparse INT8 TOPS GPU)",
        ),
        Device(
            "phone-cpu", "cpu", "Phone-class CPU: 4 x Cortex-A78 @ 2.4 GHz (2 x 128-bit NEON FMA per cycle), LPDDR5",
            {"fp32": 153.6, "fp16": 307.2, "int8": 614.4}, 25.6, cores=4, default_precision="fp32",
            source="4 cores x 16 FP32 FLOP/clk x 2.4 GHz; 64-bit LPDDR5-6400 = 25.6 GB/s (usually lower in practice)",
        ),
    )
}

PROFILES: dict[str, dict[str, Any]] = {
    "desktop-cpu": {"backends": ["torch", "ort"], "threads": [0], "description": "all cores of this CPU"},
    "mobile-cpu": {"backends": ["ort", "ort-int8"], "threads": [1, 2, 4],
                   "description": "ONNX Runtime CPU at 1-4 threads, the mobile-class CPU profile"},
    "nvidia-gpu": {"backends": ["cuda", "trt"], "threads": [1], "description": "ORT CUDA and TensorRT on an NVIDIA GPU"},
    "jetson": {"backends": ["trt"], "threads": [1],
               "description": "run benchmarks/jetson/run_on_jetson.sh on the device; it writes the same latency.json"},
    "phone-runtimes": {"backends": ["ort", "openvino", "tflite", "ncnn", "executorch", "ort-mobile"], "threads": [1, 2, 4],
                       "description": "the phone runtimes' own kernels (x86 builds) on this CPU, beside ONNX Runtime and "
                                      "OpenVINO; host measurements, not phone latencies"},
    "android": {"backends": ["tflite", "ncnn", "executorch"], "threads": [1, 2, 4],
                "description": "run benchmarks/android/run_on_android.sh with a phone on adb; it writes the same latency.json"},
}


def get_device(name: str) -> Device:
    """The device profile called ``name`` (a :class:`ConfigError` names the valid ones)."""
    try:
        return DEVICES[name]
    except KeyError:
        raise ConfigError(f"unknown device {name!r}; choose from: {', '.join(DEVICES)}") from None
