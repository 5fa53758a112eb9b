"""``redis://``: many processes on one Redis, through redis-py (asyncio).

>>> async with Bus("redis://127.0.0.1:6379/0", name="assistant") as bus: ...

How each kind of subscription travels:

- plain subscriptions and streams: pub/sub on channels ``{bus}/{topic}`` (``PSUBSCRIBE`` with a
  glob per pattern; globs are looser than ``*``/``>``, so every match is checked again here).
  At most once: a subscriber that is disconnected when an event is published misses it.
- ``group=`` and ``durable=``: a stream per group or durable name (``{bus}:group:{name}:{pattern}``,
  ``{bus}:durable:{name}``) read with ``XREADGROUP``. The publish script appends each event to
  every stream whose pattern matches, on the server, so a subscription registered anywhere is
  never missed. Groups read with ``NOACK`` (at most once); durables acknowledge with ``XACK``
  after the handler succeeded or the event was dead-lettered. A live consumer keeps the entries
  it holds fresh (``XCLAIM ... JUSTID`` every ``claim_idle / 3``); entries a crashed consumer
  left pending are taken over with ``XAUTOCLAIM`` after ``claim_idle`` seconds. Handler calls
  are counted in the hash ``{stream}:attempts`` (see :class:`~.base.Inbound`), not by Redis's
  delivery count, and past the retry budget the event is dead-lettered.
- ``request`` / ``respond``: requests go through a list per responder pattern (load-balanced
  across processes, ``BRPOP``); replies come back on the requester's own channel
  ``{bus}:reply:{id}``.
- Publishes queued in one loop tick go to Redis as one pipeline: one call of the publish script
  per run of up to ``PUBLISH_CHUNK`` events, and consecutive events on one topic travel as one
  pub/sub message (each envelope with its length in front), which costs the receiver one
  message to parse instead of one per event.

URL options (query string), besides redis-py's own: ``maxlen`` (entries kept per stream,
approximate, default 100,000), ``max_age`` (seconds; trims by age instead of length),
``claim_idle`` (seconds before a pending entry of another consumer is taken over, default 30),
``wire`` (``compact``, the default, or ``cloudevents``: every event one pub/sub message and one
stream entry field, a structured CloudEvent in JSON; see ``axonbus._cloudevents``),
``unavailable_timeout`` (default 5) and ``outbox`` (default 10,000).

Whatever the ``wire``, a structured CloudEvent another client publishes on ``{bus}/{topic}``
reaches the subscribers of that topic; a message that is neither is counted in
``undecodable`` and logged once per burst.

What it cannot promise: Redis without AOF (``appendonly yes``) loses every stream, pending entry
and registration on restart, and even with AOF the default ``appendfsync everysec`` can lose the
last second; groups and plain subscriptions are at most once; trimming by ``maxlen``/``max_age``
discards entries no consumer has read yet. The scripts build keys from the bus name: on a Redis
Cluster use ``redis+cluster://`` (``_cluster``), whose keys carry the bus name as a hash tag.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode, urlsplit

from ..._cloudevents import CloudEvents, is_structured, make_source, wire_option
from ..._events import Envelope
from ..._exceptions import ConnectionLost, DecodeError, MessageTooLarge
from ..._topics import match
from .._frames import frames
from .._undecodable import Undecodable
from ..base import (
    BrokerTransport,
    Inbound,
    float_option,
    int_option,
    prefetch_limit,
    redact_url,
    register_transport,
)
from . import _lua
from ._rpc import RedisRequestReply, _Responders

try:
    import redis.asyncio as aioredis
    from redis import exceptions as rexc
    from redis.asyncio.retry import Retry as RedisRetry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the redis:// transport needs redis-py: pip install 'axonbus[redis]'"
    ) from exc

if TYPE_CHECKING:
    from ..sink import Inbox, Sink, SubscriptionInfo

__all__ = ["RedisTransport"]

logger = logging.getLogger("axonbus")

GROUP = "axonbus"  # the consumer group on every stream: one stream per axonbus group/durable
BLOCK_MS = 500  # how long a blocking read waits before looking around (closing, room...)
FETCH = 256  # most entries fetched at once
PUBLISH_CHUNK = 512  # most events in one call of the publish script
PUBLISH_CHUNK_BYTES = 1 << 20  # ... or about this many bytes of envelopes
PATTERNS_EVERY = 5.0  # seconds between reads of the durable patterns (see durable_topic)


def _glob(pattern: str) -> str:
    """A Redis glob matching at least every topic of ``pattern`` (checked again on receipt)."""
    out = []
    for tok in pattern.split("."):
        if tok in ("*", ">"):
            out.append("*")
        else:
            out.append("".join("\\" + c if c in "*?[]\\" else c for c in tok))
    return ".".join(out)


def _entry_id(raw: bytes | str) -> tuple[int, int]:
    """A stream entry id (``ms-seq``) as a comparable pair."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(eq=False)
