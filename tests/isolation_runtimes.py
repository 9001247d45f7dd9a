"""Runtimes that misbehave the ways third-party converters do, for tests/test_runtime_isolation.py.

They are not registered (a registry-wide contract test must never meet them); the tests hand the
instances to :func:`export.isolation.run_isolated`, whose child process imports this module by name.
``OnnxCopyRuntime`` is a well-behaved one: it "converts" by copying the fp32 ONNX and runs it with
ONNX Runtime, so its parity rows are real measurements.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from export.runtimes.base import ConvertContext, ConvertResult
from export.runtimes.mobile import MobileRuntime

NOISE_LINES = 400


class OnnxCopyRuntime(MobileRuntime):
    name = "iso-onnx-copy"
    module_name = "onnxruntime"
    artifacts = {"iso-onnx-copy": "model.iso.onnx"}
    gates = {"iso-onnx-copy": "fp32"}

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        for i in range(NOISE_LINES):  # the log noise a real converter prints
            print(f"W0000 converter noise line {i}", file=sys.stderr if i % 2 else sys.stdout)
        shutil.copyfile(ctx.onnx_path, Path(ctx.bundle_dir) / "model.iso.onnx")
        return ConvertResult(("model.iso.onnx",), "fp32", {"pid": os.getpid()})

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any):
        from export.runtimes import get_runtime

        return get_runtime("onnxruntime").load(path, threads=threads)


class SegfaultOnUseRuntime(OnnxCopyRuntime):
    """Converts fine, then dies of SIGSEGV when its artifact is run (the ncnn wheel on some hosts)."""

    name = "iso-segfault-on-use"

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any):
        os.kill(os.getpid(), signal.SIGSEGV)


class AbortInConvertRuntime(OnnxCopyRuntime):
    name = "iso-abort"

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        print("about to abort", flush=True)
        os.abort()


class HangingRuntime(OnnxCopyRuntime):
    name = "iso-hang"

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        (Path(ctx.bundle_dir) / "hang.pid").write_text(str(os.getpid()))
        while True:
            time.sleep(1)


class RaisingRuntime(OnnxCopyRuntime):
    name = "iso-raise"

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        raise ValueError("legalize failed for operation 'mhlo.convolution'\nsecond line of the converter's message")


class WrongNumbersRuntime(OnnxCopyRuntime):
    """Runs fine and returns outputs off by 0.01: a parity failure, not a crash."""

    name = "iso-wrong-numbers"

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any):
        inner = super().load(path, threads=threads)

        class Shifted:
            def run(self, x):
                return inner.run(x) + 0.01

            def close(self):
                inner.close()

        return Shifted()
