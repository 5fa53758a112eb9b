"""One NATS connection of the ``nats://`` transport and what lives and dies with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from ..._exceptions import TransportError

if TYPE_CHECKING:
    from ..sink import Inbox

__all__ = ["Batch", "Conn", "Lost", "guard", "seed_servers"]

logger = logging.getLogger("axonbus")

T = TypeVar("T")


def seed_servers(address: str) -> list[str]:
    """The server URLs of ``address``: one per seed of a cluster URL, credentials on each.

    >>> seed_servers("nats://u:p@n1:4222,n2:4222")
    ['nats://u:p@n1:4222', 'nats://u:p@n2:4222']

    nats-py tries them in turn when it connects (and learns the cluster's other members from
    the server it reached), so a reconnect finds a node that is still up.
    """
    scheme, _, rest = address.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    seeds = [h.strip() for h in hosts.split(",") if h.strip()]
    if not seeds:
        raise ValueError("a nats:// URL needs at least one host:port")
    return [f"{scheme}://{userinfo}{at}{h}{slash}{path}" for h in seeds]


class Lost(TransportError, ConnectionError):
    """The NATS connection is gone (the driver's error, if any, is the cause)."""


class Batch:
    """The PubAcks one written batch is waiting for."""

    __slots__ = ("done", "expected", "failed", "got", "unanswered")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.got = 0
        self.failed = 0
        # 503 "no responders": no stream leader took them (a cluster electing one, or no stream)
        self.unanswered = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def seal(self, expected: int) -> None:
        """The number of PubAcks to wait for, known once the batch was written."""
        self.expected = expected
        if self.got >= expected and not self.done.done():
            self.done.set_result(None)


class Conn:
    """A NATS connection, its reply inbox, and the subscriptions made on it.

    Replies to this connection (request replies, JetStream API answers, PubAcks) arrive on
    ``{inbox}.{token}``; ``lost`` completes (with the cause) when the connection goes, which
    fails everything still waiting on it.
    """

    def __init__(self, nc: NatsClient, inbox: str) -> None:
        self.nc = nc
        self.inbox = inbox
        self.lost: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        self.closing = False  # closed on purpose: not an outage
        self.waiters: dict[str, asyncio.Future[Msg]] = {}
        self.batches: dict[str, Batch] = {}
        self.plain: dict[str, NatsSubscription] = {}
        self.bound: dict[Inbox, NatsSubscription] = {}
        self.durable_subs: set[NatsSubscription] = set()
        self.stream_ok = False  # the stream was found or created on this connection
        self._tokens = 0

    def token(self, kind: str) -> str:
        self._tokens += 1
        return f"{kind}{self._tokens}"

    def mark_lost(self, exc: BaseException) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(self.error())  # each waiter awaits its future
        self.waiters.clear()

    def error(self) -> Lost:
        cause = self.lost.result() if self.lost.done() else None
        err = Lost(f"connection lost ({cause!r})" if cause else "connection lost")
        err.__cause__ = cause
        return err

    async def close(self) -> None:
        """Close the connection; never raises, never hangs (a dead socket is aborted)."""
        self.closing = True
        nc = self.nc
        try:
            await asyncio.wait_for(nc.close(), 2.0)
        except Exception as exc:  # a dead socket can make nats-py's close fail or hang
            logger.debug("closing a NATS connection: %r", exc)
            # private nats-py attributes, looked up defensively: only to free the socket
            transport = getattr(nc, "_transport", None)
            writer = getattr(transport, "_io_writer", None)
            if writer is not None:
                writer.transport.abort()
            for sub in list(getattr(nc, "_subs", {}).values()):
                sub._stop_processing()


async def guard(conn: Conn, aw: Awaitable[T], timeout: float | None) -> T:
    """Await ``aw``; :class:`Lost` if ``conn`` goes first, ``TimeoutError`` after ``timeout``."""
    if conn.lost.done():
        raise conn.error()
    task: asyncio.Future[T] = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait(
            (task, conn.lost), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    if task in done:
        return task.result()
    if conn.lost.done():
        raise conn.error()
    raise TimeoutError
