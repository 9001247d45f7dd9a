"""``slimgan serve BUNDLE [BUNDLE ...]``: run the HTTP server (torch-free path).

Flags override ``SLIMGAN_*`` environment variables, which override defaults (see
:class:`serve.settings.ServeSettings`). A bundle may be given as ``NAME=PATH`` to choose its model name.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

_FLAGS: dict[str, dict[str, Any]] = {
    "host": {"help": "bind address (default 127.0.0.1)"},
    "port": {"type": int, "help": "port (default 8000; 0 picks a free one)"},
    "workers": {"type": int, "help": "uvicorn worker processes (default 1)"},
    "backend": {
        "choices": ["auto", "onnxruntime", "openvino", "tensorrt", "dummy"],
        "help": "inference backend (default auto: the bundle's preferred runtime from export's speed check when "
        "installed, else onnxruntime)",
    },
    "precision": {
        "choices": ["fp32", "fp16", "int8"],
        "help": "which model file of the bundle (default fp32)",
    },
    "device": {
        "choices": ["auto", "cpu", "cuda"],
        "help": "ONNX Runtime device (default auto: CUDA when present)",
    },
    "threads": {"type": int, "help": "runtime threads (default 0 = cores / workers)"},
    "max_batch": {"type": int, "help": "largest micro-batch (default 8)"},
    "max_delay_ms": {"type": float, "help": "longest wait to fill a micro-batch (default 5)"},
    "queue": {"type": int, "help": "queued requests per model before 503 (default 64)"},
    "timeout_s": {"type": float, "help": "per-request deadline before 504 (default 30)"},
    "api_key": {"help": "require this key (X-API-Key or Authorization: Bearer) on /v2/models* and /metrics"},
    "cors": {"action": "append", "metavar": "ORIGIN", "help": "allow this CORS origin (repeatable)"},
    "max_body_bytes": {"type": int, "help": "largest request body in bytes (default 16 MiB)"},
    "max_pixels": {"type": int, "help": "largest image in pixels (default 4096*4096)"},
    "max_batch_pixels": {"type": int, "help": "rows x H x W per backend call (default 1024*1024)"},
    "inflight_pixels": {"type": int, "help": "inference-size pixels of requests being served at once (default 4*1024*1024)"},
    "decode_budget_pixels": {"type": int, "help": "pixels decoded at once across requests (default 2*4096*4096)"},
    "limit_concurrency": {"type": int, "help": "requests in flight (health excluded) before answering 503 (default 64)"},
    "max_connections": {"type": int, "help": "open connections uvicorn keeps before answering 503 (default 1000)"},
    "header_timeout_s": {"type": float, "help": "seconds a request's headers may take to arrive (default 10)"},
    "keep_alive_s": {"type": float, "help": "idle keep-alive connections close after this (default 5)"},
    "max_header_bytes": {"type": int, "help": "request line + headers; longer is 431 (default 64 KiB)"},
    "body_timeout_s": {"type": float, "help": "seconds a request body may take to arrive; then 408 (default 30)"},
    "body_budget_bytes": {"type": int, "help": "body bytes held at once across requests (default 128 MiB)"},
    "max_aspect": {"type": float, "help": "longest/shortest side of an input image; more is 422 (default 64)"},
    "graceful_timeout_s": {"type": float, "help": "on SIGTERM, wait this long for requests (then 503) (default 30)"},
    "max_count": {"type": int, "help": "most images per generate request (default 16)"},
    "dummy_delay_ms": {"type": float, "help": "dummy backend: simulated compute per batch in ms (for tests)"},
    "log_level": {"help": "uvicorn log level (default info)"},
    "access_log": {"action": "store_true",
                   "help": "log one uvicorn access line per request: client, method, path, status (default off)"},
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve exported bundles over HTTP",
        description="Serve one or more slimgan bundles over HTTP (FastAPI + uvicorn). "
        "Every flag can also be set as SLIMGAN_<FLAG> in the environment.",
    )
    parser.add_argument("bundles", nargs="*", metavar="BUNDLE", help="bundle directory, or NAME=DIR")
    for dest, kwargs in _FLAGS.items():
        parser.add_argument("--" + dest.replace("_", "-"), dest=dest, default=None, **kwargs)
    parser.set_defaults(func=run_serve)


def settings_from_args(args: argparse.Namespace) -> Any:
    """ServeSettings from the environment, overridden by the flags given."""
    from pydantic import ValidationError

    from serve.settings import ServeSettings
    from slimgan.errors import ConfigError

    overrides = {dest: getattr(args, dest) for dest in _FLAGS if getattr(args, dest, None) is not None}
    if args.bundles:
        overrides["bundles"] = list(args.bundles)
    try:
        return ServeSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise ConfigError(f"--{loc.replace('_', '-')}: {first.get('msg')}") from exc


def uvicorn_config(settings: Any, app: Any) -> Any:
    """The uvicorn configuration: the guarded HTTP protocol (header deadline and size), keep-alive and the
    socket limit; requests in flight are limited by the app itself (:mod:`serve.admission`)."""
    import uvicorn

    from serve.connections import protocol_class

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # 0 waits for every request; otherwise those still running at the limit are answered 503
        timeout_graceful_shutdown=settings.graceful_timeout_s or None,
        access_log=settings.access_log,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_s,
        http=protocol_class(),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        factory=isinstance(app, str),
        workers=settings.workers,
    )
    config.slimgan_limits = {  # read by serve.connections in each worker (the config is pickled to them)
        "max_header_bytes": settings.max_header_bytes,
        "header_timeout_s": settings.header_timeout_s,
    }
    return config


def _raise_open_files_limit(connections: int) -> None:
    """Let the process hold ``connections`` sockets (plus files) when the hard limit allows."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = connections + 256
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    except (ImportError, ValueError, OSError):
        pass


def run_serve(args: argparse.Namespace) -> int:
    """Check the bundles, then run uvicorn until interrupted."""
    import uvicorn

    from serve.app import create_app, load_models_now

    settings = settings_from_args(args)
    app = create_app(settings)  # fails fast, with one line, on a bad bundle or a missing backend
    _raise_open_files_limit(settings.max_connections)
    if settings.workers > 1:
        # Each worker process rebuilds the app from the environment.
        for key, value in settings.model_dump().items():
            if value is not None:
                os.environ[f"SLIMGAN_{key.upper()}"] = (
                    json.dumps(value) if isinstance(value, list) else str(value)
                )
        from uvicorn.supervisors import Multiprocess

        config = uvicorn_config(settings, "serve.app:app_from_env")
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        load_models_now(app)  # a bundle that cannot load stops here, before the port is bound
        uvicorn.Server(uvicorn_config(settings, app)).run()
    return 0
