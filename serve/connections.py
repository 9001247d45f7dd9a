"""Connection-level limits uvicorn does not set by itself: a header deadline and a header size limit.

uvicorn closes a connection that stays idle *between* requests (``timeout_keep_alive``), but not one
that connects and then sends nothing, or sends its headers a byte at a time (slowloris), and its
httptools parser reads a header line of any length. :class:`GuardedHttpToolsProtocol` (or the h11
variant when httptools is absent) adds both:

- ``header_timeout_s``: from the moment a connection opens, or a response completes, the next
  request's headers must be complete within this many seconds, or the connection is closed (with a
  408 when some bytes of a request had arrived);
- ``max_header_bytes``: a request line plus headers longer than this is answered 431 and the
  connection closed, before the parser has buffered more than one read beyond the limit.

Neither counts request bodies: body bytes are budgeted by the routes (:mod:`serve.deps`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is an optional speed-up of uvicorn
    HttpToolsProtocol = None  # type: ignore[assignment, misc]

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _raw_response(status: int, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, _REASONS[status], len(body))
    ) + body


class _HeaderGuard:
    """Mixed into a uvicorn HTTP protocol class; the limits come from ``config.slimgan_limits``."""

    transport: asyncio.Transport
    cycle: Any
    loop: asyncio.AbstractEventLoop
    config: Any

    def _guard_init(self) -> None:
        limits = getattr(self.config, "slimgan_limits", None) or {}
        self._max_header_bytes = int(limits.get("max_header_bytes", 64 * 1024))
        self._header_timeout_s = float(limits.get("header_timeout_s", 10.0))
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    def _awaiting_headers(self) -> bool:
        """True between requests: no request yet, or the last one answered and its body fully read."""
        cycle = self.cycle
        return cycle is None or (cycle.response_complete and not cycle.more_body)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self._header_timeout_s, self._header_deadline)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_headers():
            return
        if self._header_bytes and self.cycle is None:
            self.transport.write(_raw_response(408, f"request headers not complete within {self._header_timeout_s:g} s"))
        self.transport.close()

    def _refuse_headers(self) -> None:
        self._disarm_header_timer()
        if self.cycle is None:  # nothing answered on this connection yet: say why
            self.transport.write(
                _raw_response(431, f"request headers exceed {self._max_header_bytes} bytes")
            )
        self.transport.close()

    def _guarded_data_received(self, data: bytes, feed: Any) -> None:
        before = self.cycle
        waiting = self._awaiting_headers()
        feed(data)
        if self.transport.is_closing():
            return
        if self.cycle is not before:  # a request's headers completed in this read
            self._disarm_header_timer()
            self._header_bytes = 0
        elif waiting and self._awaiting_headers():
            self._header_bytes += len(data)
            if self._header_bytes > self._max_header_bytes:
                self._refuse_headers()


def _guarded(base: type) -> type:
    class Guarded(_HeaderGuard, base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._guard_init()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            self._guarded_data_received(data, super().data_received)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


GuardedH11Protocol = _guarded(H11Protocol)
GuardedHttpToolsProtocol = _guarded(HttpToolsProtocol) if HttpToolsProtocol is not None else None


def protocol_class() -> type:
    """uvicorn's default HTTP implementation (httptools when installed, else h11), with the guard."""
    return GuardedHttpToolsProtocol or GuardedH11Protocol
