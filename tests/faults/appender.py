"""A publishing process for the sqlite:// fault tests: appends events until it is killed.

Run from the repository root (the tests start it with ``cwd`` there)::

    python -m tests.faults.appender --url sqlite:////tmp/x/bus.db --bus faults1 \
        --run 3 --out /tmp/x/appender3.log

It publishes ``{"run": <run>, "seq": i, "pad": ...}`` on ``--topic`` for i = 0, 1, 2, ... in
rounds of 1 to ``--most`` (50) events (a seeded random size, so transactions differ in size), and
after each round waits for ``bus.flush()``: the writer thread has committed every event of
the round. Only then does it log the round. The log, one ``write`` per line (line-buffered),
survives a ``kill -9`` up to the last line written:

- ``ready <pid>`` once the bus is open (its tables exist)
- ``committed <seq>`` after a flush: every event of this run up to ``<seq>`` is committed
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
from typing import TextIO

from axonbus import Bus


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bus", required=True, help="bus name (the tables' prefix)")
    parser.add_argument("--topic", default="append.log")
    parser.add_argument("--run", type=int, required=True, help="goes in every event")
    parser.add_argument("--out", required=True, help="log file, appended to")
    parser.add_argument("--most", type=int, default=50, help="most events in one round")
    # the log grows a few MB per run: the WAL fills and is checkpointed while the kills land
    parser.add_argument("--pad", type=int, default=200, help="bytes of filler per event")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, out: TextIO) -> None:
    rng = random.Random(args.run)
    pad = "x" * args.pad
    async with Bus(args.url, name=args.bus) as bus:
        out.write(f"ready {os.getpid()}\n")
        seq = 0
        while True:
            for _ in range(rng.randint(1, args.most)):
                await bus.publish(args.topic, {"run": args.run, "seq": seq, "pad": pad})
                seq += 1
            await bus.flush()  # returns once the writer thread committed all of them
            out.write(f"committed {seq - 1}\n")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # line-buffered: each line is one write(2), in the file even if the process is killed
    with open(args.out, "a", buffering=1, encoding="ascii") as out:
        asyncio.run(run(args, out))


if __name__ == "__main__":
    main()
