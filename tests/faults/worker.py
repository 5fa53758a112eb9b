"""A consumer process for the fault tests: one durable subscription, every delivery logged.

Run from the repository root (the tests start it with ``cwd`` there)::

    python -m tests.faults.worker --url redis://127.0.0.1:6379/0?claim_idle=1 \
        --bus faults1 --topic jobs.work --durable workers --out /tmp/worker0.log

Several processes with the same ``--bus`` and ``--durable`` compete for one durable
subscription (the "group of workers" with at-least-once delivery). The log, appended one line
per ``write`` (line-buffered), survives a ``kill -9`` up to the last line written:

- ``ready <pid> <consumer>`` once the subscription is registered on the broker (``<consumer>``
  is the transport's consumer name where it has one, ``-`` otherwise)
- ``recv <seq>`` when the broker hands a delivery to the process (it may wait in the local queue)
- ``start <seq> <attempt>`` when the handler begins an event
- ``done <seq> <monotonic time>`` when it has finished it (the acknowledgement follows)
- ``pack <seq> <seq> ...`` (nats://) the events of one JetStream delivery: acknowledged, and
  redelivered, together
- ``dead <seq> <attempts> <error type>`` for a dead-lettered event
- ``closed`` after a graceful shutdown (SIGTERM)

With ``--defaults`` the subscription has the default options (mailbox, retry budget) but its
``--concurrency``; with ``--poison SEQ`` the handler kills its own process (SIGKILL) when it
begins that event, every time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any, TextIO

from axonbus import Bus, Context, DeadLetter, Envelope, Retry
from axonbus._engine.mailbox import Mailbox


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bus", required=True, help="bus name (shared by every process)")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--durable", required=True, help="durable subscription name")
    parser.add_argument("--out", required=True, help="log file, appended to")
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.002, help="seconds of work per event")
    # a small local queue: what a consumer has fetched is taken over by another one only
    # after it stayed unacknowledged for claim_idle, so it must not wait here that long
    parser.add_argument("--maxsize", type=int, default=16)
    # kills and restarts raise the broker's delivery count; the retry budget must outlast
    # them, or an event would be dead-lettered instead of handled
    parser.add_argument("--attempts", type=int, default=50)
    parser.add_argument("--defaults", action="store_true", help="default maxsize and retry")
    parser.add_argument("--poison", type=int, default=-1, help="seq that kills the process")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, out: TextIO) -> None:
    bus = Bus(args.url, name=args.bus)

    async def work(event: Any, ctx: Context) -> None:
        seq = event["seq"]
        out.write(f"start {seq} {ctx.attempt}\n")
        if seq == args.poison:
            os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.sleep(args.sleep)
        out.write(f"done {seq} {time.monotonic():.4f}\n")

    def dead(letter: DeadLetter) -> None:
        seq = letter.event.get("seq") if isinstance(letter.event, dict) else letter.event
        out.write(f"dead {seq} {letter.attempts} {letter.error_type}\n")

    if args.defaults:
        bus.subscribe(args.topic, work, durable=args.durable, concurrency=args.concurrency)
    else:
        bus.subscribe(
            args.topic,
            work,
            durable=args.durable,
            concurrency=args.concurrency,
            maxsize=args.maxsize,
            retry=Retry(attempts=args.attempts, backoff=0.01, max_backoff=0.1),
        )
    bus.subscribe(DeadLetter, dead)

    # log each delivery as the broker hands it over, before it waits in the local queue:
    # what a worker holds when the broker dies may be delivered again elsewhere
    put = bus.put
    packed: set[str] = set()  # ids of a pack's events, logged when the pack arrived

    def log_recv(env: Envelope) -> None:
        if isinstance(env.event, dict) and "seq" in env.event:
            out.write(f"recv {env.event['seq']}\n")

    async def logged_put(mailbox: Mailbox, env: Envelope) -> bool:
        if env.id in packed:
            packed.discard(env.id)
        else:
            log_recv(env)
        return await put(mailbox, env)

    bus.put = logged_put  # type: ignore[method-assign]
    # nats:// hands over a pack of events at once; they then enter the mailbox one by one
    unpack = getattr(bus.transport, "unpack", None)
    if unpack is not None:

        def logged_unpack(msg: Any) -> list[Envelope]:
            envelopes: list[Envelope] = unpack(msg)
            seqs = [
                str(env.event["seq"])
                for env in envelopes
                if isinstance(env.event, dict) and "seq" in env.event
            ]
            if seqs:
                out.write(f"pack {' '.join(seqs)}\n")
            for env in envelopes:
                log_recv(env)
                packed.add(env.id)
            return envelopes

        bus.transport.unpack = logged_unpack  # type: ignore[attr-defined]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with bus:
        await bus.flush()
        consumer = getattr(bus.transport, "instance", None) or "-"
        out.write(f"ready {os.getpid()} {consumer}\n")
        await stop.wait()
    out.write("closed\n")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        # %(created)f: the tests compare these times with their own time.time()
        format="%(created).3f %(process)d %(levelname)s %(name)s: %(message)s",
    )
    args = parse_args(argv)
    # line-buffered: each line is one write(2), in the file even if the process is killed
    with open(args.out, "a", buffering=1, encoding="ascii") as out:
        asyncio.run(run(args, out))


if __name__ == "__main__":
    main()
