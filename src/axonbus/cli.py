"""The ``axonbus`` command.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``handler`` to a function ``(args) -> exit code``; add it to ``COMMANDS`` to register it.

    axonbus --version
    axonbus demo [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__

__all__ = ["build_parser", "main"]

Subparsers = Any  # argparse's _SubParsersAction is private; its type is not worth pinning


def _add_demo(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run an offline tour of the bus in under a second (needs the 'cli' extra)",
        description="Channels hot-plugged on an in-process bus with a failing handler contained, "
        "backpressure with drop statistics, and request/reply. No network, no broker.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print the log, tracebacks included"
    )
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console

        from ._demo import run_demo
    except ImportError as exc:
        if not (exc.name or "").startswith("rich"):
            raise
        print("axonbus demo needs the 'rich' package: pip install 'axonbus[cli]'", file=sys.stderr)
        return 1
    if args.verbose:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
        )
    asyncio.run(run_demo(Console(), verbose=args.verbose))
    return 0


COMMANDS: tuple[Callable[[Subparsers], None], ...] = (_add_demo,)


def build_parser() -> argparse.ArgumentParser:
    """The ``axonbus`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="axonbus", description="axonbus: the event backbone for AI agents."
    )
    parser.add_argument("--version", action="version", version=f"axonbus {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``axonbus`` console script; returns the exit code.

    >>> main(["demo"])
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
