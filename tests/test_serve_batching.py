"""MicroBatcher on a real event loop with numpy "models": batching, grouping, padding, overload, drain."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from serve.batching import BatcherClosed, MicroBatcher, QueueFull
from serve.metrics import ServerMetrics


class Recorder:
    """``y = 2x`` that records the batch shapes it saw; optionally blocks until released."""

    def __init__(self, fail_on: float | None = None, gate: threading.Event | None = None) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.fail_on = fail_on
        self.gate = gate

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(5)
        self.shapes.append(batch.shape)
        if self.fail_on is not None and np.any(batch == self.fail_on):
            raise RuntimeError("backend exploded")
        return batch * 2


def make(run: Recorder, **kw: object) -> MicroBatcher:
    params = {"max_batch": 4, "max_delay_s": 0.05, "queue_size": 64, "metrics": ServerMetrics()} | kw
    return MicroBatcher("m", run, **params)


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    run = Recorder()

    async def main() -> list[np.ndarray]:
        b = make(run)
        b.start()
        outs = await asyncio.gather(*(b.infer(np.full((1, 3), i, np.float32), 5) for i in range(8)))
        await b.stop()
        return outs

    outs = asyncio.run(main())
    for i, out in enumerate(outs):
        assert out.shape == (1, 3) and np.all(out == 2 * i)
    assert run.shapes == [(4, 3), (4, 3)]


def test_groups_by_shape_chunks_large_requests_and_pads_fixed_batches() -> None:
    run = Recorder()

    async def main() -> tuple[np.ndarray, ...]:
        b = make(run, max_batch=4, fixed_batch=4)
        b.start()
        small = b.infer(np.ones((1, 2, 8, 8), np.float32), 5)
        other = b.infer(np.ones((1, 2, 4, 4), np.float32) * 3, 5)
        big = b.infer(
            np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1) * np.ones((6, 2, 4, 4), np.float32), 5
        )
        outs = await asyncio.gather(small, other, big)
        await b.stop()
        return outs

    small, other, big = asyncio.run(main())
    assert small.shape == (1, 2, 8, 8) and np.all(small == 2)
    assert other.shape == (1, 2, 4, 4) and np.all(other == 6)
    assert big.shape == (6, 2, 4, 4) and np.all(big[:, 0, 0, 0] == 2 * np.arange(6))
    assert all(shape[0] == 4 for shape in run.shapes)  # always the graph's fixed batch
    assert {shape[2:] for shape in run.shapes} == {(8, 8), (4, 4)}


def test_full_queue_raises_and_stop_drains_queued_requests() -> None:
    gate = threading.Event()
    run = Recorder(gate=gate)

    async def main() -> None:
        b = make(run, max_batch=1, max_delay_s=0.0, queue_size=2)
        b.start()
        first = asyncio.ensure_future(b.infer(np.zeros((1, 1), np.float32), 5))
        await asyncio.sleep(0.05)  # the batcher has taken the first request and blocks in run
        queued = [asyncio.ensure_future(b.infer(np.full((1, 1), i, np.float32), 5)) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            b.submit(np.zeros((1, 1), np.float32))
        stopping = asyncio.ensure_future(b.stop())
        await asyncio.sleep(0.01)
        with pytest.raises(BatcherClosed):
            b.submit(np.zeros((1, 1), np.float32))
        gate.set()
        await stopping
        results = await asyncio.gather(first, *queued)
        assert [float(r[0, 0]) for r in results] == [0.0, 2.0, 4.0]

    asyncio.run(main())


def test_backend_failure_fails_only_its_batch_and_timeouts_are_abandoned() -> None:
    run = Recorder(fail_on=-1.0)

    async def main() -> None:
        b = make(run, max_batch=1, max_delay_s=0.0)
        b.start()
        with pytest.raises(RuntimeError, match="exploded"):
            await b.infer(np.full((1, 1), -1.0, np.float32), 5)
        ok = await b.infer(np.ones((1, 1), np.float32), 5)
        assert float(ok[0, 0]) == 2.0
        await b.stop()

    asyncio.run(main())

    gate = threading.Event()
    slow = Recorder(gate=gate)

    async def timeout_case() -> None:
        b = make(slow, max_batch=1, max_delay_s=0.0)
        b.start()
        blocker = asyncio.ensure_future(b.infer(np.zeros((1, 1), np.float32), 5))
        await asyncio.sleep(0.02)
        with pytest.raises(TimeoutError):
            await b.infer(np.full((1, 1), 7.0, np.float32), 0.05)
        gate.set()
        await blocker
        await b.stop()

    asyncio.run(timeout_case())
    assert (1, 1) in slow.shapes and len(slow.shapes) == 1  # the timed-out request never ran


def test_idle_thread_takes_a_lone_request_at_once_and_busy_thread_lets_a_batch_form() -> None:
    gate = threading.Event()
    run = Recorder(gate=gate)

    async def main() -> float:
        b = make(run, max_batch=4, max_delay_s=2.0)  # a wait-to-fill rule would hold the first for 2 s
        b.start()
        t0 = asyncio.get_running_loop().time()
        first = asyncio.ensure_future(b.infer(np.zeros((1, 3), np.float32), 10))
        await asyncio.sleep(0.05)  # the first is computing (blocked on the gate) ...
        rest = [asyncio.ensure_future(b.infer(np.full((1, 3), i, np.float32), 10)) for i in (1, 2, 3)]
        await asyncio.sleep(0.05)  # ... while three more arrive
        gate.set()
        await asyncio.gather(first, *rest)
        elapsed = asyncio.get_running_loop().time() - t0
        await b.stop()
        return elapsed

    elapsed = asyncio.run(main())
    assert run.shapes == [(1, 3), (3, 3)]  # the lone request went alone; the late three shared a batch
    assert elapsed < 1.0  # nobody waited for max_delay


def test_parallel_batches_compute_at_the_same_time_and_keep_their_rows() -> None:
    """With ``parallel=2`` a second batch starts while the first still computes (thread-safe backends)."""
    started = threading.Barrier(2, timeout=5)  # both batches must be inside run() at once to pass
    shapes: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        started.wait()
        shapes.append(len(batch))
        return batch * 2

    async def main() -> list[np.ndarray]:
        b = MicroBatcher("m", run, max_batch=2, max_delay_s=0.5, queue_size=64, metrics=ServerMetrics(), parallel=2)
        b.start()
        outs = await asyncio.gather(*(b.infer(np.full((1, 3), i, np.float32), 10) for i in range(4)))
        await b.stop()
        return outs

    outs = asyncio.run(main())
    assert [float(o[0, 0]) for o in outs] == [0.0, 2.0, 4.0, 6.0]
    assert sorted(shapes) == [2, 2]
