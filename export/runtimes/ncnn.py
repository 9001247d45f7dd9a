"""ncnn: ``model.ncnn.param`` + ``model.ncnn.bin`` made by pnnx from the PyTorch generator.

``convert`` traces the eval-mode generator with ``torch.jit.trace`` at the export shape (and a second,
smaller shape, so pnnx writes a graph whose spatial size is free), then runs the pnnx executable that
the ``pnnx`` package ships with ``fp16=0``: the ``.bin`` keeps fp32 weights, and ncnn itself stores them
in fp16 at load time where the CPU or GPU has fp16 units (``use_fp16_storage``), as on phones. pnnx's
other outputs (its own ``.pnnx.*`` graph, Python scripts, the TorchScript file) stay in a temporary
folder; its log is kept and shown when it fails.

``load`` opens an ``ncnn.Net`` with ``num_threads = threads`` and ``openmp_blocktime = 0`` (idle
OpenMP threads sleep instead of spinning, as slimgan's ONNX Runtime sessions do). ``precision="fp32"``
(the default, what the parity gate checks and the speed check times) turns off fp16 / bf16 storage,
packing and arithmetic; ``precision="default"`` keeps ncnn's own defaults, which on an ARMv8.2 phone
compute in fp16. One image is extracted at a time (ncnn blobs have no batch axis); spatial sizes are
free, so ``run`` takes any multiple of the generator's size multiple.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from export.runtimes import register_runtime
from export.runtimes.base import ConvertContext, ConvertResult, Session
from export.runtimes.mobile import (
    MobileRuntime,
    eval_copy,
    example_input,
    package_version,
    require_packages,
    static_shape,
)
from slimgan.errors import SlimganError

FILES = {"ncnn-param": "model.ncnn.param", "ncnn-bin": "model.ncnn.bin"}
_FP32_OFF = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_packed", "use_bf16_storage")


def _second_shape(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """A smaller input for pnnx's ``inputshape2`` (half the spatial size), or None for latents."""
    if len(shape) != 4 or shape[2] < 16 or shape[3] < 16:
        return None
    return (shape[0], shape[1], shape[2] // 2, shape[3] // 2)


def run_pnnx(module: Any, shape: tuple[int, ...], out_dir: Path, stem: str = "model") -> tuple[Path, Path]:
    """Trace ``module`` at ``shape`` and convert it with pnnx; returns the ncnn ``(param, bin)`` paths."""
    import warnings

    import pnnx
    import torch

    work = Path(tempfile.mkdtemp(prefix="slimgan-pnnx-"))
    try:
        x = example_input(shape)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, (x,), check_trace=False)
        pt = work / f"{stem}.pt"
        traced.save(str(pt))
        param, binary = work / f"{stem}.ncnn.param", work / f"{stem}.ncnn.bin"
        cmd = [pnnx.EXEC_PATH, str(pt), f"inputshape=[{','.join(str(d) for d in shape)}]f32", "device=cpu", "fp16=0",
               f"ncnnparam={param}", f"ncnnbin={binary}", f"ncnnpy={work / 'ncnn.py'}", f"pnnxparam={work / 'pnnx.param'}",
               f"pnnxbin={work / 'pnnx.bin'}", f"pnnxpy={work / 'pnnx.py'}", f"pnnxonnx={work / 'pnnx.onnx'}"]
        second = _second_shape(shape)
        if second is not None:
            cmd.append(f"inputshape2=[{','.join(str(d) for d in second)}]f32")
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=work, check=False)
        if done.returncode != 0 or not param.is_file() or not binary.is_file():
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise SlimganError(f"pnnx could not convert the generator (exit {done.returncode}): {' | '.join(tail)}")
        out_dir.mkdir(parents=True, exist_ok=True)
        dst_param, dst_bin = out_dir / FILES["ncnn-param"], out_dir / FILES["ncnn-bin"]
        shutil.move(str(param), dst_param)
        shutil.move(str(binary), dst_bin)
        return dst_param, dst_bin
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _io_names(param: Path) -> tuple[str, str]:
    """The first ``Input`` layer's blob and the last layer's output blob of an ncnn ``.param``."""
    lines = [ln.split() for ln in param.read_text().splitlines()[2:] if ln.strip()]
    if not lines:
        raise SlimganError(f"{param} has no layers")
    inputs = [ln[4] for ln in lines if ln[0] == "Input"]
    last = lines[-1]
    n_in, n_out = int(last[2]), int(last[3])
    if not inputs or n_out < 1:
        raise SlimganError(f"{param}: no Input layer or no output blob")
    return inputs[0], last[4 + n_in]


class NcnnSession(Session):
    parallel_runs = 1

    def __init__(self, path: str | Path, threads: int | None, precision: str = "fp32") -> None:
        import ncnn

        param = Path(path)
        if param.suffix == ".bin":
            param = param.with_suffix(".param")
        binary = param.with_suffix(".bin")
        for f in (param, binary):
            if not f.is_file():
                raise SlimganError(f"ncnn model file {f} is missing")
        if precision not in ("fp32", "default"):
            raise SlimganError(f"ncnn precision {precision!r}: choose fp32 or default")
        self.path = param
        self.threads = int(threads) if threads else ncnn.get_physical_big_cpu_count() or 1
        self.precision = precision
        self.net = ncnn.Net()
        self.net.opt.num_threads = self.threads
        self.net.opt.openmp_blocktime = 0
        if precision == "fp32":
            for name in _FP32_OFF:
                setattr(self.net.opt, name, False)
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(binary)) != 0:
            raise SlimganError(f"ncnn could not load {param} / {binary.name}")
        self.input_name, self.output_name = _io_names(param)
        self._mat = ncnn.Mat

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        outs = []
        for sample in x:  # (C, H, W) or (nz,)
            ex = self.net.create_extractor()
            ex.input(self.input_name, self._mat(np.ascontiguousarray(sample)))
            ret, mat = ex.extract(self.output_name)
            if ret != 0:
                raise SlimganError(f"ncnn failed to run {self.path.name} (extract returned {ret})")
            outs.append(np.array(mat, dtype=np.float32, copy=True))
        return np.stack(outs)

    def describe(self) -> dict[str, Any]:
        return {"runtime": "ncnn", "version": package_version("ncnn"), "device": "cpu", "threads": self.threads,
                "precision": self.precision, "openmp_blocktime": 0, "file": self.path.name}

    def close(self) -> None:
        self.net = None


class NcnnRuntime(MobileRuntime):
    name = "ncnn"
    extra = "ncnn"
    module_name = "ncnn"
    convert_modules = ("pnnx",)
    artifacts = dict(FILES)
    gates = {"ncnn-param": "fp32"}

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        self.require()
        require_packages(self, "pnnx")
        param, binary = run_pnnx(eval_copy(ctx.module), static_shape(ctx.example_shape), Path(ctx.bundle_dir))
        # fp32 weights in the .bin; ncnn itself may store them in fp16 at load on fp16 hardware.
        return ConvertResult((param.name, binary.name), "fp32", {"converter": "pnnx", "weights": "fp32"})

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any) -> NcnnSession:
        self.require()
        if device not in ("cpu", "auto"):
            raise SlimganError(f"ncnn runs on the CPU here; device {device!r} is not supported (Vulkan is for the phone build)")
        return NcnnSession(path, threads, precision=str(opts.get("precision", "fp32")))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": package_version("ncnn"), "converter": package_version("pnnx"), "device": "cpu",
                "threads": None}


register_runtime(NcnnRuntime())
