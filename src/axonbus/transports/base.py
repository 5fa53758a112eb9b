"""What a transport is, and how a bus URL picks one.

A transport moves envelopes between processes. It never calls a handler: the Bus keeps all
local dispatch (mailboxes, workers, bulkhead) and hands the transport what must leave the
process. Each transport states in its docstring what it cannot promise.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .._bus import Bus

__all__ = ["Transport", "open_transport", "register_transport"]


class Transport(abc.ABC):
    """Base class of transports. Lifecycle: ``start(bus)`` once, then ``close()`` once."""

    #: URL scheme this transport serves, e.g. ``"redis"``.
    scheme: ClassVar[str]
    #: True when nothing leaves the process (the Bus then skips all transport work).
    local_only: ClassVar[bool] = False

    def __init__(self, url: str) -> None:
        self.url = url

    @abc.abstractmethod
    async def start(self, bus: Bus) -> None:
        """Connect; called by ``Bus.start``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; called by ``Bus.close`` after local handlers finished."""


_REGISTRY: dict[str, type[Transport]] = {}


def register_transport(cls: type[Transport]) -> type[Transport]:
    """Class decorator: make ``cls`` available under its URL ``scheme``."""
    _REGISTRY[cls.scheme] = cls
    return cls


def open_transport(url: str) -> Transport:
    """The transport for ``url``; ``ValueError`` naming the schemes available otherwise."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"bus URL must look like 'scheme://...', got {url!r}")
    scheme = urlsplit(url).scheme
    cls = _REGISTRY.get(scheme)
    if cls is None:
        known = ", ".join(f"{s}://" for s in sorted(_REGISTRY))
        raise ValueError(f"no transport for {scheme}:// (available: {known})")
    return cls(url)
