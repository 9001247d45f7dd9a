"""Dynamic micro-batching: one bounded queue and one batcher task per model.

A request submits its rows (1 for translate, ``count`` for generate) and awaits a future. The batcher
takes the first waiting request, then keeps collecting until the batch holds ``max_batch`` rows,
``max_delay`` has passed since that first request, or an inference thread is free with nothing else
waiting (waiting then would only add latency). It groups the collected requests by input shape and
runs each group off the event loop without awaiting it, so the next batch forms while this one
computes; up to ``parallel`` batches compute at once (backends whose ``run`` is thread-safe, such as
ONNX Runtime sessions, allow 2), so one batch's rows are answered and the next requests read while
another computes. Measured on 2 vCPUs with the load generator on the same cores (64 px mobile
student, 1 ORT thread, 435 images/s raw ORT): the wait-to-fill rule with one batch at a time gave
0.66x raw throughput at concurrency 8 and a 9.6 ms p50 at concurrency 1; this rule with 2 parallel
batches gives 0.92x and 3.9 ms.
``max_batch_pixels`` caps rows x H x W per backend call, so large images run one or two at a time
while small ones still batch up to ``max_batch``.
When ``queue_size`` requests are already waiting,
:meth:`MicroBatcher.submit` raises :class:`QueueFull` (the route answers 503 + Retry-After).
:meth:`MicroBatcher.stop` lets every queued request finish before the task ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from serve.metrics import ServerMetrics
from serve.priority import lower_thread_priority

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The model's queue holds ``queue_size`` requests already."""


class BatcherClosed(Exception):
    """The batcher is shutting down and takes no new requests."""


@dataclass
class _Request:
    rows: np.ndarray  # (n, ...) model input rows
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    abandoned: bool = False


_STOP = object()


