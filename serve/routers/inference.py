"""Inference routes: ``translate`` (image in, image out) and ``generate`` (seed in, image(s) out).

Decoding, pre/post-processing and encoding run in worker threads; the backend runs on the model's
inference thread behind the micro-batcher. The event loop only moves bytes.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError

from serve.batching import BatcherClosed, QueueFull
from serve.deps import (
    ReadyModelDep,
    ServerState,
    StateDep,
    media_type_of,
    read_body,
    require_api_key,
    reserve_body,
)
from serve.errors import ApiError
from serve.imaging import INPUT_MEDIA_TYPES, check_aspect, encode_image, make_grid, open_image
from serve.multipart import boundary_of, parse_form
from serve.priority import run_lowered
from serve.schemas import IMAGE_MEDIA_TYPES, ErrorResponse, GenerateRequest, ImageFormat
from serve.served_model import ServedModel

router = APIRouter(prefix="/v2/models", tags=["inference"], dependencies=[Depends(require_api_key)])

# Our own outputs this small encode in well under a millisecond: doing that on the event loop is
# cheaper than a thread hop. Client bytes are always parsed in a worker thread.
INLINE_MAX_SIDE = 128

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_RETRY = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait before retrying"}}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description, **extra}


COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("bad input: not an image, truncated or corrupt, or the wrong task for this model"),
    401: _error("missing or wrong API key"),
    404: _error("unknown model"),
    408: _error("the request body did not arrive within --body-timeout-s"),
    413: _error("body over the byte limit, image over the pixel limit, or absurd image structure"),
    415: _error("unsupported content type, or an image encoding this server does not decode (compressed BMP)"),
    422: _error("invalid parameters or JSON"),
    429: _error("more large images in flight than the decode budgets hold", headers=_RETRY),
    500: _error("inference failed inside the backend"),
    503: _error("queue full, too many requests in flight, request-body memory busy, model loading or server "
                "shutting down", headers=_RETRY),
    504: _error("the request timed out"),
}

_IMAGE_OUT = {
    "description": "the translated image, at the input's size",
    "content": {media: _BINARY for media in IMAGE_MEDIA_TYPES.values()},
}

_TRANSLATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": "PNG, JPEG, WebP or BMP",
                        },
                        "format": {"type": "string", "enum": list(IMAGE_MEDIA_TYPES)},
                    },
                }
            },
            **{media: _BINARY for media in INPUT_MEDIA_TYPES},
            "application/octet-stream": _BINARY,
        },
    }
}

_GENERATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": GenerateRequest.model_json_schema()}},
    }
}


def format_from_accept(accept: str | None) -> str | None:
    """The image format the ``Accept`` header prefers (highest q, first on ties), or None."""
    best: tuple[float, str] | None = None
    by_media = {v: k for k, v in IMAGE_MEDIA_TYPES.items()}
    for part in (accept or "").split(","):
        media, *params = [p.strip() for p in part.split(";")]
        fmt = by_media.get(media.lower())
        if fmt is None:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or q > best[0]):
            best = (q, fmt)
    return best[1] if best else None


async def run_model(model: ServedModel, rows: np.ndarray, state: ServerState) -> np.ndarray:
    """Queue ``rows`` on the model's batcher, mapping overload to 503 and deadline to 504."""
    assert model.batcher is not None
    retry = {"Retry-After": str(state.settings.retry_after_s)}
    try:
        return await model.batcher.infer(rows, state.settings.timeout_s)
    except QueueFull as exc:
        raise ApiError(503, f"{exc}; retry later", retry) from exc
    except BatcherClosed as exc:
        raise ApiError(503, str(exc), retry) from exc
    except TimeoutError as exc:
        raise ApiError(504, str(exc)) from exc
    except ApiError:
        raise
    except Exception as exc:  # backend failure: logged by the batcher, answered without internals
        raise ApiError(500, f"inference failed for model {model.name}") from exc


async def _read_translate_input(request: Request, state: ServerState) -> tuple[bytes, str | None]:
    """(image bytes, format field) from a multipart form or a raw image body."""
    settings = state.settings
    media = media_type_of(request)
    if media == "multipart/form-data":
        boundary_of(request.headers.get("content-type", ""))  # a bad boundary is refused before the body is read
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        # Parsed in a worker thread with C-speed delimiter searches: no body can hold the event loop.
        parts = await anyio.to_thread.run_sync(parse_form, body, request.headers.get("content-type", ""), 8)
        del body
        fields = {part.name: part for part in parts}
        if "image" not in fields:
            raise ApiError(422, "multipart field 'image' is required")
        fmt_part = fields.get("format")
        fmt = None
        if fmt_part is not None:
            if fmt_part.filename is not None:
                raise ApiError(422, "multipart field 'format' must be text")
            fmt = fmt_part.data.decode("utf-8", "replace")
        return fields["image"].data, fmt
    if media in INPUT_MEDIA_TYPES or media == "application/octet-stream":
        return await read_body(request, settings.max_body_bytes, settings.body_timeout_s), None
    shown = media or "none"
    raise ApiError(
        415,
        f"content type {shown} is not accepted; send multipart/form-data with field 'image', "
        f"or a raw body of type {', '.join(INPUT_MEDIA_TYPES)}",
    )


def _check_format(fmt: str | None) -> str | None:
    if fmt is not None and fmt not in IMAGE_MEDIA_TYPES:
        raise ApiError(422, f"format {fmt!r} is not one of {', '.join(IMAGE_MEDIA_TYPES)}")
    return fmt


