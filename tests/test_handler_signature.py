"""Which handlers get the Context: a second positional parameter without a default, or one
annotated ``Context``; a defaulted one belongs to the caller (``lambda e, x=x: ...``)."""

from __future__ import annotations

import functools
from typing import Any, Optional

import pytest

from axonbus import Bus, Context
from axonbus import sync as sync_api


def plain(event: Any, tag: str = "audit") -> str:
    return tag


def annotated(event: Any, ctx: Context | None = None) -> str:
    return type(ctx).__name__


def annotated_optional(event: Any, ctx: Optional[Context] = None) -> str:  # noqa: UP045
    return type(ctx).__name__


def required(event: Any, ctx: Any) -> str:
    return type(ctx).__name__


def star(*args: Any) -> str:
    return type(args[1]).__name__


def with_star(event: Any, tag: str = "audit", *rest: Any) -> str:
    return tag


def partial_target(prefix: str, event: Any, suffix: str = "!") -> str:
    return prefix + suffix


CASES = [
    (plain, "audit"),
    (lambda e, x="bound": x, "bound"),
    (annotated, "Context"),
    (annotated_optional, "Context"),
    (required, "Context"),
    (star, "Context"),
    (with_star, "audit"),
    (functools.partial(partial_target, "p"), "p!"),
]


@pytest.mark.parametrize(("handler", "expected"), CASES)
async def test_subscriber_gets_context_only_when_asked(handler: Any, expected: str) -> None:
    got: list[str] = []
    async with Bus() as bus:
        bus.subscribe("sig.x", _recorder(handler, got))
        await bus.publish("sig.x", 1)
        await bus.drain()
    assert got == [expected]


def _recorder(handler: Any, got: list[str]) -> Any:
    """The handler itself, with its result recorded; keeps the handler's signature."""

    @functools.wraps(handler)
    def record(*args: Any, **kwargs: Any) -> None:
        got.append(handler(*args, **kwargs))

    return record


@pytest.mark.parametrize(("handler", "expected"), CASES)
async def test_responder_gets_context_only_when_asked(handler: Any, expected: str) -> None:
    async with Bus() as bus:
        bus.respond("sig.rpc", handler)
        assert await bus.request("sig.rpc", 1, timeout=5) == expected


def test_sync_responder_follows_the_same_rule() -> None:
    with sync_api.Bus() as bus:
        bus.respond("sig.plain", plain)
        bus.respond("sig.ctx", required)
        bus.respond("sig.bound", lambda e, x="bound": x)
        assert bus.request("sig.plain", 1, timeout=5) == "audit"
        assert bus.request("sig.ctx", 1, timeout=5) == "Context"
        assert bus.request("sig.bound", 1, timeout=5) == "bound"
