"""Every REST route and error code, through httpx's ASGI transport (no server)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from axonbus import Bus, Context
from axonbus.agent import DemoAgent, Interrupt, StateManager, UserInput
from axonbus.channels import ChannelManager, MemoryChannel
from axonbus.gateway import TokenSet, create_app
from tests.gateway.helpers import SECRET_ADMIN, SECRET_SLOW, SECRET_UI, asgi_client, auth

MakeApp = Callable[..., Any]


async def test_publish_returns_id_and_reaches_subscribers(bus: Bus, make_app: MakeApp) -> None:
    seen: list[tuple[Any, dict[str, str]]] = []
    bus.subscribe("orders.>", lambda event, ctx: seen.append((event, ctx.headers)))
    async with asgi_client(make_app()) as client:
        r = await client.post(
            "/v1/publish/orders.new",
            json={"id": 7, "items": ["a"]},
            headers={"traceparent": "00-abc-def-01", "X-Axonbus-Header-Tenant": "acme"},
        )
    assert r.status_code == 200
    body = r.json()
    assert body["topic"] == "orders.new"
    assert body["id"]
    assert body["offset"] is None
    await bus.drain()
    assert seen == [({"id": 7, "items": ["a"]}, {"traceparent": "00-abc-def-01", "tenant": "acme"})]


async def test_publish_types_agent_events_by_topic(bus: Bus, make_app: MakeApp) -> None:
    got: list[UserInput] = []
    bus.subscribe(UserInput, got.append)
    async with asgi_client(make_app()) as client:
        r = await client.post("/v1/publish/agent.s1.user_input", json={"text": "hi"})
        assert r.status_code == 200
        # an explicit type must validate
        r = await client.post(
            "/v1/publish/agent.s1.interrupt?type=axonbus.agent.Interrupt", json={"why": 1}
        )
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "invalid_event"
        r = await client.post("/v1/publish/x.y?type=no.such.Type", json={})
        assert r.status_code == 422
        # a payload whose fields disagree with the topic is not typed
        r = await client.post(
            "/v1/publish/agent.s1.user_input?type=axonbus.agent.UserInput",
            json={"session_id": "s2", "text": "x"},
        )
        assert r.status_code == 422
        # anything that does not validate is published as plain JSON
        r = await client.post("/v1/publish/agent.s1.user_input", json={"other": True})
        assert r.status_code == 200
    await bus.drain()
    assert got == [UserInput(session_id="s1", text="hi")]


async def test_publish_bad_input(make_app: MakeApp) -> None:
    async with asgi_client(make_app()) as client:
        r = await client.post("/v1/publish/bad..topic", json={})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "invalid_topic"
        r = await client.post("/v1/publish/agent.*", json={})
        assert r.status_code == 400
        r = await client.post(
            "/v1/publish/a.b", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "invalid_json"
        r = await client.post("/v1/publish/a.b")  # an empty body publishes None
        assert r.status_code == 200


async def test_publish_flush_reports_the_log_offset(tmp_path: Any) -> None:
    async with Bus(f"sqlite:///{tmp_path / 'log.db'}") as bus:
        async with asgi_client(create_app(bus)) as client:
            first = (await client.post("/v1/publish/a.b?flush=true", json=1)).json()
            second = (await client.post("/v1/publish/a.b?flush=1", json=2)).json()
        assert first["offset"] == 1
        assert second["offset"] == 2


async def test_payload_limit_413(make_app: MakeApp) -> None:
    async with asgi_client(make_app(max_body=64)) as client:
        r = await client.post("/v1/publish/a.b", json={"text": "x" * 100})
        assert r.status_code == 413
        assert r.json()["error"] == {
            "code": "payload_too_large",
            "message": "body of 111 bytes exceeds the limit of 64 bytes",
            "limit": 64,
        }
        r = await client.post("/v1/request/a.b", json={"text": "x" * 100})
        assert r.status_code == 413
        assert (await client.post("/v1/publish/a.b", json={"text": "ok"})).status_code == 200


async def test_default_payload_limit_is_the_bus_limit() -> None:
    async with Bus(max_message_bytes=100) as bus, asgi_client(create_app(bus)) as client:
        r = await client.post("/v1/publish/a.b", json="x" * 200)
        assert r.status_code == 413


async def test_auth_401_403_and_allowed(make_app: MakeApp, tokens: TokenSet) -> None:
    async with asgi_client(make_app(tokens=tokens)) as client:
        r = await client.post("/v1/publish/agent.s1.user_input", json={"text": "hi"})
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["code"] == "unauthorized"
        r = await client.post("/v1/publish/agent.s1.user_input", json={}, headers=auth("wrong"))
        assert r.status_code == 401
        r = await client.post(
            "/v1/publish/agent.s1.user_input", json={}, headers={"Authorization": "Basic abc"}
        )
        assert r.status_code == 401
        ok = await client.post(
            "/v1/publish/agent.s1.user_input", json={"text": "hi"}, headers=auth(SECRET_UI)
        )
        assert ok.status_code == 200
        r = await client.post("/v1/publish/agent.s1.token", json={}, headers=auth(SECRET_UI))
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"
        r = await client.get("/v1/events?pattern=$bus.>", headers=auth(SECRET_UI))
        assert r.status_code == 403
        r = await client.get("/v1/events?pattern=agent.secret.>", headers=auth(SECRET_UI))
        assert r.status_code == 403
        r = await client.get("/v1/events?pattern=agent..x", headers=auth(SECRET_UI))
        assert r.status_code == 400
        # the query form, for EventSource and WebSocket clients
        # ?token= only where a browser cannot send a header (GET streams, WebSocket)
        r = await client.post(f"/v1/publish/math.x?token={SECRET_UI}", json=1)
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "token_in_query"
        r = await client.get(f"/v1/stats?token={SECRET_UI}")
        assert r.status_code == 200
        for path in ("/v1/stats", "/metrics", "/v1/sessions", "/v1/channels"):
            assert (await client.get(path)).status_code == 401, path
        # the dashboard page and health need no token
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/healthz")).json()["auth"] is True


async def test_rate_limit_429_with_retry_after(make_app: MakeApp, tokens: TokenSet) -> None:
    async with asgi_client(make_app(tokens=tokens)) as client:
        codes = [
            (await client.post("/v1/publish/a.b", json=i, headers=auth(SECRET_SLOW))).status_code
            for i in range(3)
        ]
        assert codes == [200, 200, 429]
        r = await client.post("/v1/publish/a.b", json=0, headers=auth(SECRET_SLOW))
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "rate_limited"
        # other tokens have their own bucket
        r = await client.post("/v1/publish/a.b", json=0, headers=auth(SECRET_ADMIN))
        assert r.status_code == 200


async def test_request_reply_and_its_errors(bus: Bus, make_app: MakeApp) -> None:
    bus.respond("math.add", lambda req: req["a"] + req["b"])

    def fail(req: Any) -> Any:
        raise KeyError("no such thing")

    async def slow(req: Any) -> Any:
        await asyncio.sleep(0.3)

    bus.respond("math.fail", fail)
    bus.respond("math.slow", slow)
    async with asgi_client(make_app()) as client:
        r = await client.post("/v1/request/math.add", json={"a": 2, "b": 3})
        assert r.status_code == 200
        assert r.json() == {"topic": "math.add", "reply": 5}
        r = await client.post("/v1/request/math.nobody", json={})
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "no_responders"
        r = await client.post("/v1/request/math.fail", json={})
        assert r.status_code == 502
        error = r.json()["error"]
        assert error["code"] == "remote_error"
        assert error["type"] == "KeyError"
        assert "no such thing" in error["message"]
        r = await client.post("/v1/request/math.slow?timeout=0.05", json={})
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "request_timeout"
        for bad in ("0", "-1", "abc", "301"):
            r = await client.post(f"/v1/request/math.add?timeout={bad}", json={})
            assert r.status_code == 400, bad


async def test_bus_not_started_is_503() -> None:
    bus = Bus()
    async with asgi_client(create_app(bus)) as client:
        r = await client.get("/healthz")
        assert r.status_code == 503
        assert r.json()["bus"] == "new"
        r = await client.post("/v1/publish/a.b", json=1)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "bus_unavailable"
    await bus.start()
    async with asgi_client(create_app(bus)) as client:
        assert (await client.get("/healthz")).json() == {
            "status": "ok",
            "bus": "started",
            "transport": "memory",
            "log": False,
            "auth": False,
        }
    await bus.close()
    async with asgi_client(create_app(bus)) as client:
        assert (await client.get("/healthz")).status_code == 503


async def test_not_found_is_json(make_app: MakeApp) -> None:
    async with asgi_client(make_app()) as client:
        r = await client.get("/v1/nothing")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
        r = await client.get("/v1/publish/a.b")
        assert r.status_code == 405
        # optional parts the app was not given
        assert (await client.get("/v1/sessions")).status_code == 404
        assert (await client.get("/v1/channels")).status_code == 404
        r = await client.post("/v1/channels/web/in", json={"user_id": "u", "content": "x"})
        assert r.status_code == 404


async def test_stats_and_metrics(bus: Bus, make_app: MakeApp) -> None:
    async def boom(event: Any) -> None:
        raise RuntimeError("boom")

    bus.subscribe("orders.>", boom, name="billing")
    bus.subscribe("orders.>", lambda e: None, name="audit", maxsize=1, overflow="drop_oldest")
    async with asgi_client(make_app()) as client:
        for i in range(3):
            await client.post("/v1/publish/orders.new", json=i)
        await bus.drain()
        stats = (await client.get("/v1/stats")).json()
        by_name = {s["name"]: s for s in stats["subscriptions"]}
        assert by_name["billing"]["failed"] == 3
        assert by_name["audit"]["delivered"] + by_name["audit"]["dropped"] == 3
        assert stats["bus"]["state"] == "started"
        assert stats["bus"]["transport"] == "memory"
        r = await client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        text = r.text
    billing = '{pattern="orders.>",subscription="billing"}'
    assert f"axonbus_subscription_failed_total{billing} 3.0" in text
    assert re.search(r'axonbus_subscription_delivered_total\{[^}]*"audit"\} \d', text)
    assert 'axonbus_subscription_dropped_total{pattern="orders.>",subscription="audit"}' in text
    assert 'axonbus_subscription_queued{pattern="orders.>",subscription="billing"} 0.0' in text
    assert "axonbus_gateway_published_total 3.0" in text
    assert (
        'axonbus_gateway_http_requests_total{method="POST",route="/v1/publish/{topic}",'
        'status="200"} 3.0'
    ) in text
    assert "axonbus_gateway_sse_clients 0.0" in text
    assert "axonbus_bus_started 1.0" in text


async def test_metrics_registries_are_per_app(bus: Bus) -> None:
    one, two = create_app(bus), create_app(bus)
    async with asgi_client(one) as client:
        await client.post("/v1/publish/a.b", json=1)
    async with asgi_client(two) as client:
        text = (await client.get("/metrics")).text
    assert "axonbus_gateway_published_total 0.0" in text


async def test_sessions_from_the_state_manager(bus: Bus, make_app: MakeApp) -> None:
    states = StateManager(bus)
    agent = DemoAgent(bus, token_delay=0, tool_delay=0).start()
    try:
        async with asgi_client(make_app(state_manager=states)) as client:
            r = await client.post("/v1/publish/agent.s1.user_input", json={"text": "2 + 3"})
            assert r.status_code == 200
            async with asyncio.timeout(5):
                while states.get("s1").status != "done":
                    await asyncio.sleep(0.01)
            await bus.drain()
            listed = (await client.get("/v1/sessions")).json()["sessions"]
            one = (await client.get("/v1/sessions/s1")).json()
            missing = await client.get("/v1/sessions/nope")
    finally:
        await agent.stop()
        states.close()
    assert [s["session_id"] for s in listed] == ["s1"]
    assert one["status"] == "done"
    assert one["active"] is False
    assert one["result"].startswith("2 + 3 = 5.")
    assert missing.status_code == 404


async def test_sessions_are_filtered_by_token(bus: Bus, make_app: MakeApp, tokens: Any) -> None:
    states = StateManager(bus)
    try:
        await bus.publish(UserInput(session_id="s1", text="a"))
        await bus.publish(UserInput(session_id="secret", text="b"))
        await bus.drain()
        async with asgi_client(make_app(tokens=tokens, state_manager=states)) as client:
            ui = (await client.get("/v1/sessions", headers=auth(SECRET_UI))).json()
            admin = (await client.get("/v1/sessions", headers=auth(SECRET_ADMIN))).json()
    finally:
        states.close()
    assert [s["session_id"] for s in ui["sessions"]] == ["s1"]
    assert [s["session_id"] for s in admin["sessions"]] == ["s1", "secret"]


async def test_interrupt_through_publish(bus: Bus, make_app: MakeApp) -> None:
    got: list[Interrupt] = []
    bus.subscribe(Interrupt, got.append)
    async with asgi_client(make_app()) as client:
        r = await client.post("/v1/publish/agent.s9.interrupt", json={"reason": "stop"})
    assert r.status_code == 200
    await bus.drain()
    assert got == [Interrupt(session_id="s9", reason="stop")]


async def test_channels_listed(bus: Bus, make_app: MakeApp) -> None:
    async with ChannelManager(bus) as manager:
        await manager.attach(MemoryChannel(bus, "telegram"))
        async with asgi_client(make_app(channels=manager)) as client:
            body = (await client.get("/v1/channels")).json()
    assert body == {
        "channels": [
            {
                "channel_type": "telegram",
                "kind": "MemoryChannel",
                "state": "running",
                "restarts": 0,
                "last_error": None,
            }
        ]
    }


async def test_dashboard_is_served(make_app: MakeApp) -> None:
    ids = [
        "chat-log", "chat-input", "chat-send", "session-input", "run-status",
        "interrupt-button", "resume-button", "cancel-button", "event-stream", "event-filter",
        "event-filter-apply", "subscriptions-body", "sessions-body", "channels-list",
        "connection-status", "token-input",
    ]  # fmt: skip
    async with asgi_client(make_app()) as client:
        page = await client.get("/")
        script = await client.get("/static/app.js")
        style = await client.get("/static/style.css")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for element in ids:
        assert f'id="{element}"' in page.text, element
        assert f'data-testid="{element}"' in page.text, element
    assert script.status_code == 200
    assert "/v1/events" in script.text
    assert style.status_code == 200


async def test_handlers_see_correlation(bus: Bus, make_app: MakeApp) -> None:
    seen: list[str] = []

    def record(event: Any, ctx: Context) -> None:
        seen.append(ctx.correlation_id)

    bus.subscribe("a.b", record)
    async with asgi_client(make_app()) as client:
        await client.post("/v1/publish/a.b", json=1, headers={"X-Correlation-ID": "c-42"})
    await bus.drain()
    assert seen == ["c-42"]


@pytest.mark.parametrize("value", [None, [1, 2], "text", 3.5, True])
async def test_any_json_payload(bus: Bus, make_app: MakeApp, value: Any) -> None:
    got: list[Any] = []
    bus.subscribe("a.b", got.append)
    async with asgi_client(make_app()) as client:
        assert (await client.post("/v1/publish/a.b", json=value)).status_code == 200
    await bus.drain()
    assert got == [value]
