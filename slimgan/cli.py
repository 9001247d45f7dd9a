"""The ``slimgan`` command line. Each subcommand lives in its own module and calls one library function.

A command module exposes ``register(subparsers)``, which adds its parser(s) and sets ``func`` to a
callable taking the parsed ``argparse.Namespace`` and returning an exit code (or None for 0).
Command modules are found through the entry-point group ``slimgan.commands`` (declared in
``pyproject.toml``), so this root names no downstream package and a plugin package can add commands.
Registration modules import nothing heavy (no torch) at module level, so ``slimgan --help`` and
``slimgan serve`` stay light.

User errors (:class:`slimgan.errors.SlimganError`) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from slimgan.errors import SlimganError

COMMAND_GROUP = "slimgan.commands"


def command_registrars() -> list:
    """The ``register`` callables of every installed command module, in entry-point name order."""
    found = sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name)
    if not found:
        raise SlimganError(
            f"no slimgan commands are registered (entry-point group {COMMAND_GROUP!r}); "
            "install the package with `pip install -e .`"
        )
    registrars = []
    for ep in found:
        try:
            registrars.append(ep.load())
        except ModuleNotFoundError as exc:
            # An image may ship a subset of the packages (the serving images carry no distill/): a command
            # whose own top-level package is absent is left out, while any other missing import is a bug.
            if exc.name != ep.module.split(".")[0]:
                raise
    return registrars


def build_parser() -> argparse.ArgumentParser:
    from slimgan import __version__

    parser = argparse.ArgumentParser(
        prog="slimgan",
        description="Distill GAN generators into slim students, export them with parity and speed checks, serve them.",
    )
    parser.add_argument("--version", action="version", version=f"slimgan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in command_registrars():
        register(subparsers)
    return parser


def _subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _innermost_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The (sub)parser that the command words in ``argv`` select, e.g. ``slimgan bench distill``'s."""
    for token in argv:
        choices = _subparsers_of(parser)
        if token in choices:
            parser = choices[token]
        elif not token.startswith("-") and choices:
            break
    return parser


def _options_of(parser: argparse.ArgumentParser) -> list[str]:
    return [opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")]


def _unknown_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Long flags in ``argv`` that the selected command does not know (nor abbreviates), checked before
    parsing so that a typo is reported even when a required argument is missing too."""
    target = _innermost_parser(parser, argv)
    known = _options_of(target) + _options_of(parser)
    unknown = []
    for token in argv:
        if token == "--":
            break
        flag = token.split("=", 1)[0]
        if flag.startswith("--") and not any(opt.startswith(flag) for opt in known):
            unknown.append(token)
    return unknown


def _refuse_unknown(parser: argparse.ArgumentParser, argv: Sequence[str], extras: list[str]) -> None:
    """Refuse unknown arguments with the usage of the command they were given to (argparse would show
    the root's) and a "did you mean" for a mistyped flag."""
    target = _innermost_parser(parser, argv)
    hints = []
    for extra in extras:
        flag = extra.split("=", 1)[0]
        if flag.startswith("-"):
            close = difflib.get_close_matches(flag, _options_of(target), n=1, cutoff=0.6)
            if close:
                hints.append(f"{flag} (did you mean {close[0]}?)")
                continue
        hints.append(extra)
    target.error("unrecognized arguments: " + " ".join(hints))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    unknown = _unknown_flags(parser, argv)
    if unknown:
        _refuse_unknown(parser, argv, unknown)
    args, extras = parser.parse_known_args(argv)
    if extras:
        _refuse_unknown(parser, argv, extras)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except SlimganError as exc:
        print(f"slimgan {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"slimgan {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
