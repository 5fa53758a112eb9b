"""``axonbus dead-letters``: list the dead letters a bus keeps, or replay them.

axonbus dead-letters --url redis://127.0.0.1:6379/0 --name shop
axonbus dead-letters --url sqlite:///bus.db --replay --topic 'orders.>'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, TextIO

from ._engine.bus import Bus
from ._engine.dead_letters import DeadLetters
from ._exceptions import AxonbusError
from ._topics import match

__all__ = ["add_dead_letters"]


def add_dead_letters(subparsers: Any) -> None:
    """Register the ``dead-letters`` subcommand."""
    parser = subparsers.add_parser(
        "dead-letters",
        help="list the dead letters a bus keeps, or publish their events again (--replay)",
        description="List the dead letters kept by the bus at --url (redis://, nats://, "
        "sqlite://, postgresql://), oldest first: key, original topic, subscription, "
        "attempts and error. With --replay, publish each one's event again on its original "
        "topic and forget the dead letter.",
    )
    parser.add_argument("--url", help="bus URL (default: $AXONBUS_URL)")
    parser.add_argument("--name", default="axonbus", help="bus name (default: axonbus)")
    parser.add_argument("--topic", help="only dead letters whose original topic matches")
    parser.add_argument("--limit", type=int, default=100, help="at most this many (100)")
    parser.add_argument("--replay", action="store_true", help="publish them again, then forget")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=run_dead_letters)


async def _dead_letters(args: argparse.Namespace, out: TextIO) -> int:
    url = args.url or os.environ.get("AXONBUS_URL", "memory://")
    async with Bus(url, name=args.name) as bus:
        letters = DeadLetters(bus)

        def wanted(topic: str) -> bool:
            return args.topic is None or match(args.topic, topic)

        if args.replay:
            count = await letters.replay(limit=args.limit, where=lambda d: wanted(d.original_topic))
            print(f"{count} events published again", file=sys.stderr)
            return 0
        shown = 0
        for stored in await letters.list(args.limit):
            d = stored.letter
            if not wanted(d.original_topic):
                continue
            shown += 1
            if args.json:
                line = json.dumps({"key": stored.key, **d.model_dump(mode="json")}, default=str)
            else:
                line = (
                    f"{stored.key}  {d.original_topic}  {d.subscription}  "
                    f"{d.attempts} attempt(s)  {d.error_type}: {d.error_message}"
                )
            print(line, file=out, flush=True)
        print(f"{shown} dead letters", file=sys.stderr)
    return 0


def run_dead_letters(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_dead_letters(args, sys.stdout))
    except (AxonbusError, ValueError) as exc:
        print(f"axonbus dead-letters: {exc}", file=sys.stderr)
        return 1
