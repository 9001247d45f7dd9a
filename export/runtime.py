"""The ONNX Runtime session helpers and trtexec-style timing under their first import path.

They live in the runtime layer now: sessions in :mod:`export.runtimes.onnxruntime`
(``session_options``, ``make_session``), timing in :mod:`export.runtimes.timing`
(``time_session``, ``summarize_times``). This module re-exports them and must not import torch.
"""

from __future__ import annotations

from export.runtimes.onnxruntime import DEFAULT_THREADS, make_session, session_options
from export.runtimes.timing import summarize_times, time_session

__all__ = ["DEFAULT_THREADS", "make_session", "session_options", "summarize_times", "time_session"]
