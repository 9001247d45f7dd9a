"""CPU priority for the server's worker threads.

Decoding, encoding and inference are CPU-bound and run in worker threads; the event loop only moves
bytes and answers health checks. When the cores are saturated the kernel shares them equally among
runnable threads, so a dozen busy workers would leave the loop a dozenth of a core and a health probe
would wait seconds. Worker threads therefore lower their own priority (Linux per-thread nice value);
threads they start, such as ONNX Runtime's intra-op pool created while a model loads, inherit it.
Elsewhere this is a no-op.
"""

from __future__ import annotations

import os
import threading

WORKER_NICENESS = 10
_done = threading.local()


def lower_thread_priority() -> None:
    """Give the calling thread (once) ``WORKER_NICENESS`` more nice than the process."""
    if getattr(_done, "value", False):
        return
    _done.value = True
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + WORKER_NICENESS))
    except OSError:  # not permitted in this sandbox: run at normal priority
        pass


def run_lowered(fn, *args):
    """``fn(*args)`` on a lowered-priority thread (for ``anyio.to_thread.run_sync``)."""
    lower_thread_priority()
    return fn(*args)
