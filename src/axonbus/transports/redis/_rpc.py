"""Request/reply for the ``redis://`` transport: a list per responder pattern, a reply channel
per process.

A responder registers ``"{instance}\\n{pattern}" -> expiry`` in ``{bus}:responders`` and refreshes
it while it lives. A request runs the ``REQUEST`` script, which pushes the frame onto the list of
one live matching pattern (``{bus}:rpc:{pattern}``) or answers that there is none
(:class:`NoResponders`). Responders of every process compete for that list with ``BRPOP``. The
reply goes back on the requester's channel ``{bus}:reply:{instance}``.

Frames (newline-separated; the envelope comes last, so it may contain newlines)::

    request: reply_channel  request_id  deadline (epoch seconds, or empty)  envelope
    reply:   request_id  "ok" envelope | "err" "TypeName\\nmessage"
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from redis import exceptions as rexc

from ..._events import Envelope
from ..._exceptions import ConnectionLost, DecodeError, NoResponders, RemoteError, RequestTimeout
from .._replies import encode_reply, settle_reply
from . import _lua

if TYPE_CHECKING:
    from ..sink import Inbox, Sink

__all__ = ["RESPONDER_TTL", "RedisRequestReply"]

logger = logging.getLogger("axonbus")

RESPONDER_TTL = 10.0  # seconds a responder registration lives without a heartbeat
BLOCK_S = 0.5  # how long BRPOP waits before looking around (closing, room, heartbeat)


@dataclass(eq=False)
class _Responders:
    mailbox: Inbox
    queue: str  # the list requests for this pattern are pushed on


class RedisRequestReply:
    """The request/reply half of :class:`~axonbus.transports.redis.RedisTransport` (a mixin)."""

    if TYPE_CHECKING:  # provided by the transport
        bus: Sink | None
        address: str
        prefix: str
        instance: str
        connected: bool
        receiving: bool
        unavailable_timeout: float
        connection_errors: ClassVar[tuple[type[BaseException], ...]]
        _client: Any
        _shas: dict[str, str]
        _generation: int
        _written: int
        _registered_upto: int
        _reply_channel: str
        _responders: dict[str, _Responders]
        _replies: dict[str, asyncio.Future[Any]]

        def send_control(self, op: Any) -> None: ...
        def spawn_reader(self, coro: Any, name: str) -> asyncio.Task[Any]: ...
        def lost(self, exc: BaseException) -> None: ...
        def _register_op(self, op: tuple[Any, ...]) -> None: ...
        async def _wait_room(self) -> None: ...
        async def _flush_outbox(self) -> None: ...

    def _bind_responder(self, mailbox: Inbox) -> None:
        first = not self._responders
        self._responders[mailbox.pattern] = _Responders(
            mailbox, f"{self.prefix}:rpc:{mailbox.pattern}"
        )
        expiry = int((time.time() + RESPONDER_TTL) * 1000)
        self._register_op(("respond", f"{self.instance}\n{mailbox.pattern}", expiry))
        if first and self.connected and self.receiving:
            self.spawn_reader(self._serve(self._generation), "respond")

    async def _heartbeat(self, client: Any) -> None:
        expiry = int((time.time() + RESPONDER_TTL) * 1000)
        mapping = {f"{self.instance}\n{p}": expiry for p in self._responders}
        if mapping:
            await client.hset(f"{self.prefix}:responders", mapping=mapping)

    async def _serve(self, generation: int) -> None:
        """Pop requests for every local responder pattern, while its mailbox has room."""
        bus = self.bus
        assert bus is not None
        beat_at = 0.0
        try:
            while self._responders and self.receiving and generation == self._generation:
                client = self._client
                assert client is not None
                if time.monotonic() >= beat_at:
                    await self._heartbeat(client)
                    beat_at = time.monotonic() + RESPONDER_TTL / 3
                keys = [r.queue for r in self._responders.values() if r.mailbox.has_room()]
                if not keys:
                    await asyncio.sleep(0.01)
                    continue
                popped: Any = await client.brpop(keys, timeout=BLOCK_S)
                if popped is None:
                    continue
                key, frame = popped
                pattern = key.decode().removeprefix(f"{self.prefix}:rpc:")
                responders = self._responders.get(pattern)
                if responders is not None:
                    await self._handle_request(responders.mailbox, frame)
        except self.connection_errors as exc:
            self.lost(exc)

    async def _handle_request(self, mailbox: Inbox, frame: bytes) -> None:
        bus = self.bus
        assert bus is not None
        try:
            channel, request_id, deadline, data = frame.split(b"\n", 3)
            env = bus.wire_codec.decode(data)
        except (ValueError, DecodeError) as exc:
            logger.error("%s: undecodable request: %r", self, exc)
            return
        if deadline and float(deadline) < time.time():
            return  # the requester has given up already
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        env.reply = reply
        reply.add_done_callback(lambda f: self._send_reply(channel, request_id, env, f))
        if not await bus.put(mailbox, env) and not reply.done():
            reply.set_exception(ConnectionLost("the responder closed before handling the request"))

    def _send_reply(
        self, channel: bytes, request_id: bytes, request: Envelope, fut: asyncio.Future[Any]
    ) -> None:
        bus = self.bus
        assert bus is not None
        frame = encode_reply(bus.wire_codec, request, fut)
        self.send_control(("reply", channel, request_id + b"\n" + frame))

    def _on_reply(self, data: bytes) -> None:
        request_id, sep, frame = data.partition(b"\n")
        if not sep:
            logger.error("%s: malformed reply frame", self)
            return
        fut = self._replies.pop(request_id.decode(), None)
        if fut is not None:  # else it timed out already
            bus = self.bus
            assert bus is not None
            settle_reply(bus.wire_codec, fut, frame)

    async def request(self, env: Envelope, data: bytes, timeout: float | None) -> Any:
        bus = self.bus
        assert bus is not None
        loop = asyncio.get_running_loop()
        # the request's timeout bounds sending it too: on a half-open connection, a command
        # would otherwise wait for the socket timeout, an outage for unavailable_timeout
        expires = None if timeout is None else loop.time() + timeout
        try:
            async with asyncio.timeout_at(expires):
                if not self.connected:
                    try:
                        await asyncio.wait_for(self._wait_room(), self.unavailable_timeout or None)
                    except TimeoutError:
                        raise ConnectionLost(
                            f"{self.address} unreachable; request not sent"
                        ) from None
                if self._written < self._registered_upto:
                    await (
                        self._flush_outbox()
                    )  # our own responders must be registered before we ask
        except TimeoutError:
            raise RequestTimeout(env.topic, timeout or 0.0) from None
        client = self._client
        assert client is not None
        request_id = env.id
        deadline = b"" if timeout is None else str(time.time() + timeout).encode()
        frame = b"\n".join((self._reply_channel.encode(), request_id.encode(), deadline, data))
        reply: asyncio.Future[Any] = loop.create_future()
        self._replies[request_id] = reply
        if expires is not None:
            bus.deadlines.watch(reply, expires, env.topic, timeout or 0.0)
        try:
            try:
                async with asyncio.timeout_at(expires):
                    try:
                        pattern = await client.evalsha(
                            self._shas["REQUEST"], 0, self.prefix, env.topic, frame
                        )
                    except rexc.NoScriptError:
                        self._shas["REQUEST"] = await client.script_load(_lua.REQUEST)
                        pattern = await client.evalsha(
                            self._shas["REQUEST"], 0, self.prefix, env.topic, frame
                        )
            except TimeoutError:  # before connection_errors: TimeoutError is an OSError
                raise RequestTimeout(env.topic, timeout or 0.0) from None
            except self.connection_errors as exc:
                self.lost(exc)
                raise ConnectionLost(f"{self.address}: request not sent: {exc}") from exc
            if not pattern:
                raise NoResponders(env.topic)
            try:
                return await reply
            except RemoteError as exc:
                raise RemoteError(exc.remote_type, exc.remote_message, topic=env.topic) from None
            except RequestTimeout:
                raise
        finally:
            self._replies.pop(request_id, None)
            if timeout is not None:
                bus.deadlines.forget(reply)
            if reply.done() and not reply.cancelled():
                reply.exception()  # a deadline that fired while sending: nobody awaits it
