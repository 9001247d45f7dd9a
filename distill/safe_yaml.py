"""YAML for recipes and run configs: ``yaml.safe_load`` semantics, but aliases are refused.

``safe_load`` keeps an alias as a second reference to one object, so loading is cheap; anything that
then walks the result (copying, validating, dumping) expands every reference. Nine nested aliases of
nine items each reach a billion nodes from 400 bytes, and a self-referencing alias never ends. No
recipe needs aliases, so the composer refuses the first one, naming its line, before any node is
built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from distill.errors import ConfigError


class _NoAliasLoader(yaml.SafeLoader):
    """The pure-Python safe loader (the C one composes without calling back) that stops at an alias."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            mark = event.start_mark
            raise ConfigError(
                f"{self.name}: line {mark.line + 1}: YAML alias *{event.anchor} is not allowed "
                "(recipes must spell every value out)"
            )
        return super().compose_node(parent, index)


def parse_yaml(text: str, source: str = "<yaml>") -> Any:
    """``text`` parsed like ``yaml.safe_load``; ConfigError on bad YAML or any alias."""
    loader = _NoAliasLoader(text)
    loader.name = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {' '.join(str(exc).split())}") from exc
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> Any:
    """The YAML file at ``path`` (see :func:`parse_yaml`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return parse_yaml(text, str(path))
