"""slimgan serving: a FastAPI app that serves exported bundles over HTTP.

Nothing in this package imports torch: a bundle (``manifest.json`` + ONNX / TensorRT files) is all
the server needs. ``create_app(settings)`` builds the app; ``slimgan serve BUNDLE ...`` runs it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from serve.app import create_app

        return create_app
    if name == "ServeSettings":
        from serve.settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module 'serve' has no attribute {name!r}")
