"""OpenVINO backend: the bundle's IR (``model.xml``; ``--precision int8``: NNCF's ``model.int8.xml``).

Compiled as export checked and timed it (:meth:`export.runtimes.openvino.OpenVINORuntime.load_from_bundle`:
the compile properties and the precision recorded in ``manifest.runtimes.openvino.precision``), from
the IR read into memory. One infer request per calling thread.
"""

from __future__ import annotations

from serve.backends.runtime_backend import RuntimeBackend


class OpenVINOBackend(RuntimeBackend):
    name = "openvino"
    runtime = "openvino"
    roles = {"fp32": "openvino", "int8": "openvino-int8"}
