"""Bounded mailboxes: a slow consumer never grows memory without bound.

Run: python examples/backpressure.py
"""

from __future__ import annotations

import asyncio

from axonbus import Bus


async def main() -> dict[str, tuple[int, int]]:
    async with Bus() as bus:

        async def dashboard(tick: int) -> None:
            await asyncio.sleep(0.001)  # slow: keeps only the freshest ticks

        async def archive(tick: int) -> None:
            await asyncio.sleep(0)  # must see everything: the publisher waits for room

        bus.subscribe("metrics.tick", dashboard, maxsize=10, overflow="drop_oldest")
        # the default subscription name is the handler's __name__: "dashboard", "archive"
        bus.subscribe("metrics.tick", archive, maxsize=10, overflow="block")
        for i in range(500):
            await bus.publish("metrics.tick", i)
        await bus.drain()
        return {s.name: (s.delivered, s.dropped) for s in bus.stats()}


if __name__ == "__main__":
    for name, (delivered, dropped) in asyncio.run(main()).items():
        print(f"{name:10} delivered={delivered:4} dropped={dropped}")
