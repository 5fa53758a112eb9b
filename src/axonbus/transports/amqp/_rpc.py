"""Request/reply of the ``amqp://`` transport (a mixin of :class:`AmqpTransport`): requests go
to the topic exchange ``axonbus.{name}.rpc``, published ``mandatory`` on a confirming channel,
replies come back over RabbitMQ's direct reply-to.

A request that is a CloudEvent (from this wire or any other client) is answered with one,
whatever this bus's wire: ``causationid`` the request's id; an error has the type
``axonbus.error`` and the data ``{"error": type name, "message": text}``. With
``wire=cloudevents`` ``bus.request`` sends a binary-mode CloudEvent, and a CloudEvent reply
(binary or structured, from any responder) is decoded; an ``axonbus.error`` one raises
:class:`RemoteError`.

>>> class AmqpTransport(RequestReply, BrokerTransport): ...
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from ..._cloudevents import ERROR_TYPE, CloudEvents
from ..._events import Envelope
from ..._exceptions import (
    AxonbusError,
    ConnectionLost,
    DecodeError,
    EncodeError,
    NoResponders,
    RemoteError,
    RequestTimeout,
)
from .._replies import encode_reply, settle_reply
from ._names import Names, check_routable
from ._wire import decode_delivery, is_cloudevent

try:
    from aiormq import exceptions as aexc
    from pamqp import commands as spec
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the amqp:// transport needs aio-pika: pip install 'axonbus[amqp]'") from exc

if TYPE_CHECKING:
    from ..sink import Sink
    from ._consumers import Binding

__all__ = ["REPLY_TO", "RequestReply"]

REPLY_TO = "amq.rabbitmq.reply-to"
_Props = spec.Basic.Properties


class RequestReply:
    """The request/reply half of :class:`~axonbus.transports.amqp.AmqpTransport`."""

    if TYPE_CHECKING:  # provided by the transport
        bus: Sink | None
        wire: str
        cloudevents: CloudEvents
        address: str
        names: Names
        connection_errors: ClassVar[tuple[type[BaseException], ...]]
        _rpc: Any
        _replies: dict[str, asyncio.Future[Any]]
        _registered: int
        _registrations: int
        connected: bool

        def send_control(self, op: Any) -> None: ...
        def lost(self, exc: BaseException) -> None: ...
        async def flush(self) -> None: ...
        async def _until_connected(self) -> None: ...
        def _decode(self, message: Any, where: str) -> Envelope | None: ...
        def _cloudevent(self, env: Envelope) -> tuple[dict[str, Any], str | None, bytes]: ...

    async def _handle_request(self, binding: Binding, message: Any) -> None:
        bus = self.bus
        assert bus is not None
        props = message.header.properties
        reply_to, request_id = props.reply_to, props.correlation_id
        # a CloudEvent request is answered with one, whatever this bus's wire
        ce = self.wire == "cloudevents" or is_cloudevent(props, message.body)
        env = self._decode(message, binding.queue)
        if env is None:
            if reply_to:
                self._answer_error(reply_to, request_id, ce, message.routing_key,
                                   "DecodeError", "undecodable request")  # fmt: skip
            return
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        env.reply = reply

        def answer(fut: asyncio.Future[Any]) -> None:
            if ce:
                self._answer_cloudevent(reply_to, request_id, env, fut)
                return
            frame = encode_reply(bus.wire_codec, env, fut)
            self.send_control(("reply", reply_to, request_id, frame))

        if reply_to:
            reply.add_done_callback(answer)
        if not await bus.put(binding.mailbox, env) and not reply.done():
            reply.set_exception(ConnectionLost("the responder closed before handling the request"))

    def _answer_cloudevent(
        self, reply_to: str, request_id: str, request: Envelope, fut: asyncio.Future[Any]
    ) -> None:
        """Answer a CloudEvent request with one: the result, its causation the request."""
        if fut.cancelled():
            kind, text = "CancelledError", "the request was cancelled"
        elif (exc := fut.exception()) is not None:
            if isinstance(exc, RemoteError):
                kind, text = exc.remote_type, exc.remote_message
            else:
                kind, text = type(exc).__name__, str(exc)
        else:
            reply = Envelope(request.topic, fut.result(), causation_id=request.id)
            try:
                headers, content_type, body = self._cloudevent(reply)
            except (TypeError, ValueError, AxonbusError) as err:
                # EncodeError is the TypeError requesters always saw for an unencodable reply
                kind = "TypeError" if isinstance(err, EncodeError) else type(err).__name__
                self._answer_error(reply_to, request_id, True, request.topic, kind,
                                   f"cannot encode the reply: {err}", request.id)  # fmt: skip
                return
            self.send_control(("reply", reply_to, request_id, body, headers, content_type))
            return
        self._answer_error(reply_to, request_id, True, request.topic, kind, text, request.id)

    def _answer_error(
        self, reply_to: str, request_id: str, ce: bool, topic: str, kind: str, text: str,
        cause: str | None = None,
    ) -> None:  # fmt: skip
        """An error reply: a CloudEvent of type ``axonbus.error`` (data ``{"error",
        "message"}``), or the compact wire's error frame."""
        # an error message may hold what the wire cannot (a lone surrogate): escape it
        text = text[:2000].encode(errors="backslashreplace").decode()
        if not ce:
            frame = f"err\n{kind}\n{text}".encode()
            self.send_control(("reply", reply_to, request_id, frame))
            return
        error = Envelope(topic, {"error": kind, "message": text}, causation_id=cause)
        headers, body = self.cloudevents.binary(error)
        headers["ce-type"] = ERROR_TYPE
        content_type = headers.pop("content-type", None)
        self.send_control(("reply", reply_to, request_id, body, headers, content_type))

    def _on_reply(self, message: Any) -> None:
        fut = self._replies.pop(message.header.properties.correlation_id or "", None)
        if fut is None or self.bus is None or fut.done():  # it timed out already
            return
        props = message.header.properties
        if not is_cloudevent(props, message.body):
            settle_reply(self.bus.wire_codec, fut, message.body)
            return
        try:
            event = decode_delivery(self.cloudevents, self.bus.wire_codec, props, message.body,
                                    "reply")[0].event  # fmt: skip
        except DecodeError as exc:
            fut.set_exception(RemoteError("DecodeError", f"the reply could not be decoded: {exc}"))
            return
        if type(event) is dict and event.get("__event__") == ERROR_TYPE:
            fut.set_exception(
                RemoteError(str(event.get("error") or "RemoteError"), str(event.get("message", "")))
            )
            return
        fut.set_result(event)

    async def request(self, env: Envelope, data: bytes, timeout: float | None) -> Any:
        bus = self.bus
        assert bus is not None
        check_routable(env.topic)
        loop = asyncio.get_running_loop()
        expires = None if timeout is None else loop.time() + timeout
        try:
            async with asyncio.timeout_at(expires):
                if not self.connected:
                    await self._until_connected()
                if self._registered < self._registrations:
                    await self.flush()  # our own responders are registered first
        except TimeoutError:
            raise RequestTimeout(env.topic, timeout or 0.0) from None
        rpc = self._rpc
        if rpc is None:
            raise ConnectionLost(f"{self.address}: not connected")
        headers: dict[str, Any] | None = None
        content_type = None
        if self.wire == "cloudevents":  # the request a binary-mode CloudEvent (before
            # the reply is registered: encoding can raise)
            headers, content_type, data = self._cloudevent(env)
        reply: asyncio.Future[Any] = loop.create_future()
        self._replies[env.id] = reply
        if expires is not None:
            bus.deadlines.watch(reply, expires, env.topic, timeout or 0.0)
        props = _Props(
            reply_to=REPLY_TO, correlation_id=env.id, message_id=env.id, delivery_mode=1,
            expiration=None if timeout is None else str(max(1, int(timeout * 1000))),
            headers=headers, content_type=content_type,
        )  # fmt: skip
        try:
            try:
                async with asyncio.timeout_at(expires):
                    sent = await rpc.basic_publish(
                        data, exchange=self.names.rpc, routing_key=env.topic, properties=props,
                        mandatory=True,
                    )  # fmt: skip
            except TimeoutError:
                raise RequestTimeout(env.topic, timeout or 0.0) from None
            except aexc.PublishError:  # returned: no responder queue takes it
                raise NoResponders(env.topic) from None
            except self.connection_errors as exc:
                self.lost(exc)
                raise ConnectionLost(f"{self.address}: request not sent: {exc}") from exc
            if not isinstance(sent, spec.Basic.Ack):  # returned: no responder queue takes it
                raise NoResponders(env.topic)
            try:
                return await reply
            except RemoteError as exc:
                raise RemoteError(exc.remote_type, exc.remote_message, topic=env.topic) from None
        finally:
            self._replies.pop(env.id, None)
            if expires is not None:
                bus.deadlines.forget(reply)
            if reply.done() and not reply.cancelled():
                reply.exception()  # a deadline that fired while sending: nobody awaits it