class MicroBatcher:
    """Batches requests for one model's ``run_fn(batch) -> batch``."""

    def __init__(
        self,
        model: str,
        run_fn: Callable[[np.ndarray], np.ndarray],
        max_batch: int,
        max_delay_s: float,
        queue_size: int,
        metrics: ServerMetrics,
        fixed_batch: int | None = None,
        parallel: int = 1,
        max_batch_pixels: int | None = None,
    ) -> None:
        self.model = model
        self.run_fn = run_fn
        self.max_batch = max(1, max_batch)
        self.max_delay_s = max(0.0, max_delay_s)
        self.queue_size = queue_size
        self.fixed_batch = fixed_batch
        self.parallel = max(1, parallel)
        self.max_batch_pixels = max_batch_pixels
        self.metrics = metrics
        self._queue: asyncio.Queue = asyncio.Queue()  # bounded by ``depth`` checks, so _STOP always fits
        self.depth = 0
        self._closed = False
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix=f"infer-{model}")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.model}")

    async def stop(self) -> None:
        """Take no new requests, finish the queued ones, then end the task and the thread."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._queue.put_nowait(_STOP)
            await self._task
        self._executor.shutdown(wait=True)

    def submit(self, rows: np.ndarray) -> _Request:
        if self._closed:
            raise BatcherClosed(f"model {self.model} is shutting down")
        if self.depth >= self.queue_size:
            raise QueueFull(f"model {self.model} has {self.depth} requests queued (limit {self.queue_size})")
        request = _Request(rows=rows, future=asyncio.get_running_loop().create_future())
        self.depth += 1
        self.metrics.queue_depth.labels(self.model).set(self.depth)
        self._queue.put_nowait(request)
        return request

    async def infer(self, rows: np.ndarray, timeout_s: float) -> np.ndarray:
        """Queue ``rows`` and wait for their outputs; ``TimeoutError`` after ``timeout_s``."""
        request = self.submit(rows)
        done, _ = await asyncio.wait({request.future}, timeout=timeout_s)
        if not done:
            request.abandoned = True
            request.future.cancel()
            raise TimeoutError(f"model {self.model} did not answer within {timeout_s:g} s")
        return request.future.result()

    def _take(self, request: _Request) -> None:
        self.depth -= 1
        self.metrics.queue_depth.labels(self.model).set(self.depth)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        running: set[asyncio.Task] = set()  # batches computing (at most ``parallel``)
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is _STOP:
                break
            self._take(first)
            batch = [first]
            rows = len(first.rows)
            deadline = loop.time() + self.max_delay_s
            while rows < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    running = {t for t in running if not t.done()}
                    if len(running) < self.parallel:
                        break  # an inference thread is free: waiting would only add latency
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    getter = asyncio.ensure_future(self._queue.get())
                    done, _ = await asyncio.wait({getter, *running}, timeout=remaining,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:  # a batch finished (a thread is free) or time ran out
                        getter.cancel()
                        try:
                            item = await getter  # it may have completed while being cancelled
                        except asyncio.CancelledError:
                            continue
                    else:
                        item = getter.result()
                if item is _STOP:
                    stopping = True
                    break
                self._take(item)
                batch.append(item)
                rows += len(item.rows)
            running = {t for t in running if not t.done()}
            if len(running) >= self.parallel:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            # Dispatch without waiting for it: the next batch collects while this one computes.
            running.add(loop.create_task(self._execute(batch)))
        if running:
            await asyncio.wait(running)

    async def _execute(self, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        live = [r for r in batch if not r.abandoned and not r.future.done()]
        groups: OrderedDict[tuple, list[_Request]] = OrderedDict()
        for request in live:
            groups.setdefault((request.rows.shape[1:], request.rows.dtype.str), []).append(request)
        for members in (call for group in groups.values() for call in self._split_by_pixels(group)):
            now = time.perf_counter()
            for request in members:
                self.metrics.queue_duration.labels(self.model).observe(now - request.enqueued)
            stacked = np.concatenate([r.rows for r in members]) if len(members) > 1 else members[0].rows
            try:
                outputs = await loop.run_in_executor(self._executor, self._run_chunks, stacked)
            except Exception as exc:  # a backend failure fails these requests, not the batcher
                log.exception("inference failed for model %s", self.model)
                for request in members:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            offset = 0
            for request in members:
                n = len(request.rows)
                if not request.future.done():
                    request.future.set_result(outputs[offset : offset + n])
                offset += n

    def _rows_per_call(self, shape: tuple[int, ...]) -> int:
        """Rows of ``shape`` (one row's shape) that one backend call may take."""
        if not self.max_batch_pixels or len(shape) != 3 or self.fixed_batch:
            return self.max_batch
        return max(1, min(self.max_batch, self.max_batch_pixels // (shape[1] * shape[2])))

    def _split_by_pixels(self, members: list[_Request]) -> list[list[_Request]]:
        """Requests of one shape in groups that each fit one call, so large images are never stacked
        into one big copy (each group is answered as soon as it is done)."""
        limit = self._rows_per_call(members[0].rows.shape[1:])
        if limit >= self.max_batch:
            return [members]
        calls: list[list[_Request]] = [[]]
        rows = 0
        for request in members:
            if calls[-1] and rows + len(request.rows) > limit:
                calls.append([])
                rows = 0
            calls[-1].append(request)
            rows += len(request.rows)
        return calls

    def _run_chunks(self, stacked: np.ndarray) -> np.ndarray:
        """Run ``stacked`` in chunks of at most ``max_batch`` rows (padded when the graph wants a fixed batch)."""
        lower_thread_priority()  # below the event loop (see serve.priority)
        outs = []
        step = self._rows_per_call(stacked.shape[1:])  # activation memory grows with rows x H x W
        for start in range(0, len(stacked), step):
            chunk = stacked[start : start + step]
            n = len(chunk)
            if self.fixed_batch and n != self.fixed_batch:
                pad = np.repeat(chunk[-1:], self.fixed_batch - n, axis=0)
                chunk = np.concatenate([chunk, pad])
            t0 = time.perf_counter()
            out = self.run_fn(chunk)
            self.metrics.compute_duration.labels(self.model).observe(time.perf_counter() - t0)
            self.metrics.execution_count.labels(self.model).inc()
            self.metrics.inference_count.labels(self.model).inc(n)
            self.metrics.batch_size.labels(self.model).observe(n)
            outs.append(out[:n])
        return outs[0] if len(outs) == 1 else np.concatenate(outs)
