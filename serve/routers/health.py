"""KServe-v2 style health: live (the process answers) and ready (every model loaded and warmed)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serve.deps import ServerState, StateDep
from serve.schemas import ErrorResponse, HealthResponse

router = APIRouter(prefix="/v2/health", tags=["health"])


def _states(state: ServerState) -> dict[str, str]:
    return {name: model.state for name, model in state.models.items()}


@router.get(
    "/live",
    response_model=HealthResponse,
    responses={503: {"model": ErrorResponse, "description": "a model failed to load"}},
)
async def live(state: StateDep) -> JSONResponse:
    failed = state.failed
    if failed:
        return JSONResponse(
            {"error": f"model {failed[0].name} failed to load: {failed[0].error}"}, status_code=503
        )
    return JSONResponse({"status": "live", "models": _states(state)})


@router.get(
    "/ready",
    response_model=HealthResponse,
    responses={
        503: {
            "model": ErrorResponse,
            "description": "still loading or warming up",
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
        }
    },
)
async def ready(state: StateDep) -> JSONResponse:
    if not state.ready:
        pending = [f"{n}: {s}" for n, s in _states(state).items() if s != "ready"]
        return JSONResponse(
            {"error": "not ready (" + ", ".join(pending or ["starting"]) + ")"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    return JSONResponse({"status": "ready", "models": _states(state)})
