"""Request/reply for the log transports: responders, requests and replies are rows.

A responder registers ``(instance, pattern)`` with an expiry and refreshes it (housekeeping);
a request is a row addressed to one live responder pattern that matches its topic, taken by
exactly one process serving that pattern; the reply is a row for the requester, which collects
its replies whenever the store changes. No live responder -> :class:`NoResponders`; a responder
that went away after taking the request -> :class:`NoResponders` too; no reply in time ->
:class:`RequestTimeout`; a raising responder -> :class:`RemoteError`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from typing import TYPE_CHECKING, Any, ClassVar

from ..._events import Envelope
from ..._exceptions import ConnectionLost, DecodeError, NoResponders, RemoteError, RequestTimeout
from ..._topics import match
from .._replies import encode_reply, settle_reply

if TYPE_CHECKING:
    from ..sink import Inbox, Sink
    from ._store import LogStore

__all__ = ["LogRequestReply"]

logger = logging.getLogger("axonbus")

FETCH = 256  # most requests taken at once
IDLE_WAIT = 1.0  # seconds a loop sleeps without a change before looking again


class LogRequestReply:
    """The request/reply half of the log transport (``_transport.LogTransport``, a mixin)."""

    if TYPE_CHECKING:  # provided by the transport
        bus: Sink | None
        address: str
        instance: str
        claim_idle: float
        receiving: bool
        connection_errors: ClassVar[tuple[type[BaseException], ...]]
        _change: asyncio.Event
        _generation: int
        _queued: int
        _written: int
        _registered_upto: int
        _responders: dict[str, Inbox]
        _replies: dict[str, asyncio.Future[Any]]

        def _ready(self) -> tuple[Sink, LogStore]: ...
        def _changed(self) -> None: ...
        async def _wait(self, change: asyncio.Event, timeout: float) -> None: ...
        async def flush(self) -> None: ...
        async def send(self, op: Any) -> None: ...
        def send_control(self, op: Any) -> None: ...
        def lost(self, exc: BaseException) -> None: ...

    def _bind_responder(self, mailbox: Inbox) -> None:
        self._responders[mailbox.pattern] = mailbox
        expires = time.time() + self.claim_idle
        self.send_control(("respond", self.instance, mailbox.pattern, expires))
        self._registered_upto = self._queued
        self._changed()  # the serving loop picks the new pattern up

    async def _serve(self, gen: int) -> None:
        """Take requests for the local responder patterns that have room, and handle them."""
        bus, store = self._ready()
        try:
            while self.receiving and gen == self._generation:
                change = self._change
                ready = [p for p, mb in self._responders.items() if mb.has_room()]
                if not ready:
                    await self._wait(change, 0.01 if self._responders else IDLE_WAIT)
                    continue
                requests = await store.take_requests(ready, FETCH)
                if not requests:
                    await self._wait(change, IDLE_WAIT)
                    continue
                for request in requests:
                    mailbox = self._responders.get(request.pattern)
                    if mailbox is None:  # unbound meanwhile: nobody here answers
                        self._send_reply(request.requester, request.request_id, None, None)
                        continue
                    if request.deadline is not None and request.deadline < time.time():
                        continue  # the requester has given up already
                    try:
                        env = bus.wire_codec.decode(request.data)
                    except DecodeError as exc:
                        logger.error("%s: undecodable request: %s", self, exc)
                        continue
                    reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                    env.reply = reply
                    requester, request_id = request.requester, request.request_id
                    reply.add_done_callback(
                        functools.partial(self._send_reply, requester, request_id, env)
                    )
                    if not await bus.put(mailbox, env) and not reply.done():
                        reply.set_exception(
                            ConnectionLost("the responder closed before handling the request")
                        )
        except self.connection_errors as exc:
            self.lost(exc)

    def _send_reply(
        self,
        requester: str,
        request_id: str,
        request: Envelope | None,
        fut: asyncio.Future[Any] | None,
    ) -> None:
        bus = self.bus
        assert bus is not None
        if request is None or fut is None:
            frame = b"err\nNoResponders\nthe responder went away"
        else:
            frame = encode_reply(bus.wire_codec, request, fut)
        self.send_control(("reply", requester, request_id, frame))

    async def _collect_replies(self, gen: int) -> None:
        bus, store = self._ready()
        try:
            while gen == self._generation:
                change = self._change
                if not self._replies:
                    await self._wait(change, IDLE_WAIT)
                    continue
                replies = await store.take_replies(self.instance)
                for request_id, frame in replies:
                    fut = self._replies.pop(request_id, None)
                    if fut is not None:
                        settle_reply(bus.wire_codec, fut, frame)
                if not replies:
                    await self._wait(change, IDLE_WAIT)
        except self.connection_errors as exc:
            self.lost(exc)

    async def request(self, env: Envelope, data: bytes, timeout: float | None) -> Any:
        bus, store = self._ready()
        loop = asyncio.get_running_loop()
        expires = None if timeout is None else loop.time() + timeout
        try:
            async with asyncio.timeout_at(expires):
                if self._written < self._registered_upto:
                    await self.flush()  # our own responders must be registered before we ask
                try:
                    live = await store.responders()
                except self.connection_errors as exc:
                    self.lost(exc)
                    raise ConnectionLost(f"{self.address}: request not sent: {exc}") from exc
        except TimeoutError:
            raise RequestTimeout(env.topic, timeout or 0.0) from None
        candidates = [p for p in set(live) if match(p, env.topic)]
        if not candidates:
            raise NoResponders(env.topic)
        pattern = random.choice(candidates)
        deadline = None if timeout is None else time.time() + timeout
        reply: asyncio.Future[Any] = loop.create_future()
        self._replies[env.id] = reply
        self._changed()  # the reply collector starts looking
        if expires is not None:
            bus.deadlines.watch(reply, expires, env.topic, timeout or 0.0)
        try:
            try:
                async with asyncio.timeout_at(expires):
                    await self.send(("request", pattern, self.instance, env.id, deadline, data))
            except TimeoutError:
                raise RequestTimeout(env.topic, timeout or 0.0) from None
            try:
                return await reply
            except RemoteError as exc:
                if exc.remote_type == "NoResponders":
                    raise NoResponders(env.topic) from None
                raise RemoteError(exc.remote_type, exc.remote_message, topic=env.topic) from None
        finally:
            self._replies.pop(env.id, None)
            if timeout is not None:
                bus.deadlines.forget(reply)
            if reply.done() and not reply.cancelled():
                reply.exception()  # a deadline that fired while sending: nobody awaits it
