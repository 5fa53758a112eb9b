"""Lifecycle events around any agent run (a middleware that publishes them)."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ._events import AgentCompleted, AgentFailed, AgentStarted, new_run_id

if TYPE_CHECKING:
    from .._engine.bus import Bus

__all__ = ["Lifecycle", "lifecycle", "published_run"]

P = ParamSpec("P")
R = TypeVar("R")


class Lifecycle:
    """Publishes :class:`AgentStarted` on entry, then :class:`AgentCompleted` on a normal exit
    or :class:`AgentFailed` when the body raises (the exception propagates). Made by
    :func:`lifecycle`.

    ``run_id`` is the run's id (generated unless given). Set :attr:`result` (or call
    :meth:`complete`) for ``AgentCompleted.result``.
    """

    def __init__(
        self,
        bus: Bus,
        session_id: str,
        *,
        run_id: str | None = None,
        agent: str = "",
        input: Any = None,
    ) -> None:
        self.bus = bus
        self.session_id = session_id
        self.run_id = run_id or new_run_id()
        self.agent = agent
        self.input = input
        self.result: Any = None
        self.cancelled = False
        self._started: float | None = None

    def complete(self, result: Any, *, cancelled: bool = False) -> None:
        self.result = result
        self.cancelled = cancelled

    async def __aenter__(self) -> Lifecycle:
        if self._started is not None:
            raise RuntimeError("a Lifecycle is entered once; make a new one per run")
        self._started = time.monotonic()
        await self.bus.publish(
            AgentStarted(
                session_id=self.session_id, run_id=self.run_id, agent=self.agent, input=self.input
            )
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._started is not None
        duration = time.monotonic() - self._started
        common = {"session_id": self.session_id, "run_id": self.run_id, "agent": self.agent}
        if exc is None:
            event: AgentCompleted | AgentFailed = AgentCompleted(
                result=self.result, cancelled=self.cancelled, duration=duration, **common
            )
        else:
            event = AgentFailed(
                error=str(exc) or type(exc).__name__,
                error_type=type(exc).__name__,
                duration=duration,
                **common,
            )
        try:
            await self.bus.publish(event)
        except Exception:
            if exc is None:
                raise
            # the run's own error matters more than the report of it: it propagates instead


def lifecycle(
    bus: Bus,
    session_id: str,
    *,
    run_id: str | None = None,
    agent: str = "",
    input: Any = None,
) -> Lifecycle:
    """Publish lifecycle events around a block of code: any agent, any framework.

    >>> async with lifecycle(bus, "s1", agent="researcher", input=question) as run:
    ...     run.result = await my_langgraph_app.ainvoke(question)

    ``agent.s1.started``, then ``agent.s1.completed`` (with ``result``) or
    ``agent.s1.failed`` (with the exception's type and message; it still propagates; a
    cancelled task reports ``CancelledError``).
    """
    return Lifecycle(bus, session_id, run_id=run_id, agent=agent, input=input)


def published_run(
    bus: Bus, session_id: str, *, agent: str = ""
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorator form of :func:`lifecycle`: each call of the coroutine function is a run, its
    return value the result. ``input`` is the one positional argument, else the list of
    positional arguments, or ``{"args": [...], "kwargs": {...}}`` when there are keywords.

    >>> @published_run(bus, "s1", agent="summarizer")
    ... async def summarize(text: str) -> str: ...
    """

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        name = agent or getattr(fn, "__qualname__", "")

        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            given: Any = list(args)
            if kwargs:
                given = {"args": given, "kwargs": kwargs}
            elif len(args) == 1:
                given = args[0]
            async with lifecycle(bus, session_id, agent=name, input=_plain(given)) as lc:
                result = await fn(*args, **kwargs)
                lc.result = _plain(result)
                return result

        return run

    return decorate


def _plain(value: Any) -> Any:
    """``value`` if it is JSON-native, else its repr: events must cross processes."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    return repr(value)
