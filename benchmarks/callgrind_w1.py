"""Instructions per event of W1 (publish + handle) under callgrind, against a raw queue.

    python -m benchmarks.callgrind_w1

W1 here is ``await bus.publish(topic, i)`` to one ``async def`` handler on ``memory://``, then
``await bus.drain()``. Each figure is ``(Ir(21,000 events) - Ir(1,000 events)) / 20,000``: two
runs under ``valgrind --tool=callgrind`` that differ only in the number of events, so start-up,
imports and the bus's set-up cancel out. Instruction counts barely move with the machine's load,
which makes them the figure to compare before and after a change of the hot path (wall-clock
rates on a shared box vary by 20%). The raw anchor is an ``await queue.put()`` /
``await queue.get()`` pair to one consumer task, measured the same way.

Needs ``valgrind`` on the PATH. ``PYTHONPATH`` decides which axonbus is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile

SMALL = 1_000
LARGE = 21_000
TOPIC = "bench.w1"


async def run_axonbus(n: int) -> None:
    from axonbus import Bus

    handled = 0

    async def handler(event: int) -> None:
        nonlocal handled
        handled += 1

    async with Bus() as bus:
        bus.subscribe(TOPIC, handler, maxsize=1000, overflow="block")
        publish = bus.publish
        for i in range(n):
            await publish(TOPIC, i)
        await bus.drain()
    assert handled == n, (handled, n)


async def run_raw(n: int) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1000)
    handled = 0

    async def handler(event: int) -> None:
        nonlocal handled
        handled += 1

    async def consume() -> None:
        while True:
            await handler(await queue.get())
            queue.task_done()

    worker = asyncio.get_running_loop().create_task(consume())
    for i in range(n):
        await queue.put(i)
    await queue.join()
    worker.cancel()
    assert handled == n, (handled, n)


WORKLOADS = {"axonbus": run_axonbus, "raw": run_raw}


def instructions(workload: str, n: int) -> int:
    """Total ``Ir`` of one run of ``workload`` with ``n`` events under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.callgrind_w1",
            "--child",
            workload,
            str(n),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]}")
        return int(found.group(1))


def per_event(workload: str) -> float:
    return (instructions(workload, LARGE) - instructions(workload, SMALL)) / (LARGE - SMALL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        workload, n = args.child
        asyncio.run(WORKLOADS[workload](int(n)))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    import axonbus

    print(f"axonbus from {os.path.dirname(axonbus.__file__)}")
    bus = per_event("axonbus")
    raw = per_event("raw")
    print(f"W1 publish + handle: {bus:,.0f} instructions per event")
    print(f"raw queue put/get:   {raw:,.0f} instructions per event ({bus / raw:.2f}x)")


if __name__ == "__main__":
    main()
