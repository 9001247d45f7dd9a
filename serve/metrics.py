"""Prometheus metrics, one registry per app (so several apps in one process never collide).

``slimgan_request_success_total`` / ``slimgan_request_failure_total`` {route, method, code}: requests
by route template and status (failure = status >= 400). ``slimgan_inference_count_total`` {model}:
images inferred; ``slimgan_execution_count_total`` {model}: backend executions, so the mean batch
size is inference / execution. ``slimgan_queue_depth`` {model}: requests waiting for a batch.
``slimgan_queue_duration_seconds`` and ``slimgan_compute_duration_seconds`` {model}: histograms of
time spent queued per request and per backend execution. With ``--workers N`` each worker process
keeps its own registry, so a scrape sees the worker that answered it.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class ServerMetrics:
    """All metrics of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_success = Counter(
            "slimgan_request_success",
            "Requests answered with status < 400",
            ["route", "method", "code"],
            registry=r,
        )
        self.request_failure = Counter(
            "slimgan_request_failure",
            "Requests answered with status >= 400",
            ["route", "method", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "slimgan_request_duration_seconds",
            "Time from request to response",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_count = Counter("slimgan_inference_count", "Images inferred", ["model"], registry=r)
        self.execution_count = Counter(
            "slimgan_execution_count",
            "Backend executions (batches); batch size = inference / execution",
            ["model"],
            registry=r,
        )
        self.queue_depth = Gauge("slimgan_queue_depth", "Requests waiting for a batch", ["model"], registry=r)
        self.queue_duration = Histogram(
            "slimgan_queue_duration_seconds",
            "Time a request waited in the queue",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_duration = Histogram(
            "slimgan_compute_duration_seconds",
            "Time of one backend execution",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "slimgan_batch_size",
            "Rows per backend execution",
            ["model"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=r,
        )
        self.model_ready = Gauge(
            "slimgan_model_ready", "1 when the model is loaded and warmed", ["model"], registry=r
        )


class RequestMetricsMiddleware:
    """Pure ASGI middleware counting every HTTP response by route template and status code."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        start = time.perf_counter()

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            code = status["code"]
            counter = self.metrics.request_success if code < 400 else self.metrics.request_failure
            counter.labels(path, scope.get("method", ""), str(code)).inc()
            self.metrics.request_duration.labels(path).observe(time.perf_counter() - start)
