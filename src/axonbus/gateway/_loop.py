"""The event loop ``axonbus serve`` runs on: ``--loop asyncio`` (the default), ``uvloop`` or
``auto`` (uvloop when installed).

>>> run_on("uvloop", serve("memory://"))       # what `axonbus serve --loop uvloop` does
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .._exceptions import MissingDependency

__all__ = ["LOOPS", "loop_factory", "run_on"]

T = TypeVar("T")

#: the names ``--loop`` and the ``[gateway] loop`` key accept
LOOPS = ("asyncio", "uvloop", "auto")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the event loop called ``name``; :class:`MissingDependency` for ``uvloop``
    when it is not installed, ``ValueError`` for a name not in :data:`LOOPS`."""
    if name not in LOOPS:
        raise ValueError(f"--loop must be one of {', '.join(LOOPS)}, not {name!r}")
    if name == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if name == "auto":
            return asyncio.new_event_loop
        raise MissingDependency(
            "--loop uvloop needs the uvloop package: pip install 'axonbus[uvloop]'"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_on(name: str, main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop called ``name`` (see :func:`loop_factory`)."""
    try:
        factory = loop_factory(name)
    except BaseException:
        main.close()  # never awaited: say nothing about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