class _Queue:
    """A group or durable mailbox fed from its stream."""

    mailbox: Inbox
    stream: str
    durable: bool
    stopped: bool = False  # unbound: the consumer returns after its current read
    # entry ids handed to the mailbox and not yet acknowledged: a claim must not hand them
    # over a second time while they wait in our own queue
    inflight: set[bytes] = field(default_factory=set)
    handing: int = 0  # fetched and not yet in the mailbox
    limit: int = FETCH  # a durable's prefetch: most entries held (in ``inflight``)
    room: asyncio.Event = field(default_factory=asyncio.Event)  # inflight fell to half of it

    @property
    def attempts_key(self) -> str:
        """The hash of handler calls recorded per entry (see :class:`Inbound`)."""
        return f"{self.stream}:attempts"

    def let_go(self, entry_id: bytes) -> None:
        self.inflight.discard(entry_id)
        if len(self.inflight) <= self.limit // 2:
            self.room.set()


@register_transport
class RedisTransport(RedisRequestReply, BrokerTransport):
    scheme = "redis"
    # redis-py can leave a connection unusable when a command is cancelled midway, so readers
    # stop on a flag, within one blocking read
    reader_grace = BLOCK_MS / 1000 + 1.0
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (
        rexc.ConnectionError,
        rexc.TimeoutError,
        ConnectionError,
        OSError,
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.maxlen = int_option(self.options, "maxlen", 100_000)
        self.max_age = float_option(self.options, "max_age", 0.0)
        self.claim_idle = float_option(self.options, "claim_idle", 30.0)
        self.wire = wire_option(self.options)
        parts = urlsplit(self.address)
        self._redis_url = parts._replace(query=urlencode(self.options)).geturl()
        self.address = redact_url(self.address)  # what logs and reprs show
        self.instance = secrets.token_hex(8)  # 16 chars: the origin tag on pub/sub messages
        self._origin = self.instance.encode()
        self.prefix = "axonbus"
        self.cloudevents = CloudEvents(make_source(self.prefix, self.instance))
        #: messages dropped because they were neither axonbus frames nor CloudEvents
        self.undecodable = Undecodable(logger)
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._shas: dict[str, str] = {}
        self._watched: dict[str, int] = {}  # pattern -> local mailboxes on it
        self._globs: dict[str, set[str]] = {}  # glob -> patterns it stands for
        self._subscribing: dict[str, asyncio.Future[None]] = {}  # channel/glob -> confirmation
        self._queues: dict[int, _Queue] = {}  # id(mailbox) -> queue
        self._responders: dict[str, _Responders] = {}  # pattern -> local responders
        self._replies: dict[str, asyncio.Future[Any]] = {}  # request id -> reply
        self._reply_channel = ""
        # patterns of every durable on this bus name, as last read from Redis: what a publish
        # during an outage must not quietly drop (see durable_topic)
        self._durable_patterns: set[str] = set()
        self._patterns_read = 0.0
        # operations queued up to the last registration: a request waits for them to be sent
        self._registered_upto = 0
        self._generation = 0  # bumped per connection: loops of an older one stop
        self._listener: asyncio.Task[Any] | None = None

    # -- connection ----------------------------------------------------------------------------

    def key_prefix(self, name: str) -> str:
        """What every key and channel of the bus ``name`` starts with (a cluster adds a hash
        tag)."""
        return name

    async def start(self, bus: Sink) -> None:
        self.prefix = self.key_prefix(bus.name)
        self.cloudevents = CloudEvents(make_source(bus.name, self.instance))
        self._reply_channel = f"{self.prefix}:reply:{self.instance}"
        # keys of subscriptions made before start are named now that the bus name is known
        for queue in self._queues.values():
            queue.stream = self._stream_key(queue.mailbox)
            self._register_op(("register", queue.stream, queue.mailbox.pattern))
        for responders in self._responders.values():
            responders.queue = f"{self.prefix}:rpc:{responders.mailbox.pattern}"
        # dead letters are appended to a stream of their own (by the publish script, like any
        # durable's) and kept there until replayed
        self._register_op(("register", self._dead_letters_key, self.DEAD_LETTER_TOPIC))
        await super().start(bus)

    @property
    def _dead_letters_key(self) -> str:
        return f"{self.prefix}:dead_letters"

    async def stored_dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        await self.flush()  # the registration, and dead letters this bus published
        client = self._client
        if client is None:
            raise ConnectionLost(f"{self.address}: not connected")
        entries: Any = await client.xrange(self._dead_letters_key, count=limit)
        found = [(i.decode(), f[b"d"]) for i, f in entries if f and b"d" in f]
        # the bus reads dead letters with its codec: a CloudEvent is handed over in that form
        return [(key, self._as_compact(data)) for key, data in found]

    def _as_compact(self, data: bytes) -> bytes:
        if not is_structured(data):
            return data
        bus = self.bus
        assert bus is not None
        try:
            return bus.wire_codec.encode(self.cloudevents.from_structured(data))
        except (DecodeError, TypeError, ValueError):
            return data  # the bus's decoder says what is wrong with it

    async def drop_dead_letter(self, key: str) -> None:
        client = self._client
        if client is None:
            raise ConnectionLost(f"{self.address}: not connected")
        await client.xdel(self._dead_letters_key, key)

    async def connect(self) -> None:
        client = aioredis.Redis.from_url(
            self._redis_url,
            socket_timeout=max(5.0, self.unavailable_timeout),
            socket_connect_timeout=self.unavailable_timeout or None,
            retry=RedisRetry(NoBackoff(), 0),  # fail fast: outages are handled here, once
        )
        self._client = client
        await client.ping()
        for name in ("PUBLISH", "REQUEST"):
            self._shas[name] = await client.script_load(getattr(_lua, name))
        await self._read_durable_patterns(client)
        pubsub = client.pubsub()
        self._pubsub = pubsub
        await pubsub.subscribe(self._reply_channel)
        if self._globs:
            await pubsub.psubscribe(*(f"{self.prefix}/{glob}" for glob in self._globs))
        self._confirm_subscriptions()  # all (re)subscribed just now
        self._generation += 1
        self._listener = self.spawn(self._listen(pubsub, self._generation), "pubsub")
        if not self.receiving:
            return
        for queue in self._queues.values():
            self.spawn_reader(self._consume(queue, self._generation), f"consume:{queue.stream}")
        if self._responders:
            self.spawn_reader(self._serve(self._generation), "respond")

    def refusal(self, exc: BaseException) -> str | None:
        if isinstance(exc, rexc.InvalidResponse):  # e.g. a NATS server's INFO line
            seen = self._describe(exc)[:40]
            return f"{self.address} did not answer as a Redis server ({seen}...)"
        if isinstance(exc, rexc.AuthenticationError):  # a ConnectionError to redis-py
            return f"{self.address} refused the connection: {self._describe(exc)}"
        return super().refusal(exc)

    async def disconnect(self) -> None:
        self._generation += 1  # every loop of the old connection returns at its next turn
        listener, self._listener = self._listener, None
        await self.stop_tasks({*self._readers, *([listener] if listener else [])})
        pubsub, self._pubsub = self._pubsub, None
        client, self._client = self._client, None
        for closing in (pubsub, client):
            if closing is not None:
                try:
                    await closing.aclose()
                except Exception as exc:  # the connection is already broken: nothing to do
                    logger.debug("%s: error while closing: %r", self, exc)

    async def stop_receiving(self) -> None:
        await super().stop_receiving()
        # the listener is gone, so no confirmation will come; nobody needs one any more
        self._confirm_subscriptions()

    def _confirm_subscriptions(self) -> None:
        for fut in self._subscribing.values():
            if not fut.done():
                fut.set_result(None)
        self._subscribing.clear()

    async def close(self) -> None:
        # requests must stop coming here now, not when the registrations expire
        for pattern in self._responders:
            self.send_control(("unrespond", f"{self.instance}\n{pattern}"))
        self._responders.clear()
        if self.connected:
            await self.record_interrupted([q.mailbox for q in self._queues.values() if q.durable])
        await super().close()
        self._confirm_subscriptions()
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(f"{self.address}: the bus closed"))

    async def _flush_outbox(self) -> None:
        await super().flush()

    async def flush(self) -> None:
        """Wait until Redis has every publish, acknowledgement and registration made so far."""
        await super().flush()
        pending = [f for f in self._subscribing.values() if not f.done()]
        if pending:
            await asyncio.gather(*(asyncio.shield(f) for f in pending))

    # -- outbound ------------------------------------------------------------------------------

    def durable_topic(self, topic: str) -> bool:
        return any(match(p, topic) for p in self._durable_patterns)

    def publish_op(self, env: Envelope, data: bytes) -> Any:
        if self.wire == "cloudevents":
            data = self.cloudevents.structured(env)
            limit = self.bus.max_message_bytes if self.bus is not None else len(data)
            if len(data) > limit:
                raise MessageTooLarge(len(data), limit)
        return ("pub", env.topic, data)

    async def _read_durable_patterns(self, client: Any) -> None:
        bindings = await client.hgetall(f"{self.prefix}:bindings")
        durable = f"{self.prefix}:durable:".encode()
        self._durable_patterns = {
            p.decode() for key, p in bindings.items() if key.startswith(durable)
        }
        self._patterns_read = time.monotonic()

    async def write_batch(self, batch: list[Any]) -> None:
        client = self._client
        if client is None:
            raise rexc.ConnectionError("not connected")
        sha = self._shas["PUBLISH"]
        origin = b"" if self.wire == "cloudevents" else self._origin  # empty: one event a message
        head = (self.prefix, origin, self.maxlen, int(self.max_age * 1000))
        pipe = client.pipeline(transaction=False)
        # consecutive publishes go as one script call (up to PUBLISH_CHUNK events), consecutive
        # acks of one stream as one XACK: a reply per run instead of one per operation
        commands: list[list[Any]] = []  # the operations behind each command, in order
        i, n = 0, len(batch)
        while i < n:
            op = batch[i]
            kind = op[0]
            run: list[Any] = []
            if kind == "pub":
                args: list[Any] = [*head]
                size = 0
                while i < n and batch[i][0] == "pub" and len(run) < PUBLISH_CHUNK:
                    op = batch[i]
                    args += (op[1], op[2])
                    run.append(op)
                    i += 1
                    size += len(op[2])
                    if size >= PUBLISH_CHUNK_BYTES:
                        break
                pipe.evalsha(sha, 0, *args)
                commands.append(run)
                continue
            if kind == "ack":
                stream = op[1]
                while i < n and batch[i][0] == "ack" and batch[i][1] == stream:
                    run.append(batch[i])
                    i += 1
                pipe.xack(stream, GROUP, *(a[2] for a in run))
                commands.append(run)
                continue
            i += 1
            commands.append([op])
            if kind == "reply":
                pipe.publish(op[1], op[2])
            elif kind == "register":
                pipe.xgroup_create(op[1], GROUP, id="0", mkstream=True)
                pipe.hset(f"{self.prefix}:bindings", op[1], op[2])
                commands.append([op])
            elif kind == "forget":
                pipe.hdel(op[1], op[2])
            elif kind == "respond":
                pipe.hset(f"{self.prefix}:responders", op[1], op[2])
            else:  # "unrespond"
                pipe.hdel(f"{self.prefix}:responders", op[1])
        results = await pipe.execute(raise_on_error=False)
        acked = [ops for ops in commands if ops[0][0] == "ack"]
        if acked:
            # only now may a claim take these back: until its XACK is written, an entry this
            # bus handled is still pending in Redis, and must not be handled again here
            queues = {q.stream: q for q in self._queues.values()}
            for ops in acked:
                queue = queues.get(ops[0][1])
                if queue is not None:
                    for op in ops:
                        queue.let_go(op[2])
        retry = []
        for ops, result in zip(commands, results, strict=True):
            if isinstance(result, rexc.ResponseError) and "BUSYGROUP" in str(result):
                continue  # the group exists: registering is idempotent
            if isinstance(result, rexc.NoScriptError):
                retry.extend(ops)  # Redis restarted and forgot the script: load it again
            elif isinstance(result, self.connection_errors):
                raise result
            elif isinstance(result, Exception):
                logger.error("%s: Redis refused %s on %r: %r", self, ops[0][0], ops[0][1], result)
            elif ops[0][0] == "pub" and result[1]:
                failed = result[1]  # index, error of each event the script could not append
                for index, error in zip(failed[::2], failed[1::2], strict=True):
                    op = ops[int(index)]
                    logger.error(
                        "%s: Redis refused pub on %r: %r", self, op[1], error,
                        extra={"topic": op[1]},
                    )  # fmt: skip
        if retry:
            self._shas["PUBLISH"] = await client.script_load(_lua.PUBLISH)
            await self.write_batch(retry)

    # -- plain subscriptions: pub/sub --------------------------------------------------------

    def watch(self, pattern: str) -> None:
        count = self._watched.get(pattern, 0)
        self._watched[pattern] = count + 1
        if count:
            return
        glob = _glob(pattern)
        patterns = self._globs.setdefault(glob, set())
        patterns.add(pattern)
        if len(patterns) == 1 and self._pubsub is not None and self.connected:
            channel = f"{self.prefix}/{glob}"
            self._subscribing[channel] = asyncio.get_running_loop().create_future()
            self.spawn(self._pubsub.psubscribe(channel), "psubscribe")

    def unwatch(self, pattern: str) -> None:
        count = self._watched.get(pattern, 0) - 1
        if count > 0:
            self._watched[pattern] = count
            return
        self._watched.pop(pattern, None)
        glob = _glob(pattern)
        patterns = self._globs.get(glob)
        if patterns is None:
            return
        patterns.discard(pattern)
        if not patterns:
            del self._globs[glob]
            if self._pubsub is not None and self.connected:
                channel = f"{self.prefix}/{glob}"
                self.spawn(self._pubsub.punsubscribe(channel), "punsubscribe")

    async def _listen(self, pubsub: Any, generation: int) -> None:
        bus = self.bus
        assert bus is not None
        origin = self._origin
        n = len(origin)
        own = self.cloudevents.is_own
        skip = len(self.prefix) + 1  # "{bus}/" in front of every glob
        quiet_since = time.monotonic()
        pinged = False
        # parse_response + the two hot message kinds inline: get_message would build a dict
        # and record metrics per message; every other kind still goes through handle_message
        read = pubsub.parse_response
        try:
            while generation == self._generation:
                msg = await read(block=False, timeout=BLOCK_MS / 1000)
                if time.monotonic() - self._patterns_read > PATTERNS_EVERY and self._client:
                    await self._read_durable_patterns(self._client)
                if msg is None:
                    # a silent connection may be a dead one (half-open): ask, and give up if
                    # not even the PING is answered
                    idle = time.monotonic() - quiet_since
                    if idle > 3.0 and not pinged:
                        await pubsub.ping()
                        pinged = True
                    elif idle > 3.0 + max(5.0, self.unavailable_timeout):
                        raise rexc.TimeoutError("pub/sub connection silent; PING unanswered")
                    continue
                quiet_since = time.monotonic()
                pinged = False
                # a list, or with hiredis installed its PushNotification (a list subclass)
                kind = msg[0] if isinstance(msg, list) else None
                if kind == b"pmessage":
                    data = msg[3]
                    if data[:n] == origin or own(data) or not self.receiving:
                        continue  # our own publish (delivered locally already), or closing
                    glob = msg[1].decode()[skip:]
                    patterns = tuple(self._globs.get(glob, ()))
                    topic = None
                    targets: list[str] = []
                    for env in self._unpack(data, msg[2]):
                        if env.topic != topic:  # one topic per message: matched once
                            topic = env.topic
                            targets = [p for p in patterns if match(p, topic)]
                        for pattern in targets:
                            await bus.receive(pattern, env)
                    continue
                if kind == b"message":
                    self._on_reply(msg[2])
                    continue
                handled = await pubsub.handle_message(msg)  # confirmations, pongs...
                if handled and handled["type"] in ("psubscribe", "subscribe"):
                    fut = self._subscribing.pop(handled["channel"].decode(), None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
        except self.connection_errors as exc:
            self.lost(exc)

    def _unpack(self, data: bytes, channel: bytes) -> list[Envelope]:
        """The envelopes of a pub/sub message: a structured CloudEvent (from any client), or
        after the origin tag each envelope preceded by its length (4 bytes, big-endian). What
        does not decode is counted and logged (see ``undecodable``), never raised."""
        bus = self.bus
        assert bus is not None
        if is_structured(data):
            topic = channel.decode(errors="replace")[len(self.prefix) + 1 :]
            try:
                return [self.cloudevents.from_structured(data, topic)]
            except DecodeError as exc:
                self.undecodable.report(str(self), repr(channel), str(exc))
                return []
        decode = bus.wire_codec.decode
        envelopes = []
        parts, whole = frames(data, len(self._origin))
        for part in parts:
            try:
                envelopes.append(decode(part))
            except DecodeError as exc:
                self.undecodable.report(str(self), repr(channel), str(exc))
        if not whole or not parts:  # axonbus never sends a message without a frame
            reason = "neither a CloudEvent nor axonbus frames (bad frame length)"
            self.undecodable.report(str(self), repr(channel), reason)
        return envelopes

    # -- groups and durables: streams ----------------------------------------------------------

    def bind(self, mailbox: Inbox, subscription: SubscriptionInfo) -> None:
        key = mailbox.key
        assert key is not None
        if key[0] == "respond":
            self._bind_responder(mailbox)
            return
        stream = self._stream_key(mailbox)
        queue = _Queue(mailbox, stream, durable=key[0] == "durable")
        if queue.durable:
            queue.limit = prefetch_limit(mailbox, subscription)
            self._durable_patterns.add(mailbox.pattern)
        self._queues[id(mailbox)] = queue
        if self.bus is None:
            return  # not started: start() names the stream after the bus and registers it
        # through the outbox, so this bus's next publish is appended after the group exists
        self._register_op(("register", stream, mailbox.pattern))
        if self.connected and self.receiving:
            self.spawn_reader(self._consume(queue, self._generation), f"consume:{stream}")

    def _stream_key(self, mailbox: Inbox) -> str:
        key = mailbox.key
        assert key is not None
        if key[0] == "durable":
            return f"{self.prefix}:durable:{key[1]}"
        return f"{self.prefix}:group:{key[2]}:{mailbox.pattern}"

    def unbind(self, mailbox: Inbox) -> None:
        key = mailbox.key
        if key is not None and key[0] == "respond":
            self._responders.pop(mailbox.pattern, None)
            self._register_op(("unrespond", f"{self.instance}\n{mailbox.pattern}"))
            return
        queue = self._queues.pop(id(mailbox), None)
        if queue is not None:
            queue.stopped = True  # fetched entries stay pending: redelivered later

    def _register_op(self, op: tuple[Any, ...]) -> None:
        self.send_control(op)
        self._registered_upto = self._queued

    async def _register(self, queue: _Queue) -> None:
        """Create the stream's group and binding (again: after a reconnect it may be gone)."""
        client = self._client
        assert client is not None
        try:
            await client.xgroup_create(queue.stream, GROUP, id="0", mkstream=True)
        except rexc.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await client.hset(f"{self.prefix}:bindings", queue.stream, queue.mailbox.pattern)

    async def _consume(self, queue: _Queue, generation: int) -> None:
        bus = self.bus
        assert bus is not None
        mb = queue.mailbox
        claim_at = 0.0
        refresh_every = max(self.claim_idle / 3, 0.05)
        refresh_at = time.monotonic() + refresh_every
        try:
            await self._register(queue)
            while self.receiving and not queue.stopped and generation == self._generation:
                client = self._client
                assert client is not None
                entries: list[tuple[bytes, dict[bytes, bytes]]] = []
                counts: dict[bytes, int] = {}
                if queue.durable and time.monotonic() >= refresh_at:
                    refresh_at = time.monotonic() + refresh_every
                    await self._refresh(client, queue)
                if queue.durable:
                    # fetch what the workers can start soon, not what the mailbox could hold
                    if len(queue.inflight) > queue.limit // 2:
                        queue.room.clear()
                        try:
                            async with asyncio.timeout(BLOCK_MS / 1000):
                                await queue.room.wait()
                        except TimeoutError:
                            pass
                        continue
                    room = max(1, min(FETCH, queue.limit - len(queue.inflight)))
                else:
                    room = max(1, min(FETCH, mb.maxsize - len(mb.queue)))
                if queue.durable and time.monotonic() >= claim_at:
                    claim_at = time.monotonic() + max(self.claim_idle / 2, 0.05)
                    entries, counts = await self._claim(client, queue, room)
                if not entries:
                    reply: Any = await client.xreadgroup(
                        GROUP, self.instance, {queue.stream: ">"}, count=room,
                        block=BLOCK_MS, noack=not queue.durable,
                    )  # fmt: skip
                    if reply:
                        entries = reply[0][1]
                queue.handing = len(entries)
                for entry_id, fields in entries:
                    attempt = counts.get(entry_id, 0)  # 0: a first delivery
                    put = await self._hand_over(queue, entry_id, fields, attempt)
                    queue.handing -= 1
                    if not put:
                        return  # the mailbox closed: what is left stays pending
        except rexc.ResponseError as exc:
            # NOGROUP: the group is gone; UNBLOCKED: the stream was deleted under our read
            if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                raise
            # the stream or its group vanished (flushed, or a Redis restart without AOF):
            # register again rather than loop on the error
            logger.warning("%s: stream %s lost its group; recreating it", self, queue.stream)
            self.spawn_reader(self._consume(queue, generation), f"consume:{queue.stream}")
        except self.connection_errors as exc:
            self.lost(exc)
        finally:
            queue.handing = 0

    async def catch_up(self) -> None:
        durables = [q for q in self._queues.values() if q.durable and not q.stopped]
        if not durables or not self.connected:
            return
        await self.flush()
        for queue in durables:
            client = self._client
            if client is None:
                return
            try:
                last = _entry_id((await client.xinfo_stream(queue.stream))["last-generated-id"])
            except rexc.ResponseError:
                continue  # no such stream: nothing was published to it
            while self.connected and not queue.stopped and self._client is not None:
                groups = await self._client.xinfo_groups(queue.stream)
                names = (GROUP, GROUP.encode())
                delivered = next(
                    (g["last-delivered-id"] for g in groups if g["name"] in names), None
                )
                if delivered is None or (_entry_id(delivered) >= last and not queue.handing):
                    break
                await asyncio.sleep(0.02)  # the reader is in its blocking read: it wakes soon

    async def _claim(
        self, client: Any, queue: _Queue, count: int
    ) -> tuple[list[tuple[bytes, dict[bytes, bytes]]], dict[bytes, int]]:
        """Take over entries that stayed pending for ``claim_idle``: those of consumers that
        died (a live one keeps what it holds fresh, see :meth:`_refresh`). Returns them and
        the number of the next handler call of each, from the calls recorded."""
        idle_ms = int(self.claim_idle * 1000)
        _next, claimed, *_ = await client.xautoclaim(
            queue.stream, GROUP, self.instance, idle_ms, start_id="0-0", count=count
        )
        # never what this bus holds: queued, being handled, or handled with its XACK on the way
        claimed = [(i, f) for i, f in claimed if f is not None and i not in queue.inflight]
        if not claimed:
            return [], {}
        recorded = await client.hmget(queue.attempts_key, [i for i, _ in claimed])
        counts = {i: int(n) if n else 1 for (i, _), n in zip(claimed, recorded, strict=True)}
        return claimed, counts

    async def _refresh(self, client: Any, queue: _Queue) -> None:
        """Reset the idle time of the entries this bus holds (without raising their delivery
        count), so no other consumer takes them over while this one is alive."""
        held = list(queue.inflight)
        for i in range(0, len(held), FETCH):
            await client.xclaim(
                queue.stream, GROUP, self.instance, 0, held[i : i + FETCH], justid=True
            )

    async def _hand_over(
        self, queue: _Queue, entry_id: bytes, fields: dict[bytes, bytes], attempt: int
    ) -> bool:
        bus = self.bus
        assert bus is not None
        try:
            data = fields[b"d"]
            if is_structured(data):
                env = self.cloudevents.from_structured(data)
            else:
                env = bus.wire_codec.decode(data)
        except (DecodeError, KeyError) as exc:
            where = f"{queue.stream} (entry {entry_id!r})"
            self.undecodable.report(str(self), where, repr(exc))
            if queue.durable:
                self.send_control(("ack", queue.stream, entry_id))  # never decodable: drop it
            return True
        if queue.durable:
            queue.inflight.add(entry_id)
            env.tracker = self._inbound(queue, entry_id, attempt)
        return await bus.put(queue.mailbox, env)

    def _inbound(self, queue: _Queue, entry_id: bytes, attempt: int) -> Inbound:
        """``attempt`` 0: a first delivery; else a redelivery and its next handler call."""
        redelivered = attempt > 0

        def ack() -> None:
            self.send_control(("ack", queue.stream, entry_id))
            if inbound.recorded or redelivered:
                self.send_control(("forget", queue.attempts_key, entry_id))

        def dropped() -> None:
            queue.let_go(entry_id)  # not handled: taken over once idle, here or elsewhere

        async def record(started: int) -> None:
            # on Redis before the handler runs: if it takes the process down, it is charged
            client = self._client
            if client is None:
                raise ConnectionLost(f"{self.address}: not connected")
            await client.hset(queue.attempts_key, entry_id, started + 1)

        inbound = Inbound(
            max(attempt, 1), ack, dropped=dropped, redelivered=redelivered, record=record
        )
        return inbound
