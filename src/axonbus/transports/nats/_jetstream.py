"""``durable=`` subscriptions of the ``nats://`` transport: JetStream pull consumers.

One stream per bus name, ``AXONBUS_{name}`` on ``{name}.ev.>``, found or created when the first
durable subscription binds: interest retention (an event is kept only until every durable
consumer whose filter matches it has acknowledged it), bounded by ``stream_max_age`` and
``stream_max_bytes`` (oldest dropped first), duplicate window ``dupe_window`` for
``Nats-Msg-Id`` de-duplication.

One durable consumer per axonbus durable name (sanitised to a consumer name), filtered on the
subscription's pattern, explicit ack, ``ack_wait`` from the URL, starting at its creation
(deliver new), ``max_deliver`` 1000 or 10 times the retry budget (a backstop only: axonbus
counts handler calls itself, in the stream ``AXONBUS_{name}_ATTEMPTS``, one message per
delivery that a handler started after a redelivery; fetches no handler started are not
charged). Each bus pulls at most 4 events per concurrent handler ahead (at least 16, and at
most ``prefetch`` and its mailbox) with pull requests answered on the connection's inbox, so
deliveries reach the mailbox as they arrive and the subscription's workers handle them with
its ``concurrency``.

A delivery's :class:`Inbound` acks (``+ACK``) once the subscription settled it, naks with a
delay (``-NAK {"delay": ns}``) for a retry, and is marked in progress (``+WPI``) every
``ack_wait / 3`` while this bus holds it, so queued or long-running deliveries are not
redelivered elsewhere behind its back; a bus that dies stops doing that and the server
redelivers after ``ack_wait``. A bus that closes, or unsubscribes, naks what it still holds.

A pack (``_pack``) is one JetStream delivery of several events: each event gets a
:class:`PackPart` tracker (retried in-process, no nak of its own); the pack is acked once all are
settled, naked whole when the bus lets go of it, and counts as its events in the window.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from ..._exceptions import DecodeError, TransportError
from ..._retry import Retry
from ..._topics import match
from .._frames import frames
from ..base import backoff_delays, prefetch_limit
from ..tracker import Inbound
from ._conn import Conn, Lost
from ._pack import PACK, Pack, PackPart

if TYPE_CHECKING:
    from ..._events import Envelope
    from ..sink import Inbox, SubscriptionInfo
    from ._transport import NatsTransport

__all__ = ["Durable", "JetStream", "JetStreamError", "StreamLimits", "consumer_name", "nak_payload"]

logger = logging.getLogger("axonbus")

API = "$JS.API"
API_TIMEOUT = 5.0
PULL_EXPIRES = 5.0  # a pull request lives this long on the server...
PULL_GRACE = 2.0  # ...and is given up locally this much later (the server lost it)
MAX_DELIVER = 1000
DEAD_LETTERS = "axonbus_dead_letters"  # the consumer that keeps dead letters in the stream
SETTLED = 0  # the record of an envelope of a pack that was settled (handled or dead-lettered)
ATTEMPTS_KEPT = 86_400.0  # seconds a record of handler calls is kept without its ack
NS = 1_000_000_000


def nak_payload(delay: float) -> bytes:
    """A nak asking for redelivery after ``delay`` seconds.

    Never a bare ``-NAK``: nats-server 2.9 resets a message's delivery count when a bare nak's
    immediate redelivery meets a pull request whose client is gone (measured), and the count
    is the attempt number axonbus relies on. A delay of at least 1 ms takes another path.
    """
    return b'-NAK {"delay": %d}' % max(int(delay * NS), 1_000_000)


class JetStreamError(TransportError):
    """The JetStream API answered with an error (or JetStream is not there)."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"JetStream error {code}/{err_code}: {description}")
        self.code = code
        self.err_code = err_code
        self.description = description


#: JetStream's err_code for "stream not found"
STREAM_NOT_FOUND = 10059


@dataclass(frozen=True)
class StreamLimits:
    max_age: float  # seconds, 0 = unlimited
    max_bytes: int  # -1 = unlimited
    replicas: int
    storage: str
    dupe_window: float


