"""The seam for part 2: messages, contexts and errors as data, and a placement that puts some
agent types in "another process" (a second runtime reached only through JSON bytes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest

from axonbus.runtime import (
    AgentId,
    AgentNotFound,
    AgentRuntime,
    CancellationToken,
    CantHandle,
    MessageContext,
    RemoteError,
    RoutedAgent,
    TopicId,
    TypeSubscription,
    Undeliverable,
    event,
    rpc,
)
from axonbus.runtime._runtime import Placement
from axonbus.runtime._serialization import (
    MessageTypes,
    context_from_data,
    context_to_data,
    error_from_data,
    error_to_data,
)
from tests.runtime.messages import Line, Order, Point


def test_message_types_round_trip() -> None:
    types = MessageTypes()
    for cls in (Point, Line, Order):
        types.register(cls)
    for message in (Line(Point(0, 1), Point(2, 3)), Order(id=7, items=["a"]), {"k": [1, 2]}, "s"):
        data = orjson.loads(orjson.dumps(types.dump(message)))
        assert types.load(data) == message
    assert types.dump(3) == {"type": "json", "data": 3}
    with pytest.raises(TypeError, match="not a registered message type"):
        types.dump(CancellationToken())
    with pytest.raises(TypeError, match="unknown message type"):
        types.load({"type": "nowhere.Nothing", "data": {}})


async def test_register_collects_handled_types() -> None:
    class Geo(RoutedAgent):
        @rpc
        async def length(self, line: Line) -> float:
            return 0.0

    runtime = AgentRuntime()
    await Geo.register(runtime, "geo", Geo)
    assert Line in runtime.message_types
    assert Point not in runtime.message_types  # only what handlers declare
    await runtime.close()


def test_context_round_trip() -> None:
    ctx = MessageContext(
        sender=AgentId("a", "k/1"), topic_id=TopicId("t", "s"), is_rpc=False, message_id="m1"
    )
    data = orjson.loads(orjson.dumps(context_to_data(ctx)))
    assert data == {"sender": "a/k/1", "topic_id": "t/s", "is_rpc": False, "message_id": "m1"}
    assert context_from_data(data) == ctx
    assert context_from_data(context_to_data(MessageContext(is_rpc=True))).sender is None


def test_error_round_trip() -> None:
    where = AgentId("w", "1")
    remote = RemoteError("ValueError", "bad", topic="w/1")
    back = error_from_data(error_to_data(remote), where)
    assert isinstance(back, RemoteError)
    assert (back.remote_type, back.remote_message) == ("ValueError", "bad")
    assert isinstance(error_from_data(error_to_data(CantHandle("no")), where), CantHandle)
    assert isinstance(error_from_data(error_to_data(Undeliverable("gone")), where), Undeliverable)
    nf = error_from_data(error_to_data(AgentNotFound("x/y")), where)
    assert isinstance(nf, AgentNotFound)
    assert nf.agent_id == "x/y"
    other = error_from_data(error_to_data(KeyError("k")), where)
    assert isinstance(other, RemoteError)
    assert other.remote_type == "KeyError"


class Elsewhere(Placement):
    """Agent types in ``types`` live in ``other``; everything crosses as JSON bytes."""

    local_only = False

    def __init__(self, here: AgentRuntime, other: AgentRuntime, types: set[str]) -> None:
        self.here, self.other, self.types = here, other, types
        self.sent = 0

    def locate(self, agent_id: AgentId) -> str | None:
        return "other" if agent_id.type in self.types else None

    async def send(
        self,
        worker: str,
        message: Any,
        recipient: AgentId,
        ctx: MessageContext,
        timeout: float | None,
    ) -> Any:
        self.sent += 1
        wire = orjson.dumps(
            {
                "message": self.here.message_types.dump(message),
                "to": str(recipient),
                "ctx": context_to_data(ctx),
            }
        )
        answer = await self._serve(wire, timeout)
        data = orjson.loads(answer)
        if "error" in data:
            raise error_from_data(data["error"], recipient)
        return self.here.message_types.load(data["reply"])

    async def _serve(self, wire: bytes, timeout: float | None) -> bytes:
        """What the other process does with a send."""
        data = orjson.loads(wire)
        try:
            reply = await self.other._receive_send(
                self.other.message_types.load(data["message"]),
                AgentId.from_str(data["to"]),
                context_from_data(data["ctx"]),
                timeout,
            )
        except Exception as exc:
            return orjson.dumps({"error": error_to_data(exc)})
        return orjson.dumps({"reply": self.other.message_types.dump(reply)})

    async def publish(
        self, worker: str, message: Any, recipients: Sequence[AgentId], ctx: MessageContext
    ) -> None:
        wire = orjson.dumps(
            {
                "message": self.here.message_types.dump(message),
                "to": [str(r) for r in recipients],
                "ctx": context_to_data(ctx),
            }
        )
        data = orjson.loads(wire)
        await self.other._receive_publish(
            self.other.message_types.load(data["message"]),
            [AgentId.from_str(r) for r in data["to"]],
            context_from_data(data["ctx"]),
        )


class Geometry(RoutedAgent):
    seen: list[tuple[str, Any, str | None]] = []

    @rpc
    async def length2(self, line: Line, ctx: MessageContext) -> Point:
        Geometry.seen.append((str(self.id), line, str(ctx.sender)))
        return Point(line.end.x - line.start.x, line.end.y - line.start.y)

    @rpc
    async def reject(self, order: Order) -> None:
        raise PermissionError(f"order {order.id} refused")

    @event
    async def on_point(self, point: Point, ctx: MessageContext) -> None:
        Geometry.seen.append((str(self.id), point, str(ctx.topic_id)))


@pytest.fixture
async def pair() -> AsyncIterator[tuple[AgentRuntime, AgentRuntime, Elsewhere]]:
    Geometry.seen = []
    here, other = AgentRuntime(name="here"), AgentRuntime(name="other")
    await Geometry.register(here, "local_geo", Geometry)
    await Geometry.register(other, "remote_geo", Geometry)
    for runtime in (here, other):  # part 2 replicates subscriptions; here: add them to both
        await runtime.add_subscription(TypeSubscription("points", "local_geo", id="s1"))
        await runtime.add_subscription(TypeSubscription("points", "remote_geo", id="s2"))
        runtime.message_types.register(Order)
    placement = Elsewhere(here, other, {"remote_geo"})
    here._use_placement(placement)
    here.start()
    other.start()
    yield here, other, placement
    await here.close(timeout=5)
    await other.close(timeout=5)


async def test_send_crosses_as_data(pair: tuple[AgentRuntime, AgentRuntime, Elsewhere]) -> None:
    here, _, placement = pair
    line = Line(Point(1, 1), Point(4, 5))
    sender = AgentId("caller", "c")
    reply = await here.send_message(line, AgentId("remote_geo", "g"), sender=sender)
    assert reply == Point(3, 4)
    assert placement.sent == 1
    assert Geometry.seen == [("remote_geo/g", line, "caller/c")]
    # a local recipient takes the fast path: the placement is not involved
    assert await here.send_message(line, AgentId("local_geo", "g")) == Point(3, 4)
    assert placement.sent == 1


async def test_remote_errors_keep_their_kind(
    pair: tuple[AgentRuntime, AgentRuntime, Elsewhere],
) -> None:
    here, _, _ = pair
    with pytest.raises(RemoteError) as info:
        await here.send_message(Order(id=9), AgentId("remote_geo", "g"))
    assert (info.value.remote_type, info.value.remote_message) == (
        "PermissionError",
        "order 9 refused",
    )
    with pytest.raises(CantHandle):
        await here.send_message("plain text", AgentId("remote_geo", "g"))


async def test_publish_reaches_local_and_remote_subscribers(
    pair: tuple[AgentRuntime, AgentRuntime, Elsewhere],
) -> None:
    here, other, _ = pair
    await here.publish_message(Point(7, 7), TopicId("points", "p1"))
    await here.stop_when_idle()
    await other.stop_when_idle()
    assert sorted(Geometry.seen, key=str) == [
        ("local_geo/p1", Point(7, 7), "points/p1"),
        ("remote_geo/p1", Point(7, 7), "points/p1"),
    ]
