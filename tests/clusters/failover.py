"""What the cluster failover tests measure: recovery times and what was handled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from axonbus import Bus
from tests.faults.harness import Fleet

__all__ = ["confirmed_after", "first_handled_after", "wait_all_done"]


async def confirmed_after(pub: Bus, since: float, queued: Callable[[], bool]) -> float:
    """Seconds from ``since`` until a flush of ``pub`` was confirmed, once ``queued()`` says a
    publish made after the kill is in it (a flush that raised is tried again)."""
    while not queued():
        await asyncio.sleep(0.005)
    while True:
        try:
            await pub.flush(timeout=30)
            return time.monotonic() - since
        except Exception:  # ConnectionLost while no node answers: try again
            await asyncio.sleep(0.05)


async def first_handled_after(fleet: Fleet, at_kill: int, t_kill: float) -> float:
    """Seconds from ``t_kill`` until a worker finished an event published after the kill."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fleet.read()
        times = [
            t
            for w in fleet
            for seq, t in w.done_times.items()
            if seq >= at_kill + 50 and t > t_kill
        ]
        if times:
            return min(times) - t_kill
        await asyncio.sleep(0.02)
    raise AssertionError(f"no event published after the kill was handled\n{fleet.stderr_tails()}")


async def wait_all_done(fleet: Fleet, n: int, timeout: float) -> dict[int, int]:
    """seq -> times handled, once every seq below ``n`` was handled (or ``timeout`` passed),
    and no log grew for a second (late redeliveries landed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fleet.read()
        if len(fleet.done()) >= n:
            break
        await asyncio.sleep(0.1)
    await fleet.wait_quiet(1.5, timeout=10)
    return dict(fleet.done())
