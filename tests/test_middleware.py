"""Middleware hooks beyond on_publish / on_handle: attach(bus), the active() gate that keeps an
idle middleware off the handler fast path, and on_publish on requests."""

from __future__ import annotations

from typing import Any

import pytest

from axonbus import Bus, Context, Envelope, Middleware, NoResponders


class Gated(Middleware):
    def __init__(self) -> None:
        self.on = False
        self.wrapped: list[Any] = []
        self.buses: list[Bus] = []

    def attach(self, bus: Bus) -> None:
        self.buses.append(bus)

    def active(self) -> bool:
        return self.on

    async def on_handle(self, event: Any, ctx: Context, call_next: Any) -> Any:
        self.wrapped.append(event)
        return await call_next(event, ctx)


class Always(Middleware):
    def __init__(self) -> None:
        self.wrapped: list[Any] = []

    async def on_handle(self, event: Any, ctx: Context, call_next: Any) -> Any:
        self.wrapped.append(event)
        return await call_next(event, ctx)


async def test_attach_is_called_by_each_bus() -> None:
    mw = Gated()
    one, two = Bus(middleware=[mw]), Bus(middleware=[mw])
    assert mw.buses == [one, two]


async def test_an_idle_middleware_is_skipped_until_it_is_active() -> None:
    mw = Gated()
    got: list[Any] = []

    async def h(event: Any) -> None:
        got.append(event)

    async with Bus(middleware=[mw]) as bus:
        bus.subscribe("a.b", h)
        await bus.publish("a.b", 1)
        await bus.drain()
        mw.on = True
        await bus.publish("a.b", 2)
        await bus.drain()
    assert got == [1, 2]
    assert mw.wrapped == [2]


async def test_the_gate_opens_when_any_middleware_is_active() -> None:
    first, second = Gated(), Gated()
    async with Bus(middleware=[first, second]) as bus:
        bus.subscribe("a.b", _noop)
        await bus.publish("a.b", 1)
        await bus.drain()
        second.on = True
        await bus.publish("a.b", 2)
        await bus.drain()
    assert first.wrapped == second.wrapped == [2]  # the whole chain runs


async def test_a_middleware_without_a_gate_always_runs() -> None:
    gated, always = Gated(), Always()
    async with Bus(middleware=[gated, always]) as bus:
        bus.subscribe("a.b", _noop)
        await bus.publish("a.b", 1)
        await bus.drain()
    assert always.wrapped == [1]
    assert gated.wrapped == [1]  # it is in the chain: it checks active() itself if it cares


async def test_a_gate_that_raises_counts_as_active() -> None:
    class Broken(Gated):
        def active(self) -> bool:
            raise RuntimeError("broken gate")

    mw = Broken()
    got: list[Any] = []

    async def h(event: Any) -> None:
        got.append(event)

    async with Bus(middleware=[mw]) as bus:
        bus.subscribe("a.b", h)
        await bus.publish("a.b", 1)
        await bus.publish("a.b", 2)
        await bus.drain()
    assert got == [1, 2]
    assert mw.wrapped == [1, 2]


async def test_subscription_options_keep_the_chain() -> None:
    mw = Gated()
    async with Bus(middleware=[mw]) as bus:
        bus.subscribe("a.b", _noop, timeout=1.0)
        await bus.publish("a.b", 1)
        await bus.drain()
    assert mw.wrapped == [1]


class Stamp(Middleware):
    def __init__(self, drop: str | None = None) -> None:
        self.drop = drop

    def on_publish(self, envelope: Envelope) -> Envelope | None:
        if envelope.topic == self.drop:
            return None
        envelope.headers["x-origin"] = "svc-a"
        return envelope


async def test_requests_go_through_on_publish() -> None:
    async with Bus(middleware=[Stamp(drop="math.never")]) as bus:

        async def echo_headers(req: Any, ctx: Context) -> dict[str, str]:
            return dict(ctx.headers)

        bus.respond("math.*", echo_headers)
        assert await bus.request("math.add", 1, timeout=2) == {"x-origin": "svc-a"}
        with pytest.raises(NoResponders):
            await bus.request("math.never", 1, timeout=2)


async def _noop(event: Any) -> None:
    pass
