"""KServe-v2 style health: live (the process answers) and ready (every model loaded and warmed)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serve.deps import ServerState, StateDep
from serve.schemas import ErrorResponse, HealthResponse

router = APIRouter(prefix="/v2/health", tags=["health"])


def _states(state: ServerState) -> dict[str, str]:
    """Model name -> state; empty when an API key is set (the names are behind the key)."""
    if state.settings.api_key:
        return {}
    return {name: model.state for name, model in state.models.items()}


@router.get("/live", response_model=HealthResponse)
async def live(state: StateDep) -> JSONResponse:
    """200 while the process answers. Load failures show on ``/ready`` (and in the log), not here."""
    return JSONResponse({"status": "live", "models": _states(state)})


@router.get(
    "/ready",
    response_model=HealthResponse,
    responses={
        503: {
            "model": ErrorResponse,
            "description": "a model is still loading or warming up, or failed to load",
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
        }
    },
)
async def ready(state: StateDep) -> JSONResponse:
    if not state.ready:
        pending = [f"{n}: {s}" for n, s in _states(state).items() if s != "ready"]
        detail = f" ({', '.join(pending)})" if pending else ""
        return JSONResponse({"error": f"not ready{detail}"}, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready", "models": _states(state)})
