"""OpenVINO backend: the bundle's IR (``model.xml``; ``--precision int8``: NNCF's ``model.int8.xml``).

Compiled as export checked and timed it: ``PERFORMANCE_HINT=LATENCY``, one stream,
``INFERENCE_NUM_THREADS = threads`` and the inference precision recorded in
``manifest.runtimes.openvino.precision``. One infer request per calling thread.
"""

from __future__ import annotations

from typing import Any

from serve.backends.runtime_backend import RuntimeBackend


class OpenVINOBackend(RuntimeBackend):
    name = "openvino"
    runtime = "openvino"
    roles = {"fp32": "openvino", "int8": "openvino-int8"}

    def load_options(self, role: str) -> dict[str, Any]:
        precision = (self.manifest.runtimes.get(role) or {}).get("precision")
        return {"precision": precision} if precision in ("f32", "bf16", "f16") else {}
