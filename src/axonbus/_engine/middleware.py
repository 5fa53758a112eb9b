"""Middleware: a hook before publish, and a wrapper around every handler call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._events import Envelope
from .context import Context

if TYPE_CHECKING:
    from .bus import Bus

__all__ = ["HandleChain", "Middleware", "build_handle_chain", "build_publish_chain"]

HandleNext = Callable[[Any, Context], Awaitable[Any]]
PublishHook = Callable[[Envelope], "Envelope | None"]


class Middleware:
    """Subclass and override either method; the bus calls only the ones you override.

    ``on_publish`` runs synchronously in the publisher, before the event is routed, so it also
    runs for ``publish_nowait``: return the envelope (possibly with extra headers) to go on, or
    ``None`` to drop the event. It runs for ``bus.request`` too (a request it drops raises
    :class:`NoResponders`). ``on_handle`` wraps each handler call; call ``call_next`` to run the
    handler and return its value.

    ``attach(bus)`` is called once by each Bus created with the middleware. ``active()`` lets a
    middleware that often has nothing to do (tracing with no SDK configured) stay off the hot
    path: when every middleware of the bus overrides it and all return False, a handler is
    called directly, without the ``on_handle`` chain. It is called before each delivery, so it
    must be cheap.

    >>> class Stamp(Middleware):
    ...     def on_publish(self, envelope):
    ...         envelope.headers["x-origin"] = "svc-a"
    ...         return envelope
    ...     async def on_handle(self, event, ctx, call_next):
    ...         started = time.perf_counter()
    ...         try:
    ...             return await call_next(event, ctx)
    ...         finally:
    ...             metrics.observe(ctx.subscription, time.perf_counter() - started)
    >>> bus = Bus(middleware=[Stamp()])
    """

    def attach(self, bus: Bus) -> None:
        """Called once by each :class:`Bus` created with this middleware."""

    def active(self) -> bool:
        """Whether ``on_handle`` has work to do now (see the class docstring)."""
        return True

    def on_publish(self, envelope: Envelope) -> Envelope | None:
        return envelope

    async def on_handle(self, event: Any, ctx: Context, call_next: HandleNext) -> Any:
        return await call_next(event, ctx)


def _overrides(mw: object, name: str) -> bool:
    own = getattr(type(mw), name, None)
    return own is not None and own is not getattr(Middleware, name)


def build_publish_chain(middleware: Sequence[Middleware]) -> PublishHook | None:
    """One function running every ``on_publish`` in order; ``None`` when there are none."""
    hooks = [mw.on_publish for mw in middleware if _overrides(mw, "on_publish")]
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]  # one call less per publish

    def run(envelope: Envelope) -> Envelope | None:
        env = envelope
        for hook in hooks:
            out = hook(env)
            if out is None:
                return None
            env = out
        return env

    return run


@dataclass(frozen=True, slots=True)
class HandleChain:
    """The ``on_handle`` middleware of a bus: ``wrap(handler_call)`` puts them around a call;
    ``gate`` is None when the chain always runs, else a function telling whether it must run
    now (every middleware in it overrides ``active``)."""

    wrap: Callable[[HandleNext], HandleNext]
    gate: Callable[[], bool] | None


def build_handle_chain(middleware: Sequence[Middleware]) -> HandleChain | None:
    """The chain wrapping a handler call in every ``on_handle``, first middleware outermost."""
    wrappers = [mw for mw in middleware if _overrides(mw, "on_handle")]
    if not wrappers:
        return None

    def wrap(inner: HandleNext) -> HandleNext:
        call = inner
        for mw in reversed(wrappers):
            call = _bind(mw, call)
        return call

    gate: Callable[[], bool] | None = None
    if all(_overrides(mw, "active") for mw in wrappers):
        # a middleware whose active() raises counts as active: its on_handle then runs where
        # the subscription contains failures, instead of the exception killing the worker
        checks = [mw.active for mw in wrappers]
        if len(checks) == 1:
            only = checks[0]

            def gate() -> bool:
                try:
                    return only()
                except Exception:
                    return True

        else:

            def gate() -> bool:
                try:
                    return any(check() for check in checks)
                except Exception:
                    return True

    return HandleChain(wrap, gate)


def _bind(mw: Middleware, call_next: HandleNext) -> HandleNext:
    async def call(event: Any, ctx: Context) -> Any:
        return await mw.on_handle(event, ctx, call_next)

    return call
