"""The public surface, access logging, JSON encoding, typed payloads."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import warnings
from pathlib import Path

import pytest

from axonbus import Bus
from axonbus.agent import UserInput
from axonbus.gateway import InvalidEvent, TokenSet, create_app
from axonbus.gateway._payload import EventTypes, dumps, jsonable
from tests.gateway.helpers import SECRET_UI, TEST_HOSTS, asgi_client

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*install `httpx2`", category=UserWarning)
    from starlette.testclient import TestClient


def test_public_names_are_sorted_and_importable() -> None:
    module = importlib.import_module("axonbus.gateway")
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), name
    assert {"create_app", "serve", "WebSocketChannel", "WebhookChannel"} <= set(module.__all__)


async def test_access_log_redacts_tokens(
    bus: Bus, tokens: TokenSet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="axonbus.gateway.access")
    async with asgi_client(create_app(bus, tokens=tokens)) as client:
        r = await client.get(f"/v1/stats?token={SECRET_UI}&flush=1")
        assert r.status_code == 200
        # Starlette decodes the key: %74oken is token, and must be redacted as well
        r = await client.get(f"/v1/stats?%74oken={SECRET_UI}")
        assert r.status_code == 200
        await client.get("/healthz")
    assert SECRET_UI not in caplog.text
    assert '"GET /v1/stats?token=***&flush=1" 200' in caplog.text
    assert '"GET /v1/stats?%74oken=***" 200' in caplog.text
    assert '"GET /healthz" 200' in caplog.text


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_dumps_handles_what_events_carry() -> None:
    expected = b'{"p":{"x":1,"y":2},"b":"hi","s":[1]}'
    assert dumps({"p": Point(1, 2), "b": b"hi", "s": {1}}) == expected
    assert dumps({"big": 2**70}) == b'{"big":1180591620717411303424}'
    assert dumps({1: "non-str key"}) == b'{"1":"non-str key"}'
    assert jsonable(b"\xff\x00") == {"$base64": "/wA="}
    assert jsonable(UserInput(session_id="s", text="t"))["text"] == "t"


def test_event_types_by_topic() -> None:
    types = EventTypes([UserInput])
    assert types.build("agent.s1.user_input", {"text": "hi"}) == UserInput(
        session_id="s1", text="hi"
    )
    assert types.build("agent.s1.user_input", {"nope": 1}) == {"nope": 1}
    assert types.build("agent.s1.user_input", "plain") == "plain"
    assert types.build("other.topic", {"text": "hi"}) == {"text": "hi"}
    with pytest.raises(InvalidEvent, match="JSON object"):
        types.build("agent.s1.user_input", [1], "axonbus.agent.UserInput")


def test_websocket_resumes_from_the_log(tmp_path: Path) -> None:
    bus = Bus(f"sqlite:///{tmp_path / 'events.db'}")
    with TestClient(create_app(bus, own_bus=True, allowed_hosts=TEST_HOSTS)) as client:
        assert client.portal is not None
        with client.websocket_connect("/v1/ws") as ws:
            assert ws.receive_json()["log"] is True
            for n in range(5):
                ws.send_json({"op": "publish", "topic": "log.x", "event": n})
                assert ws.receive_json()["op"] == "published"
            client.portal.call(bus.flush)
            ws.send_json({"op": "subscribe", "pattern": "log.>", "last_event_id": "2", "id": 1})
            assert ws.receive_json()["resumable"] is True
            frames = [ws.receive_json() for _ in range(3)]
        assert [(f["offset"], f["event"]) for f in frames] == [(3, 2), (4, 3), (5, 4)]
