"""Server configuration: ``ServeSettings`` reads ``SLIMGAN_*`` environment variables (pydantic-settings).

The CLI fills the same fields from its flags; a flag wins over the environment. List fields
(``bundles``, ``cors``) are JSON arrays in the environment, e.g. ``SLIMGAN_BUNDLES='["b1", "b2"]'``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BackendName = Literal["auto", "onnxruntime", "openvino", "tensorrt", "dummy"]


class ServeSettings(BaseSettings):
    """Everything ``slimgan serve`` can be told; each field is also ``SLIMGAN_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SLIMGAN_", extra="ignore", frozen=True)

    bundles: list[str] = Field(default_factory=list, description="bundle directories to serve")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes (each loads every bundle)")
    backend: BackendName = Field("auto", description="auto: the bundle's preferred runtime when installed, else onnxruntime")
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description="which model file of the bundle")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime: CUDA provider when present"
    )
    threads: int = Field(0, ge=0, description="runtime threads (ONNX Runtime intra-op, OpenVINO inference); 0 = cores / workers")
    max_batch: int = Field(8, ge=1, le=256, description="largest micro-batch")
    max_delay_ms: float = Field(5.0, ge=0, le=10_000, description="longest wait to fill a micro-batch")
    queue: int = Field(64, ge=1, description="pending requests per model before 503")
    timeout_s: float = Field(30.0, gt=0, description="per-request deadline before 504")
    api_key: str | None = Field(None, description="when set, /v2/models* and /metrics need it")
    cors: list[str] = Field(default_factory=list, description="allowed CORS origins")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1, description="largest request body")
    max_pixels: int = Field(4096 * 4096, ge=1, description="largest decoded image (width x height)")
    max_infer_side: int = Field(1024, ge=8, description="larger inputs are downscaled for inference")
    max_batch_pixels: int = Field(
        1024 * 1024, ge=1, description="rows x H x W per backend call; larger batches of large images are split"
    )
    inflight_pixels: int = Field(
        4 * 1024 * 1024,
        ge=1,
        description="inference-size pixels of translate requests between decode and answer (their float tensors)",
    )
    decode_budget_pixels: int = Field(
        2 * 4096 * 4096, ge=1, description="pixels decoded at once across requests; the rest wait their turn"
    )
    limit_concurrency: int = Field(
        64, ge=1, description="requests in flight (health routes excluded) before 503; idle sockets do not count"
    )
    max_connections: int = Field(
        1000, ge=2, description="open connections uvicorn keeps before answering 503 on every route"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="a request's headers must arrive within this long of the connection opening "
                                "(or the last answer); else the connection is closed"
    )
    keep_alive_s: float = Field(5.0, gt=0, description="idle keep-alive connections are closed after this long")
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="request line and headers; longer is 431")
    body_timeout_s: float = Field(30.0, gt=0, description="a request body must arrive within this long; else 408")
    body_budget_bytes: int = Field(
        128 * 1024 * 1024, ge=1, description="request body bytes held at once across requests; the rest wait, "
                                             "then 503"
    )
    max_aspect: float = Field(64.0, ge=1, description="longest over shortest side of an input image; more is 422")
    max_count: int = Field(16, ge=1, le=256, description="most images one generate request may ask for")
    dummy_delay_ms: float = Field(0.0, ge=0, description="dummy backend: simulated compute per batch")
    retry_after_s: int = Field(1, ge=1, description="Retry-After seconds sent with 503")
    graceful_timeout_s: float = Field(
        30.0, ge=0, description="how long shutdown waits for in-flight requests (then 503 to those still "
                                "running); 0 waits for them all"
    )
    log_level: str = "info"
    access_log: bool = Field(False, description="one uvicorn access-log line per request (client, method, "
                                                "path, status); off by default")

    @field_validator("api_key")
    @classmethod
    def _api_key_is_usable(cls, value: str | None) -> str | None:
        # Headers arrive latin-1 decoded, so a non-ASCII key could never match; an empty one would
        # silently turn authentication off.
        if value is None:
            return None
        if not value:
            raise ValueError("must not be empty (leave it unset to serve without a key)")
        if not value.isascii() or not value.isprintable() or value != value.strip():
            raise ValueError("must be printable ASCII without surrounding spaces")
        return value
