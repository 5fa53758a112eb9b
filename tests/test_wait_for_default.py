"""``wait_for(..., default=...)``: a timeout returns the default instead of raising, as an event
bus that answers "nothing came" with ``None`` does; async and blocking clients alike."""

from __future__ import annotations

import threading

import pytest

from axonbus import Bus
from axonbus.sync import Bus as SyncBus


async def test_a_timeout_returns_the_default() -> None:
    async with Bus() as bus:
        assert await bus.wait_for("never.x", timeout=0.02, default=None) is None
        assert await bus.wait_for("never.x", timeout=0.02, default="none came") == "none came"
        assert len(bus._index) == 0  # each waiter unregistered itself
        with pytest.raises(TimeoutError):  # no default: unchanged
            await bus.wait_for("never.x", timeout=0.02)


async def test_an_event_wins_over_the_default() -> None:
    async with Bus() as bus:
        waiter = bus.wait_for("job.done", timeout=10, default=None)
        await bus.publish("job.done", {"id": 1})
        assert await waiter == {"id": 1}


async def test_a_closed_bus_is_not_a_timeout() -> None:
    """The default stands in for a timeout only; a bus closing under the waiter still says so."""
    from axonbus import BusClosed

    bus = Bus()
    await bus.start()
    waiter = bus.wait_for("job.done", timeout=10, default=None)
    await bus.close()
    with pytest.raises(BusClosed):
        await waiter


def test_the_blocking_client_returns_the_default() -> None:
    with SyncBus() as bus:
        assert bus.wait_for("never.x", timeout=0.05, default=None) is None
        assert bus.wait_for("never.x", timeout=0.05, default=0) == 0
        with pytest.raises(TimeoutError):
            bus.wait_for("never.x", timeout=0.05)
        got: list[object] = []
        ready = threading.Event()

        def wait() -> None:
            ready.set()
            got.append(bus.wait_for("job.done", timeout=30, default=None))

        t = threading.Thread(target=wait)
        t.start()
        ready.wait(5)
        # publish until the waiter (registered inside its thread) has taken one
        while t.is_alive():
            bus.publish("job.done", "yes")
            t.join(0.05)
        assert got == ["yes"]
