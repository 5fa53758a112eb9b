"""The distributed runtime with real worker processes (``tests/faults/runtime_worker.py``) on
the shared Redis and NATS, the test process acting as the client runtime.

- Each key is answered by one worker while the membership is stable, keys are spread over the
  workers, and a key's state lives in one place (its count goes 1, 2, 3, ... without resets).
- A worker that joins takes new keys only: keys already instantiated stay with their state.
- ``kill -9`` of a worker: its keys are answered by a survivor (state afresh) within a bound
  (the client and the survivors notice within ``EXPIRY_BEATS`` heartbeats, at once on NATS when
  the broker says the worker's responder is gone); the other keys keep their state.
- ``kill -9`` of a worker while a send waits for its handler: the caller gets
  ``Undeliverable`` (or ``RequestTimeout``) within that bound, never a hang.
- Errors, publishes (once per recipient, never back to the sender) and cancellation cross
  processes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter as Tally
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis

from axonbus import Bus
from axonbus.runtime import (
    AgentId,
    AgentNotFound,
    AgentRuntime,
    CancellationToken,
    CantHandle,
    RemoteError,
    RequestTimeout,
    TopicId,
    Undeliverable,
)
from tests.faults.runtime_agents import Count, Fail, Inc, News, Relay, Sleep
from tests.faults.runtime_worker import RuntimeWorker, wait_ready

pytestmark = pytest.mark.slow

HEARTBEAT = 0.3
RUNTIME = "counters"
# noticing a dead worker: 3 missed heartbeats (0.9 s), and the survivors too; slack for CI
FAILOVER_BOUND = 4.0


@pytest.fixture(params=["redis", "nats"])
def broker_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_service")
    return url


@pytest.fixture
def bus_name(broker_url: str) -> Iterator[str]:
    name = f"rt{uuid.uuid4().hex[:8]}"
    yield name
    if broker_url.startswith("redis"):
        client = redis.Redis.from_url(broker_url)
        keys = list(client.scan_iter(f"{name}[:/]*"))
        if keys:
            client.delete(*keys)
        client.close()


class Fleet:
    def __init__(self, url: str, bus_name: str, log_dir: Path) -> None:
        self.args = ["--url", url, "--bus", bus_name, "--name", RUNTIME]
        self.args += ["--heartbeat", str(HEARTBEAT)]
        self.log_dir = log_dir
        self.workers: list[RuntimeWorker] = []

    async def spawn(self, n: int = 1) -> list[RuntimeWorker]:
        new = [RuntimeWorker(len(self.workers) + i, self.log_dir, self.args) for i in range(n)]
        self.workers += new
        await wait_ready(new)
        return new

    def by_pid(self, pid: int) -> RuntimeWorker:
        return next(w for w in self.workers if w.pid == pid)

    def stop_all(self) -> None:
        for w in self.workers:
            if w.killed:
                w.kill()
            else:
                w.stop()


@asynccontextmanager
async def cluster(
    url: str, bus_name: str, tmp_path: Path, workers: int
) -> AsyncIterator[tuple[Fleet, AgentRuntime]]:
    fleet = Fleet(url, bus_name, tmp_path)
    client = AgentRuntime(Bus(url, name=bus_name), name=RUNTIME, heartbeat=HEARTBEAT)
    client.message_types.register(Count)
    try:
        await fleet.spawn(workers)
        await client.start()
        yield fleet, client
    finally:
        await client.close(timeout=2.0)
        await client.bus.close()
        fleet.stop_all()


async def wait_members(client: AgentRuntime, n: int, timeout: float = 5.0) -> None:
    """Until the client knows ``n`` members hosting ``counter``."""
    placement = client._placement
    async with asyncio.timeout(timeout):
        while sum("counter" in m.types for m in placement.view.members.values()) != n:  # type: ignore[attr-defined]
            await asyncio.sleep(0.02)


async def inc(client: AgentRuntime, key: str, timeout: float = 5.0) -> Count:
    count = await client.send_message(Inc(), AgentId("counter", key), timeout=timeout)
    assert isinstance(count, Count)
    assert count.key == key
    return count


async def key_of(client: AgentRuntime, worker: RuntimeWorker) -> str:
    """A key that ``worker`` owns."""
    for i in range(100):
        if (await inc(client, f"s{i}")).pid == worker.pid:
            return f"s{i}"
    raise AssertionError(f"worker {worker.index} owns none of 100 keys")


async def test_keys_stay_with_one_worker_and_move_when_it_dies(
    broker_url: str, bus_name: str, tmp_path: Path
) -> None:
    async with cluster(broker_url, bus_name, tmp_path, workers=2) as (fleet, client):
        await wait_members(client, 2)
        keys = [f"k{i}" for i in range(30)]
        owner: dict[str, int] = {}
        count: dict[str, int] = {}
        for expected in (1, 2, 3):
            for key in keys:
                got = await inc(client, key)
                assert owner.setdefault(key, got.pid) == got.pid, f"{key} moved"
                assert got.value == expected, f"{key} lost its state"
                count[key] = got.value
        assert set(owner.values()) == {w.pid for w in fleet.workers}, "keys not spread"

        # a third worker joins: the keys instantiated elsewhere stay with their state
        (newcomer,) = await fleet.spawn()
        await wait_members(client, 3)
        for key in keys:
            got = await inc(client, key)
            assert (got.pid, got.value) == (owner[key], count[key] + 1), f"{key} moved"
            count[key] = got.value
        fresh = [f"n{i}" for i in range(30)]
        for key in fresh:
            got = await inc(client, key)
            assert got.value == 1
            owner[key], count[key] = got.pid, 1
        assert newcomer.pid in {owner[k] for k in fresh}, "the newcomer takes new keys"

        # kill -9 the first worker: its keys move to survivors, with fresh state
        victim = fleet.workers[0]
        moved = [k for k in owner if owner[k] == victim.pid]
        assert moved
        victim.kill()
        t0 = time.monotonic()
        first_answer = None
        for key in moved:
            while True:
                try:
                    got = await inc(client, key, timeout=1.0)
                    break
                except (Undeliverable, RequestTimeout):
                    assert time.monotonic() - t0 < FAILOVER_BOUND, f"{key} not served again"
            first_answer = first_answer or time.monotonic() - t0
            assert got.pid != victim.pid
            assert got.value == 1, f"{key}: a fresh agent on the survivor"
            owner[key], count[key] = got.pid, 1
        assert first_answer is not None
        assert first_answer < FAILOVER_BOUND
        for key in owner:  # every key: one place, consistent state
            got = await inc(client, key)
            assert (got.pid, got.value) == (owner[key], count[key] + 1), key


async def test_a_worker_killed_mid_send_fails_the_caller(
    broker_url: str, bus_name: str, tmp_path: Path
) -> None:
    async with cluster(broker_url, bus_name, tmp_path, workers=2) as (fleet, client):
        await wait_members(client, 2)
        victim = fleet.workers[0]
        key = await key_of(client, victim)
        call = asyncio.create_task(client.send_message(Sleep(30), AgentId("counter", key)))
        await victim.wait_for("sleep_start", key)
        victim.kill()
        t0 = time.monotonic()
        with pytest.raises((Undeliverable, RequestTimeout)):
            async with asyncio.timeout(FAILOVER_BOUND + 2):
                await call
        assert time.monotonic() - t0 < FAILOVER_BOUND
        # and the key is served again, by the survivor
        async with asyncio.timeout(FAILOVER_BOUND):
            while True:
                try:
                    got = await inc(client, key, timeout=1.0)
                    break
                except (Undeliverable, RequestTimeout):
                    continue
        assert got.pid == fleet.workers[1].pid


async def test_errors_publishes_and_cancellation_cross_processes(
    broker_url: str, bus_name: str, tmp_path: Path
) -> None:
    async with cluster(broker_url, bus_name, tmp_path, workers=2) as (fleet, client):
        await wait_members(client, 2)
        # errors keep their kind
        with pytest.raises(RemoteError) as info:
            await client.send_message(Fail("no way"), AgentId("counter", "e1"), timeout=5)
        assert (info.value.remote_type, info.value.remote_message) == ("ValueError", "no way")
        with pytest.raises(CantHandle):
            await client.send_message("plain text", AgentId("counter", "e1"), timeout=5)
        with pytest.raises(AgentNotFound):
            await client.send_message(Inc(), AgentId("nobody", "e1"), timeout=5)

        # a publish reaches each subscribed agent once, at its owner
        keys = [f"p{i}" for i in range(8)]
        owner = {k: (await inc(client, k)).pid for k in keys}
        for key in keys:
            await client.publish_message(News("hello"), TopicId("news", key))
        sender, others = keys[0], keys[1:4]
        await client.send_message(Relay("relay", [sender, *others]), AgentId("counter", sender))

        def news() -> Tally[tuple[int, str, str, str]]:
            return Tally((w.pid, *line) for w in fleet.workers for line in w.seen("news"))  # type: ignore[misc]

        expected = Tally({(owner[k], k, "hello", "None"): 1 for k in keys})
        expected.update({(owner[k], k, "relay", f"counter/{sender}"): 1 for k in others})
        async with asyncio.timeout(5):
            while news() != expected:
                assert not news() - expected, f"unexpected deliveries: {news() - expected}"
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # nothing more arrives: once each, the sender excluded
        assert news() == expected

        # a cancelled token cancels the handler in the other process
        key = keys[1]
        worker = fleet.by_pid(owner[key])
        token = CancellationToken()
        call = asyncio.create_task(
            client.send_message(Sleep(30), AgentId("counter", key), cancellation_token=token)
        )
        await worker.wait_for("sleep_start", key)
        token.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await worker.wait_for("sleep_cancelled", key, timeout=5)
        # and a timeout does too
        with pytest.raises(RequestTimeout):
            await client.send_message(Sleep(30), AgentId("counter", key), timeout=0.3)
        async with asyncio.timeout(5):
            while len(worker.seen("sleep_cancelled")) < 2:
                await asyncio.sleep(0.02)
