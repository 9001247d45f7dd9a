"""The app factory. ``create_app(settings)`` reads every manifest up front (bad bundles fail before the
server binds), and its lifespan loads and warms each model in a worker thread, starting each
model's micro-batcher as it becomes ready. ``/v2/health/live`` answers at once; ``/v2/health/ready``
answers 503 until every model is warm. On shutdown, queued requests finish before backends close.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from serve.admission import AdmissionMiddleware
from serve.deps import ServerState
from serve.errors import install_error_handlers
from serve.metrics import RequestMetricsMiddleware
from serve.priority import run_lowered
from serve.routers import health, inference, metrics, models, ui
from serve.served_model import build_models
from serve.settings import ServeSettings
from slimgan import __version__
from slimgan.errors import ConfigError

log = logging.getLogger(__name__)


async def load_models(state: ServerState) -> None:
    """Load and warm every model off the event loop; a failure marks that model ``failed``."""
    try:
        for model in state.models.values():
            if model.backend is None:  # ``slimgan serve`` loads every model before it binds
                try:
                    await anyio.to_thread.run_sync(run_lowered, model.load)
                except Exception as exc:  # logged here; health answers without the details
                    model.state = "failed"
                    model.error = str(exc)
                    log.error("model %s failed to load: %s", model.name, exc)
                    continue
            model.start(state.metrics)
    finally:
        state.loading_done = True
    if state.ready:
        log.info("ready: %s", ", ".join(state.models))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.server
    async with anyio.create_task_group() as tg:
        tg.start_soon(load_models, state)
        yield
        tg.cancel_scope.cancel()
    for model in state.models.values():
        await model.stop()


def load_models_now(app: FastAPI) -> None:
    """Load and warm every model now, before the server binds: a bundle that cannot load is a
    one-line ConfigError (as Triton exits on a model that fails to load)."""
    import concurrent.futures

    state: ServerState = app.state.server
    # Loaded on a lowered-priority thread, so the runtime's own thread pool inherits that priority.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="load") as pool:
        for model in state.models.values():
            try:
                pool.submit(run_lowered, model.load).result()
            except Exception as exc:
                model.close()
                lines = str(exc).strip().splitlines()
                detail = (lines[0] if lines else type(exc).__name__)[:300]
                raise ConfigError(f"bundle {model.bundle_dir}: cannot load it: {detail}") from exc


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """Build the FastAPI app for ``settings`` (default: from ``SLIMGAN_*`` environment variables)."""
    settings = settings or ServeSettings()
    state = ServerState(settings=settings, models=build_models(settings))
    protected = bool(settings.api_key)
    app = FastAPI(
        title="slimgan",
        version=__version__,
        description="Serve slimgan bundles: image-to-image translation and seeded generation. "
        'Errors are JSON objects {"error": ...}.',
        lifespan=lifespan,
        # With a key, the schema (it lists the model names) and the docs are behind it too.
        openapi_url=None if protected else "/openapi.json",
        docs_url=None if protected else "/docs",
        redoc_url=None if protected else "/redoc",
    )
    app.state.server = state
    install_error_handlers(app)
    for router in (health.router, models.router, inference.router, metrics.router, ui.router):
        app.include_router(router)
    # Innermost of the two, so the metrics count its 503s; health routes are never refused.
    app.add_middleware(AdmissionMiddleware, limit=settings.limit_concurrency, retry_after_s=settings.retry_after_s)
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)
    if settings.cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Accept", "Authorization", "X-API-Key"],
        )
    _customize_openapi(app, state)
    if protected:
        _add_protected_docs(app)
    return app


def _add_protected_docs(app: FastAPI) -> None:
    """``/openapi.json`` and ``/docs`` behind the API key (FastAPI serves them openly by default)."""
    from fastapi import Depends
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse, JSONResponse

    from serve.deps import require_api_key

    guard = [Depends(require_api_key)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="slimgan")


def _customize_openapi(app: FastAPI, state: ServerState) -> None:
    """Make the spec describe this server: ``{name}`` enumerates the models each route serves,
    ``count`` is capped at ``max_count``, and security is claimed only when ``--api-key`` is set."""
    build = app.openapi
    by_task = {
        task: sorted(n for n, m in state.models.items() if m.task == task)
        for task in ("translate", "generate")
    }

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = build()
            for route, path in spec.get("paths", {}).items():
                names = by_task.get(route.rsplit("/", 1)[-1], sorted(state.models))
                for operation in path.values():
                    for param in operation.get("parameters", []):
                        if param.get("in") == "path" and param.get("name") == "name" and names:
                            param["schema"] = {**param.get("schema", {}), "enum": names}
                    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
                    count = body.get("schema", {}).get("properties", {}).get("count")
                    if count is not None:
                        body["schema"] = copy.deepcopy(body["schema"])
                        body["schema"]["properties"]["count"]["maximum"] = state.settings.max_count
                    if not state.settings.api_key:
                        operation.pop("security", None)
                        operation.get("responses", {}).pop("401", None)
            if not state.settings.api_key:
                spec.get("components", {}).pop("securitySchemes", None)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory serve.app:app_from_env`` (multi-worker runs)."""
    return create_app(ServeSettings())