@router.post(
    "/{name}/translate",
    response_class=Response,
    responses={200: _IMAGE_OUT, **COMMON_ERRORS},
    openapi_extra=_TRANSLATE_BODY,
    summary="Translate an image",
)
async def translate(
    request: Request,
    model: ReadyModelDep,
    state: StateDep,
    format: Annotated[ImageFormat | None, Query(description="output format; else Accept, else png")] = None,
    upscale: Annotated[
        bool, Query(description="answer at the input's size even when inference ran at a smaller one")
    ] = False,
) -> Response:
    if model.task != "translate":
        raise ApiError(
            400, f"model {model.name} is a {model.task} model; use /v2/models/{model.name}/{model.task}"
        )
    settings = state.settings
    # multipart holds the body and the image part it is sliced into
    copies = 2 if media_type_of(request) == "multipart/form-data" else 1
    body_cost = await reserve_body(state, request, copies)
    try:
        data, form_format = await _read_translate_input(request, state)
        fmt = format or _check_format(form_format) or format_from_accept(request.headers.get("accept")) or "png"

        def open_checked(raw: bytes) -> tuple[Any, tuple[int, int] | None]:
            image = open_image(raw, settings.max_pixels)  # structure and header only: nothing decoded yet
            check_aspect(image.size, settings.max_aspect)
            return image, model.draft(image)

        # Even a header can cost interpreter time (Pillow parses markers in Python), so nothing of the
        # client's bytes is parsed on the event loop.
        image, original = await anyio.to_thread.run_sync(run_lowered, open_checked, data)
        inflight_cost = await state.inflight_budget.acquire(model.input_pixels(original or image.size),
                                                            settings.timeout_s)
    except BaseException:
        state.body_budget.release(body_cost)
        raise
    # Three budgets bound memory by configuration: body bytes until decoded, pixels being decoded and
    # resized, and inference-size pixels from decode to answer (the request's float tensors).
    try:
        try:
            async with state.decode_budget.hold(model.decode_price(image, original), settings.timeout_s):
                rows, restore = await anyio.to_thread.run_sync(run_lowered, model.prepare, image, original, upscale)
        finally:
            del image, data  # the upload and its decoder are not held while the request waits for the model
            state.body_budget.release(body_cost)
        output = await run_model(model, rows, state)
        del rows
        content = await _encode_translation(model, state, output, restore, fmt, upscale)
    finally:
        state.inflight_budget.release(inflight_cost)
    return Response(content, media_type=IMAGE_MEDIA_TYPES[fmt])


async def _encode_translation(
    model: ServedModel, state: ServerState, output: np.ndarray, restore: Any, fmt: str, upscale: bool
) -> bytes:
    def encode() -> bytes:
        return encode_image(model.restore(output[0], restore), fmt)

    out_w, out_h = restore.original
    if max(out_w, out_h) <= INLINE_MAX_SIDE:
        return encode()
    if upscale and out_w * out_h > restore.resized[0] * restore.resized[1]:
        async with state.decode_budget.hold(out_w * out_h, state.settings.timeout_s):  # enlarging: as large as a decode
            return await anyio.to_thread.run_sync(run_lowered, encode, limiter=state.encode_limiter)
    # bounded by the inference size
    return await anyio.to_thread.run_sync(run_lowered, encode, limiter=state.encode_limiter)


@router.post(
    "/{name}/generate",
    response_class=Response,
    responses={
        200: {
            "description": "one image (count 1 or layout grid), or multipart/mixed with one image per part",
            "content": {**{m: _BINARY for m in IMAGE_MEDIA_TYPES.values()}, "multipart/mixed": _BINARY},
        },
        **COMMON_ERRORS,
    },
    openapi_extra=_GENERATE_BODY,
    summary="Generate images from a seed",
)
async def generate(
    request: Request,
    model: ReadyModelDep,
    state: StateDep,
) -> Response:
    if model.task != "generate":
        raise ApiError(
            400, f"model {model.name} is a {model.task} model; use /v2/models/{model.name}/{model.task}"
        )
    media = media_type_of(request)
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, f"content type {media or 'none'} is not accepted; send application/json")
    settings = state.settings
    body_cost = await reserve_body(state, request)
    try:
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
    finally:
        state.body_budget.release(body_cost)
    try:
        params = GenerateRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise ApiError(422, f"{loc + ': ' if loc else ''}{first.get('msg', 'invalid')}") from exc
    if params.count > settings.max_count:
        raise ApiError(422, f"count: at most {settings.max_count} images per request, got {params.count}")
    fmt = params.format
    if "format" not in params.model_fields_set:
        fmt = format_from_accept(request.headers.get("accept")) or fmt
    if params.truncation is not None and model.truncation is None:
        raise ApiError(422, f"truncation: model {model.name} has no truncation input (its manifest lists no "
                            "controls.truncation)")
    rows = model.latents(params.seed, params.count, params.truncation)
    output = await run_model(model, rows, state)

    def encode() -> tuple[bytes, str]:
        images = model.images_from(output)
        if len(images) == 1 or params.layout == "grid":
            return encode_image(images[0] if len(images) == 1 else make_grid(images), fmt), IMAGE_MEDIA_TYPES[
                fmt
            ]
        boundary = uuid.UUID(int=params.seed * 1000 + params.count).hex  # deterministic bytes per request
        parts = []
        for i, image in enumerate(images):
            head = (
                f"--{boundary}\r\nContent-Type: {IMAGE_MEDIA_TYPES[fmt]}\r\n"
                f'Content-Disposition: inline; filename="seed-{params.seed + i}.{fmt}"\r\n\r\n'
            )
            parts.append(head.encode() + encode_image(image, fmt) + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return b"".join(parts), f"multipart/mixed; boundary={boundary}"

    inline = params.count == 1 and max(output.shape[-2:]) <= INLINE_MAX_SIDE
    content, media_type = encode() if inline else await anyio.to_thread.run_sync(encode)
    return Response(content, media_type=media_type)
