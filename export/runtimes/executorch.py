"""ExecuTorch: ``model.pte``, the generator lowered to the XNNPACK backend.

``convert``: ``torch.export.export`` of the eval-mode generator at the export shape (batch 1; the
program is static), ``to_edge_transform_and_lower`` with the ``XnnpackPartitioner`` (every supported
op is delegated to XNNPACK, the rest runs on ExecuTorch's portable kernels), then ``to_executorch`` and
the program buffer written to ``model.pte``. How many ops ended up delegated is recorded in the
:class:`~export.runtimes.base.ConvertResult` ``report``.

Before export, :func:`export.runtimes.mobile.rewrite_for_xnnpack` replaces the two layers XNNPACK has no kernel for, which
would otherwise run as portable ops between delegate calls (on the ngf-4 mobile student: 61 delegate
calls and 281 portable ops, among them ``_native_batch_norm_legit.no_stats`` for every InstanceNorm and
an ``arange``/``abs``/``index`` chain recomputed on every call for every reflection pad): reflection
padding becomes concatenated slices (exact: the same elements copied) and an InstanceNorm without
affine parameters or running statistics becomes ``(x - mean) * rsqrt(var + eps)`` over H, W (the same
arithmetic, fp32 rounding apart). The whole generator is then one XNNPACK delegate call.

``load`` uses the ``executorch.runtime`` Python binding. Its tensors are ``torch`` tensors, so loading
an ExecuTorch program imports torch (inside ``load``, never at import). ``threads`` sizes the binding's
thread pool, which XNNPACK uses; the pool is process-wide, so the last session opened sets it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.runtimes import register_runtime
from export.runtimes.base import ConvertContext, ConvertResult, Session
from export.runtimes.mobile import (
    MobileRuntime,
    StaticShapeSession,
    eval_copy,
    example_input,
    package_version,
    require_packages,
    rewrite_for_xnnpack,
    static_shape,
)
from slimgan.errors import SlimganError

FILES = {"executorch": "model.pte"}


def lower_to_xnnpack(module: Any, shape: tuple[int, ...]) -> tuple[bytes, dict[str, int]]:
    """The ``.pte`` bytes of ``module`` lowered to XNNPACK at ``shape``, and delegated / total op counts."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with torch.no_grad():
        exported = torch.export.export(module, (example_input(shape),))
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    graph = edge.exported_program().graph_module.graph
    calls = [n for n in graph.nodes if n.op == "call_function"]
    delegated = sum(1 for n in calls if "executorch_call_delegate" in str(n.target))
    portable = sum(1 for n in calls if "executorch_call_delegate" not in str(n.target) and "getitem" not in str(n.target))
    program = edge.to_executorch()
    return bytes(program.buffer), {"xnnpack_delegate_calls": delegated, "portable_ops": portable}


class ExecuTorchSession(StaticShapeSession, Session):
    parallel_runs = 1

    def __init__(self, path: str | Path, threads: int | None) -> None:
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime as EtRuntime

        self.path = Path(path)
        if not self.path.is_file():
            raise SlimganError(f"ExecuTorch program {self.path} is missing")
        self.threads = int(threads) if threads else None
        if self.threads:
            portable_lib._unsafe_reset_threadpool(self.threads)
        program = EtRuntime.get().load_program(self.path)
        self.method = program.load_method("forward")
        meta = self.method.metadata
        info = meta.input_tensor_meta(0)
        self.shape = tuple(int(d) for d in info.sizes())
        self.input_name, self.output_name = "input", "output"

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        import torch

        out = self.method.execute([torch.from_numpy(x)])[0]
        return out.numpy().copy()

    def describe(self) -> dict[str, Any]:
        from executorch.extension.pybindings import portable_lib

        return {"runtime": "executorch", "version": package_version("executorch"), "device": "cpu", "backend": "XNNPACK",
                "threads": int(portable_lib._threadpool_get_thread_count()), "file": self.path.name,
                "input_shape": list(self.shape)}

    def close(self) -> None:
        self.method = None


class ExecuTorchRuntime(MobileRuntime):
    name = "executorch"
    extra = "executorch"
    module_name = "executorch"
    convert_modules = ("executorch",)
    artifacts = dict(FILES)
    gates = {"executorch": "fp32"}

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        self.require()
        require_packages(self, "executorch.exir", "executorch.backends.xnnpack.partition.xnnpack_partitioner")
        module = eval_copy(ctx.module)
        rewritten = rewrite_for_xnnpack(module)
        data, counts = lower_to_xnnpack(module, static_shape(ctx.example_shape))
        (Path(ctx.bundle_dir) / FILES["executorch"]).write_bytes(data)
        return ConvertResult((FILES["executorch"],), "fp32", {**counts, "rewritten_layers": rewritten})

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any) -> ExecuTorchSession:
        self.require()
        return ExecuTorchSession(path, threads)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": package_version("executorch"), "device": "cpu", "backend": "XNNPACK",
                "threads": None}


register_runtime(ExecuTorchRuntime())
