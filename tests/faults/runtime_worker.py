"""A worker process of the distributed-runtime tests: one ``AgentRuntime`` on a broker bus that
hosts the agent type ``counter`` (``tests.faults.runtime_agents.Counter``).

Run from the repository root (the tests start it with ``cwd`` there)::

    python -m tests.faults.runtime_worker --url nats://127.0.0.1:4222 --bus rt1 \\
        --name counters --heartbeat 0.3 --out /tmp/rtworker0.log

The log, one line per write (line-buffered, so it survives ``kill -9``):

- ``ready <pid> <worker id>`` once the runtime has started (the membership is known)
- ``sleep_start <key>``, ``sleep_cancelled <key>``, ``sleep_done <key>`` from ``Sleep``
- ``news <key> <text> <sender>`` for each published ``News`` an agent received
- ``closed`` after a graceful shutdown (SIGTERM)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TextIO

from axonbus import Bus
from axonbus.runtime import AgentRuntime
from tests.faults.harness import Child
from tests.faults.runtime_agents import Counter


class RuntimeWorker(Child):
    """One ``tests.faults.runtime_worker`` process and what its log says so far."""

    module = "tests.faults.runtime_worker"
    name = "rtworker"

    def __init__(self, index: int, log_dir: Path, args: list[str]) -> None:
        super().__init__(index, log_dir, args)
        self.worker_id: str | None = None  # the runtime's worker id, from the ready line
        self.lines: list[list[str]] = []

    def _parse(self, parts: list[str]) -> None:
        if parts[0] == "ready":
            self.worker_id = parts[2]
        self.lines.append(parts)

    def seen(self, kind: str) -> list[list[str]]:
        """The log lines of ``kind`` so far, without the kind."""
        self.read()
        return [parts[1:] for parts in self.lines if parts[0] == kind]

    async def wait_for(self, kind: str, key: str, timeout: float = 10.0) -> None:
        """Until a ``<kind> <key> ...`` line is in the log."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(parts[:1] == [key] for parts in self.seen(kind)):
            if loop.time() > deadline:
                raise AssertionError(f"no '{kind} {key}' from worker {self.index}")
            await asyncio.sleep(0.01)


async def wait_ready(workers: list[RuntimeWorker], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for worker in workers:
        while worker.worker_id is None:
            worker.read()
            if not worker.alive:
                raise AssertionError(
                    f"runtime worker {worker.index} exited with {worker.proc.returncode}:\n"
                    + worker.stderr_tail()
                )
            if loop.time() > deadline:
                raise AssertionError(f"runtime worker {worker.index} not ready after {timeout}s")
            await asyncio.sleep(0.02)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bus", required=True, help="bus name (shared by every process)")
    parser.add_argument("--name", default="default", help="runtime name")
    parser.add_argument("--heartbeat", type=float, default=0.3)
    parser.add_argument("--out", required=True, help="log file, appended to")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, out: TextIO) -> None:
    runtime = AgentRuntime(Bus(args.url, name=args.bus), name=args.name, heartbeat=args.heartbeat)

    def log(line: str) -> None:
        out.write(line + "\n")

    await Counter.register(runtime, "counter", lambda: Counter(log))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await runtime.start()
    out.write(f"ready {os.getpid()} {runtime._placement.me}\n")  # type: ignore[attr-defined]
    await stop.wait()
    await runtime.close(timeout=2.0)
    await runtime.bus.close()
    out.write("closed\n")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(created).3f %(process)d %(levelname)s %(name)s: %(message)s",
    )
    args = parse_args(argv)
    with open(args.out, "a", buffering=1, encoding="ascii") as out:
        asyncio.run(run(args, out))


if __name__ == "__main__":
    main()
