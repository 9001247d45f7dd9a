"""Model metadata: the list of served models and each one's public manifest."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from serve.deps import ModelDep, StateDep, require_api_key
from serve.schemas import ErrorResponse, ModelDetailResponse, ModelListResponse, ModelSummary

router = APIRouter(prefix="/v2/models", tags=["models"], dependencies=[Depends(require_api_key)])

AUTH_ERRORS = {401: {"model": ErrorResponse, "description": "missing or wrong API key"}}


@router.get("", response_model=ModelListResponse, responses=AUTH_ERRORS)
async def list_models(state: StateDep) -> ModelListResponse:
    return ModelListResponse(
        models=[
            ModelSummary(
                name=m.name, task=m.task, arch=m.manifest.arch, backend=m.backend_name, ready=m.ready
            )
            for m in state.models.values()
        ]
    )


@router.get(
    "/{name}",
    response_model=ModelDetailResponse,
    responses={**AUTH_ERRORS, 404: {"model": ErrorResponse, "description": "unknown model"}},
)
async def model_detail(model: ModelDep) -> ModelDetailResponse:
    return ModelDetailResponse(
        name=model.name,
        task=model.task,
        backend=model.backend_name,
        max_batch=model.max_batch,
        manifest=model.public(),
    )
