"""The runtime across processes, several runtimes in this process on the shared Redis and NATS
(each on its own Bus, so everything between them crosses the broker). The same scenarios with
real worker processes and ``kill -9`` are in tests/faults/test_runtime_workers.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from axonbus import Bus, DecodeError
from axonbus.runtime import (
    AgentId,
    AgentRuntime,
    CantHandle,
    RemoteError,
    RoutedAgent,
    TopicId,
    TypeSubscription,
    Undeliverable,
    rpc,
)
from axonbus.runtime._distributed import DistributedPlacement
from axonbus.runtime._membership_table import Member, Membership
from axonbus.runtime._subscriptions import SubscriptionIndex
from tests.faults.runtime_agents import Count, Counter, Inc, News, Relay, Sleep

HEARTBEAT = 0.2


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


Make = Callable[..., Awaitable[AgentRuntime]]


@pytest.fixture
async def make(broker_url: str, bus_name: str) -> AsyncIterator[Make]:
    """``await make(counter=True, log=list)``: a started runtime of the cluster."""
    made: list[AgentRuntime] = []

    async def runtime(*, counter: bool = False, log: list[str] | None = None) -> AgentRuntime:
        rt = AgentRuntime(Bus(broker_url, name=bus_name), heartbeat=HEARTBEAT)
        made.append(rt)
        if counter:
            lines = log if log is not None else []
            await Counter.register(rt, "counter", lambda: Counter(lines.append))
        rt.message_types.register(Count)
        await rt.start()
        return rt

    yield runtime

    async def close(rt: AgentRuntime) -> None:
        await rt.close(timeout=2.0)
        await rt.bus.close()

    await asyncio.gather(*(close(rt) for rt in made))


def placement(rt: AgentRuntime) -> DistributedPlacement:
    assert isinstance(rt._placement, DistributedPlacement)
    return rt._placement


def worker_of(rt: AgentRuntime) -> str:
    return placement(rt).me


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def inc(rt: AgentRuntime, key: str) -> Count:
    count = await rt.send_message(Inc(), AgentId("counter", key), timeout=5)
    assert isinstance(count, Count)
    return count


def owned_here(rt: AgentRuntime, keys: list[str]) -> list[str]:
    return [k for k in keys if AgentId("counter", k) in rt._hosts.by_id]


def test_rendezvous_hashing_moves_only_the_keys_it_must() -> None:
    def table(*workers: str) -> Membership:
        view = Membership(Member("client"))
        for w in workers:
            view.set_types(view.add(w), ["counter"])
        return view

    ids = [AgentId("counter", f"k{i}") for i in range(3000)]
    three = {i: table("a", "b", "c").owner(i) for i in ids}
    assert three == {i: table("c", "a", "b").owner(i) for i in ids}  # order does not matter
    assert all(600 < list(three.values()).count(w) < 1400 for w in "abc")
    two = {i: table("a", "b").owner(i) for i in ids}
    assert all(two[i] == three[i] for i in ids if three[i] != "c")  # c's keys move, no others
    four = {i: table("a", "b", "c", "d").owner(i) for i in ids}
    assert all(four[i] in (three[i], "d") for i in ids)  # a newcomer only takes keys
    view = table("a", "b")
    view.add_pins(view.members["b"], [ids[0], ids[1]])
    assert view.owner(ids[0]) == view.owner(ids[1]) == "b"  # a pin wins over the hash
    view.remove("b")
    assert view.owner(ids[0]) == "a"
    assert view.owner(AgentId("other", "k")) is None


def test_remote_subscriptions_count_for_routing_only() -> None:
    index = SubscriptionIndex()
    index.add(TypeSubscription("t", "a", id="own"))
    index.set_remote([TypeSubscription("t", "a", id="r1"), TypeSubscription("u", "b", id="r2")])
    assert index.recipients(TopicId("u", "s")) == (AgentId("b", "s"),)
    assert [s.id for s in index] == ["own"]
    index.remove("own")  # another process has an equal one: still routed
    assert index.recipients(TopicId("t", "s")) == (AgentId("a", "s"),)
    index.set_remote([])
    assert index.recipients(TopicId("t", "s")) == ()


async def test_start_learns_the_membership(make: Make) -> None:
    a = await make(counter=True)
    b = await make(counter=True)
    c = await make()
    for rt in (a, b, c):
        assert set(placement(rt).view.members) == {worker_of(x) for x in (a, b, c)}
    # every process agrees on each key's owner, and it is one of the two workers
    for key in ("k1", "k2", "k3", "k4"):
        owners = {placement(rt).view.owner(AgentId("counter", key)) for rt in (a, b, c)}
        assert len(owners) == 1
        assert owners <= {worker_of(a), worker_of(b)}


async def test_unknown_types_fail_clearly(make: Make) -> None:
    @dataclass
    class Unknown:  # the sender registers it on the way out; the worker never heard of it
        x: int

    await make(counter=True)
    client = await make()
    with pytest.raises(CantHandle, match="Unknown"):
        await client.send_message(Unknown(1), AgentId("counter", "k"), timeout=5)
    with pytest.raises(CantHandle):
        await client.send_message("text", AgentId("counter", "k"), timeout=5)
    with pytest.raises(TypeError, match="not a registered message type"):
        await client.send_message(object(), AgentId("counter", "k"), timeout=5)
    # a reply of a type the caller does not know
    bare = AgentRuntime(Bus(client.bus.url, name=client.bus.name), heartbeat=HEARTBEAT)
    await bare.start()
    try:
        with pytest.raises(DecodeError, match="Count"):
            await bare.send_message(Inc(), AgentId("counter", "k"), timeout=5)
    finally:
        await bare.close()
        await bare.bus.close()


async def test_a_factory_failure_is_a_remote_error(make: Make) -> None:
    def broken() -> Counter:
        raise LookupError("no config")

    worker = await make()
    await Counter.register(worker, "broken", broken)
    client = await make()
    await until(lambda: "broken" in placement(client).view.get(worker_of(worker)).types)  # type: ignore[union-attr]
    with pytest.raises(RemoteError) as info:
        await client.send_message(Inc(), AgentId("broken", "k"), timeout=5)
    assert (info.value.remote_type, info.value.remote_message) == ("LookupError", "no config")


async def test_publish_reaches_each_recipient_once_and_never_the_sender(make: Make) -> None:
    logs: list[list[str]] = [[], []]
    workers = [await make(counter=True, log=logs[0]), await make(counter=True, log=logs[1])]
    client = await make()
    keys = [f"p{i}" for i in range(12)]
    for key in keys:
        await client.publish_message(News("hi"), TopicId("news", key))
    expected = sorted(f"news {k} hi None" for k in keys)
    await until(lambda: len(logs[0]) + len(logs[1]) >= len(keys))
    await asyncio.sleep(0.2)
    assert sorted(logs[0] + logs[1]) == expected
    for rt, log in zip(workers, logs, strict=True):  # each at the agent's owner
        assert sorted(line.split()[1] for line in log) == sorted(owned_here(rt, keys))
    assert all(owned_here(rt, keys) for rt in workers), "keys spread over both workers"
    for log in logs:
        log.clear()
    sender = keys[0]
    await client.send_message(Relay("r", keys[:6]), AgentId("counter", sender), timeout=5)
    await until(lambda: len(logs[0]) + len(logs[1]) >= 5)
    await asyncio.sleep(0.2)
    assert sorted(logs[0] + logs[1]) == sorted(f"news {k} r counter/{sender}" for k in keys[1:6])


async def test_subscriptions_added_in_one_process_route_in_all(make: Make) -> None:
    log: list[str] = []
    worker = await make(counter=True, log=log)
    client = await make()
    other = await make()
    await other.add_subscription(TypeSubscription("alerts", "counter", id="alerts"))
    await until(lambda: bool(client._subscriptions.recipients(TopicId("alerts", "a1"))))
    await client.publish_message(News("alarm"), TopicId("alerts", "a1"))
    await until(lambda: log == ["news a1 alarm None"])
    assert "alerts" not in [s.id for s in client._subscriptions]  # iterating: its own only
    await other.remove_subscription("alerts")
    await until(lambda: not client._subscriptions.recipients(TopicId("alerts", "a2")))
    # and a member that stops takes its subscriptions along
    await other.add_subscription(TypeSubscription("alerts", "counter", id="again"))
    await until(lambda: bool(worker._subscriptions.recipients(TopicId("alerts", "a3"))))
    await other.stop()
    await until(lambda: not worker._subscriptions.recipients(TopicId("alerts", "a3")))


async def test_a_joining_worker_leaves_instantiated_keys_in_place(make: Make) -> None:
    first = await make(counter=True)
    client = await make()
    keys = [f"j{i}" for i in range(40)]
    for key in keys:
        assert (await inc(client, key)).value == 1
    assert owned_here(first, keys) == keys
    second = await make(counter=True)
    await until(lambda: len(placement(client).view.members) == 3)
    # the newcomer would win about half of these by hash; they are pinned to `first`
    hrw = placement(client).view.hrw
    by_hash = [k for k in keys if hrw(AgentId("counter", k)) != worker_of(first)]
    assert by_hash
    assert placement(second).view.pins.keys() >= {AgentId("counter", k) for k in by_hash}
    for key in keys:
        assert (await inc(client, key)).value == 2
    assert owned_here(second, keys) == []
    # a sender that has not heard of the pins yet reaches the newcomer, which forwards
    placement(client).view.pins.clear()
    placement(client)._where.clear()
    for key in by_hash[:5]:
        assert (await inc(client, key)).value == 3
    assert owned_here(second, keys) == []
    # new keys go to both
    fresh = [f"f{i}" for i in range(40)]
    for key in fresh:
        await inc(client, key)
    assert owned_here(first, fresh)
    assert owned_here(second, fresh)


async def test_a_clean_stop_moves_keys_at_once(make: Make) -> None:
    a = await make(counter=True)
    b = await make(counter=True)
    client = await make()
    keys = [f"c{i}" for i in range(20)]
    for key in keys:
        await inc(client, key)
    leaving = owned_here(a, keys)
    assert leaving
    await a.stop()  # says goodbye: no waiting for missed heartbeats
    await until(lambda: worker_of(a) not in placement(client).view, timeout=HEARTBEAT * 2)
    for key in leaving:
        assert (await inc(client, key)).value == 1  # afresh, at b
    assert set(owned_here(b, keys)) == set(keys)
    # a send waiting on a worker that leaves ends at once
    slow = await make(counter=True)
    where = placement(client).locate
    key = next(f"w{i}" for i in range(200) if where(AgentId("counter", f"w{i}")) == worker_of(slow))
    call = asyncio.create_task(client.send_message(Sleep(30), AgentId("counter", key)))
    await until(lambda: AgentId("counter", key) in slow._hosts.by_id)
    await slow.stop(timeout=0)
    with pytest.raises(Undeliverable):
        async with asyncio.timeout(HEARTBEAT * 2):
            await call


async def test_an_unawaited_start_still_routes(broker_url: str, bus_name: str) -> None:
    worker = AgentRuntime(Bus(broker_url, name=bus_name), heartbeat=HEARTBEAT)
    await Counter.register(worker, "counter", Counter)
    await worker.start()
    client = AgentRuntime(Bus(broker_url, name=bus_name), heartbeat=HEARTBEAT)
    client.message_types.register(Count)
    await client.bus.start()
    client.start()  # autogen style: the membership is learned in the background
    try:
        count = await client.send_message(Inc(), AgentId("counter", "u"), timeout=5)
        assert count.value == 1
        await client.publish_message(News("x"), TopicId("news", "u"))
    finally:
        for rt in (client, worker):
            await rt.close()
            await rt.bus.close()


class Echo(RoutedAgent):
    @rpc
    async def echo(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"from": self.id.key, **message}


async def test_json_messages_and_a_restart(make: Make) -> None:
    worker = await make()
    await Echo.register(worker, "echo", Echo)
    client = await make()
    await until(lambda: "echo" in placement(client).view.get(worker_of(worker)).types)  # type: ignore[union-attr]
    assert await client.send_message({"a": 1}, AgentId("echo", "e")) == {"from": "e", "a": 1}
    await worker.stop()
    await worker.start()  # joins again, with the agents it kept
    await until(lambda: worker_of(worker) in placement(client).view)
    assert await client.send_message({"b": 2}, AgentId("echo", "e")) == {"from": "e", "b": 2}
