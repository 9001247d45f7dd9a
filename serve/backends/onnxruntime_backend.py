"""ONNX Runtime backend: CPU by default, the CUDA execution provider where this build has it.

Session options are those of :mod:`export.runtimes.onnxruntime` (full graph optimisation, sequential
execution, ``intra_op_num_threads = threads``, idle threads that do not spin), the same as export's
checks, so a served bundle runs the graph export measured. ``InferenceSession.run`` is thread-safe,
so two micro-batches may compute at once.
"""

from __future__ import annotations

from export.runtimes.onnxruntime import providers_for
from serve.backends.runtime_backend import RuntimeBackend

__all__ = ["OnnxRuntimeBackend", "providers_for"]


class OnnxRuntimeBackend(RuntimeBackend):
    name = "onnxruntime"
    runtime = "onnxruntime"
    roles = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}
