"""Any ``str`` a publisher can put in an event (payload values and keys, header values,
correlation id, topic) either arrives unchanged on another bus, or the publish raises a typed
axonbus error: never a driver's error, never a stuck outbox.

The wire format is UTF-8, so a str holding a lone surrogate (``"\\udc80"``, what
``os.fsdecode`` makes of undecodable bytes) cannot leave the process: :class:`EncodeError`.
Every other str round-trips, NUL included, except that PostgreSQL refuses NUL in a topic (a
text column). In-process (``memory://``) nothing is encoded and everything arrives as it was
published.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axonbus import Bus, EncodeError, Envelope, InvalidTopic, RemoteError
from tests.support.fixtures import delete_nats_stream, drop_postgres_tables

SETTINGS = settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# every code point, surrogates and controls included
TEXTS = st.lists(st.text(st.characters(codec=None), max_size=8), min_size=1, max_size=25)
EDGES = ["", "\x00", "a\x00b", "\ud800", "x\udc80", "\udbff\udfff", "\U0010ffff", "😀", "\u2028"]

Cleanup = Callable[[str], Awaitable[None]]


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def refusable(url: str, text: str, *, in_topic: bool) -> bool:
    """Whether ``url``'s transport may refuse ``text`` (with EncodeError, at publish)."""
    if url.startswith("memory:"):
        return False
    return has_surrogate(text) or (in_topic and url.startswith("postgres") and "\x00" in text)


async def round_trip(url: str, texts: list[str], cleanup: Cleanup | None) -> None:
    name = f"w{uuid.uuid4().hex[:10]}"
    received: list[Envelope] = []
    sent: dict[int, tuple[Any, ...]] = {}
    local = url.startswith("memory:")
    try:
        async with Bus(url, name=name) as sender, Bus(url, name=name) as receiver:
            target = sender if local else receiver
            target.subscribe("wire.>", lambda e, ctx: received.append(ctx.envelope))
            await target.flush()  # the subscription is in place on the broker
            await until_listening(sender, target)
            for i, text in enumerate(EDGES + texts):
                topic = f"wire.t{text}"
                payload = {"seq": i, "data": {"v": text, text: [text]}}
                try:
                    await sender.publish(
                        topic, payload, headers={"h": text}, correlation_id=text or None
                    )
                except InvalidTopic:  # the topic's rules are the same everywhere
                    topic = "wire.plain"
                    await publish_or_refuse(sender, topic, payload, text, url, sent, i)
                    continue
                except EncodeError:
                    assert refusable(url, text, in_topic=True)
                    await publish_or_refuse(sender, "wire.plain", payload, text, url, sent, i)
                    continue
                assert local or not has_surrogate(text)
                sent[i] = (topic, payload, {"h": text}, text or None)
            await wait_until(lambda: len(received) >= len(sent))
    finally:
        if cleanup is not None:
            await cleanup(name)
    got = {e.event["seq"]: (e.topic, e.event, e.headers, e.correlation_id) for e in received}
    assert got == sent


async def until_listening(sender: Bus, receiver: Bus) -> None:
    """Publish a probe until ``receiver`` gets one: a log transport's tail may be moving to
    the head of the log while the subscription is made, and skip what was written meanwhile."""
    probes: list[Any] = []
    receiver.subscribe("ready", probes.append)
    await receiver.flush()
    deadline = time.monotonic() + 20.0
    while not probes:
        assert time.monotonic() < deadline, "the receiving bus never got a probe"
        await sender.publish("ready", 1)
        again = time.monotonic() + 0.2
        while not probes and time.monotonic() < again:
            await asyncio.sleep(0.01)


async def publish_or_refuse(
    bus: Bus, topic: str, payload: Any, text: str, url: str, sent: dict[int, Any], i: int
) -> None:
    """Publish ``payload`` alone on a plain topic: it arrives, or EncodeError (surrogates)."""
    try:
        await bus.publish(topic, payload)
    except EncodeError as exc:
        refused = exc
    else:
        sent[i] = (topic, payload, {}, None)
        return
    assert refusable(url, text, in_topic=False)
    assert "surrogate" in str(refused)


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s")
        await asyncio.sleep(0.01)


@SETTINGS
@given(texts=TEXTS)
def test_memory(texts: list[str]) -> None:
    asyncio.run(round_trip("memory://", texts, None))


@SETTINGS
@given(texts=TEXTS)
def test_sqlite(texts: list[str], tmp_path: Path) -> None:
    db = tmp_path / f"{uuid.uuid4().hex[:8]}.db"
    asyncio.run(round_trip(f"sqlite:///{db}", texts, None))


@SETTINGS
@given(texts=TEXTS)
def test_postgres(texts: list[str], postgres_service: str) -> None:
    async def cleanup(name: str) -> None:
        await drop_postgres_tables(postgres_service, name)

    asyncio.run(round_trip(postgres_service, texts, cleanup))


@SETTINGS
@given(texts=TEXTS)
def test_redis(texts: list[str], redis_service: str) -> None:
    asyncio.run(round_trip(redis_service, texts, None))


@SETTINGS
@given(texts=TEXTS)
def test_nats(texts: list[str], nats_service: str) -> None:
    async def cleanup(name: str) -> None:
        await delete_nats_stream(nats_service, name)

    asyncio.run(round_trip(nats_service, texts, cleanup))


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_codec_refuses_surrogates_with_a_typed_error(codec: str) -> None:
    from axonbus._codec import get_codec

    with pytest.raises(EncodeError, match="surrogate") as info:
        get_codec(codec).encode(Envelope("a.b", {"text": "caf\udce9"}))
    assert isinstance(info.value, TypeError)  # what encoding errors always were


def bad_text(request: Any) -> str:
    return "caf\udce9"


def bad_error(request: Any) -> str:
    raise ValueError("no such file: caf\udce9")


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres", "redis", "nats"])
async def test_reply_with_a_lone_surrogate(kind: str, request: pytest.FixtureRequest) -> None:
    """A reply or a responder's error holding a lone surrogate reaches the requester as a
    RemoteError (in-process: as it is), never as a timeout."""
    if kind == "sqlite":
        url = f"sqlite:///{request.getfixturevalue('tmp_path') / 'replies.db'}"
    elif kind != "memory":
        url = request.getfixturevalue(f"{kind}_service")
    else:
        url = "memory://"
    name = f"w{uuid.uuid4().hex[:10]}"
    try:
        async with Bus(url, name=name) as responder, Bus(url, name=name) as requester:
            asker = responder if kind == "memory" else requester
            responder.respond("wire.text", bad_text)
            responder.respond("wire.error", bad_error)
            await responder.flush()
            if kind == "memory":
                assert await asker.request("wire.text", 1, timeout=10) == "caf\udce9"
            else:
                with pytest.raises(RemoteError, match="surrogate"):
                    await asker.request("wire.text", 1, timeout=10)
            with pytest.raises((RemoteError, ValueError), match="no such file: caf"):
                await asker.request("wire.error", 1, timeout=10)
    finally:
        if kind == "postgres":
            await drop_postgres_tables(url, name)
        elif kind == "nats":
            await delete_nats_stream(url, name)
