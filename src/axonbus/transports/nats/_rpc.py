"""Request/reply for the ``nats://`` transport: NATS-native requests, one queue of responders.

A request is a core publish on ``{name}.rpc.{topic}`` with a reply subject on the requesting
connection's inbox. Responders of every pattern share one queue group, so the server hands a
request to exactly one responder in the whole system, and answers "no responders" (503) itself
when there is none. A reply is an envelope encoded with the bus codec; an error reply carries the
responder's exception type in the ``Axonbus-Error`` header and its message as the payload.

CloudEvents: with ``wire=cloudevents`` a request is a binary-mode CloudEvent. A request that is
a CloudEvent (from this wire or any other client) is answered with one, whatever this bus's
wire: the reply's ``causationid`` is the request's id; an error reply has the type
``axonbus.error``, data ``{"error": type name, "message": text}`` (and the header above). A
reply that is a CloudEvent is decoded like an event, so a responder written with any NATS
client and a CloudEvents SDK can answer an axonbus request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.aio.msg import Msg

from ..._cloudevents import ERROR_TYPE, CloudEvents, is_binary, is_structured
from ..._codec import encode_checked
from ..._events import Envelope
from ..._exceptions import (
    AxonbusError,
    ConnectionLost,
    EncodeError,
    MessageTooLarge,
    NoResponders,
    RemoteError,
    RequestTimeout,
)
from ..._topics import match
from ._conn import Conn, Lost

if TYPE_CHECKING:
    from ..sink import Inbox, Sink

__all__ = ["ERROR_HEADER", "RequestReply"]

ERROR_HEADER = "Axonbus-Error"


ROUTE_GRACE = 0.5  # s a request to a cluster retries "no responders"


def _no_responders(msg: Msg) -> bool:
    return (msg.headers or {}).get("Status") == "503"


class RequestReply:
    """The request/reply half of :class:`~axonbus.transports.nats.NatsTransport` (a mixin)."""

    if TYPE_CHECKING:  # provided by the transport
        bus: Sink | None
        wire: str
        cloudevents: CloudEvents
        address: str
        unavailable_timeout: float
        _rpc: str
        _max_payload: int
        _servers: list[str]

        def decode(
            self,
            data: bytes,
            subject: str,
            headers: dict[str, str] | None = None,
            topic: str | None = None,
        ) -> Envelope | None: ...
        def send_control(self, op: Any) -> None: ...
        async def wait_connected(self, timeout: float | None) -> Conn: ...
        async def _wait_synced(self, timeout: float | None) -> None: ...

    async def request(self, env: Envelope, data: bytes, timeout: float | None) -> Any:
        topic = env.topic
        headers: dict[str, str] | None = None
        if self.wire == "cloudevents":
            headers, data = self.cloudevents.binary(env)
        if len(data) > self._max_payload:
            raise MessageTooLarge(len(data), self._max_payload)
        try:
            async with asyncio.timeout(timeout):
                # in a cluster a responder's interest reaches the other nodes a moment after
                # its own: "no responders" is asked again for ROUTE_GRACE seconds (nobody got
                # the request, so sending it again is safe)
                loop = asyncio.get_running_loop()
                grace = loop.time() + (ROUTE_GRACE if len(self._servers) > 1 else 0.0)
                pause = 0.01
                while True:
                    conn = await self._ready_for_request()
                    token = conn.token("r")
                    fut: asyncio.Future[Msg] = loop.create_future()
                    conn.waiters[token] = fut
                    try:
                        await conn.nc.publish(
                            self._rpc + topic, data, f"{conn.inbox}.{token}", headers
                        )
                        msg = await fut  # fails with Lost if the connection goes
                    finally:
                        conn.waiters.pop(token, None)
                    if not _no_responders(msg) or loop.time() + pause > grace:
                        break
                    await asyncio.sleep(pause)
                    pause *= 2
        except TimeoutError:
            raise RequestTimeout(topic, timeout if timeout is not None else 0.0) from None
        except Lost as exc:
            raise ConnectionLost(f"{self.address}: {exc}") from (exc.__cause__ or exc)
        except (nats.errors.Error, OSError) as exc:
            raise ConnectionLost(f"{self.address}: request on {topic!r} failed: {exc!r}") from exc
        return self._reply_value(msg, topic)

    async def _ready_for_request(self) -> Conn:
        """The connection, once the responders registered before this request are on it."""
        wait = self.unavailable_timeout or None
        try:
            await self._wait_synced(wait)
        except TimeoutError:
            raise ConnectionLost(f"{self.address} unreachable for {wait}s") from None
        return await self.wait_connected(wait)

    def _reply_value(self, msg: Msg, topic: str) -> Any:
        headers = msg.headers or {}
        if headers.get("Status") == "503":
            raise NoResponders(topic)
        reply = self.decode(msg.data, msg.subject, msg.headers, topic)
        if reply is None:
            raise RemoteError("DecodeError", "the reply could not be decoded", topic=topic)
        event = reply.event
        error = headers.get(ERROR_HEADER)
        if type(event) is dict and event.get("__event__") == ERROR_TYPE:
            # a CloudEvent error reply (an axonbus responder, or another client's)
            error = str(event.get("error") or error or "RemoteError")
            event = event.get("message", "")
        if error is not None:
            if error == "NoResponders":
                raise NoResponders(topic)
            raise RemoteError(error, str(event), topic=topic)
        return event

    def _on_request(self, mb: Inbox) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        """The callback of a responder's queue subscription: feed the mailbox, then reply."""
        pattern = mb.pattern

        async def on_request(msg: Msg) -> None:
            reply_to = msg.reply
            if not reply_to:
                return
            # a CloudEvent request is answered with one, whatever this bus's wire
            ce = self.wire == "cloudevents" or is_binary(msg.headers) or is_structured(msg.data)
            env = self.decode(msg.data, msg.subject, msg.headers)
            if env is None:
                self._send_error(reply_to, msg.subject, "DecodeError", "undecodable request", ce)
                return
            if not match(pattern, env.topic):  # a wildcard caught a system topic
                self._send_error(reply_to, env.topic, "NoResponders", "no responder", ce)
                return
            assert self.bus is not None
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            env.reply = fut
            cause = env.id if ce else None
            fut.add_done_callback(lambda f: self._send_reply(reply_to, env.topic, f, cause))
            if not await self.bus.put(mb, env) and not fut.done():
                fut.set_exception(NoResponders(env.topic))

        return on_request

    def _send_reply(
        self, reply_to: str, topic: str, fut: asyncio.Future[Any], cause: str | None = None
    ) -> None:
        """Reply with ``fut``'s outcome; ``cause``: the id of a CloudEvent request, answered
        with a CloudEvent."""
        ce = cause is not None
        if fut.cancelled():
            self._send_error(reply_to, topic, "CancelledError", "the responder was cancelled", ce)
            return
        exc = fut.exception()
        if exc is not None:
            if isinstance(exc, RemoteError):
                self._send_error(reply_to, topic, exc.remote_type, exc.remote_message, ce)
            else:
                self._send_error(reply_to, topic, type(exc).__name__, str(exc), ce)
            return
        assert self.bus is not None
        headers: dict[str, str] | None = None
        try:
            if ce:
                reply = Envelope(topic, fut.result(), causation_id=cause)
                headers, data = self.cloudevents.binary(reply)
                if len(data) > self._reply_limit():
                    raise MessageTooLarge(len(data), self._reply_limit())
            else:
                data = encode_checked(
                    self.bus.wire_codec, Envelope(topic, fut.result()), self._reply_limit()
                )
        except (TypeError, ValueError, AxonbusError) as err:
            # EncodeError is the TypeError requesters always saw for an unencodable reply
            kind = "TypeError" if isinstance(err, EncodeError) else type(err).__name__
            self._send_error(reply_to, topic, kind, str(err), ce)
            return
        self.send_control(("reply", reply_to, data, headers))

    def _send_error(
        self, reply_to: str, topic: str, type_name: str, message: str, ce: bool = False
    ) -> None:
        assert self.bus is not None
        # an error message may hold what the wire cannot (a lone surrogate): escape it
        text = message[:2000].encode(errors="backslashreplace").decode()
        if ce:
            error = Envelope(topic, {"error": type_name, "message": text})
            headers, data = self.cloudevents.binary(error)
            headers["ce-type"] = ERROR_TYPE
            headers[ERROR_HEADER] = type_name
            self.send_control(("reply", reply_to, data, headers))
            return
        data = self.bus.wire_codec.encode(Envelope(topic, text))
        self.send_control(("reply", reply_to, data, {ERROR_HEADER: type_name}))

    def _reply_limit(self) -> int:
        assert self.bus is not None
        return min(self.bus.max_message_bytes, self._max_payload - 64)
