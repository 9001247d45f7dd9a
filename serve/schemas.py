"""Request and response schemas (pydantic). Requests and responses are separate models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ImageFormat = Literal["png", "jpeg", "webp"]

IMAGE_MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class ErrorResponse(BaseModel):
    """Every error body."""

    error: str = Field(..., description="what went wrong, for a person")


class HealthResponse(BaseModel):
    status: Literal["live", "ready", "loading"]
    models: dict[str, str] = Field(default_factory=dict, description="model name -> state")


class ModelSummary(BaseModel):
    name: str
    task: Literal["translate", "generate"]
    arch: str
    backend: str
    ready: bool


class ModelListResponse(BaseModel):
    models: list[ModelSummary]


class ModelDetailResponse(BaseModel):
    """The manifest's public part plus what this server does with it."""

    model_config = ConfigDict(extra="allow")

    name: str
    task: Literal["translate", "generate"]
    backend: str
    max_batch: int
    manifest: dict[str, Any]


class GenerateRequest(BaseModel):
    """``POST /v2/models/{name}/generate``. Image ``i`` of a request uses the latent of seed ``seed + i``."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, le=2**32 - 1, description="latent seed; the same seed gives the same bytes")
    count: int = Field(1, ge=1, description="number of images (at most the server's max_count)")
    truncation: float | None = Field(
        None, ge=0.0, le=2.0,
        description="StyleGAN2 truncation ψ (w = w̄ + ψ·(w - w̄)); only for models whose manifest lists it "
                    "under controls; default: the model's (1.0, no truncation)",
    )
    format: ImageFormat = Field("png", description="output image format")
    layout: Literal["grid", "multipart"] = Field(
        "grid", description="several images: one grid image, or multipart/mixed with one part per image"
    )
