"""The WebSocket under attack: forged user ids, frame floods, leaking error text."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from axonbus import Bus
from axonbus.channels import ChannelManager, ChannelMessage
from axonbus.gateway import AccessToken, TokenSet, WebSocketChannel, create_app
from tests.gateway.helpers import auth

with contextlib.suppress(ImportError):
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

ALICE = "alice-secret-0123456789-AbCdEfGhIjKl"
MALLORY = "mallory-secret-0123456789-MnOpQrStUv"


def _tokens() -> TokenSet:
    return TokenSet(
        [
            AccessToken("alice", ALICE, publish=("channel.ws.in",), subscribe=("channel.ws.out",)),
            # may talk to the agent, may not read its replies
            AccessToken("mallory", MALLORY, publish=("channel.ws.in", "x.>"), subscribe=("x.>",)),
        ]
    )


@contextlib.contextmanager
def _client(bus: Bus, **options: Any) -> Iterator[Any]:
    with TestClient(create_app(bus, own_bus=True, **options)) as client:
        yield client


def test_a_frame_cannot_claim_another_users_replies() -> None:
    bus = Bus()
    manager = ChannelManager(bus)
    inbound: list[ChannelMessage] = []

    @bus.on("channel.ws.in")
    async def agent(message: ChannelMessage) -> None:
        inbound.append(message)
        await bus.publish(message.reply(f"private to {message.user_id}"))

    with _client(bus, tokens=_tokens(), channels=manager) as client:
        client.portal.call(manager.attach, WebSocketChannel(bus, "ws"))
        with (
            client.websocket_connect("/v1/ws", headers=auth(ALICE)) as alice,
            client.websocket_connect("/v1/ws", headers=auth(MALLORY)) as mallory,
        ):
            alice.receive_json()
            mallory.receive_json()
            # the forged frame is refused outright
            mallory.send_json({"op": "message", "user_id": "alice", "content": "hi", "id": 1})
            error = mallory.receive_json()
            assert (error["op"], error["status"]) == ("error", 403)
            # as itself it may talk, but gets no replies (its subscribe check fails)
            mallory.send_json({"op": "message", "content": "hi", "id": 2})
            sent = mallory.receive_json()
            assert (sent["op"], sent["user_id"], sent["replies"]) == ("sent", "mallory", False)
            alice.send_json({"op": "message", "content": "hello", "id": 3})
            frames = {f["op"]: f for f in (alice.receive_json(), alice.receive_json())}
            assert frames["message"]["content"] == "private to alice"
            # mallory's connection got nothing: its next frame is the answer to this ping
            mallory.send_json({"op": "ping", "id": 4})
            assert mallory.receive_json() == {"op": "pong", "ref": 4}
        client.portal.call(manager.close)
    assert [m.user_id for m in inbound] == ["mallory", "alice"]


def test_a_flood_of_frames_is_refused_then_closed() -> None:
    with (
        _client(Bus(), tokens=_tokens(), frame_rate=1, frame_burst=10) as client,
        client.websocket_connect("/v1/ws", headers=auth(MALLORY)) as ws,
    ):
        ws.receive_json()
        answers: list[dict[str, Any]] = []

        def flood() -> None:
            for i in range(200):  # pings and garbage alike count
                ws.send_text("garbage" if i % 2 else '{"op": "ping"}')
                answers.append(ws.receive_json())

        with pytest.raises(WebSocketDisconnect) as closed:
            flood()
    codes = [a.get("code") for a in answers]
    assert codes.count("rate_limited") >= 10
    assert closed.value.code == 1008


def test_internal_errors_do_not_echo_exception_text() -> None:
    bus = Bus()
    with _client(bus, allowed_hosts=["testserver"]) as client:
        gw = client.app.state.gateway

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("/srv/secret/path password=hunter2")

        gw.publish = broken
        with client.websocket_connect("/v1/ws") as ws:
            ws.receive_json()
            ws.send_json({"op": "publish", "topic": "a.b", "event": 1, "id": 1})
            error = ws.receive_json()
    assert (error["status"], error["code"]) == (500, "internal_error")
    assert "hunter2" not in error["message"]
    assert "/srv" not in error["message"]


def test_publishes_spend_the_tokens_rate_not_the_frame_rate() -> None:
    bus = Bus()
    with (
        _client(bus, tokens=_tokens(), frame_rate=5, frame_burst=10) as client,
        client.websocket_connect("/v1/ws", headers=auth(MALLORY)) as ws,
    ):
        ws.receive_json()
        for i in range(50):  # mallory's token has no rate: a fast publisher is fine
            ws.send_json({"op": "publish", "topic": "x.y", "event": i, "id": i})
            assert ws.receive_json()["op"] == "published"


def test_an_unencodable_event_is_skipped_on_a_websocket_too() -> None:
    bus = Bus()
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    with (
        _client(bus, allowed_hosts=["testserver"]) as client,
        client.websocket_connect("/v1/ws") as ws,
    ):
        ws.receive_json()
        ws.send_json({"op": "subscribe", "pattern": "p.>", "id": 1})
        assert ws.receive_json()["op"] == "subscribed"
        client.portal.call(bus.publish, "p.poison", deep)
        client.portal.call(bus.publish, "p.fine", {"n": 1})
        skipped, fine = ws.receive_json(), ws.receive_json()
        # the subscription is still alive afterwards
        client.portal.call(bus.publish, "p.later", {"n": 2})
        later = ws.receive_json()
    assert (skipped["op"], skipped["topic"], skipped["total"]) == ("skipped", "p.poison", 1)
    assert (fine["op"], fine["event"]) == ("event", {"n": 1})
    assert later["event"] == {"n": 2}
