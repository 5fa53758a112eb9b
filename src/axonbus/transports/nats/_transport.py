"""``nats://`` (and ``tls://``): the NATS transport, with JetStream for ``durable=``.

>>> async with Bus("nats://127.0.0.1:4222", name="shop") as bus: ...

A cluster: ``nats://n1:4222,n2:4222,n3:4222?replicas=3`` names several seeds (a connection, and
every reconnect, goes to one that answers) and keeps 3 copies of the stream and its consumers.

Subjects: events travel on ``{name}.ev.{topic}``, requests on ``{name}.rpc.{topic}``, where
``name`` is the bus name (one NATS token). axonbus patterns are NATS patterns, so subscriptions
are native; every inbound event is still checked against its pattern, because in NATS a
wildcard in the first token also matches system topics (``$bus.…``) and in axonbus it does not.

- **Plain subscriptions and streams**: one core subscription per distinct pattern. A bus drops
  its own publishes there (it delivered them locally): on topics it listens to itself, it
  publishes with a reply subject on its own inbox, and that is how it recognises them.
- **group=**: a queue subscription; the queue name is derived from the group and the pattern.
- **respond / request**: responders of every pattern share one queue group, so a request goes
  to exactly one responder in the whole system. No responder -> :class:`NoResponders`; no reply
  in time -> :class:`RequestTimeout`; a raising responder -> :class:`RemoteError`.
- **durable=**: a JetStream pull consumer (explicit ack) on the stream ``AXONBUS_{name}``,
  created on demand when the first durable subscription binds. See ``_jetstream``.

Publishing: events are core publishes, and the stream captures those on ``{name}.ev.>``. While
the stream exists (this bus created or found it, or heard the server's stream-created
advisory) every event carries a ``Nats-Msg-Id`` header (the event id) and a reply subject, and
the writer waits, per batch, for the stream's acknowledgements (PubAcks): a batch is confirmed
only once JetStream stored it. A batch in flight when the connection drops is sent again after
the reconnect, and JetStream drops the copies (within ``dupe_window``). Without a stream (no
durable anywhere) events go without the header, and a batch is confirmed by a round trip on
the connection (a message to the bus's own inbox, queued behind the batch): the server has it.
Consecutive publishes on one topic in a batch go as one message, a pack (``_pack``):
plain and group subscribers unpack it, the stream stores it as one message (``Nats-Msg-Id``
``{first id}+{count}``; a resent batch is packed as before), and a durable acknowledges it once
every event in it is settled. A batch of nothing but request replies waits for no round trip:
the replies are held until a later one confirms them, and sent again after a reconnect.
Measured on a shared 2-core machine, both buses in one process (``python -m benchmarks.brokers
--only nats,nats-durable``): ~165k events/s plain, ~115k/s to a durable subscriber.

What this transport cannot promise:

- Plain and group subscriptions are at-most-once (core NATS keeps nothing). After a reconnect
  the batch that was in flight is sent again, so a plain subscriber may see those events twice.
- A plain subscriber whose mailbox is full (``overflow="block"``) pauses that subscription;
  nats-py then buffers up to 524,288 messages / 128 MiB for it, and beyond that drops messages
  and reports a slow consumer (logged here). A client that stops reading altogether is cut
  off by the server (its ``max_pending``) and reconnects.
- JetStream acknowledges a message before it is fsynced to disk (the server's ``sync_interval``
  decides, 2 minutes by default): a machine crash can lose acknowledged events. Streams and
  consumers survive a server restart only if the server has a store directory (``-sd``).
- The stream has interest retention: an event is stored only while a durable consumer whose
  filter matches it has not acknowledged it, and at most ``stream_max_age`` /
  ``stream_max_bytes`` (the oldest go first when the limit is hit). The first bus to create the
  stream sets these limits; change them later with ``nats stream edit``.
- A durable delivery is redelivered if it is not acknowledged within ``ack_wait`` (30 s) of the
  last sign of life; while a live bus holds it (queued or handling) it is kept in progress. A
  durable consumer starts at its creation: events published before the first subscription with
  that name bound (or before the consumer was re-created on a server that lost it) are not
  delivered to it. With ``concurrency > 1`` or after a redelivery, durable order is not kept.
- Packs, for a durable: the events of a pack are retried in-process (a nak would redeliver the
  whole pack), a pack goes whole to one bus of the durable, and a pack held by a bus that dies
  or closes is redelivered whole, events already handled included.
- A bus learns that the stream appeared from the server's advisory (or finds it when it
  connects); events it publishes in between are stored without ``Nats-Msg-Id``, so a resend
  after a reconnect in that moment can reach a durable twice (which at-least-once allows).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar

try:
    import nats.errors
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the nats:// transport needs the nats-py package: pip install 'axonbus[nats]'"
    ) from exc

from ..._cloudevents import CloudEvents, is_binary, is_structured, make_source, wire_option
from ..._events import Envelope
from ..._exceptions import (
    ConnectionLost,
    DecodeError,
)
from ..._topics import match
from .._undecodable import Undecodable
from ..base import (
    BrokerTransport,
    float_option,
    int_option,
    redact_url,
    register_transport,
)
from ._conn import Conn, Lost, seed_servers
from ._jetstream import JetStream, JetStreamError, StreamLimits
from ._pack import PACK, frames
from ._rpc import RequestReply
from ._writer import Writer

if TYPE_CHECKING:
    from ..sink import Inbox, Sink, SubscriptionInfo

__all__ = ["NatsTransport"]

logger = logging.getLogger("axonbus")

_FORBIDDEN_NAME = frozenset(" \t\r\n.*>/\\")
PATTERNS_EVERY = 5.0  # seconds between reads of the durable consumers' patterns
# topics, inboxes and queue names are checked by axonbus (no whitespace, so no CR/LF); nats-py
# checking every subject again costs ~8% of plain throughput (nats-py >= 2.16 has the option)
_FAST_PUBLISH: dict[str, Any] = (
    {"skip_subject_validation": True}
    if "skip_subject_validation" in inspect.signature(NatsClient.connect).parameters
    else {}
)


class Binding:
    """A group, durable or responder mailbox this bus feeds from NATS."""

    def __init__(self, kind: str, mailbox: Inbox, subscription: SubscriptionInfo) -> None:
        self.kind = kind  # "group" | "durable" | "respond"
        self.mailbox = mailbox
        self.pattern = mailbox.pattern
        self.group = subscription.group


def check_bus_name(name: str) -> str:
    """The bus name as a subject prefix; ValueError unless it is one NATS token."""
    if not name or _FORBIDDEN_NAME.intersection(name) or not name.isprintable():
        raise ValueError(
            f"bus name {name!r} cannot prefix NATS subjects: it must be one token, without "
            "dots, whitespace, '*', '>', '/' or '\\'"
        )
    return name


def group_queue(group: str, pattern: str) -> str:
    """The NATS queue name of ``group`` on ``pattern`` (a group is per pattern in axonbus)."""
    digest = hashlib.sha1(f"{pattern}\0{group}".encode()).hexdigest()[:12]
    readable = "".join(c if c.isalnum() or c in "-_" else "_" for c in group)[:40]
    return f"g.{readable}.{digest}"


@register_transport
class NatsTransport(Writer, RequestReply, BrokerTransport):
    """The ``nats://`` transport; see the module docstring for subjects and guarantees.

    URL options (query string), besides ``unavailable_timeout`` and ``outbox``:
    ``ack_wait`` (s, 30), ``prefetch`` (durable deliveries fetched ahead per subscription, 256),
    ``stream_max_age`` (s, 604800 = 7 days; 0 = unlimited), ``stream_max_bytes`` (1 GiB;
    -1 = unlimited), ``replicas`` (copies of the stream, and of every durable consumer, in a
    cluster: 1; 3 for a 3-node cluster; also ``stream_replicas``), ``stream_storage``
    (``file`` | ``memory``), ``dupe_window`` (s, 120), ``ping_interval`` (s, 5),
    ``connect_timeout`` (s, 2),
    ``write_timeout`` (s a batch may take to be confirmed before the connection is
    considered dead; default max(2, unavailable_timeout)), ``wire`` (``compact``, the default,
    or ``cloudevents``: every event one NATS message, a CloudEvent in binary content mode,
    attributes as ``ce-`` headers and the data as the body; see ``axonbus._cloudevents``).

    Whatever the ``wire``, a CloudEvent another client publishes on ``{name}.ev.{topic}``
    (binary or structured) reaches the subscribers of that topic, and a CloudEvent request on
    ``{name}.rpc.{topic}`` is answered with a CloudEvent; a message that is neither an axonbus
    envelope nor a CloudEvent is counted in ``undecodable`` and logged once per burst.
    """

    scheme = "nats"
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (
        OSError,
        TimeoutError,
        nats.errors.Error,
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # with credentials: only ever handed to nats-py; several seeds for a cluster
        self._servers = seed_servers(self.address)
        self.address = redact_url(self.address)
        opts = self.options
        self.ack_wait = float_option(opts, "ack_wait", 30.0)
        self.prefetch = int_option(opts, "prefetch", 256)
        self.ping_interval = int_option(opts, "ping_interval", 5)
        self.connect_timeout = int_option(opts, "connect_timeout", 2)
        self.write_timeout = float_option(opts, "write_timeout", max(2.0, self.unavailable_timeout))
        unlimited = opts.get("stream_max_bytes") == "-1" and opts.pop("stream_max_bytes")
        self.wire = wire_option(opts)
        self.limits = StreamLimits(
            max_age=float_option(opts, "stream_max_age", 7 * 24 * 3600.0),
            max_bytes=-1 if unlimited else int_option(opts, "stream_max_bytes", 1 << 30),
            replicas=int_option(opts, "replicas", int_option(opts, "stream_replicas", 1)),
            storage=opts.pop("stream_storage", "file"),
            dupe_window=float_option(opts, "dupe_window", 120.0),
        )
        if not 1 <= self.limits.replicas <= 5:
            raise ValueError("URL option replicas must be 1..5 (JetStream's limit)")
        if self.limits.storage not in ("file", "memory"):
            raise ValueError("URL option stream_storage must be 'file' or 'memory'")
        if self.ack_wait <= 0 or self.prefetch < 1 or self.ping_interval < 1:
            raise ValueError("URL options ack_wait, prefetch and ping_interval must be positive")
        if opts:
            raise ValueError(f"unknown URL option(s) for nats://: {', '.join(sorted(opts))}")
        self.origin = uuid.uuid4().hex[:16]
        self.cloudevents = CloudEvents(make_source("axonbus", self.origin))
        #: messages dropped because they were neither axonbus envelopes nor CloudEvents
        self.undecodable = Undecodable(logger)
        self._reply_root = f"_INBOX.axb{self.origin}."
        self._conns = 0
        self.prefix = ""  # the bus name, known at start
        self.stream = ""
        self._ev = ""  # "{prefix}.ev."
        self._rpc = ""  # "{prefix}.rpc."
        self._conn: Conn | None = None
        self._watched: dict[str, int] = {}  # plain pattern -> local mailboxes on it
        self._echoes: dict[str, bool] = {}  # topic -> a watched pattern matches it
        self._bound: dict[Inbox, Binding] = {}
        self._parked: set[Inbox] = set()  # durable mailboxes that may hold deliveries
        self._sync_lock = asyncio.Lock()
        self._syncs_queued = 0
        self._syncs_done = 0
        self._synced: list[tuple[int, asyncio.Future[None]]] = []
        self._stream_known = False  # the stream exists: batches wait for PubAcks
        # patterns of every durable consumer, as last read from the server: what a publish
        # during an outage must not quietly drop (see durable_topic)
        self._durable_patterns: set[str] = set()
        self._max_payload = 1024 * 1024
        self._cuts: list[int] = []  # ends of the batches that failed since the last success
        self._held: list[Any] = []  # replies written but not yet confirmed by a round trip
        self._held_on: Conn | None = None  # the connection they were written on
        self.js = JetStream(self)
        # counters, for logs and tests
        self.connects = 0  # connections established (1 + reconnects)
        self.slow_consumer_drops = 0
        self.unconfirmed = 0  # events the stream did not confirm (error or no answer)

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<{type(self).__name__} {self.address} {self.prefix or '?'} {state}>"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, bus: Sink) -> None:
        self.prefix = check_bus_name(bus.name)
        self.stream = f"AXONBUS_{self.prefix}"
        self._ev = f"{self.prefix}.ev."
        self._rpc = f"{self.prefix}.rpc."
        self.cloudevents = CloudEvents(make_source(self.prefix, self.origin))
        await super().start(bus)
        self.spawn(self._durables_every(PATTERNS_EVERY), "durable-patterns")
        if self.js.durables:
            # durables subscribed before start exist on the server before a publish can go
            # (a consumer starts at its creation, which takes a while with replicas in a cluster)
            self._resync()
            try:
                await self._wait_synced(self.write_timeout + self.unavailable_timeout)
            except TimeoutError:
                logger.warning("%s: durable consumers not created at start", self)

    async def stop_receiving(self) -> None:
        await super().stop_receiving()  # the durable fetch loops
        conn = self._conn
        if conn is None or not self.connected:
            return
        # stop taking new work (the server stops sending to an inbox nobody listens on; a
        # durable's open pull request would otherwise take a redelivery only to nak it back),
        # and still handle what the server already sent
        subs = [s for mb, s in conn.bound.items() if self._bound[mb].kind != "durable"]
        conn.bound.clear()
        subs += self.js.stop(conn)
        if subs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(*(s.drain() for s in subs), return_exceptions=True),  # type: ignore[no-untyped-call]
                    2.0,
                )
        # ... and the server forgets the durables' pull requests before anything is given back
        # (see JetStream.drop_requests: else a redelivery count can start over)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.js.drop_requests(conn), 2.0)

    async def stored_dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        await self.flush()  # dead letters this bus published are stored
        return await self.js.stored_dead_letters(limit)

    async def drop_dead_letter(self, key: str) -> None:
        await self.js.drop_dead_letter(key)

    async def catch_up(self) -> None:
        durables = [d for d in self.js.durables.values() if d.active]
        if not durables or not self.connected:
            return
        await self.flush()
        await self.js.catch_up(durables)

    async def close(self) -> None:
        # handler calls cancelled by the close are charged before their deliveries go back
        if self.connected:
            held = [*self._parked, *(mb for mb in self.js.durables if mb not in self._parked)]
            await self.record_interrupted(held)  # each mailbox once: one write per call
        # deliveries still queued in a closed durable mailbox go back to the server at once
        for mb in list(self._parked):
            self.js.release(mb)
        await super().close()

    async def flush(self) -> None:
        """Wait until the broker confirmed everything queued so far; bounded, unlike the base.

        :class:`ConnectionLost` when that does not happen within ``write_timeout +
        unavailable_timeout`` (with ``on_unavailable="log"``: logged instead).
        """
        bound = self.write_timeout + self.unavailable_timeout
        if self._held or self._written < self._queued:
            # a round trip, to confirm the replies held (and those queued: a batch of nothing
            # but replies would not wait for one)
            self.send_control(("mark",))
        try:
            await asyncio.wait_for(super().flush(), bound)
        except TimeoutError:
            if self.bus is not None and self.bus.on_unavailable == "log":
                logger.warning("%s: flush not confirmed within %ss", self, bound)
                return
            raise ConnectionLost(
                f"{self.address} did not confirm the events within {bound}s"
            ) from None

    # -- connecting ----------------------------------------------------------------------------

    async def connect(self) -> None:
        nc = NatsClient()
        self._conns += 1
        conn = Conn(nc, f"{self._reply_root}{self._conns}")

        async def on_closed() -> None:
            self._lost(conn, nc.last_error or Lost("connection closed"))

        async def on_error(exc: Exception) -> None:
            self._driver_error(exc)

        try:
            await nc.connect(
                servers=self._servers,
                name=f"axonbus:{self.prefix}:{self.origin}",
                allow_reconnect=False,  # the base reconnects, then restores everything
                # nats-py retries a refused connect by itself, every reconnect_time_wait, until
                # it has tried max_reconnect_attempts + 1 times: once more, at once, then fail
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                # past pending_size a publish waits for the socket, unbounded on a silent
                # network; the outbox already bounds what is buffered, and the round trip after
                # each batch is what waits (for at most write_timeout)
                pending_size=1 << 30,
                **_FAST_PUBLISH,
                connect_timeout=self.connect_timeout,
                ping_interval=self.ping_interval,
                max_outstanding_pings=2,
                disconnected_cb=on_closed,
                closed_cb=on_closed,
                error_cb=on_error,
            )
            self._max_payload = nc.max_payload
            await nc.subscribe(f"{conn.inbox}.*", cb=self._on_reply(conn))
            advisories = f"$JS.EVENT.ADVISORY.STREAM.*.{self.stream}"
            await nc.subscribe(advisories, cb=self._on_advisory)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self.connects += 1
        # durable consumers persist on the server: their fetch loops re-check them in the
        # background, so a slow JetStream does not hold up the reconnect
        await self._sync(conn, ensure=False)
        self.spawn(self._probe_stream(conn), "probe")
        self.js.kick_all()
        if self._held:
            self.send_control(("mark",))  # the replies held go again on this connection

    def refusal(self, exc: BaseException) -> str | None:
        # nats-py reports a refused login as a plain nats.errors.Error, like an outage
        text = str(exc).lower()
        if isinstance(exc, nats.errors.AuthorizationError) or (
            isinstance(exc, nats.errors.Error)
            and ("authorization" in text or "authentication" in text)
        ):
            return f"{self.address} refused the connection: {self._describe(exc)}"
        return super().refusal(exc)

    async def _probe_stream(self, conn: Conn) -> None:
        if await self.js.stream_exists(conn) and self._conn is conn:
            self._stream_known = True
            await self._read_durable_patterns(conn)

    # -- durable topics: what on_unavailable="log" must not drop -------------------------------

    def durable_topic(self, topic: str) -> bool:
        if any(match(d.pattern, topic) for d in self.js.durables.values()):
            return True
        return any(match(p, topic) for p in self._durable_patterns)

    async def _read_durable_patterns(self, conn: Conn) -> None:
        try:
            self._durable_patterns = await self.js.durable_patterns(conn)
        except (JetStreamError, TimeoutError, Lost) as exc:
            logger.debug("%s: could not list the durable consumers: %r", self, exc)

    async def _durables_every(self, interval: float) -> None:
        """Keep the durable patterns of other processes fresh (read while connected)."""
        while True:
            await asyncio.sleep(interval)
            conn = self._conn
            if conn is not None and self.connected and self._stream_known:
                await self._read_durable_patterns(conn)

    async def disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.closing = True
            conn.mark_lost(Lost("disconnected"))
            await conn.close()

    def _lost(self, conn: Conn, exc: BaseException) -> None:
        """nats-py closed ``conn``: unless on purpose, that is an outage."""
        if conn.closing or conn.lost.done():
            return
        conn.mark_lost(exc)
        self.js.kick_all()
        if self._conn is conn and self._writer is not None and not self._closing:
            self.spawn(self._recover(conn, exc), "reconnect")

    async def _recover(self, conn: Conn, exc: BaseException) -> None:
        if not self.connected:  # a reconnect is under way; see whether it ends on ``conn``
            assert self._up is not None
            await self._up.wait()
        if self._conn is conn:
            await self._outage(exc)

    def _driver_error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            self.slow_consumer_drops += 1
            drops = self.slow_consumer_drops
            if drops in (1, 10, 100, 1000) or not drops % 10000:
                logger.warning(
                    "%s: subscriber on %s too slow, nats-py dropped messages (%d so far)",
                    self,
                    exc.subject,
                    drops,
                )
            return
        logger.debug("%s: nats-py reported %r", self, exc)

    def current(self) -> Conn:
        conn = self._conn
        if conn is None or not self.connected or conn.lost.done():
            raise Lost("not connected")
        return conn

    async def wait_connected(self, timeout: float | None) -> Conn:
        """The live connection, waiting up to ``timeout`` for a reconnect; else ConnectionLost."""
        if self._conn is not None and self.connected and not self._conn.lost.done():
            return self._conn
        if self._up is None or self._closing:
            raise ConnectionLost(f"{self.address}: the bus is not connected")
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._up.wait()
                    if self._conn is not None and not self._conn.lost.done():
                        return self._conn
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise ConnectionLost(f"{self.address} unreachable for {timeout}s") from None

    # -- subscriptions: desired state here, made real by _sync ---------------------------------

    def _resync(self) -> None:
        self._syncs_queued += 1
        self.send_control(("sync", self._syncs_queued))

    def _wake_synced(self) -> None:
        still = []
        for target, fut in self._synced:
            if self._syncs_done >= target:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((target, fut))
        self._synced = still

    async def _wait_synced(self, timeout: float | None) -> None:
        """Until the subscriptions registered so far reached the server (a request needs its
        own bus's new responder to be there)."""
        target = self._syncs_queued
        if self._syncs_done >= target:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._synced.append((target, fut))
        await asyncio.wait_for(fut, timeout)

    def watch(self, pattern: str) -> None:
        count = self._watched.get(pattern, 0)
        self._watched[pattern] = count + 1
        if count == 0:
            self._echoes.clear()
            self._resync()

    def unwatch(self, pattern: str) -> None:
        count = self._watched.get(pattern, 0) - 1
        if count > 0:
            self._watched[pattern] = count
            return
        self._watched.pop(pattern, None)
        self._echoes.clear()
        self._resync()

    def bind(self, mailbox: Inbox, subscription: SubscriptionInfo) -> None:
        assert mailbox.key is not None
        binding = Binding(mailbox.key[0], mailbox, subscription)
        self._bound[mailbox] = binding
        if binding.kind == "durable":
            self.js.add(mailbox, subscription)
            self._parked.add(mailbox)
        self._resync()

    def unbind(self, mailbox: Inbox) -> None:
        binding = self._bound.pop(mailbox, None)
        if binding is None:
            return
        if binding.kind == "durable":
            self.js.remove(mailbox)
        self._resync()

    async def _sync(self, conn: Conn, *, ensure: bool) -> None:
        """Make ``conn``'s subscriptions what watch/bind asked for (idempotent).

        With ``ensure`` a durable's stream and consumer exist on the server when this returns,
        so the events published after subscribe reach it.
        """
        async with self._sync_lock:
            nc = conn.nc
            for pattern in [p for p in conn.plain if p not in self._watched]:
                await conn.plain.pop(pattern).unsubscribe()
            for pattern in list(self._watched):  # watch() may run while this awaits
                if pattern not in conn.plain:
                    conn.plain[pattern] = await nc.subscribe(
                        self._ev + pattern, cb=self._on_plain(pattern)
                    )
            for mb in [mb for mb in conn.bound if mb not in self._bound]:
                await conn.bound.pop(mb).unsubscribe()
            for mb, binding in list(self._bound.items()):
                if not self.receiving:
                    break  # the bus is closing: take no new work
                if mb not in self._bound:
                    continue  # unbound while this awaited
                if binding.kind == "durable":
                    await self.js.attach(conn, self.js.durables[mb], ensure=ensure)
                elif mb not in conn.bound:
                    if binding.kind == "respond":
                        subject = self._rpc + binding.pattern
                        queue, cb = f"{self.prefix}.rpc", self._on_request(mb)
                    else:
                        assert binding.group is not None
                        subject = self._ev + binding.pattern
                        queue, cb = group_queue(binding.group, binding.pattern), self._on_group(mb)
                    conn.bound[mb] = await nc.subscribe(subject, queue=queue, cb=cb)
            await self.js.detach_stale(conn)

    # -- inbound -------------------------------------------------------------------------------

    def decode(
        self,
        data: bytes,
        subject: str,
        headers: dict[str, str] | None = None,
        topic: str | None = None,
    ) -> Envelope | None:
        """The envelope of one message: a CloudEvent (binary mode, or structured JSON) from
        any client, or an axonbus envelope; None (counted and logged) when it is neither.
        A CloudEvent's topic is the subject's (``topic`` for a reply), else its subject."""
        assert self.bus is not None
        try:
            if headers and is_binary(headers):
                topic = topic or self._topic_of(subject)
                return self.cloudevents.from_binary(headers, data, topic)
            if is_structured(data):
                topic = topic or self._topic_of(subject)
                return self.cloudevents.from_structured(data, topic)
            return self.bus.wire_codec.decode(data)
        except DecodeError as exc:
            self.undecodable.report(str(self), subject, str(exc))
            return None

    def _topic_of(self, subject: str) -> str | None:
        """The topic of an event or request subject (None: another subject, e.g. a reply)."""
        for prefix in (self._ev, self._rpc):
            if subject.startswith(prefix):
                return subject[len(prefix) :]
        return None

    def _undecodable(self, msg: Msg, exc: DecodeError) -> None:
        self.undecodable.report(str(self), msg.subject, str(exc))

    def accepts(self, pattern: str) -> Callable[[str, Envelope], bool]:
        """A check that an event NATS delivered on ``pattern`` is one axonbus would deliver.

        NATS matched the subject already; what is left is that the envelope's topic is the
        subject's (cheaper than matching again) and that a wildcard first token does not take
        a system topic. Same answer as ``_topics.match(pattern, env.topic)``.
        """
        ev = self._ev
        skip = len(ev)
        wild_first = pattern.split(".", 1)[0] in ("*", ">")

        def accepts(subject: str, env: Envelope) -> bool:
            topic = env.topic
            if subject[skip:] != topic or not subject.startswith(ev):
                return match(pattern, topic)  # a foreign publisher: check the long way
            return not (wild_first and topic[:1] == "$")

        return accepts

    def unpack(self, msg: Msg) -> list[Envelope]:
        """The envelopes of a pack (see ``_pack``); one that does not decode is
        logged and skipped."""
        assert self.bus is not None
        decode = self.bus.wire_codec.decode
        found, whole = frames(msg.data)
        if not whole:
            self.undecodable.report(str(self), msg.subject, "the rest of a malformed pack")
        envelopes = []
        for data in found:
            try:
                envelopes.append(decode(data))
            except DecodeError as exc:
                self._undecodable(msg, exc)
        return envelopes

    def _on_plain(self, pattern: str) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        root = self._reply_root
        accepts = self.accepts(pattern)
        bus = self.bus
        assert bus is not None
        decode = bus.wire_codec.decode
        receive = bus.receive

        async def on_plain(msg: Msg) -> None:
            if msg.reply.startswith(root):
                return  # our own publish: this bus already delivered it locally
            headers = msg.headers
            if headers:
                if PACK in headers:
                    subject = msg.subject
                    for env in self.unpack(msg):
                        if accepts(subject, env):
                            await receive(pattern, env)
                    return
                found = self.decode(msg.data, msg.subject, headers)
                if found is not None and accepts(msg.subject, found):
                    await receive(pattern, found)
                return
            data = msg.data
            if is_structured(data):
                found = self.decode(data, msg.subject)
                if found is not None and accepts(msg.subject, found):
                    await receive(pattern, found)
                return
            try:
                env = decode(data)
            except DecodeError as exc:
                self._undecodable(msg, exc)
                return
            if accepts(msg.subject, env):
                await receive(pattern, env)

        return on_plain

    def _on_group(self, mb: Inbox) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        accepts = self.accepts(mb.pattern)
        bus = self.bus
        assert bus is not None

        async def on_group(msg: Msg) -> None:
            headers = msg.headers
            if headers and PACK in headers:  # a pack goes to one member, whole
                envelopes = self.unpack(msg)
            else:
                env = self.decode(msg.data, msg.subject, headers)
                envelopes = [env] if env is not None else []
            for env in envelopes:
                # at-most-once: a closed mailbox drops it
                if accepts(msg.subject, env) and not await bus.put(mb, env):
                    return

        return on_group


@register_transport
class TlsNatsTransport(NatsTransport):
    """``tls://host:4222``: the same transport over TLS (nats-py's default SSL context)."""

    scheme = "tls"
