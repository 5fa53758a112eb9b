"""Instructions per event of W1 (publish + handle) under callgrind, against a raw queue.

    python -m benchmarks.callgrind_w1              # W1
    python -m benchmarks.callgrind_w1 --fanout 10  # W10: ten subscribers, per delivery
    python -m benchmarks.callgrind_w1 --rpc        # RPC: sequential request/reply round trips
    python -m benchmarks.callgrind_w1 --loop uvloop   # any of the above on uvloop

W1 here is ``await bus.publish(topic, i)`` to one ``async def`` handler on ``memory://``, then
``await bus.drain()``. Each figure is ``(Ir(21,000 events) - Ir(1,000 events)) / 20,000``: two
runs under ``valgrind --tool=callgrind`` that differ only in the number of events, so start-up,
imports and the bus's set-up cancel out. Instruction counts barely move with the machine's load,
which makes them the figure to compare before and after a change of the hot path (wall-clock
rates on a shared box vary by 20%). The raw anchor is an ``await queue.put()`` /
``await queue.get()`` pair to one consumer task, measured the same way.

RPC is ``await bus.request(topic, i, timeout=2.0)`` to one ``bus.respond`` handler, per round
trip, against a consumer task that reads ``(payload, future)`` from an ``asyncio.Queue`` and sets
the future (the raw anchor of ``benchmarks.core``'s RPC row).

Every run uses ``PYTHONHASHSEED=0`` (or the one set): the figure moves with the hash seed, so
two versions compare only under the same one. Needs ``valgrind`` on the PATH. ``PYTHONPATH``
decides which axonbus is measured.
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


async def run_axonbus(n: int, fanout: int) -> None:
    from axonbus import Bus

    handled = 0

    async def handler(event: int) -> None:
        nonlocal handled
        handled += 1

    async with Bus() as bus:
        for _ in range(fanout):
            bus.subscribe(TOPIC, handler, maxsize=1000, overflow="block")
        publish = bus.publish
        for i in range(n):
            await publish(TOPIC, i)
        await bus.drain()
    assert handled == n * fanout, (handled, n)


async def run_raw(n: int, fanout: int) -> None:
    queues: list[asyncio.Queue[int]] = [asyncio.Queue(maxsize=1000) for _ in range(fanout)]
    handled = 0

    async def handler(event: int) -> None:
        nonlocal handled
        handled += 1

    async def consume(queue: asyncio.Queue[int]) -> None:
        while True:
            await handler(await queue.get())
            queue.task_done()

    loop = asyncio.get_running_loop()
    workers = [loop.create_task(consume(queue)) for queue in queues]
    for i in range(n):
        for queue in queues:
            await queue.put(i)
    for queue in queues:
        await queue.join()
    for worker in workers:
        worker.cancel()
    assert handled == n * fanout, (handled, n)


async def rpc_axonbus(n: int, fanout: int) -> None:
    from axonbus import Bus

    async def responder(payload: int) -> int:
        return payload

    async with Bus() as bus:
        bus.respond(TOPIC, responder)
        request = bus.request
        for i in range(n):
            assert await request(TOPIC, i, timeout=2.0) == i


async def rpc_raw(n: int, fanout: int) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue(maxsize=1000)

    async def responder(payload: int) -> int:
        return payload

    async def serve() -> None:
        while True:
            payload, reply = await queue.get()
            result = await responder(payload)
            if not reply.done():
                reply.set_result(result)

    server = loop.create_task(serve())
    for i in range(n):
        reply = loop.create_future()
        await queue.put((i, reply))
        assert await reply == i
    server.cancel()


WORKLOADS = {"axonbus": run_axonbus, "raw": run_raw}
RPC_WORKLOADS = {"axonbus-rpc": rpc_axonbus, "raw-rpc": rpc_raw}


def instructions(workload: str, n: int, fanout: int, loop: str = "asyncio") -> int:
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
            str(fanout),
            "--loop",
            loop,
        ]
        # one hash seed for every run: set and dict layouts (and so the work of the routing
        # index) vary with it, by up to 7% per delivery with ten subscribers
        env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]}")
        return int(found.group(1))


def per_event(workload: str, fanout: int, loop: str = "asyncio") -> float:
    """Instructions per delivery (per event when ``fanout`` is 1)."""
    large = instructions(workload, LARGE, fanout, loop)
    small = instructions(workload, SMALL, fanout, loop)
    return (large - small) / ((LARGE - SMALL) * fanout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fanout", type=int, default=1, help="subscribers (W10: 10)")
    parser.add_argument("--rpc", action="store_true", help="request/reply round trips")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        workload, n, fanout = args.child
        body = {**WORKLOADS, **RPC_WORKLOADS}[workload](int(n), int(fanout))
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(body)
        else:
            asyncio.run(body)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    import axonbus

    print(f"axonbus from {os.path.dirname(axonbus.__file__)}, on {args.loop}")
    if args.rpc:
        bus = per_event("axonbus-rpc", 1, args.loop)
        raw = per_event("raw-rpc", 1, args.loop)
        print(f"RPC request + respond: {bus:,.0f} instructions per round trip")
        print(f"raw queue + future:    {raw:,.0f} instructions per round trip ({bus / raw:.2f}x)")
        return
    name, unit = ("W1", "event") if args.fanout == 1 else (f"W{args.fanout}", "delivery")
    bus = per_event("axonbus", args.fanout, args.loop)
    raw = per_event("raw", args.fanout, args.loop)
    print(f"{name} publish + handle: {bus:,.0f} instructions per {unit}")
    print(f"raw queue put/get:   {raw:,.0f} instructions per {unit} ({bus / raw:.2f}x)")


if __name__ == "__main__":
    main()
