"""A consumer process of ``benchmarks.clusters``: one durable subscription, the
publish-to-handle latency of every event it handles.

    python -m benchmarks.cluster_consumer --url nats://... --bus b1 --out /tmp/c0

It writes ``ready`` to ``{out}.status`` once subscribed, then the number of events handled
every 0.1 s; on SIGTERM it writes one latency (seconds) per line to ``{out}.lat`` (the events
with a ``"t"`` field, the publisher's ``time.time()``) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from axonbus import Bus


async def run(url: str, bus_name: str, out: Path) -> None:
    handled = 0
    latencies: list[float] = []

    def work(event: Any) -> None:
        nonlocal handled
        handled += 1
        if "t" in event:
            latencies.append(time.time() - event["t"])

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    status = out.with_suffix(".status")
    async with Bus(url, name=bus_name) as bus:
        bus.subscribe("bench.work", work, durable="workers", concurrency=8)
        await bus.flush()
        status.write_text("ready 0\n")
        while not stop.is_set():
            status.write_text(f"ready {handled}\n")
            await asyncio.sleep(0.1)
    out.with_suffix(".lat").write_text("".join(f"{x:.6f}\n" for x in latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bus", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.bus, Path(args.out)))


if __name__ == "__main__":
    main()
