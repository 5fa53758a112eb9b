"""``amqp://`` (and ``amqps://``): many processes on one RabbitMQ, through aio-pika's aiormq.

>>> async with Bus("amqp://guest:guest@127.0.0.1:5672/", name="shop") as bus: ...

Every name on the broker starts with ``axonbus.{bus name}`` (see ``_names``):

- **plain subscriptions and streams**: a topic exchange per bus name; each bus has one
  server-named, exclusive, auto-delete queue, bound with one binding key per pattern (``*``
  stays ``*``, ``>`` becomes ``*.#``). A bus skips its own publishes there (``app_id``). At most
  once: a bus that is disconnected when an event is published misses it.
- **group=**: one shared auto-delete queue per group and pattern, competing consumers without
  acknowledgements (at most once).
- **durable=**: a durable quorum queue per durable name. Acknowledged after the handler
  succeeded (or the event was dead-lettered); at most 64 unacknowledged deliveries per consumer
  (4 per concurrent handler when that is more, never more than the mailbox). A retry is a delayed
  requeue: the event is published again, with the number of its next handler call, to a delay
  queue of its level (a queue-wide TTL that dead-letters into the durable's queue), then the
  delivery is acknowledged. Past the retry budget the Bus dead-letters it to
  ``$bus.dead_letter``, which a durable queue of its own keeps until replayed.
- **request / respond**: a topic exchange for requests and an auto-delete queue per responder
  pattern; requests are published ``mandatory`` with the reply going to RabbitMQ's direct
  reply-to, so a request nobody's queue takes comes back at once (:class:`NoResponders`).
- Publishes go on a channel with publisher confirms: a batch is written only once RabbitMQ
  confirmed every publish in it, so ``await bus.flush()`` means "the broker has it". A batch in
  flight when the connection drops is sent again after the reconnect (duplicates, never a loss).

URL options (query string): ``unavailable_timeout`` (default 5), ``outbox`` (default
10,000), ``wire`` (``compact``, the default, or ``cloudevents``: every event one message, a
CloudEvent in binary content mode, see ``_wire``), and aiormq's own (``heartbeat``, default 5
seconds here: a half-open connection is noticed within ~20 s).

Whatever the ``wire``, a CloudEvent another client publishes to the events exchange with the
topic as routing key reaches subscribers (binary or structured), and a CloudEvent request is
answered with a CloudEvent (``causationid`` the request's id; an error has the type
``axonbus.error`` and the data ``{"error": type name, "message": text}``). A message that is
neither an axonbus envelope nor a CloudEvent is counted in ``undecodable``, logged once per
burst, and rejected without requeue.

What it cannot promise: plain and group subscriptions are at most once; a quorum queue keeps
an event once RabbitMQ confirmed it (on a majority of nodes), classic queues (dead letters,
delays) only on one node; an acknowledgement is not confirmed, so after a broker crash events
acknowledged just before can come again; a retry waits in a delay queue whose dead-lettering
is not confirmed (a broker crash at that moment can lose the retry); delays are rounded down
to the nearest level (10 ms, 20 ms, 50 ms, 100 ms ... 1 h); several responder patterns matching
one topic each get the request (the first reply wins).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode, urlsplit

from ..._cloudevents import CloudEvents, make_source, wire_option
from ..._events import Envelope
from ..._exceptions import (
    AxonbusError,
    ConnectionLost,
    DecodeError,
    MessageTooLarge,
)
from ..._topics import match
from .._undecodable import Undecodable
from ..base import BrokerTransport, Inbound, prefetch_limit, redact_url, register_transport
from ._consumers import DELAY_HEADER, TOPIC_HEADER, Binding, delay_level, retry_headers
from ._names import Names, binding_key, check_routable
from ._records import Records
from ._rpc import REPLY_TO, RequestReply
from ._wire import decode_delivery

try:
    import aio_pika  # noqa: F401  (the extra that brings aiormq)
    import aiormq
    from aiormq import exceptions as aexc
    from pamqp import commands as spec
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the amqp:// transport needs aio-pika: pip install 'axonbus[amqp]'") from exc

if TYPE_CHECKING:
    from ..sink import Inbox, Sink, SubscriptionInfo

__all__ = ["AmqpTransport"]

logger = logging.getLogger("axonbus")

#: seconds between heartbeats (aiormq gives a silent connection up after 3 * (this + 1) s)
HEARTBEAT = 5
CANCEL_TIMEOUT = 2.0  # a consumer cancelled on a dead network: given up on
# unacknowledged deliveries a durable's consumer holds (more with many concurrent handlers,
# never more than its mailbox): each acknowledgement is a Raft command on the quorum queue, so
# a small window leaves the consumer waiting on them; what a consumer that dies held unstarted
# comes back uncharged
DURABLE_PREFETCH = 64
_Props = spec.Basic.Properties


class _Reported(logging.Filter):
    """Drops aiormq's own records of a lost connection and of a failed connect (the second
    with a traceback): the transport reports both itself, once per outage, with the URL's
    password hidden, and retries with backoff."""

    MESSAGES = ("error when creating transport", "Cancelling cause reader exited abnormally")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.MESSAGES))


logging.getLogger("aiormq.connection").addFilter(_Reported())


class _Refused(AxonbusError):
    """What the broker said when it refused the bus (authentication, virtual host, a
    declaration it rejects): a refusal, not an outage."""


class _Down(ConnectionLost):
    """The connection or a channel this transport needs is gone (an outage: reconnect)."""


@register_transport
class AmqpTransport(RequestReply, BrokerTransport):
    scheme = "amqp"
    # a batch waits for RabbitMQ to confirm every publish in it: smaller batches free the
    # outbox as they are confirmed, so publishers see room long before unavailable_timeout
    max_batch = 1_000
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (
        aexc.AMQPConnectionError,
        aexc.ChannelInvalidStateError,
        aexc.ChannelClosed,
        _Down,
        ConnectionError,
        OSError,
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.wire = wire_option(self.options)  # not aiormq's: taken out of its URL
        self.options.setdefault("heartbeat", str(HEARTBEAT))
        self._amqp_url = urlsplit(self.address)._replace(query=urlencode(self.options)).geturl()
        self.address = redact_url(self.address)  # what logs and reprs show
        self.instance = secrets.token_hex(8)  # app_id of our publishes: skipped on receipt
        self.cloudevents = CloudEvents(make_source("axonbus", self.instance))
        self.undecodable = Undecodable(logger)
        self.names = Names("axonbus")
        self.records = Records(self)
        self._conn: Any = None
        self._pub: Any = None  # confirms: events, replies, retries, records
        self._rpc: Any = None  # confirms + direct reply-to consumer: requests
        self._plain: Any = None  # the plain queue's consumer
        self._plain_queue = ""
        self._plain_items: Any = None
        self._admin: Any = None  # declarations outside the outbox (delay queues, records)
        self._watched: dict[str, int] = {}  # pattern -> local mailboxes on it
        self._bindings: dict[int, Binding] = {}  # id(mailbox) -> binding
        self._parked: list[Any] = []  # channels of unbound consumers, closed at disconnect
        self._replies: dict[str, asyncio.Future[Any]] = {}
        self._delays: set[int] = set()  # delay queues declared on this connection
        self._registrations = 0  # registrations queued (watch, bind, ...)
        self._registered = 0  # ... and carried out on the broker
        self._feeders: set[asyncio.Task[Any]] = set()  # reader tasks of this transport
        self._generation = 0

    # -- connection ----------------------------------------------------------------------------

    async def start(self, bus: Sink) -> None:
        self.names = Names(bus.name)
        self.cloudevents = CloudEvents(make_source(bus.name, self.instance))
        for binding in self._bindings.values():  # bound before start: named now
            self._name_binding(binding)
        await super().start(bus)

    async def connect(self) -> None:
        conn = await aiormq.connect(self._amqp_url, client_properties={"product": "axonbus"})
        self._conn = conn
        self._generation += 1
        generation = self._generation
        conn.closing.add_done_callback(partial(self._closed, generation, "connection"))
        names = self.names
        self._pub = await self._channel(generation, "publish", confirms=True)
        admin = self._admin = await self._channel(generation, "admin")
        await admin.exchange_declare(names.events, exchange_type="topic", durable=True)
        await admin.exchange_declare(names.rpc, exchange_type="topic", durable=True)
        await admin.exchange_declare(names.retry, exchange_type="headers", durable=True)
        await admin.queue_declare(names.dead_letters, durable=True)
        await admin.queue_bind(names.dead_letters, names.events, routing_key=self.DEAD_LETTER_TOPIC)
        self._rpc = await self._channel(generation, "rpc", confirms=True)
        await self._rpc.basic_consume(REPLY_TO, self._on_reply, no_ack=True)
        plain = self._plain = await self._channel(generation, "plain")
        declared = await plain.queue_declare("", exclusive=True, auto_delete=True)
        self._plain_queue = declared.queue
        for pattern in self._watched:
            await plain.queue_bind(
                self._plain_queue, names.events, routing_key=binding_key(pattern)
            )
        if not self.receiving:
            return
        items: Binding = Binding(None, "plain", "", "", "")  # type: ignore[arg-type]
        self._plain_items = items
        await plain.basic_consume(self._plain_queue, items.on_delivery, no_ack=True)
        self._reader(self._feed_plain(items, generation), "plain")
        for binding in self._bindings.values():
            await self._consume(binding)

    async def _channel(self, generation: int, what: str, *, confirms: bool = False) -> Any:
        channel = await self._conn.channel(publisher_confirms=confirms)
        channel.closing.add_done_callback(partial(self._closed, generation, what))
        return channel

    def _reader(self, coro: Any, name: str) -> None:
        """A task that hands deliveries over (stopped at close with the others, and at
        every disconnect: its connection's deliveries can no longer be acknowledged)."""
        task = self.spawn_reader(coro, name)
        self._feeders.add(task)
        task.add_done_callback(self._feeders.discard)

    async def _until_connected(self) -> None:
        """Wait up to ``unavailable_timeout`` for the connection to come back."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.unavailable_timeout
        while not self.connected:
            if loop.time() >= deadline:
                raise ConnectionLost(f"{self.address} unreachable; request not sent")
            await asyncio.sleep(0.02)

    def _closed(self, generation: int, what: str, fut: asyncio.Future[Any]) -> None:
        """A connection or channel closed: an outage, unless we closed it."""
        if generation != self._generation:
            return  # an old connection, or one we closed (lost() ignores it while closing)
        exc = None if fut.cancelled() else fut.exception()
        self.lost(exc or _Down(f"the {what} channel closed"))

    def refusal(self, exc: BaseException) -> str | None:
        refused = (
            aexc.AuthenticationError,
            aexc.ProbableAuthenticationError,
            aexc.ConnectionNotAllowed,
            aexc.IncompatibleProtocolError,
            aexc.ChannelClosed,  # a declaration the broker refused (another type, arguments)
        )
        if isinstance(exc, refused):  # not outages to aiormq, but waiting would not help
            return super().refusal(_Refused(str(exc)))
        return super().refusal(exc)

    async def disconnect(self) -> None:
        self._generation += 1  # callbacks and readers of the old connection stop
        await self.stop_tasks(set(self._feeders))
        conn, self._conn = self._conn, None
        self._pub = self._rpc = self._plain = self._admin = None
        self._plain_items = None
        self._parked.clear()
        self._delays.clear()
        for binding in self._bindings.values():
            binding.channel, binding.tag, binding.generation = None, None, -1
            binding.items.clear()
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(f"{self.address}: connection lost"))
        if conn is not None:
            try:
                async with asyncio.timeout(2.0):
                    await conn.close()
            except Exception as exc:  # already broken: nothing to release
                logger.debug("%s: error while closing: %r", self, exc)

    async def close(self) -> None:
        if self.connected:
            await self.record_interrupted([b.mailbox for b in self._bindings.values() if b.durable])
        await super().close()
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(f"{self.address}: the bus closed"))

    async def stop_receiving(self) -> None:
        await super().stop_receiving()
        # the broker stops sending; what it sent and nobody handled goes back at disconnect
        for binding in self._bindings.values():
            await self._cancel(binding)

    # -- outbound ------------------------------------------------------------------------------

    def publish_op(self, env: Envelope, data: bytes) -> Any:
        check_routable(env.topic)
        if self.wire == "cloudevents":
            # ("pub", topic, body, id, ce- headers, content type): one message per event
            headers, content_type, body = self._cloudevent(env)
            return ("pub", env.topic, body, env.id, headers, content_type)
        return ("pub", env.topic, data, env.id)

    def _cloudevent(self, env: Envelope) -> tuple[dict[str, Any], str | None, bytes]:
        """``env`` as a binary-mode CloudEvent: its ``ce-`` headers, content type and body;
        MessageTooLarge when the body and headers exceed ``max_message_bytes``."""
        headers, body = self.cloudevents.binary(env)
        content_type = headers.pop("content-type", None)
        if self.bus is not None:
            size = len(body) + sum(map(len, headers)) + sum(map(len, headers.values()))
            if size > self.bus.max_message_bytes:
                raise MessageTooLarge(size, self.bus.max_message_bytes)
        return headers, content_type, body

    def durable_topic(self, topic: str) -> bool:
        return any(b.durable and match(b.mailbox.pattern, topic) for b in self._bindings.values())

    async def write_batch(self, batch: list[Any]) -> None:
        pub = self._pub
        if pub is None or pub.is_closed:
            raise _Down("not connected")
        publish = pub.basic_publish
        exchange = self.names.events
        app_id = self.instance
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[Any]] = []
        for op in batch:
            kind = op[0]
            if kind == "pub":
                if len(op) > 4:  # a CloudEvent: its attributes travel as headers
                    props = _Props(delivery_mode=2, message_id=op[3], app_id=app_id,
                                   headers=op[4], content_type=op[5])  # fmt: skip
                else:
                    props = _Props(delivery_mode=2, message_id=op[3], app_id=app_id)
                pending.append(
                    loop.create_task(
                        publish(op[2], exchange=exchange, routing_key=op[1], properties=props,
                                wait=False)
                    )
                )  # fmt: skip
            elif kind == "ack" or kind == "nack":
                channel = op[1]
                if channel.is_closed:
                    continue  # the broker gave it back already
                if kind == "ack":
                    await channel.basic_ack(op[2], wait=False)
                else:  # requeued, unless undecodable (op[3]: rejected for good)
                    await channel.basic_nack(op[2], requeue=len(op) < 4, wait=False)
            elif kind == "reply":
                if len(op) > 4:  # a CloudEvent reply
                    props = _Props(correlation_id=op[2], delivery_mode=1, headers=op[4],
                                   content_type=op[5])  # fmt: skip
                else:
                    props = _Props(correlation_id=op[2], delivery_mode=1)
                pending.append(
                    loop.create_task(
                        publish(op[3], routing_key=op[1], properties=props, wait=False)
                    )
                )
            else:  # a registration: after the publishes before it
                await self._confirmed(pending, pub)
                pending = []
                await self._register(op)
        await self._confirmed(pending, pub)

    async def _confirmed(self, pending: list[asyncio.Future[Any]], channel: Any) -> None:
        if not pending:
            return
        confirms = asyncio.gather(*pending, return_exceptions=True)
        # A confirm the broker never sends (it died with the publish in flight) must not hold
        # the writer: once the publish channel closes, the batch is an outage and is sent again
        # on the next connection (message ids let consumers see the repeat).
        await asyncio.wait({confirms, channel.closing}, return_when=asyncio.FIRST_COMPLETED)
        if not confirms.done():
            for fut in pending:
                fut.cancel()
            confirms.cancel()
            raise _Down("the publish channel closed with publishes unconfirmed")
        results = await confirms
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise _Down("the publish channel closed")
                raise result
            if isinstance(result, spec.Basic.Nack):
                raise RuntimeError("RabbitMQ refused a publish (basic.nack)")

    # -- plain subscriptions -------------------------------------------------------------------

    def watch(self, pattern: str) -> None:
        key = binding_key(pattern)  # InvalidTopic before anything changes
        count = self._watched.get(pattern, 0)
        self._watched[pattern] = count + 1
        if not count:
            self._register_op(("watch", pattern, key))

    def unwatch(self, pattern: str) -> None:
        count = self._watched.get(pattern, 0) - 1
        if count > 0:
            self._watched[pattern] = count
            return
        self._watched.pop(pattern, None)
        self._register_op(("unwatch", pattern, binding_key(pattern)))

    def _register_op(self, op: tuple[Any, ...]) -> None:
        if self.bus is None:
            return  # not started: connect() registers everything
        self._registrations += 1
        self.send_control((*op, self._registrations))  # numbered: see _register

    async def _register(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        plain = self._plain
        if kind == "watch" and plain is not None and op[1] in self._watched:
            await plain.queue_bind(self._plain_queue, self.names.events, routing_key=op[2])
        elif kind == "unwatch" and plain is not None and op[1] not in self._watched:
            await plain.queue_unbind(self._plain_queue, self.names.events, routing_key=op[2])
        elif kind == "bind":
            await self._consume(op[1])
        elif kind == "unbind":
            await self._cancel(op[1])
        # the highest carried out (a batch that failed midway is sent again whole)
        self._registered = max(self._registered, op[-1])

    def _decode(self, message: Any, where: str) -> Envelope | None:
        """A delivery's envelope, in either wire (see ``_wire``); None, counted and logged,
        when it is neither an envelope nor a CloudEvent."""
        bus = self.bus
        assert bus is not None
        props = message.header.properties
        # the routing key is the topic, unless the delivery is a retry (sent to the queue)
        exchange = message.delivery.exchange
        names = self.names
        if exchange in (names.events, names.rpc):
            topic = message.routing_key
        else:
            kept = (props.headers or {}).get(TOPIC_HEADER)
            topic = kept if isinstance(kept, str) and kept else None
        try:
            return decode_delivery(self.cloudevents, bus.wire_codec, props, message.body, topic)[0]
        except DecodeError as exc:
            self.undecodable.report(str(self), where, str(exc))
            return None

    async def _feed_plain(self, items: Binding, generation: int) -> None:
        bus = self.bus
        assert bus is not None
        receive = bus.receive
        instance = self.instance
        queue, wake = items.items, items.wake
        while generation == self._generation:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            message = queue.popleft()
            if message.header.properties.app_id == instance:
                continue  # our own publish: delivered locally already
            env = self._decode(message, message.routing_key)
            if env is None:
                continue
            for pattern in list(self._watched):
                if match(pattern, env.topic):
                    await receive(pattern, env)

    # -- groups, durables and responders --------------------------------------------------------

    def bind(self, mailbox: Inbox, subscription: SubscriptionInfo) -> None:
        key = mailbox.key
        assert key is not None
        binding = Binding(mailbox, key[0], "", binding_key(mailbox.pattern), "")
        if binding.durable:
            binding.prefetch = min(
                mailbox.maxsize, max(DURABLE_PREFETCH, prefetch_limit(mailbox, subscription))
            )
        self._name_binding(binding)
        self._bindings[id(mailbox)] = binding
        self._register_op(("bind", binding))

    def _name_binding(self, binding: Binding) -> None:
        names, key = self.names, binding.mailbox.key
        assert key is not None
        if binding.kind == "durable":
            binding.queue, binding.exchange = names.durable(key[1]), names.events
        elif binding.kind == "group":
            binding.queue, binding.exchange = names.group(key[2], key[1]), names.events
        else:
            binding.queue, binding.exchange = names.responder(key[1]), names.rpc

    def unbind(self, mailbox: Inbox) -> None:
        binding = self._bindings.pop(id(mailbox), None)
        if binding is None:
            return
        binding.stopped = True
        binding.wake.set()
        binding.give_back()
        self._register_op(("unbind", binding))

    async def _consume(self, binding: Binding) -> None:
        """Declare the binding's queue, bind it and consume it (once per connection)."""
        if binding.stopped or binding.generation == self._generation or not self.receiving:
            return
        if self._conn is None:
            raise _Down("not connected")
        generation = self._generation
        channel = await self._channel(generation, binding.queue)
        if binding.durable:
            await channel.queue_declare(
                binding.queue, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await channel.basic_qos(prefetch_count=binding.prefetch)
        else:
            await channel.queue_declare(binding.queue, auto_delete=True)
        await channel.queue_bind(binding.queue, binding.exchange, routing_key=binding.key)
        binding.channel, binding.generation = channel, generation
        binding.items.clear()
        ok = await channel.basic_consume(
            binding.queue, binding.on_delivery, no_ack=not binding.durable
        )
        binding.tag = ok.consumer_tag
        self._reader(self._feed(binding, generation), f"consume:{binding.queue}")

    async def _cancel(self, binding: Binding) -> None:
        channel, tag = binding.channel, binding.tag
        binding.tag = None
        if channel is None or tag is None or channel.is_closed:
            return
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT):
                await channel.basic_cancel(tag)
        except Exception as exc:  # the channel went meanwhile: the consumer went with it
            logger.debug("%s: cancelling %s: %r", self, binding.queue, exc)
        self._parked.append(channel)

    async def _feed(self, binding: Binding, generation: int) -> None:
        bus = self.bus
        assert bus is not None
        items, wake = binding.items, binding.wake
        while generation == self._generation and not binding.stopped:
            if not items:
                wake.clear()
                await wake.wait()
                continue
            message = items.popleft()
            if binding.kind == "respond":
                await self._handle_request(binding, message)
                continue
            env = self._decode(message, binding.queue)
            if env is None:  # never redelivered: rejected for good
                if binding.durable:
                    tag = message.delivery.delivery_tag
                    self.send_control(("nack", message.channel, tag, "undecodable"))
                continue
            if not match(binding.mailbox.pattern, env.topic):  # a wildcard met a system topic
                if binding.durable:
                    self.send_control(("ack", message.channel, message.delivery.delivery_tag))
                continue
            tracker = self._inbound(binding, message) if binding.durable else None
            env.tracker = tracker
            put = False
            try:
                put = await bus.put(binding.mailbox, env)
            finally:
                if not put and tracker is not None and not tracker.done:
                    tracker.defer(0)  # never reached the mailbox: back to the broker now

    def _inbound(self, binding: Binding, message: Any) -> Inbound:
        props = message.header.properties
        headers = props.headers or {}
        channel, tag = message.channel, message.delivery.delivery_tag
        base = int(headers.get("x-axonbus-attempt") or 1)
        redelivered = bool(message.delivery.redelivered or headers.get("x-delivery-count"))
        record_queue = self.names.attempts(binding.queue, props.message_id or str(tag))

        def ack() -> None:
            self.send_control(("ack", channel, tag))
            if inbound.recorded or redelivered:
                self.spawn(self.records.forget(record_queue), "forget")

        def defer(delay: float, next_attempt: int) -> None:
            if not next_attempt:
                self.send_control(("nack", channel, tag))
                return
            self.spawn(self._retry(binding, message, delay, next_attempt), "retry")

        async def record(started: int) -> None:
            await self.records.write(record_queue, started + 1)

        async def lookup() -> int:
            return await self.records.read(record_queue)

        inbound = Inbound(
            base, ack, defer, dropped=lambda: defer(0, 0), redelivered=redelivered,
            record=record, lookup=lookup,
        )  # fmt: skip
        return inbound

    async def _retry(self, binding: Binding, message: Any, delay: float, attempt: int) -> None:
        """Publish the event again for call ``attempt`` after ``delay``, then acknowledge it."""
        props = message.header.properties
        headers = retry_headers(props.headers, attempt)
        if message.delivery.exchange == self.names.events:  # the topic of a CloudEvent
            headers.setdefault(TOPIC_HEADER, message.routing_key)  # without subject
        level = delay_level(delay)
        try:
            pub = self._pub
            if pub is None:
                raise _Down("not connected")
            exchange = ""
            if level:
                await self._delay_queue(level)
                headers[DELAY_HEADER] = level
                exchange = self.names.retry
            copy = _Props(delivery_mode=2, message_id=props.message_id, app_id=props.app_id,
                          headers=headers, content_type=props.content_type)  # fmt: skip
            result = await pub.basic_publish(
                message.body, exchange=exchange, routing_key=binding.queue, properties=copy
            )
            if isinstance(result, spec.Basic.Nack):
                raise RuntimeError("RabbitMQ refused the retry (basic.nack)")
        except Exception as exc:  # redelivered now rather than later
            logger.warning("%s: could not delay a retry on %s: %r", self, binding.queue, exc)
            self.send_control(("nack", message.channel, message.delivery.delivery_tag))
            return
        self.send_control(("ack", message.channel, message.delivery.delivery_tag))

    async def _delay_queue(self, level: int) -> None:
        if level in self._delays:
            return
        admin = self._admin
        if admin is None:
            raise _Down("not connected")
        name = self.names.delay(level)
        arguments = {
            "x-message-ttl": level,
            "x-dead-letter-exchange": "",  # the default exchange: back to the routing key's queue
            "x-expires": level + 600_000,
        }
        await admin.queue_declare(name, durable=True, arguments=arguments)
        await admin.queue_bind(
            name, self.names.retry, routing_key="",
            arguments={"x-match": "all", DELAY_HEADER: level},
        )  # fmt: skip
        self._delays.add(level)

    async def catch_up(self) -> None:
        durables = [b for b in self._bindings.values() if b.durable and not b.stopped]
        if not durables or not self.connected:
            return
        await self.flush()
        for binding in durables:
            while self.connected and not binding.stopped and self._conn is not None:
                ready = await self.records.ready(binding.queue)
                if not ready and not binding.items:
                    break
                await asyncio.sleep(0.02)

    # -- dead letters --------------------------------------------------------------------------

    async def stored_dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        await self.flush()  # dead letters this bus published
        bus = self.bus
        assert bus is not None
        out: list[tuple[str, bytes]] = []
        for key, props, body in await self.records.peek(self.names.dead_letters, limit):
            # the bus reads its codec's envelopes: a dead letter kept as a CloudEvent is one
            try:
                env, ce = decode_delivery(self.cloudevents, bus.wire_codec, props, body)
            except DecodeError as exc:
                self.undecodable.report(str(self), self.names.dead_letters, str(exc))
                continue
            out.append((key, bus.wire_codec.encode(env) if ce else body))
        return out

    async def drop_dead_letter(self, key: str) -> None:
        await self.records.take(self.names.dead_letters, key)


@register_transport
class AmqpsTransport(AmqpTransport):
    """``amqps://``: the same transport over TLS."""

    scheme = "amqps"
