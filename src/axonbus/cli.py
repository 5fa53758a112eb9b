"""The ``axonbus`` command.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``handler`` to a function ``(args) -> exit code``; add it to ``COMMANDS`` to register it.
A handler lets an :class:`AxonbusError` (or a ``ValueError`` about its arguments) propagate:
:func:`main` prints it as one line, secrets hidden, and exits with status 2.

    axonbus --version
    axonbus demo [--verbose]
    axonbus tail PATTERN [--url URL] [--json]
    axonbus replay PATTERN [--since WHEN] [--until WHEN] [--follow] [--limit N] [--url URL]
    axonbus serve [--config FILE] [--url URL] [--host HOST] [--port PORT] [--tokens FILE]
                  [--insecure] [--no-demo] [--allow-origin ORIGIN] [--allow-host HOST]
                  [--max-connections N] [--loop {asyncio,uvloop,auto}]
    axonbus dead-letters [--url URL] [--name NAME] [--topic PATTERN] [--limit N] [--replay]
    axonbus asyncapi --app MODULE:ATTR|CONFIG [--start] [--cloudevents] [-o FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._exceptions import AxonbusError, MissingDependency
from ._version import __version__

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


def _bus_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", help="topic pattern, e.g. 'agent.*.>' ('>' for every topic)")
    parser.add_argument("--url", help="bus URL (default: $AXONBUS_URL, else memory://)")
    parser.add_argument("--name", default="axonbus", help="bus name (default: axonbus)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _add_tail(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "tail",
        help="print live events matching a pattern, one per line",
        description="Subscribe to PATTERN on the bus at --url and print each event as it "
        "arrives: time, offset (on a log transport), topic and payload. Ctrl-C stops. The bus "
        "must be one other processes publish to: memory:// (private to a process) is refused.",
    )
    _bus_arguments(parser)
    parser.set_defaults(handler=_run_tail)


def _run_tail(args: argparse.Namespace) -> int:
    from ._cli_log import run_tail

    return run_tail(args)


def _add_replay(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="print stored events matching a pattern (sqlite:// and postgresql:// logs)",
        description="Read the event log of the bus at --url: events matching PATTERN from "
        "--since (an offset like 42, a duration back like 10m / 2h / 1d, an ISO time, or an "
        "event id) up to --until, oldest first; --follow keeps printing new events.",
    )
    _bus_arguments(parser)
    parser.add_argument("--since", help="offset, duration back (10m), ISO time or event id")
    parser.add_argument("--until", help="offset, duration back, ISO time or event id")
    parser.add_argument("--limit", type=int, help="print at most this many events")
    parser.add_argument("-f", "--follow", action="store_true", help="then keep printing new events")
    parser.set_defaults(handler=_run_replay)


def _run_replay(args: argparse.Namespace) -> int:
    from ._cli_log import run_replay

    return run_replay(args)


class _Given(argparse.Action):
    """Store the value and remember it was given (so it can override a config file's)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


class _GivenEach(argparse.Action):
    """Append the value (a repeatable option) and remember it was given."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or ()), values])
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


def _add_serve(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the web gateway and dashboard (needs the 'gateway' extra)",
        description="Serve the bus over HTTP, SSE and WebSocket with a live dashboard at /. "
        "By default: the demo agent on an in-process bus, on http://127.0.0.1:8765/. Without "
        "--tokens anyone who can reach the port has full access, so a host beyond loopback "
        "needs --tokens FILE (or --insecure). Ctrl-C stops it cleanly.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="axonbus.toml, axonbus.yaml or pyproject.toml ([tool.axonbus]): bus, channels, "
        "gateway, observability; the options below override it",
    )
    parser.add_argument(
        "--url", action=_Given, help="bus URL (default: $AXONBUS_URL, else memory://)"
    )
    parser.add_argument(
        "--host", action=_Given, default="127.0.0.1", help="interface (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", action=_Given, type=int, default=8765, help="port (default: 8765)"
    )
    parser.add_argument(
        "--tokens", action=_Given, metavar="FILE", help="bearer tokens file (JSON or TOML)"
    )
    parser.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback host without --tokens"
    )
    parser.add_argument(
        "--no-demo", dest="demo", action="store_false", help="do not run the demo agent"
    )
    parser.add_argument(
        "--max-body", action=_Given, type=int, help="largest body in bytes (default: the bus's)"
    )
    parser.add_argument(
        "--log-level",
        action=_Given,
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level (default: info)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request (tokens redacted)"
    )
    parser.add_argument(
        "--allow-origin",
        dest="allowed_origins",
        action=_GivenEach,
        metavar="ORIGIN",
        help="a browser origin (scheme://host[:port], or '*') whose pages may use the gateway "
        "besides its own; repeatable",
    )
    parser.add_argument(
        "--allow-host",
        dest="allowed_hosts",
        action=_GivenEach,
        metavar="HOST",
        help="a Host name answered ('*.example.com', '*': any); repeatable (default: loopback "
        "names without --tokens, any with)",
    )
    parser.add_argument(
        "--max-connections",
        action=_Given,
        type=int,
        metavar="N",
        help="connections served at once, 503 beyond (default: 1000 or the file limit)",
    )
    parser.add_argument(
        "--loop",
        action=_Given,
        choices=["asyncio", "uvloop", "auto"],
        help="the event loop of the bus and the gateway: asyncio (default), uvloop (needs the "
        "'uvloop' extra) or auto (uvloop when installed)",
    )
    parser.set_defaults(handler=_run_serve)


def _add_token(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("token", help="make a gateway bearer token")
    parser.add_argument("action", choices=["new"], help="new: print a fresh 256-bit token")
    parser.add_argument("--name", help="print a tokens-file entry with this name (JSON)")
    parser.set_defaults(handler=lambda args: _run_serve(args, "run_token"))


def _run_serve(args: argparse.Namespace, command: str = "run_serve") -> int:
    try:
        from .gateway import _cli
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in ("starlette", "uvicorn", "httpx", "prometheus_client"):
            raise
        raise MissingDependency(
            f"needs the {missing!r} package: pip install 'axonbus[gateway]'"
        ) from exc
    run: Callable[[argparse.Namespace], int] = getattr(_cli, command)
    return run(args)


def _add_dead_letters(subparsers: Subparsers) -> None:
    from ._cli_dead_letters import add_dead_letters

    add_dead_letters(subparsers)


def _add_asyncapi(subparsers: Subparsers) -> None:
    from ._cli_asyncapi import add_asyncapi

    add_asyncapi(subparsers)


COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_demo,
    _add_tail,
    _add_replay,
    _add_serve,
    _add_token,
    _add_dead_letters,
    _add_asyncapi,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``axonbus`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="axonbus", description="axonbus: the event backbone for AI agents."
    )
    parser.add_argument("--version", action="version", version=f"axonbus {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
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
    except (AxonbusError, ValueError, LookupError) as exc:
        # what the user gave cannot work: say why in one line, no traceback
        print(f"axonbus {args.command}: {_one_line(exc, args)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException, args: argparse.Namespace) -> str:
    """``exc``'s message on one line, without the credentials of the bus URL in use."""
    from ._config import without_secrets

    # KeyError's str() is a repr of its message
    lookup = isinstance(exc, LookupError) and len(exc.args) == 1
    message = str(exc.args[0]) if lookup else str(exc)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    # "file: 2 problems:" then one line each -> "file: 2 problems: a: ...; b: ..."
    text = "".join(
        line + ("" if i == len(lines) - 1 else " " if line.endswith(":") else "; ")
        for i, line in enumerate(lines)
    )
    text = text or type(exc).__name__
    urls = [getattr(args, "url", None), os.environ.get("AXONBUS_URL")]
    # a handler that found another URL (a configuration file's) adds it here
    urls += getattr(args, "secret_urls", ())
    for url in urls:
        if url:
            text = without_secrets(text, url)
    return text


if __name__ == "__main__":
    sys.exit(main())
