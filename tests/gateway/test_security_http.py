"""The REST routes under attack: origins, hosts, content types, bad input, disclosure."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from axonbus import Bus
from axonbus.channels import ChannelManager, ChannelMessage
from axonbus.gateway import TokenSet, WebhookChannel, create_app, sign, verify
from tests.gateway.helpers import (
    SECRET_ADMIN,
    SECRET_SLOW,
    SECRET_UI,
    asgi_client,
    auth,
    eventually,
    open_sse,
    running_server,
)

EVIL = "https://evil.example"


# -- 2. open access is not open to every web page ---------------------------------------------


async def test_other_origins_hosts_and_plain_text_posts_are_refused(bus: Bus) -> None:
    got: list[object] = []
    bus.subscribe("a.b", got.append)
    async with asgi_client(create_app(bus)) as client:
        r = await client.post("/v1/publish/a.b", json=1, headers={"Origin": EVIL})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "bad_origin"
        # a cross-site "simple" request needs no preflight: text/plain must not publish
        r = await client.post(
            "/v1/publish/a.b", content=b"1", headers={"content-type": "text/plain"}
        )
        assert r.status_code == 415
        # DNS rebinding: the page's own name now points at 127.0.0.1
        r = await client.get("/v1/stats", headers={"Host": "evil.example:8765"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "bad_host"
        # same origin is fine, and so are clients that send no Origin (curl, SDKs)
        r = await client.post("/v1/publish/a.b", json=2, headers={"Origin": "http://127.0.0.1"})
        assert r.status_code == 200
        assert (await client.post("/v1/publish/a.b", json=3)).status_code == 200
    await bus.drain()
    assert got == [2, 3]


async def test_allowed_origins_and_hosts_are_settings(bus: Bus) -> None:
    app = create_app(bus, allowed_origins=["https://ui.example"], allowed_hosts=["*.example"])
    async with asgi_client(app) as client:
        headers = {"Host": "gw.example", "Origin": "https://ui.example"}
        assert (await client.post("/v1/publish/a.b", json=1, headers=headers)).status_code == 200
        headers["Origin"] = EVIL
        assert (await client.post("/v1/publish/a.b", json=1, headers=headers)).status_code == 403
        assert (await client.get("/healthz", headers={"Host": "x.other"})).status_code == 400


async def test_a_websocket_from_another_origin_is_refused(bus: Bus) -> None:
    websockets = pytest.importorskip("websockets")
    async with running_server(create_app(bus)) as base:
        url = base.replace("http://", "ws://") + "/v1/ws"
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(url, origin=EVIL):
                pass
        assert refused.value.response.status_code == 403
        async with websockets.connect(url, origin=base) as ws:  # same origin
            assert '"ready"' in await ws.recv()


# -- 4. / 9. what cannot be encoded ------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [255, 300, 1000])
async def test_deep_bodies_are_400_on_every_transport(tmp_path: Path, depth: int) -> None:
    for url in ("memory://", f"sqlite:///{tmp_path}/deep.db"):
        async with Bus(url) as bus, asgi_client(create_app(bus)) as client:
            r = await client.post(
                "/v1/publish/a.b",
                content=_nested(depth),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 400, (url, r.text)
            assert r.json()["error"]["code"] in ("too_deep", "invalid_json")


async def test_an_unencodable_event_is_skipped_and_the_stream_goes_on(bus: Bus) -> None:
    deep: list[object] = []
    for _ in range(5000):  # published in-process, past the gateway's own check
        deep = [deep]
    async with running_server(create_app(bus)) as base, httpx.AsyncClient(base_url=base) as client:
        stream, reader, _ = await open_sse(client, "/v1/events?pattern=p.>")
        try:
            await bus.publish("p.poison", deep)
            await bus.publish("p.fine", {"n": 1})
            skipped = await reader.event()
            fine = await reader.event()
        finally:
            await stream.__aexit__(None, None, None)
        metrics = (await client.get("/metrics")).text
    assert skipped["event"] == "skipped"
    assert skipped["data"]["topic"] == "p.poison"
    assert skipped["data"]["total"] == 1
    assert fine["data"]["event"] == {"n": 1}
    assert "axonbus_gateway_stream_skipped_total 1.0" in metrics


# -- 7. idempotency keys are per token and topic -----------------------------------------------


async def test_idempotency_keys_are_scoped_by_token_and_topic(
    tmp_path: Path, tokens: TokenSet
) -> None:
    async with Bus(f"sqlite:///{tmp_path}/idem.db") as bus:
        async with asgi_client(create_app(bus, tokens=tokens)) as client:
            key = {"Idempotency-Key": "K"}

            async def publish(secret: str, topic: str, n: int) -> str:
                r = await client.post(
                    f"/v1/publish/{topic}?flush=1", json=n, headers={**auth(secret), **key}
                )
                assert r.status_code == 200
                return str(r.json()["id"])

            first = await publish(SECRET_UI, "math.x", 1)
            assert await publish(SECRET_UI, "math.x", 1) == first  # a retry: the same event
            other_token = await publish(SECRET_ADMIN, "math.x", 2)
            other_topic = await publish(SECRET_UI, "math.y", 3)
        stored = [env.event for env in await bus.events("math.>")]
    assert len({first, other_token, other_topic}) == 3
    assert stored == [1, 2, 3]


# -- 8. load shedding ----------------------------------------------------------------------------


async def test_an_overloaded_gateway_answers_503_with_retry_after(bus: Bus) -> None:
    app = create_app(bus, shed_lag=0.5)
    gw = app.state.gateway
    async with asgi_client(app) as client:
        assert (await client.post("/v1/publish/a.b", json=1)).status_code == 200
        gw.lag = 2.4  # what watch_lag measures while the loop runs 2.4 s late
        r = await client.post("/v1/publish/a.b", json=1)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "3"
        assert r.json()["error"]["code"] == "overloaded"
        assert (await client.get("/v1/stats")).status_code == 200  # reads still answered
        metrics = (await client.get("/metrics")).text
    assert "axonbus_gateway_shed_total 1.0" in metrics


async def test_the_lag_watch_sees_a_blocked_loop(bus: Bus) -> None:
    gw = create_app(bus).state.gateway
    seen: list[float] = []
    watcher = asyncio.get_running_loop().create_task(gw.watch_lag(0.05))
    try:
        await asyncio.sleep(0.1)
        # the event loop is blocked, as in a CPU-bound server
        time.sleep(0.5)  # noqa: ASYNC251

        def lagging() -> bool:
            seen.append(gw.lag)
            return max(seen) > 0.2

        await eventually(lagging)
    finally:
        watcher.cancel()


# -- 9. / 10. 400 instead of 500, and Last-Event-ID past the head ---------------------------------


@pytest.mark.parametrize("char", ["%C2%A0", "%E2%80%A8", "%C2%85", "%1F", "%09"])
async def test_topics_with_odd_spaces_or_controls_are_400(bus: Bus, char: str) -> None:
    async with asgi_client(create_app(bus)) as client:
        r = await client.post(f"/v1/publish/a{char}b", json=1)
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "invalid_topic"
        r = await client.head(f"/v1/events?pattern=a{char}b")
        assert r.status_code == 400


@pytest.mark.parametrize("last", ["²", "¹³", "9" * 5000, "99999999999999999999", "999999999"])
async def test_odd_or_future_last_event_ids_resume_at_the_head(tmp_path: Path, last: str) -> None:
    async with Bus(f"sqlite:///{tmp_path}/log.db") as bus:
        for i in range(3):
            await bus.publish("log.x", i)
        await bus.flush()
        app = create_app(bus)
        async with (
            running_server(app) as base,
            httpx.AsyncClient(base_url=base) as client,
        ):
            stream, reader, hello = await open_sse(
                client,
                "/v1/events?pattern=log.>",
                headers={"Last-Event-ID": last.encode()},  # type: ignore[dict-item]
            )
            try:
                await bus.publish("log.x", "new")
                event = await reader.event()
            finally:
                await stream.__aexit__(None, None, None)
    assert event["data"]["event"] == "new"  # no gap, no stream ending at once
    assert event["id"] == "4"
    assert any("following from" in c for c in hello["comments"])


# -- 11. security headers ------------------------------------------------------------------------


async def test_security_headers_on_the_dashboard_and_the_api(bus: Bus) -> None:
    async with asgi_client(create_app(bus)) as client:
        for path in ("/", "/v1/stats", "/static/app.js"):
            r = await client.get(path)
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"


# -- 12. rate limits: per token (publishes), per address (failed auth) --------------------------


async def test_wrong_token_guesses_are_throttled_per_address(bus: Bus, tokens: TokenSet) -> None:
    app = create_app(bus, tokens=tokens)
    app.state.gateway.limiter.clock = lambda: 1000.0  # no refill, however slow the machine
    async with asgi_client(app) as client:
        statuses = [
            (await client.get("/v1/stats", headers=auth(f"guess-{i}"))).status_code
            for i in range(30)
        ]
        assert statuses[:10] == [401] * 10
        assert set(statuses[10:]) == {429}
        r = await client.get("/v1/stats", headers=auth(SECRET_UI))  # even a right one now
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "too_many_failures"
        assert int(r.headers["retry-after"]) >= 1


async def test_a_tokens_rate_counts_publishes_not_reads(bus: Bus, tokens: TokenSet) -> None:
    app = create_app(bus, tokens=tokens)
    app.state.gateway.limiter.clock = lambda: 1000.0  # no refill, however slow the machine
    async with (
        running_server(app) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        slow = auth(SECRET_SLOW)  # rate 2
        for _ in range(10):
            assert (await client.get("/v1/stats", headers=slow)).status_code == 200
        for _ in range(3):
            stream, _, _ = await open_sse(client, "/v1/events?pattern=x.>", slow)
            await stream.__aexit__(None, None, None)
        statuses = [
            (await client.post("/v1/publish/x.y", json=1, headers=slow)).status_code
            for _ in range(3)
        ]
    assert statuses == [200, 200, 429]


async def test_open_feeds_per_token_are_capped(bus: Bus, tokens: TokenSet) -> None:
    app = create_app(bus, tokens=tokens, max_feeds_per_token=2)
    async with running_server(app) as base, httpx.AsyncClient(base_url=base) as client:
        url = "/v1/events?pattern=agent.x.>"
        opened = [await open_sse(client, url, auth(SECRET_UI)) for _ in "ab"]
        try:
            r = await client.get("/v1/events?pattern=agent.>", headers=auth(SECRET_UI))
            assert r.status_code == 429
            assert r.json()["error"]["code"] == "too_many_feeds"
        finally:
            for stream, _, _ in opened:
                await stream.__aexit__(None, None, None)


# -- 13. disclosure ------------------------------------------------------------------------------


async def test_stats_are_scoped_to_the_tokens_grants(bus: Bus, tokens: TokenSet) -> None:
    bus.subscribe("billing.>", lambda e: None, name="billing-audit")
    bus.subscribe("agent.>", lambda e: None, name="agent-log")
    async with asgi_client(create_app(bus, tokens=tokens)) as client:
        ui = (await client.get("/v1/stats", headers=auth(SECRET_UI))).json()
        admin = (await client.get("/v1/stats", headers=auth(SECRET_ADMIN))).json()
        assert (await client.get("/metrics", headers=auth(SECRET_UI))).status_code == 403
        assert (await client.get("/metrics", headers=auth(SECRET_ADMIN))).status_code == 200
    assert [s["name"] for s in ui["subscriptions"]] == ["agent-log"]
    assert ui["bus"]["url"] is None
    assert {s["name"] for s in admin["subscriptions"]} >= {"billing-audit", "agent-log"}
    assert admin["bus"]["url"] == "memory://"


async def test_no_url_password_in_stats() -> None:
    pytest.importorskip("redis")
    bus = Bus("redis://user:hunter2-pw@127.0.0.1:1/0")  # never started: stats need no broker
    async with asgi_client(create_app(bus)) as client:
        r = await client.get("/v1/stats")
    assert r.status_code == 200
    assert "hunter2-pw" not in r.text
    assert "hunter2-pw" not in repr(bus)  # what `axonbus serve` prints


# -- 14. signed webhooks -------------------------------------------------------------------------


def test_non_finite_timestamps_never_verify() -> None:
    body = b"{}"
    for ts in ("nan", "NaN", "inf", "-inf", "1e999"):
        headers = {"X-Axonbus-Timestamp": ts, "X-Axonbus-Signature": sign("k", ts, body)}
        assert not verify("k", headers, body), ts


async def test_a_replayed_webhook_is_refused(bus: Bus) -> None:
    got: list[ChannelMessage] = []
    bus.subscribe("channel.crm.in", got.append)
    hook = WebhookChannel(bus, "https://hooks.test/in", channel_type="crm", secret="k")
    async with ChannelManager(bus) as manager:
        await manager.attach(hook)
        body = b'{"user_id": "u1", "content": "pay 100"}'
        ts = str(int(time.time()))
        headers = {
            "X-Axonbus-Timestamp": ts,
            "X-Axonbus-Signature": sign("k", ts, body),
            "Content-Type": "application/json",
        }
        async with asgi_client(create_app(bus, channels=manager)) as client:
            first = await client.post("/v1/channels/crm/in", content=body, headers=headers)
            again = await client.post("/v1/channels/crm/in", content=body, headers=headers)
        await bus.drain()
    assert first.status_code == 202
    assert again.status_code == 401
    assert len(got) == 1


# -- 15. HEAD, ?token= on POSTs, a payload that disagrees with its topic --------------------------


async def test_head_on_events_opens_no_feed(bus: Bus) -> None:
    app = create_app(bus)
    async with asgi_client(app) as client:
        async with asyncio.timeout(5):  # before: a live feed, open for as long as the socket
            r = await client.head("/v1/events?pattern=a.>")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert app.state.gateway.feeds == {}
    assert app.state.gateway.hubs.hubs == {}


async def test_a_session_id_that_disagrees_with_the_topic_is_422(bus: Bus) -> None:
    got: list[object] = []
    bus.subscribe("agent.>", got.append)
    async with asgi_client(create_app(bus)) as client:
        r = await client.post(
            "/v1/publish/agent.s1.user_input", json={"session_id": "s2", "text": "hi"}
        )
        assert r.status_code == 422
        assert "disagrees with the topic" in r.json()["error"]["message"]
        r = await client.post(
            "/v1/publish/agent.s1.user_input", json={"session_id": "s1", "text": "hi"}
        )
        assert r.status_code == 200
    await bus.drain()
    assert len(got) == 1


async def test_slacks_signed_route_is_reached_through_a_tunnels_host(bus: Bus) -> None:
    async with asgi_client(create_app(bus)) as client:
        tunnel = {"Host": "abc123.tunnel.example"}
        # no SlackChannel attached: the route answers 404 (not a Host refusal)
        r = await client.post("/v1/channels/slack/events", json={}, headers=tunnel)
        assert r.status_code == 404
        r = await client.post("/v1/publish/a.b", json=1, headers=tunnel)
        assert r.status_code == 400
