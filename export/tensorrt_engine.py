"""TensorRT engines from the exported ONNX: optimisation profile, timing cache, workspace limit.

Two builder paths, picked at run time from ``tensorrt.__version__``:

- TensorRT 10: weakly typed network from ``model.onnx`` with ``BuilderFlag.FP16`` (when fp16 is asked
  for); TensorRT picks per-layer precisions.
- TensorRT 11 (the FP16 builder flag is gone): strongly typed network
  (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``) from ``model.fp16.onnx``, whose explicit Casts keep
  InstanceNormalization and reductions in float32.

Engines are run through :mod:`export.runtimes.tensorrt` (torch-free, ``libcudart`` buffers).
``is_tensorrt_available()`` and ``require_tensorrt()`` never raise ImportError; the latter raises
:class:`MissingDependencyError` with one line naming what is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from slimgan.errors import MissingDependencyError, SlimganError

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 2 << 30


def _tensorrt_problem() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "python package 'tensorrt' not importable"
    except Exception as exc:  # noqa: BLE001 - a broken install raises OSError/RuntimeError on import
        return f"python package 'tensorrt' failed to import ({type(exc).__name__})"
    return None


def _gpu_problem() -> str | None:
    """Whether the CUDA driver sees a GPU, asked through ``libcuda`` itself so that the check imports no torch."""
    import ctypes

    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
            break
        except OSError:
            continue
    else:
        return "none found (no CUDA driver)"
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return "none found"
    return None


def missing_requirements() -> list[str]:
    """Human-readable reasons TensorRT cannot run here (empty when it can)."""
    reasons = []
    trt_problem = _tensorrt_problem()
    gpu_problem = _gpu_problem()
    if trt_problem or gpu_problem:
        reasons.append(f"TensorRT ({trt_problem or 'ok'})")
        reasons.append(f"a CUDA GPU ({gpu_problem or 'ok'})")
    return reasons


def is_tensorrt_available() -> bool:
    """True when the ``tensorrt`` package imports and a CUDA GPU is visible."""
    return not missing_requirements()


def require_tensorrt(flag: str = "--trt") -> None:
    """Raise :class:`MissingDependencyError` naming what is missing, e.g.
    ``--trt needs TensorRT (python package 'tensorrt' not importable) and a CUDA GPU (none found)``."""
    reasons = missing_requirements()
    if reasons:
        raise MissingDependencyError(f"{flag} needs {' and '.join(reasons)}")


def tensorrt_major() -> int:
    import tensorrt as trt

    return int(str(trt.__version__).split(".")[0])


@dataclass
class EngineInfo:
    path: Path
    tensorrt_version: str
    mode: str  # "fp32", "fp16-flag" (TensorRT 10) or "strongly-typed" (TensorRT 11)
    source_onnx: Path
    profile: dict[str, list[int]]


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    input_name: str,
    min_shape: tuple[int, ...],
    opt_shape: tuple[int, ...],
    max_shape: tuple[int, ...],
    fp16: bool = True,
    fp16_onnx_path: str | Path | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache: str | Path | None = None,
) -> EngineInfo:
    """Build and serialise an engine to ``plan_path`` (see module docstring for the two paths)."""
    require_tensorrt()
    import tensorrt as trt

    major = tensorrt_major()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = fp16 and (major >= 11 or not hasattr(trt.BuilderFlag, "FP16"))
    source = Path(onnx_path)
    flags = 0
    if strongly_typed:
        if fp16_onnx_path is None:
            raise SlimganError(f"TensorRT {trt.__version__} builds FP16 only from a strongly typed model: add --fp16")
        source = Path(fp16_onnx_path)
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif major < 10 and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SlimganError(f"TensorRT could not parse {source}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if fp16 and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, tuple(min_shape), tuple(opt_shape), tuple(max_shape))
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else Path(plan_path).with_suffix(".timing.cache")
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SlimganError(f"TensorRT failed to build an engine from {source}")
    Path(plan_path).write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    mode = "strongly-typed" if strongly_typed else ("fp16-flag" if fp16 else "fp32")
    return EngineInfo(
        path=Path(plan_path),
        tensorrt_version=str(trt.__version__),
        mode=mode,
        source_onnx=source,
        profile={"min": list(min_shape), "opt": list(opt_shape), "max": list(max_shape)},
    )
