"""``GET /v1/ws`` with Starlette's TestClient (the app and its bus run on the client's portal
loop), and once over a real server when the ``websockets`` package is installed."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from axonbus import Bus
from axonbus.channels import ChannelManager, ChannelMessage
from axonbus.gateway import TokenSet, WebSocketChannel, create_app
from tests.gateway.helpers import (
    SECRET_SLOW,
    SECRET_UI,
    TEST_HOSTS,
    TOKENS_CONFIG,
    auth,
    running_server,
)

with warnings.catch_warnings():
    # Starlette >= 1.x would rather drive its TestClient with the `httpx2` package
    warnings.filterwarnings("ignore", message=".*install `httpx2`", category=UserWarning)
    from starlette.testclient import TestClient


BIG_FRAME = json.dumps({"op": "publish", "topic": "a.b", "event": "x" * 5000})


def _responders(bus: Bus) -> None:
    bus.respond("math.add", lambda req: req["a"] + req["b"])

    def fail(req: Any) -> Any:
        raise ValueError("bad numbers")

    async def slow(req: Any) -> Any:
        await asyncio.sleep(0.3)

    bus.respond("math.fail", fail)
    bus.respond("math.slow", slow)


@pytest.fixture
def client() -> Iterator[TestClient]:
    bus = Bus()
    _responders(bus)
    with TestClient(
        create_app(bus, own_bus=True, max_body=4096, allowed_hosts=TEST_HOSTS)
    ) as test_client:
        yield test_client


def _frames(ws: Any, n: int) -> list[dict[str, Any]]:
    return [ws.receive_json() for _ in range(n)]


def test_subscribe_publish_event_round_trip(client: TestClient) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        ready = ws.receive_json()
        assert ready == {"op": "ready", "token": "open", "log": False, "max_frame": 4096}
        ws.send_json({"op": "subscribe", "pattern": "agent.s1.>", "id": 1})
        assert ws.receive_json() == {
            "op": "subscribed",
            "ref": 1,
            "pattern": "agent.s1.>",
            "resumable": False,
            "notice": None,
        }
        ws.send_json({"op": "publish", "topic": "agent.s2.token", "event": {"text": "x"}, "id": 2})
        ack = ws.receive_json()
        assert ack["op"] == "published"
        assert ack["ref"] == 2
        ws.send_json({"op": "publish", "topic": "agent.s1.token", "event": {"text": "hi"}, "id": 3})
        frames = {f["op"]: f for f in _frames(ws, 2)}
        assert frames["published"]["ref"] == 3
        event = frames["event"]
        assert event["pattern"] == "agent.s1.>"
        assert event["topic"] == "agent.s1.token"
        assert event["id"] == frames["published"]["id"]
        assert event["type"] == "axonbus.agent.Token"  # typed by its topic
        assert event["event"]["text"] == "hi"

        ws.send_json({"op": "unsubscribe", "pattern": "agent.s1.>", "id": 4})
        assert ws.receive_json() == {"op": "unsubscribed", "ref": 4, "pattern": "agent.s1.>"}
        ws.send_json({"op": "publish", "topic": "agent.s1.token", "event": {"text": "no"}})
        assert ws.receive_json()["op"] == "published"
        ws.send_json({"op": "ping", "id": 5})
        assert ws.receive_json() == {"op": "pong", "ref": 5}  # and no event in between


def test_request_and_its_errors(client: TestClient) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        ws.receive_json()
        ws.send_json({"op": "request", "topic": "math.add", "event": {"a": 2, "b": 3}, "id": 1})
        assert ws.receive_json() == {"op": "reply", "ref": 1, "reply": 5}
        ws.send_json({"op": "request", "topic": "math.none", "event": {}, "id": 2})
        error = ws.receive_json()
        assert (error["op"], error["ref"], error["status"]) == ("error", 2, 503)
        assert error["code"] == "no_responders"
        ws.send_json({"op": "request", "topic": "math.fail", "event": {}, "id": 3})
        error = ws.receive_json()
        assert (error["status"], error["code"]) == (502, "remote_error")
        assert error["type"] == "ValueError"
        assert error["message"] == "bad numbers"
        ws.send_json({"op": "request", "topic": "math.slow", "timeout": 0.05, "id": 4})
        error = ws.receive_json()
        assert (error["status"], error["code"]) == (504, "request_timeout")
        # a slow request does not hold up the frames after it
        ws.send_json({"op": "request", "topic": "math.slow", "timeout": 5, "id": 5})
        ws.send_json({"op": "ping", "id": 6})
        assert ws.receive_json() == {"op": "pong", "ref": 6}
        assert ws.receive_json() == {"op": "reply", "ref": 5, "reply": None}


@pytest.mark.parametrize(
    ("frame", "status", "code"),
    [
        ("{nope", 400, "invalid_json"),
        ("[1, 2]", 400, "invalid_frame"),
        ('{"op": "dance"}', 400, "unknown_op"),
        ('{"op": "publish", "event": {}}', 400, "invalid_frame"),
        ('{"op": "publish", "topic": "a..b"}', 400, "invalid_topic"),
        ('{"op": "publish", "topic": "a.b", "headers": {"x": 1}}', 400, "invalid_frame"),
        ('{"op": "subscribe", "pattern": "a.>.b"}', 400, "invalid_pattern"),
        ('{"op": "request", "topic": "math.add", "timeout": -1}', 400, "invalid_frame"),
        ('{"op": "message", "content": "hi"}', 404, "no_channel"),
        (BIG_FRAME, 413, "payload_too_large"),
    ],
)
def test_bad_frames_get_error_frames(
    client: TestClient, frame: str, status: int, code: str
) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        ws.receive_json()
        ws.send_text(frame)
        error = ws.receive_json()
        assert (error["op"], error["status"], error["code"]) == ("error", status, code)
        ws.send_json({"op": "ping"})
        assert ws.receive_json()["op"] == "pong"  # the connection survives


def test_tokens_on_the_websocket() -> None:
    bus = Bus()
    app = create_app(bus, own_bus=True, tokens=TokenSet.from_config(TOKENS_CONFIG))
    with TestClient(app) as client:
        with client.websocket_connect("/v1/ws") as ws:
            error = ws.receive_json()
            assert (error["status"], error["code"]) == (401, "unauthorized")
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4401
        with client.websocket_connect(f"/v1/ws?token={SECRET_UI}") as ws:
            assert ws.receive_json()["token"] == "ui"
            ws.send_json({"op": "subscribe", "pattern": "$bus.>", "id": 1})
            assert ws.receive_json()["status"] == 403
            ws.send_json({"op": "publish", "topic": "agent.s1.token", "event": {}, "id": 2})
            assert ws.receive_json()["status"] == 403
            ws.send_json({"op": "subscribe", "pattern": "agent.>", "id": 3})
            assert ws.receive_json()["op"] == "subscribed"
            ws.send_json({"op": "publish", "topic": "agent.s1.user_input", "event": {"text": "x"}})
            frames = {f["op"]: f for f in _frames(ws, 2)}
            assert frames["event"]["topic"] == "agent.s1.user_input"
        with client.websocket_connect("/v1/ws", headers=auth(SECRET_SLOW)) as ws:
            ws.receive_json()
            statuses = []
            for i in range(3):
                ws.send_json({"op": "publish", "topic": "a.b", "event": i})
                statuses.append(ws.receive_json().get("status", 200))
            assert statuses == [200, 200, 429]


def test_websocket_channel_round_trip() -> None:
    bus = Bus()
    manager = ChannelManager(bus)

    @bus.on("channel.web.in")
    async def agent(message: ChannelMessage) -> None:
        await bus.publish(message.reply(f"you said {message.content!r}", mood="fine"))

    app = create_app(bus, own_bus=True, channels=manager, allowed_hosts=TEST_HOSTS)
    with TestClient(app) as client:
        assert client.portal is not None
        client.portal.call(manager.attach, WebSocketChannel(bus, "web"))
        with client.websocket_connect("/v1/ws") as ws, client.websocket_connect("/v1/ws") as other:
            ws.receive_json()
            other.receive_json()
            ws.send_json({"op": "message", "channel": "web", "content": "hi", "id": 1})
            frames = {f["op"]: f for f in _frames(ws, 2)}
            assert frames["sent"]["topic"] == "channel.web.in"
            assert frames["sent"]["replies"] is True
            user = frames["sent"]["user_id"]  # open access: an id made for this connection
            reply = frames["message"]
            assert reply == {
                "op": "message",
                "channel": "web",
                "user_id": user,
                "content": "you said 'hi'",
                "reply_to": frames["sent"]["id"],
                "metadata": {"mood": "fine"},
            }
            # without "channel": the first WebSocketChannel; another connection, another user
            other.send_json({"op": "message", "content": "yo"})
            frames = {f["op"]: f for f in _frames(other, 2)}
            assert frames["message"]["user_id"] == frames["sent"]["user_id"] != user
            listed = client.get("/v1/channels").json()["channels"]
            assert listed[0]["kind"] == "WebSocketChannel"
        client.portal.call(manager.close)


@pytest.mark.skipif(
    importlib.util.find_spec("websockets") is None, reason="needs the websockets package"
)
async def test_over_a_real_server(bus: Bus) -> None:
    import websockets

    async with running_server(create_app(bus)) as base:
        url = base.replace("http://", "ws://") + "/v1/ws"
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["op"] == "ready"
            await ws.send(json.dumps({"op": "subscribe", "pattern": "x.>", "id": 1}))
            assert json.loads(await ws.recv())["op"] == "subscribed"
            await bus.publish("x.y", {"n": 1})
            event = json.loads(await ws.recv())
            assert (event["op"], event["topic"], event["event"]) == ("event", "x.y", {"n": 1})


def test_gateway_shutdown_closes_open_websockets_going_away(client: TestClient) -> None:
    """Closing the gateway's feeds (server shutdown) ends every WebSocket with 1001 (going
    away), one waiting for a request's reply too, and drops their subscriptions."""
    assert client.portal is not None
    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    with client.websocket_connect("/v1/ws") as idle, client.websocket_connect("/v1/ws") as busy:
        idle.receive_json()
        busy.receive_json()
        idle.send_json({"op": "subscribe", "pattern": "a.>", "id": 1})
        assert idle.receive_json()["op"] == "subscribed"
        busy.send_json({"op": "request", "topic": "math.slow", "event": {}, "timeout": 5, "id": 2})
        busy.send_json({"op": "ping", "id": 3})
        assert busy.receive_json() == {"op": "pong", "ref": 3}
        client.portal.call(gateway.close_feeds)
        for ws in (idle, busy):
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()  # the close, not the reply: the request is cancelled
            assert closed.value.code == 1001
    assert gateway.feeds == {}
