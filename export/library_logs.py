"""Third-party log output during a build step goes to a file in the bundle, not to the terminal.

ONNX Runtime's quantizer warns through the *root* logger (one "Expected bias ... to be an initializer"
line per convolution of a model with InstanceNorm), and NNCF logs through ``nncf``: dozens of lines a
user can do nothing about. They are kept, in ``BUNDLE/logs/<name>.log``, beside the phone runtimes' logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LIBRARY_LOGGERS = ("", "nncf")  # the root logger (onnxruntime.quantization) and NNCF's own


@contextmanager
def library_logs_to(path: str | Path) -> Iterator[Path]:
    """For the duration, the records of :data:`LIBRARY_LOGGERS` are written to ``path`` and nowhere else."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers = [handler]
        if name:
            logger.propagate = False
    try:
        yield path
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers = handlers
            logger.propagate = propagate
        handler.close()
