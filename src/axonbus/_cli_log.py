"""``axonbus tail`` and ``axonbus replay``: events as readable lines (or JSON lines)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from datetime import datetime, timedelta
from typing import Any, TextIO

from pydantic import BaseModel

from ._engine.bus import Bus
from ._events import Envelope
from ._exceptions import AxonbusError

__all__ = ["CommandError", "parse_when", "run_replay", "run_tail"]

WHEN_FORMS = (
    "an offset (42), a duration back from now (30s, 10m, 2h, 1d), "
    "an ISO time (2026-11-22T10:00) or the id of a stored event"
)
_ELSEWHERE = "sqlite:///events.db, postgresql://..., redis://... or nats://..."


class CommandError(AxonbusError, ValueError):
    """A command cannot do what it was asked with these arguments; the message says why and
    what to pass instead (the command line prints it and exits with status 2)."""


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str) -> int | str | datetime | timedelta:
    """``--since`` / ``--until``: an offset (``42``), a duration back from now (``10m``, ``2h``,
    ``1d``), an ISO time (``2026-11-22T10:00``), or else an event id."""
    if text.isdigit():
        return int(text)
    found = _DURATION.match(text)
    if found:
        return timedelta(seconds=float(found[1]) * _UNITS[found[2]])
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def format_event(env: Envelope, as_json: bool) -> str:
    payload = _jsonable(env.event)
    if as_json:
        record = {
            "offset": env.offset,
            "id": env.id,
            "topic": env.topic,
            "timestamp": env.timestamp,
            "event": payload,
        }
        return json.dumps(record, default=str, ensure_ascii=False)
    when = datetime.fromtimestamp(env.timestamp).isoformat(sep=" ", timespec="milliseconds")
    where = f"#{env.offset}  " if env.offset is not None else ""
    body = json.dumps(payload, default=str, ensure_ascii=False, separators=(",", ":"))
    return f"{when}  {where}{env.topic}  {body}"


def _url(args: argparse.Namespace) -> str:
    return str(args.url or os.environ.get("AXONBUS_URL", "memory://"))


def _existing_log(url: str, command: str) -> None:
    """Refuse a ``sqlite://`` file that does not exist: opening it would create an empty log,
    and a mistyped path would print nothing, silently."""
    if url.partition("://")[0] != "sqlite":
        return
    from .transports.sqlite._transport import sqlite_path

    path = sqlite_path(url.partition("?")[0])
    if not os.path.isfile(path):
        raise CommandError(
            f"no event log at {os.path.abspath(path)!r}: {command} reads an existing "
            "sqlite:// file and does not create one; check the path (three slashes for a "
            "relative one, four for an absolute one), or start the publishing bus first"
        )


async def _tail(args: argparse.Namespace, out: TextIO) -> None:
    url = _url(args)
    if url.partition("://")[0] == "memory":
        raise CommandError(
            "memory:// is private to each process, so tail would never see another process's "
            f"events; pass the publishers' bus with --url (like {_ELSEWHERE}) or set AXONBUS_URL"
        )
    _existing_log(url, "tail")
    async with Bus(url, name=args.name) as bus:
        # drop_oldest: a terminal that cannot keep up must not slow the publishers down
        stream = bus.stream(args.pattern, envelopes=True, maxsize=10_000, overflow="drop_oldest")
        async with stream as events:
            print(f"tailing {args.pattern!r} on {bus!r} (Ctrl-C to stop)", file=sys.stderr)
            async for env in events:
                print(format_event(env, args.json), file=out, flush=True)


async def _replay(args: argparse.Namespace, out: TextIO) -> int:
    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else None
    count = 0
    url = _url(args)
    _existing_log(url, "replay")
    async with Bus(url, name=args.name) as bus:
        replay = bus.replay(
            args.pattern, since=since, until=until, follow=args.follow, limit=args.limit
        )
        try:
            async for env in replay:
                print(format_event(env, args.json), file=out, flush=True)
                count += 1
        except LookupError as exc:
            # --since yesterday: not a form parse_when knows, so it was taken for an event id
            raise CommandError(f"{exc}; --since and --until take {WHEN_FORMS}") from None
    print(f"{count} events", file=sys.stderr)
    return 0


def _quiet_pipe() -> int:
    # the reader went away (``| head``): stop quietly, and keep Python from complaining at exit
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def run_tail(args: argparse.Namespace) -> int:
    """``axonbus tail``; an :class:`AxonbusError` (or a bad ``--url``) is left to the command
    line's one-line report."""
    try:
        asyncio.run(_tail(args, sys.stdout))
    except BrokenPipeError:
        return _quiet_pipe()
    return 0


def run_replay(args: argparse.Namespace) -> int:
    """``axonbus replay``; errors as in :func:`run_tail`."""
    try:
        return asyncio.run(_replay(args, sys.stdout))
    except BrokenPipeError:
        return _quiet_pipe()
