"""``GET /v1/events`` against a real uvicorn server on a free port (streams never end, so
httpx's ASGI transport, which waits for the whole response, cannot read them)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from axonbus import Bus
from axonbus.agent import Token
from axonbus.gateway import TokenSet, create_app
from tests.gateway.helpers import SECRET_UI, SSEReader, auth, running_server


async def _open(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> tuple[Any, SSEReader, dict[str, Any]]:
    """Open a stream and read its greeting (the feed is registered once it arrived)."""
    stream = client.stream("GET", url, headers=headers)
    response = await stream.__aenter__()
    assert response.status_code == 200, await response.aread()
    assert response.headers["content-type"].startswith("text/event-stream")
    reader = SSEReader(response)
    hello = await reader.block()
    return stream, reader, hello


async def test_events_arrive_with_pattern_filter(bus: Bus) -> None:
    async with running_server(create_app(bus)) as base, httpx.AsyncClient(base_url=base) as client:
        stream, reader, hello = await _open(client, "/v1/events?pattern=agent.s1.>")
        try:
            assert hello["retry"] == "2000"
            assert hello["comments"] == ["axonbus live stream of agent.s1.>"]
            first = await bus.publish(Token(session_id="s1", text="Hel"))
            await bus.publish("agent.s2.token", {"text": "other session"})
            await bus.publish("agent.s1.done", {"result": "Hello"})
            one = await reader.event()
            two = await reader.event()
        finally:
            await stream.__aexit__(None, None, None)
    assert one["id"] == first.id
    assert one["event"] == "agent.s1.token"
    assert one["data"] == {
        "topic": "agent.s1.token",
        "id": first.id,
        "timestamp": first.timestamp,
        "event": {"session_id": "s1", "run_id": "", "step": 0, "text": "Hel", "tokens": 1},
        "type": "axonbus.agent.Token",
    }
    assert two["event"] == "agent.s1.done"
    assert two["data"]["event"] == {"result": "Hello"}


async def test_keepalive_comments(bus: Bus) -> None:
    app = create_app(bus, keepalive=0.05)
    async with running_server(app) as base, httpx.AsyncClient(base_url=base) as client:
        stream, reader, _ = await _open(client, "/v1/events")
        try:
            assert (await reader.block())["comments"] == ["keep-alive"]
        finally:
            await stream.__aexit__(None, None, None)


async def test_last_event_id_resumes_from_the_log_without_gap_or_duplicate(
    tmp_path: Path,
) -> None:
    async with (
        Bus(f"sqlite:///{tmp_path / 'events.db'}") as bus,
        running_server(create_app(bus)) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        await bus.publish("orders.before", {"n": 0})  # before the stream: not in it
        await bus.flush()
        stream, reader, hello = await _open(client, "/v1/events?pattern=orders.>")
        assert hello["comments"] == ["axonbus log stream of orders.>"]
        for n in range(1, 11):
            await bus.publish("orders.new", {"n": n})
        seen = [await reader.event() for _ in range(4)]
        await stream.__aexit__(None, None, None)
        assert [e["data"]["event"]["n"] for e in seen] == [1, 2, 3, 4]
        # ids are log offsets
        assert [int(e["id"]) for e in seen] == [e["data"]["offset"] for e in seen]
        assert [int(e["id"]) for e in seen] == [2, 3, 4, 5]

        for n in range(11, 16):
            await bus.publish("orders.new", {"n": n})
        await bus.publish("other.topic", {"n": -1})
        await bus.flush()
        last = seen[-1]["id"]
        stream, reader, _ = await _open(
            client, "/v1/events?pattern=orders.>", headers={"Last-Event-ID": last}
        )
        try:
            rest = [await reader.event() for _ in range(11)]
            await bus.publish("orders.new", {"n": 16})  # live again, after the replay
            after = await reader.event()
        finally:
            await stream.__aexit__(None, None, None)
        assert [e["data"]["event"]["n"] for e in rest] == list(range(5, 16))
        assert after["data"]["event"]["n"] == 16
        offsets = [int(e["id"]) for e in [*seen, *rest, after]]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == len(offsets)

        # from the beginning, and by event id
        stream, reader, _ = await _open(client, "/v1/events?pattern=orders.>&last_event_id=0")
        try:
            everything = [await reader.event() for _ in range(17)]
        finally:
            await stream.__aexit__(None, None, None)
        assert [e["data"]["event"]["n"] for e in everything] == list(range(17))
        by_id = everything[9]["data"]["id"]
        stream, reader, _ = await _open(
            client, "/v1/events?pattern=orders.>", headers={"Last-Event-ID": by_id}
        )
        try:
            assert (await reader.event())["data"]["event"]["n"] == 10
        finally:
            await stream.__aexit__(None, None, None)


async def test_a_slow_client_loses_its_oldest_events_and_is_told(bus: Bus) -> None:
    app = create_app(bus, queue_size=5)
    async with running_server(app) as base, httpx.AsyncClient(base_url=base) as client:
        stream, reader, _ = await _open(client, "/v1/events?pattern=feed.>")
        try:
            began = time.perf_counter()
            for i in range(100):  # all in one loop tick: the client cannot keep up
                bus.publish_nowait("feed.tick", i)
            assert time.perf_counter() - began < 1.0  # the bus was never held back
            dropped = await reader.block()
            kept = [await reader.event() for _ in range(5)]
            stats = (await client.get("/v1/stats")).json()
        finally:
            await stream.__aexit__(None, None, None)
        metrics = (await client.get("/metrics")).text
    assert dropped["event"] == "dropped"
    assert dropped["data"] == {"dropped": 95, "total": 95}
    assert [e["data"]["event"] for e in kept] == [95, 96, 97, 98, 99]
    assert stats["clients"] == [
        {"client": "sse", "pattern": "feed.>", "pending": 0, "dropped": 95, "resumable": False}
    ]
    assert "axonbus_gateway_stream_dropped_total 95.0" in metrics


async def test_denied_topics_are_filtered_out(bus: Bus, tokens: TokenSet) -> None:
    app = create_app(bus, tokens=tokens)
    async with running_server(app) as base, httpx.AsyncClient(base_url=base) as client:
        stream, reader, _ = await _open(client, "/v1/events?pattern=agent.>", auth(SECRET_UI))
        try:
            await bus.publish("agent.secret.token", {"text": "hidden"})
            await bus.publish("agent.s1.token", {"text": "visible"})
            event = await reader.event()
        finally:
            await stream.__aexit__(None, None, None)
        # EventSource clients pass the token in the query
        stream, reader, _ = await _open(client, f"/v1/events?pattern=agent.s1.>&token={SECRET_UI}")
        await stream.__aexit__(None, None, None)
    assert event["data"]["event"] == {"text": "visible"}


async def test_streams_end_when_the_bus_closes() -> None:
    bus = Bus()
    app = create_app(bus, own_bus=True)
    async with running_server(app) as base, httpx.AsyncClient(base_url=base) as client:
        stream, reader, _ = await _open(client, "/v1/events")
        try:
            await bus.close()
            try:
                await reader.block(timeout=5)
            except EOFError:
                pass
            else:
                raise AssertionError("the stream should have ended")
        finally:
            await stream.__aexit__(None, None, None)


async def test_shutdown_does_not_wait_for_open_streams(bus: Bus) -> None:
    app = create_app(bus)
    client = httpx.AsyncClient()
    try:
        async with running_server(app) as base:
            stream, _, _ = await _open(client, f"{base}/v1/events")
            began = time.perf_counter()
        assert time.perf_counter() - began < 2.0
        await stream.__aexit__(None, None, None)
        assert app.state.gateway.feeds == {}
    finally:
        await client.aclose()


async def test_disconnected_clients_release_their_feed(bus: Bus) -> None:
    app = create_app(bus)
    async with running_server(app) as base, httpx.AsyncClient(base_url=base) as client:
        stream, _, _ = await _open(client, "/v1/events?pattern=x.>")
        assert len(app.state.gateway.feeds) == 1
        await stream.__aexit__(None, None, None)
        async with asyncio.timeout(5):
            while app.state.gateway.feeds:
                await asyncio.sleep(0.01)


async def test_a_stream_written_after_the_middleware_still_went_through_it(bus: Bus) -> None:
    """The stream's events are written once the middleware stack returned (an idle client
    then holds none of its frames); its head still carries the security headers and is counted
    by the access log, and its events and keep-alives still arrive."""
    app = create_app(bus, keepalive=0.05)
    gateway = app.state.gateway
    async with running_server(app) as base, httpx.AsyncClient(base_url=base) as client:
        async with client.stream("GET", "/v1/events?pattern=mw.>") as response:
            assert response.status_code == 200
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["x-frame-options"] == "DENY"
            reader = SSEReader(response)
            await reader.block()
            assert (await reader.block())["comments"] == ["keep-alive"]
            await bus.publish("mw.x", {"n": 1})
            assert (await reader.event())["data"]["event"] == {"n": 1}
            assert len(gateway.writers) == 1
        text = (await client.get("/metrics")).text
        assert 'route="/v1/events",status="200"' in text
        async with asyncio.timeout(10):
            while gateway.writers or gateway.feeds:
                await asyncio.sleep(0.01)
