"""Shared request plumbing: server state, API-key check, model lookup, bounded body reads."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serve.errors import ApiError
from serve.image_guards import PixelBudget
from serve.metrics import ServerMetrics
from serve.served_model import ServedModel
from serve.settings import ServeSettings


@dataclass
class ServerState:
    """What the app holds in ``app.state.server``."""

    settings: ServeSettings
    models: dict[str, ServedModel]
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    loading_done: bool = False
    decode_budget: PixelBudget = field(init=False)
    inflight_budget: PixelBudget = field(init=False)
    body_budget: PixelBudget = field(init=False)

    _encode_limiter: anyio.CapacityLimiter | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.decode_budget = PixelBudget(self.settings.decode_budget_pixels, self.settings.retry_after_s)
        self.inflight_budget = PixelBudget(self.settings.inflight_pixels, self.settings.retry_after_s)
        # A body waiting for its budget stays in the socket buffers (uvicorn pauses reading), not in memory.
        self.body_budget = PixelBudget(self.settings.body_budget_bytes, self.settings.retry_after_s, status=503,
                                       what="request-body memory", unit="bytes")

    @property
    def encode_limiter(self) -> anyio.CapacityLimiter:
        """Threads encoding answers at once (each holds float copies of its output); made on first use,
        inside the event loop."""
        if self._encode_limiter is None:
            self._encode_limiter = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))
        return self._encode_limiter

    @property
    def ready(self) -> bool:
        return self.loading_done and all(m.ready for m in self.models.values())

    @property
    def failed(self) -> list[ServedModel]:
        return [m for m in self.models.values() if m.state == "failed"]


def server_state(request: Request) -> ServerState:
    return request.app.state.server


async def get_state(request: Request) -> ServerState:
    return request.app.state.server


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's --api-key")
_bearer = HTTPBearer(auto_error=False, description="the server's --api-key as a bearer token")


async def require_api_key(
    request: Request,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries the key (``X-API-Key`` or ``Authorization: Bearer``), when one is set."""
    expected = server_state(request).settings.api_key
    if not expected:
        return
    given = api_key or (bearer.credentials if bearer else None)
    if not given or not secrets.compare_digest(given.encode(), expected.encode()):
        raise ApiError(
            401,
            "missing or wrong API key (send X-API-Key or Authorization: Bearer)",
            {"WWW-Authenticate": "Bearer"},
        )


async def get_model(name: str, request: Request) -> ServedModel:
    """The model called ``name`` (404 otherwise)."""
    models = server_state(request).models
    model = models.get(name)
    if model is None:
        raise ApiError(404, f"unknown model {name!r}; served models: {', '.join(sorted(models))}")
    return model


async def get_ready_model(model: Annotated[ServedModel, Depends(get_model)]) -> ServedModel:
    """The model, once loaded and warmed (503 + Retry-After before)."""
    if not model.ready:
        raise ApiError(503, f"model {model.name} is {model.state}", {"Retry-After": "1"})
    return model


StateDep = Annotated[ServerState, Depends(get_state)]
ModelDep = Annotated[ServedModel, Depends(get_model)]
ReadyModelDep = Annotated[ServedModel, Depends(get_ready_model)]


def media_type_of(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def declared_length(request: Request, limit: int) -> int | None:
    """The request's Content-Length (413 over ``limit``, 400 when not a number), or None (chunked)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    try:
        size = int(declared)
    except ValueError as exc:
        raise ApiError(400, f"bad Content-Length {declared!r}") from exc
    if size < 0:
        raise ApiError(400, f"bad Content-Length {declared!r}")
    if size > limit:
        raise ApiError(413, f"body is {size} bytes; the limit is {limit}")
    return size


async def read_body(request: Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The request body, or 413 as soon as it exceeds ``limit`` bytes (declared or streamed), or 408
    when it has not all arrived within ``timeout_s``."""
    declared_length(request, limit)
    chunks: list[bytes] = []
    total = 0
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    raise ApiError(413, f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError as exc:
        raise ApiError(408, f"the request body did not arrive within {timeout_s:g} s") from exc
    body = b"".join(chunks)  # on the event loop, so one request at a time holds the two copies
    chunks.clear()
    return body


async def reserve_body(state: ServerState, request: Request, copies: int = 1) -> int:
    """Take ``copies`` x the body's size (the limit when not declared) from the body budget before reading
    it; 503 with Retry-After when it is not free within ``--timeout-s``. Give it back with ``release``."""
    limit = state.settings.max_body_bytes
    size = declared_length(request, limit)
    return await state.body_budget.acquire(copies * (limit if size is None else max(1, size)), state.settings.timeout_s)
