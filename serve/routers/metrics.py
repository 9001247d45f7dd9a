"""Prometheus exposition of the app's registry."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serve.deps import StateDep, require_api_key
from serve.schemas import ErrorResponse

router = APIRouter(tags=["metrics"], dependencies=[Depends(require_api_key)])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format",
        },
        401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    },
)
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
