"""One registry type for everything slimgan looks up by name: models, losses, methods, runtimes, serve
backends and bench commands.

Each registry has a kind (used in its messages), refuses a name registered twice unless the caller asks
to replace it, answers an unknown name with the full "choose one of" list and a close match, and can
pull in plugins from an entry-point group the first time it is asked for a name. It imports nothing
beyond the standard library, so the torch-free server can use it.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from slimgan.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string when nothing is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry(Generic[T]):
    """Named entries of one kind, each with optional metadata.

    ``group`` names an entry-point group whose entries are imported (once, lazily) on the first lookup;
    importing a plugin module is what registers its names, as with ``@register_model``.
    """

    def __init__(self, kind: str, *, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._plugins_loaded = group is None

    def register(self, name: str, obj: T | None = None, *, replace: bool = False, **meta: Any):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that registers its target."""

        def add(target: T) -> T:
            if name in self._entries and not replace:
                raise ConfigError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = target
            self._meta[name] = dict(meta)
            return target

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)
        self._meta.pop(name, None)

    def load_plugins(self) -> None:
        """Import the entry points of ``group`` once; a broken plugin is logged and skipped."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in sorted(entry_points(group=self.group), key=lambda e: e.name):
            try:
                ep.load()
            except Exception as exc:  # a broken plugin must not take the whole tool down
                log.warning("%s plugin %s could not be loaded: %s", self.kind, ep.value, exc)

    def get(self, name: str) -> T:
        self.load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._meta[name])

    def unknown_message(self, name: str) -> str:
        choices = self.names()
        return f"unknown {self.kind} {name!r}{did_you_mean(name, choices)}; choose one of: {', '.join(choices)}"

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

