"""Admission control by requests in flight, and a clean answer for requests cut by shutdown.

uvicorn's own ``limit_concurrency`` counts open sockets, so idle or slow connections could take every
route down, health included. :class:`AdmissionMiddleware` counts HTTP requests the app is working on
instead: past ``limit`` (``--limit-concurrency``) a request is answered 503 with ``Retry-After`` at
once, before its body is read. The health routes are never counted nor refused, so liveness and
readiness answer under any load of idle, slow or busy clients.

When uvicorn's graceful-shutdown limit (``--graceful-timeout-s``) passes, it cancels the requests
still running. A cancelled request that has not started its answer gets 503 with ``Retry-After``
(the client may retry on another replica), not uvicorn's bare 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

log = logging.getLogger(__name__)

EXEMPT_PREFIXES = ("/v2/health/",)


async def send_error(send: Any, status: int, message: str, retry_after_s: int | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class AdmissionMiddleware:
    """Pure ASGI middleware: at most ``limit`` non-health requests in flight; drain cuts are 503."""

    def __init__(self, app: Any, limit: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = max(1, int(limit))
        self.retry_after_s = retry_after_s
        self.in_flight = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = not str(scope.get("path", "")).startswith(EXEMPT_PREFIXES)
        if counted and self.in_flight >= self.limit:
            await send_error(send, 503, f"the server is working on {self.in_flight} requests "
                                        f"(limit {self.limit}); retry later", self.retry_after_s)
            return
        started = False

        async def send_wrapper(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self.in_flight += counted
        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            # uvicorn cancels requests still running when the graceful-shutdown limit passes (client
            # disconnects do not cancel tasks): answer what it would otherwise answer 500.
            if started:
                raise
            log.warning("%s %s cut by shutdown: answered 503", scope.get("method"), scope.get("path"))
            await send_error(send, 503, "the server is shutting down; retry", self.retry_after_s)
        finally:
            self.in_flight -= counted