def consumer_name(durable: str) -> str:
    """A JetStream consumer name for an axonbus durable name (any string)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in durable)
    if safe == durable and len(safe) <= 64:
        return safe
    return f"{safe[:48]}_{hashlib.sha1(durable.encode()).hexdigest()[:10]}"


class Durable:
    """One bound durable subscription: its consumer, what this bus holds, its pull state."""

    def __init__(self, ident: int, mailbox: Inbox, name: str, retry: Retry, window: int):
        self.id = ident
        self.mailbox = mailbox
        self.pattern = mailbox.pattern
        # whether a delivery is one axonbus would deliver (NatsTransport.accepts, set on attach)
        self.accepts: Callable[[str, Envelope], bool] = lambda _, env: match(
            self.pattern, env.topic
        )
        self.name = name
        self.consumer = consumer_name(name)
        # a backstop only: fetches that no handler started raise the server's count, and
        # axonbus counts handler calls itself (see Inbound)
        self.max_deliver = max(MAX_DELIVER, 10 * retry.attempts)
        self.window = window
        self.threshold = max(1, window // 2)
        # ack subject -> the tracker of a delivery (a Pack for a pack) this bus holds
        self.outstanding: dict[str, Inbound | Pack] = {}
        self.held = 0  # unsettled envelopes in them: what the window counts
        self.per_delivery = 1  # envelopes in the last delivery: a pack holds several
        self.kick = asyncio.Event()
        self.task: asyncio.Task[Any] | None = None
        self.active = True
        self.wants_room = False
        self.arriving = 0  # deliveries received and not yet in the mailbox
        # per connection: reset when the connection changes
        self.conn: Conn | None = None
        self.sub: NatsSubscription | None = None
        self.ensured = False
        self.open: str | None = None  # the pull request in progress
        self.credits = 0
        self.deadline = 0.0
        self._requests = 0

    def next_request(self) -> str:
        self._requests += 1
        return str(self._requests)


class JetStream:
    """The stream and the durable consumers of one transport."""

    def __init__(self, transport: NatsTransport) -> None:
        self.t = transport
        self.durables: dict[Inbox, Durable] = {}
        self._ids = 0
        self._attempts_on: Conn | None = None  # the connection the attempts stream is known on

    # -- bind / unbind (synchronous: the transport's _sync makes them real) --------------------

    def add(self, mailbox: Inbox, subscription: SubscriptionInfo) -> Durable:
        assert subscription.durable is not None
        self._ids += 1
        window = min(prefetch_limit(mailbox, subscription), self.t.prefetch)
        durable = Durable(
            self._ids, mailbox, subscription.durable, subscription.retry or Retry(), window
        )
        self.durables[mailbox] = durable
        return durable

    def remove(self, mailbox: Inbox) -> None:
        durable = self.durables.pop(mailbox, None)
        if durable is None:
            return
        durable.active = False
        durable.kick.set()
        if durable.task is not None:
            durable.task.cancel()
        self.release(mailbox)

    def release(self, mailbox: Inbox) -> None:
        """Nak every delivery still queued in ``mailbox``: the server redelivers it now."""
        for env in mailbox.queue:
            tracker = env.tracker
            if isinstance(tracker, PackPart):
                tracker.pack.release(nak_payload(0))  # the whole pack: others in it too
            elif isinstance(tracker, Inbound) and not tracker.done:
                tracker.defer(0)
        mailbox.queue.clear()

    def stop(self, conn: Conn) -> list[NatsSubscription]:
        """The inbox subscriptions on ``conn``, to drain: the bus takes no more deliveries."""
        subs = [d.sub for d in self.durables.values() if d.conn is conn and d.sub is not None]
        conn.durable_subs.clear()
        for durable in self.durables.values():
            durable.sub = None
        return subs

    async def drop_requests(self, conn: Conn) -> None:
        """Have the server drop this bus's open pull requests on ``conn``, whose inboxes
        :meth:`stop` just unsubscribed, before the bus gives back what it holds.

        nats-server 2.9 resets a message's delivery count to 1 when the redelivery of a nak
        with a delay finds no pull request but one whose client no longer listens (measured on
        2.9.10: every time while that client is still connected). That count is what tells the
        next bus to read the attempt record, so a handler call the close interrupted would not
        be charged and a handler that never finishes would never be dead-lettered. Reading the
        consumer's info makes the server drop such requests (it checks them for interest).
        """
        durables = [d for d in self.durables.values() if d.conn is conn and d.open is not None]
        if not durables:
            return

        async def drop(durable: Durable) -> None:
            try:
                await self.api(conn, f"CONSUMER.INFO.{self.t.stream}.{durable.consumer}")
            except (JetStreamError, Lost, TimeoutError) as exc:  # its count may be reset
                logger.debug("%s: durable %r: %r", self.t, durable.name, exc)
            durable.open = None

        await asyncio.gather(*(drop(d) for d in durables))

    def kick_all(self) -> None:
        for durable in self.durables.values():
            durable.kick.set()

    # -- per connection ------------------------------------------------------------------------

    async def attach(self, conn: Conn, durable: Durable, *, ensure: bool) -> None:
        """Make ``durable`` live on ``conn``: inbox subscription, consumer, fetch loop."""
        if durable.conn is not conn:
            durable.conn, durable.sub, durable.ensured, durable.open = conn, None, False, None
            durable.accepts = self.t.accepts(durable.pattern)
        if durable.sub is None:
            subject = f"{conn.inbox}.p{durable.id}.*"
            durable.sub = await conn.nc.subscribe(subject, cb=self._on_delivery(conn, durable))
        if ensure and not durable.ensured:
            try:
                await self.ensure(conn, durable)
            except (JetStreamError, TimeoutError) as exc:
                logger.warning(
                    "%s: durable %r not ready yet (retrying): %s", self.t, durable.name, exc,
                    extra={"subscription": durable.name},
                )  # fmt: skip
        if durable.task is None and self.t.receiving:
            durable.task = self.t.spawn_reader(self._pull(durable), f"durable:{durable.name}")

    async def detach_stale(self, conn: Conn) -> None:
        """Unsubscribe the inboxes of durables that were unbound."""
        live = {d.sub for d in self.durables.values() if d.conn is conn}
        for sub in [s for s in conn.durable_subs if s not in live]:
            conn.durable_subs.discard(sub)
            await sub.unsubscribe()
        conn.durable_subs.update(s for s in live if s is not None)

    async def api(self, conn: Conn, subject: str, body: dict[str, Any] | None = None) -> Any:
        payload = json.dumps(body).encode() if body is not None else b""
        return await self.ask(conn, f"{API}.{subject}", payload)

    async def ask(self, conn: Conn, subject: str, payload: bytes) -> Any:
        """Publish ``payload`` with a reply subject and return JetStream's decoded answer
        (an API response, or the PubAck of a stored message); :class:`JetStreamError` for an
        error."""
        token = conn.token("r")
        fut: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        conn.waiters[token] = fut
        try:
            try:
                await conn.nc.publish(subject, payload, f"{conn.inbox}.{token}")
            except (nats.errors.Error, OSError) as exc:
                raise Lost(f"JetStream API request failed: {exc!r}") from exc
            msg = await asyncio.wait_for(fut, API_TIMEOUT)  # fails with Lost if conn goes
        finally:
            conn.waiters.pop(token, None)
        if msg.headers and msg.headers.get("Status") == "503":
            raise JetStreamError(
                503, 0, "JetStream is not enabled on this server (nats-server -js)"
            )
        resp = json.loads(msg.data)
        err = resp.get("error")
        if err:
            raise JetStreamError(
                err.get("code", 0), err.get("err_code", 0), err.get("description", "")
            )
        return resp

    async def stream_exists(self, conn: Conn) -> bool:
        try:
            await self.api(conn, f"STREAM.INFO.{self.t.stream}")
        except (JetStreamError, TimeoutError):
            return False
        return True

    async def stream_missing(self, conn: Conn) -> bool:
        """Whether the server says the stream does not exist (or JetStream is off); False
        when it exists or the answer is not that (a cluster without a leader, a timeout)."""
        try:
            # briefly: a stream without a leader does not answer, and the batch waits on this
            await asyncio.wait_for(self.api(conn, f"STREAM.INFO.{self.t.stream}"), 1.0)
        except JetStreamError as exc:
            return exc.code in (404, 503) and exc.err_code in (0, STREAM_NOT_FOUND)
        except TimeoutError:
            return False
        return False

    async def durable_patterns(self, conn: Conn) -> set[str]:
        """The patterns of every durable consumer on the stream, in any process."""
        events = f"{self.t.prefix}.ev."
        found: set[str] = set()
        offset = 0
        while True:
            resp = await self.api(conn, f"CONSUMER.LIST.{self.t.stream}", {"offset": offset})
            consumers = resp.get("consumers") or []
            for info in consumers:
                config = info.get("config", {})
                filters = config.get("filter_subjects") or [config.get("filter_subject") or ""]
                found.update(f[len(events) :] for f in filters if f.startswith(events))
            offset += len(consumers)
            if not consumers or offset >= resp.get("total", 0):
                return found

    async def ensure_stream(self, conn: Conn) -> None:
        if conn.stream_ok:
            return
        t = self.t
        subjects = f"{t.prefix}.ev.>"
        try:
            info = await self.api(conn, f"STREAM.INFO.{t.stream}")
        except JetStreamError as exc:
            if exc.code != 404:
                raise
            info = await self._create_stream(conn, subjects)
        if subjects not in info.get("config", {}).get("subjects", []):
            raise JetStreamError(
                400, 0, f"stream {t.stream} exists but does not capture {subjects}"
            )
        await self._keep_dead_letters(conn)
        conn.stream_ok = True
        t.stream_found()

    # -- dead letters: kept in the stream by a consumer that nobody pulls from ----------------

    @property
    def dead_letters_subject(self) -> str:
        return f"{self.t.prefix}.ev.{self.t.DEAD_LETTER_TOPIC}"

    async def _keep_dead_letters(self, conn: Conn) -> None:
        """A durable consumer on ``$bus.dead_letter``: with interest retention, the stream keeps
        every dead letter until it is deleted (replayed)."""
        config = {
            "durable_name": DEAD_LETTERS,
            "description": "axonbus: keeps dead letters until they are replayed",
            "deliver_policy": "new",
            "ack_policy": "explicit",
            "filter_subject": self.dead_letters_subject,
        }
        body = {"stream_name": self.t.stream, "config": config}
        await self.api(conn, f"CONSUMER.DURABLE.CREATE.{self.t.stream}.{DEAD_LETTERS}", body)

    async def stored_dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        t = self.t
        out: list[tuple[str, bytes]] = []
        seq = 1
        while len(out) < limit:
            try:
                resp = await self.api(
                    t.current(),
                    f"STREAM.MSG.GET.{t.stream}",
                    {"seq": seq, "next_by_subj": self.dead_letters_subject},
                )
            except JetStreamError as exc:
                if exc.code == 404:  # no (more) dead letters, or no stream at all
                    return out
                raise
            message = resp["message"]
            seq = int(message["seq"])
            data = base64.b64decode(message.get("data") or b"")
            headers = base64.b64decode(message.get("hdrs") or b"")
            if PACK.encode() in headers:  # several dead letters stored as one message
                parts, _ = frames(data, 0)
                out.extend((str(seq), part) for part in parts)
            elif b"ce-specversion" in headers.lower():  # wire=cloudevents: binary mode
                out.append((str(seq), self._as_compact(headers, data)))
            else:
                out.append((str(seq), data))
            seq += 1
        return out

    def _as_compact(self, block: bytes, data: bytes) -> bytes:
        """A binary-mode CloudEvent stored in the stream, in the bus codec's form (the bus
        reads dead letters with its codec)."""
        t = self.t
        assert t.bus is not None
        headers = {}
        for line in block.decode(errors="replace").split("\r\n")[1:]:
            key, sep, value = line.partition(":")
            if sep:
                headers[key.strip()] = value.strip()
        try:
            return t.bus.wire_codec.encode(t.cloudevents.from_binary(headers, data))
        except (DecodeError, TypeError, ValueError):
            return data  # the bus's decoder says what is wrong with it

    async def drop_dead_letter(self, key: str) -> None:
        t = self.t
        try:
            await self.api(t.current(), f"STREAM.MSG.DELETE.{t.stream}", {"seq": int(key)})
        except JetStreamError as exc:
            if exc.code != 404:  # already gone
                raise

    async def _create_stream(self, conn: Conn, subjects: str) -> Any:
        limits = self.t.limits
        dupe = limits.dupe_window if not limits.max_age else min(limits.dupe_window, limits.max_age)
        config = {
            "name": self.t.stream,
            "subjects": [subjects],
            "retention": "interest",
            "max_age": int(limits.max_age * NS),
            "max_bytes": limits.max_bytes,
            "storage": limits.storage,
            "num_replicas": limits.replicas,
            "discard": "old",
            "duplicate_window": int(dupe * NS),
        }
        try:
            info = await self.api(conn, f"STREAM.CREATE.{self.t.stream}", config)
        except JetStreamError as exc:
            if exc.err_code != 10058:  # "stream name already in use": another bus won the race
                raise
            return await self.api(conn, f"STREAM.INFO.{self.t.stream}")
        logger.info("%s: created JetStream stream %s", self.t, self.t.stream)
        return info

    # -- handler calls recorded (see Inbound): a stream of one message per subject ----------

    @property
    def attempts_stream(self) -> str:
        return f"{self.t.stream}_ATTEMPTS"

    def attempts_subject(self, durable: Durable, seq: int, part: int | None) -> str:
        tail = f"{seq}" if part is None else f"{seq}.{part}"
        return f"{self.t.prefix}.attempts.{durable.consumer}.{tail}"

    async def _ensure_attempts(self, conn: Conn) -> None:
        if self._attempts_on is conn:
            return
        config = {
            "name": self.attempts_stream,
            "subjects": [f"{self.t.prefix}.attempts.>"],
            "retention": "limits",
            "max_msgs_per_subject": 1,
            "max_age": int(ATTEMPTS_KEPT * NS),
            "storage": self.t.limits.storage,
            "num_replicas": self.t.limits.replicas,
            "discard": "old",
        }
        try:
            await self.api(conn, f"STREAM.CREATE.{self.attempts_stream}", config)
        except JetStreamError as exc:
            if exc.err_code != 10058:  # already there (created by any bus of this name)
                raise
        self._attempts_on = conn

    async def record_attempt(self, subject: str, next_attempt: int) -> None:
        conn = self.t.current()
        await self._ensure_attempts(conn)
        await self.ask(conn, subject, str(next_attempt).encode())

    async def note_settled(self, subject: str) -> None:
        try:
            await self.record_attempt(subject, SETTLED)
        except (JetStreamError, Lost, TimeoutError) as exc:  # handled again at worst
            logger.debug("%s: could not note %s settled: %r", self.t, subject, exc)

    async def recorded_attempt(self, subject: str) -> int:
        """The number of the next handler call recorded under ``subject`` (1: none; 0: it
        was settled already, in an earlier delivery of its pack)."""
        conn = self.t.current()
        try:
            resp = await self.api(
                conn, f"STREAM.MSG.GET.{self.attempts_stream}", {"last_by_subj": subject}
            )
        except JetStreamError as exc:
            if exc.code == 404:  # no record (or no stream yet): no handler call recorded
                return 1
            raise
        return int(base64.b64decode(resp["message"]["data"]) or b"1")

    async def forget_attempts(self, subject: str) -> None:
        try:
            await self.api(
                self.t.current(), f"STREAM.PURGE.{self.attempts_stream}", {"filter": subject}
            )
        except (JetStreamError, Lost, TimeoutError) as exc:  # kept ATTEMPTS_KEPT at most anyway
            logger.debug("%s: could not forget %s: %r", self.t, subject, exc)

    def tracker_hooks(
        self, durable: Durable, msg: Msg, part: int | None
    ) -> tuple[Callable[[int], Coroutine[Any, Any, None]], Callable[[], Coroutine[Any, Any, int]]]:
        """``record`` and ``lookup`` for a delivery (or one envelope of a pack)."""
        subject = self.attempts_subject(durable, self._seq(msg), part)

        async def record(started: int) -> None:
            await self.record_attempt(subject, started + 1)

        async def lookup() -> int:
            return await self.recorded_attempt(subject)

        return record, lookup

    async def ensure(self, conn: Conn, durable: Durable) -> None:
        """Find or create the stream and the durable consumer (idempotent)."""
        await self.ensure_stream(conn)
        t = self.t
        config = {
            "durable_name": durable.consumer,
            "description": f"axonbus durable {durable.name!r} on {durable.pattern!r}",
            "deliver_policy": "new",
            "ack_policy": "explicit",
            "ack_wait": int(t.ack_wait * NS),
            "max_deliver": durable.max_deliver,
            "filter_subject": f"{t.prefix}.ev.{durable.pattern}",
            "replay_policy": "instant",
        }
        body = {"stream_name": t.stream, "config": config}
        await self.api(conn, f"CONSUMER.DURABLE.CREATE.{t.stream}.{durable.consumer}", body)
        durable.ensured = True

    # -- deliveries ----------------------------------------------------------------------------

    def _on_delivery(
        self, conn: Conn, durable: Durable
    ) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        skip = len(f"{conn.inbox}.p{durable.id}.")

        async def on_delivery(msg: Msg) -> None:
            token = msg.subject[skip:]
            reply = msg.reply
            if not reply.startswith("$JS.ACK."):
                # a status: 408 the request expired, 409 it ended (or the consumer went)
                if token == durable.open:
                    durable.open = None
                    durable.kick.set()
                headers = msg.headers or {}
                if headers.get("Status") == "409" and "Deleted" in headers.get("Description", ""):
                    durable.ensured = False
                return
            # a delivery carries the stream's subject, not the request's: count it against
            # the request in progress (one at a time)
            if durable.open is not None:
                durable.credits -= 1
                if durable.credits <= 0:
                    durable.open = None
                    durable.kick.set()
            durable.arriving += 1
            try:
                await self._deliver(durable, msg)
            finally:
                durable.arriving -= 1

        return on_delivery

    async def catch_up(self, durables: list[Durable]) -> None:
        """Wait until ``durables`` received every event stored before now (see
        :meth:`~axonbus.transports.base.BrokerTransport.hand_over`)."""
        t = self.t
        try:
            info = await self.api(t.current(), f"STREAM.INFO.{t.stream}")
        except JetStreamError:
            return  # no stream: nothing was stored for a durable
        last = int(info.get("state", {}).get("last_seq", 0))
        for durable in durables:
            while durable.active and t.receiving:
                try:
                    state = await self.api(
                        t.current(), f"CONSUMER.INFO.{t.stream}.{durable.consumer}"
                    )
                except JetStreamError:
                    break  # the consumer does not exist (yet): nothing was kept for it
                seen = int(state.get("delivered", {}).get("stream_seq", 0))
                undelivered = int(state.get("num_pending", 0))
                queued = durable.sub.pending_msgs if durable.sub is not None else 0
                if not queued and not durable.arriving:
                    if seen >= last:
                        break
                    # in a cluster the consumer's leader may not have applied the newest
                    # messages yet (num_pending 0 too early): the stream's leader says whether
                    # one for this durable is stored after what it delivered
                    if not undelivered and not await self._stored_for(durable, seen, last):
                        break
                durable.kick.set()  # pull now, if the window has room
                await asyncio.sleep(0.02)

    async def _stored_for(self, durable: Durable, after: int, upto: int) -> bool:
        """Whether the stream holds a message for ``durable`` in ``(after, upto]``."""
        t = self.t
        body = {"seq": after + 1, "next_by_subj": f"{t.prefix}.ev.{durable.pattern}"}
        try:
            found = await self.api(t.current(), f"STREAM.MSG.GET.{t.stream}", body)
        except JetStreamError:
            return False  # none (10037 no message found)
        return int(found.get("message", {}).get("seq", 0)) <= upto

    async def _give_back(self, durable: Durable, reply: str) -> None:
        """Nak a delivery this bus no longer takes, straight on its connection: while the bus
        closes, its outbox has been flushed and its writer stops, yet the server may hand an
        event that was just naked straight back to this bus's open pull; queued behind the
        outbox, that nak would never leave and the event would wait ``ack_wait`` (30 s)."""
        conn = durable.conn
        if conn is None or conn.lost.done():
            self.t.send_control(("raw", reply, nak_payload(0), None))
            return
        try:
            await conn.nc.publish(reply, nak_payload(0))  # nats-py flushes it at close
        except nats.errors.Error as exc:  # closed meanwhile: the server redelivers at ack_wait
            logger.debug("%s: could not give back a delivery: %r", self.t, exc)

    async def _deliver(self, durable: Durable, msg: Msg) -> None:
        t = self.t
        reply = msg.reply
        if not durable.active or not t.receiving or t.bus is None:
            await self._give_back(durable, reply)  # someone else takes it now
            return
        headers = msg.headers
        if headers and PACK in headers:
            await self._deliver_pack(durable, msg)
            return
        env = t.decode(msg.data, msg.subject, headers)
        if env is None:
            t.send_control(("raw", reply, b"+TERM", None))  # undecodable: never redeliver
            return
        if not durable.accepts(msg.subject, env):
            t.send_control(("raw", reply, b"+ACK", None))  # a wildcard caught a system topic
            return

        record, lookup = self.tracker_hooks(durable, msg, None)

        def nak(delay: float, next_attempt: int) -> None:
            durable.held -= 1
            if not next_attempt:
                settle(nak_payload(delay))
                return
            durable.outstanding.pop(reply, None)

            async def record_then_nak() -> None:
                # the retry is numbered from the record, so it is written first
                try:
                    await record(next_attempt - 1)
                except (JetStreamError, Lost, TimeoutError) as exc:
                    logger.warning("%s: could not record a retry: %r", t, exc)
                settle(nak_payload(delay))

            t.spawn(record_then_nak(), "retry")

        def ack() -> None:
            durable.held -= 1
            settle(b"+ACK")
            if tracker.recorded or tracker.redelivered:
                t.spawn(self.forget_attempts(record_subject), "forget")

        record_subject = self.attempts_subject(durable, self._seq(msg), None)
        settle = self._settler(durable, reply)
        redelivered = self._attempt(msg) > 1
        tracker = Inbound(1, ack, nak, redelivered=redelivered, record=record, lookup=lookup)
        durable.outstanding[reply] = tracker
        durable.held += 1
        durable.per_delivery = 1
        env.tracker = tracker
        put = False
        try:
            put = await t.bus.put(durable.mailbox, env)
        finally:
            # the mailbox closed, or this was cancelled (its connection closed) while it was
            # full: the delivery never reached it, so it goes back to the server now
            if not put and not tracker.done:
                tracker.defer(0)

    async def _deliver_pack(self, durable: Durable, msg: Msg) -> None:
        """A pack: each envelope goes to the mailbox; the pack is acknowledged once all of
        them are settled. They cannot be naked one by one, so they are retried in-process."""
        t = self.t
        assert t.bus is not None
        reply = msg.reply
        envelopes = t.unpack(msg)
        if not envelopes:
            t.send_control(("raw", reply, b"+TERM", None))  # nothing in it decodes
            return
        envelopes = [env for env in envelopes if durable.accepts(msg.subject, env)]
        if not envelopes:
            t.send_control(("raw", reply, b"+ACK", None))
            return
        settle_pack = self._settler(durable, reply)
        redelivered = self._attempt(msg) > 1

        def settle(payload: bytes) -> None:
            settle_pack(payload)
            if redelivered and payload == b"+ACK":  # its envelopes' records, if any
                whole = self.attempts_subject(durable, self._seq(msg), None)
                t.spawn(self.forget_attempts(f"{whole}.>"), "forget")

        def release(payload: bytes) -> None:
            durable.held -= pack.left  # what is still unsettled when it is given back
            settle(payload)

        def part() -> None:
            durable.held -= 1
            self._room(durable)

        pack = Pack(len(envelopes), release, part)
        durable.outstanding[reply] = pack
        durable.held += len(envelopes)
        durable.per_delivery = len(envelopes)
        for index, env in enumerate(envelopes):
            record, lookup = self.tracker_hooks(durable, msg, index)
            part_ack = None
            if redelivered:
                # a pack comes back whole: what was settled in it is noted, so a later
                # redelivery skips it (the first delivery notes nothing: no write per event)
                subject = self.attempts_subject(durable, self._seq(msg), index)

                def part_ack(subject: str = subject) -> None:
                    t.spawn(self.note_settled(subject), "settled")
                    pack.part_done()

            env.tracker = PackPart(
                pack, ack=part_ack, redelivered=redelivered, record=record, lookup=lookup
            )
        put = False
        try:
            for env in envelopes:
                put = False
                put = await t.bus.put(durable.mailbox, env)
                if not put:
                    break
        finally:
            if not put:  # the mailbox closed, or this was cancelled while it was full
                pack.release(nak_payload(0))  # all of it again, now (what was handled too)

    @staticmethod
    def _seq(msg: Msg) -> int:
        try:
            return int(msg.metadata.sequence.stream)
        except Exception:
            return 0

    @staticmethod
    def _attempt(msg: Msg) -> int:
        try:
            return msg.metadata.num_delivered
        except Exception:
            return 1

    def _settler(self, durable: Durable, reply: str) -> Callable[[bytes], None]:
        """Sends the final word on a delivery; fetches again once the window has room."""
        t = self.t

        def settle(payload: bytes) -> None:
            durable.outstanding.pop(reply, None)
            t.send_control(("raw", reply, payload, None))
            self._room(durable)

        return settle

    @staticmethod
    def _room(durable: Durable) -> None:
        """Fetch again once enough of the window is free."""
        if durable.wants_room and durable.window - durable.held >= durable.threshold:
            durable.wants_room = False
            durable.kick.set()

    async def _pull(self, durable: Durable) -> None:
        """Keep up to ``window`` deliveries coming while the durable is bound."""
        t = self.t
        loop = asyncio.get_running_loop()
        delays = None
        progress_every = t.ack_wait / 3
        next_progress = loop.time() + progress_every
        while durable.active:
            durable.kick.clear()
            conn = t._conn
            now = loop.time()
            if now >= next_progress:
                for reply in durable.outstanding:
                    t.send_control(("raw", reply, b"+WPI", None))
                next_progress = now + progress_every
            wait = next_progress - now
            if conn is None or conn.lost.done() or durable.conn is not conn:
                await self._sleep(durable, min(wait, 1.0))  # kicked once reconnected
                continue
            if not durable.ensured:
                try:
                    await self.ensure(conn, durable)
                except (JetStreamError, TimeoutError) as exc:
                    delays = delays or backoff_delays(0.2, 5.0)
                    logger.debug("%s: durable %r: %s", t, durable.name, exc)
                    await self._sleep(durable, next(delays))
                    continue
                except Lost:
                    continue
                delays = None
            if durable.open is not None and now >= durable.deadline:
                # no answer at all: the server lost the request, or the consumer is gone
                durable.open = None
                durable.ensured = False
                conn.stream_ok = False
                continue
            if durable.open is None:
                free = durable.window - durable.held
                if free >= durable.threshold or (free > 0 and not durable.outstanding):
                    # ask for fewer deliveries when they come as packs
                    batch = max(1, free // durable.per_delivery)
                    await self._request(conn, durable, batch, now)
                else:
                    durable.wants_room = True
            if durable.open is not None:
                wait = min(wait, durable.deadline - now)
            await self._sleep(durable, wait)

    async def _request(self, conn: Conn, durable: Durable, batch: int, now: float) -> None:
        t = self.t
        token = durable.next_request()
        durable.open, durable.credits = token, batch
        durable.deadline = now + PULL_EXPIRES + PULL_GRACE
        body = json.dumps({"batch": batch, "expires": int(PULL_EXPIRES * NS)}).encode()
        subject = f"{API}.CONSUMER.MSG.NEXT.{t.stream}.{durable.consumer}"
        try:
            await conn.nc.publish(subject, body, f"{conn.inbox}.p{durable.id}.{token}")
        except (nats.errors.Error, OSError) as exc:
            logger.debug("%s: pull request failed: %r", t, exc)
            durable.open = None  # the connection is going; reconnecting kicks us

    @staticmethod
    async def _sleep(durable: Durable, timeout: float) -> None:
        if timeout <= 0 or durable.kick.is_set():
            return
        try:
            await asyncio.wait_for(durable.kick.wait(), timeout)
        except TimeoutError:
            pass
