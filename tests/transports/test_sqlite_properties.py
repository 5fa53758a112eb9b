"""A hypothesis state machine over a ``durable=`` subscription on sqlite://: publish, acknowledge,
crash, let a dead process's heartbeat expire, close, start a new process, in any order.

Each "process" is a Bus of its own on one file (its own transport instance, threads and
connections), consuming the durable with one handler that holds each event until the machine
lets it return (``ack``). A crash is simulated in-process (:func:`crash`): the bus stops at
once, nothing it queued reaches the file, and its pending rows stay owned by its instance, whose
heartbeat the machine then lets expire (``expire``: the time ``claim_idle`` would take, made
instant by writing the expiry, as another process's clock would see it).

Checked at every delivery, against the model:

- it was published;
- it was not acknowledged before (the ack committed: its pending row is gone);
- whoever had it before is gone for good (crashed *and* expired, or closed): no event is handed
  to two live processes, nor taken from a dead one before its heartbeat expired;
- its attempt number (handler calls charged) is never below an earlier one, and above it
  when the earlier call was charged (a redelivery's calls are recorded before they start);
- per process, first deliveries come in log order.

And at the end, once every dead process has expired and a live one drains the rest: every
published event was handled at least once, everything a crashed process held unacknowledged
was delivered again, and nothing is left pending or unread.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from axonbus import Bus, Context, Retry
from axonbus._codec import get_codec
from axonbus._events import current_envelope
from axonbus.transports.base import Inbound
from axonbus.transports.log._store import table_prefix
from axonbus.transports.sqlite import SqliteTransport

T = TypeVar("T")

NAME = "props"
P = table_prefix(NAME)
TOPIC = "jobs.x"
DURABLE = "d"
CONSUMER = f"durable:{DURABLE}"  # its consumer row
MAX_LIVE = 3
SETTLE = 3.0  # seconds the system gets to come to rest after a step (else: a hang)
# claim_idle: no heartbeat of a live process expires during a run (the loop only runs inside
# steps); a dead one's expiry is written by the machine. poll: notice other processes' commits
# within ~1 ms
URL_OPTIONS = "claim_idle=60&poll=0.001"


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(SETTLE):
        while not condition():
            await asyncio.sleep(0)


async def crash(bus: Bus) -> None:
    """What ``kill -9`` leaves of ``bus``, in-process.

    Every task of its transport stops at once and its queued operations are dropped, so
    nothing more reaches the file: no acknowledgement, heartbeat, registration or release. A
    transaction the writer thread is in finishes (the kill came just after it). The store's
    connections close; its pending rows stay owned by its instance. Then the bus's own
    handlers are cancelled (put back in a mailbox nobody reads).
    """
    transport = bus.transport
    assert isinstance(transport, SqliteTransport)
    store = transport.store
    assert store is not None
    transport._closing = True  # nothing reconnects
    tasks = list(transport._tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    transport._outbox.clear()
    await store.close()  # after the writer thread's current transaction
    # the bus has no transport left to talk to: close() only stops its handlers
    transport.store = None
    transport._up = None
    transport.connected = False
    await bus.close(timeout=0)


class Proc:
    """One consumer process: a bus with the durable subscription, its handler held per event."""

    def __init__(
        self, index: int, url: str, on_delivery: Callable[[Proc, int, int, str], None]
    ) -> None:
        self.index = index
        self.bus = Bus(url, name=NAME)
        self.state = "live"  # live -> crashed -> expired, or live -> closed
        self.on_delivery = on_delivery
        self.current: tuple[int, asyncio.Future[None]] | None = None  # the event held
        self.finished: list[int] = []  # events its handler returned from
        self.last_first = 0  # the offset of the last event delivered here for the first time
        self.auto = False  # handlers return at once (closing, or the final drain)
        # attempts: redeliveries after crashes must never dead-letter an event here
        self.bus.subscribe(
            TOPIC, self.handle, durable=DURABLE, maxsize=4, retry=Retry(attempts=1_000_000)
        )

    @property
    def instance(self) -> str:
        assert isinstance(self.bus.transport, SqliteTransport)
        return self.bus.transport.instance

    def __repr__(self) -> str:
        return f"p{self.index}({self.state})"

    async def handle(self, event: dict[str, int], ctx: Context) -> None:
        seq = event["seq"]
        tracker = current_envelope.get().tracker  # a test-only look: was it handed out before?
        assert isinstance(tracker, Inbound)
        self.on_delivery(self, seq, ctx.attempt, ctx.event_id, tracker.redelivered)
        if not self.auto:
            gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.current = (seq, gate)
            try:
                await gate
            finally:
                self.current = None
        self.finished.append(seq)  # the acknowledgement is queued as this returns

    def release(self) -> int | None:
        """Let the held event's handler return; its seq."""
        if self.current is None:
            return None
        seq, gate = self.current
        if not gate.done():
            gate.set_result(None)
        return seq


class DurableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="axonbus-props-"))
        self.db = self.dir / "bus.db"
        self.url = f"sqlite:///{self.db}?{URL_OPTIONS}"
        self.codec = get_codec("json")
        self.procs: list[Proc] = []
        self.next_seq = 0
        self.attempted: set[int] = set()  # publishes begun
        self.published: set[int] = set()  # publishes committed (flush returned)
        self.acked: set[int] = set()  # acknowledgements committed
        self.holders: dict[int, list[Proc]] = {}  # seq -> processes it was handed to
        self.attempts: dict[int, int] = {}  # seq -> highest attempt seen
        self.charged: set[int] = set()  # seqs whose last handler call was recorded
        self.must_redeliver: set[int] = set()  # held unacknowledged by a crashed process
        self.violations: list[str] = []
        self.conn = sqlite3.connect(self.db, isolation_level=None)
        self.pub = Bus(self.url, name=NAME)
        self.run(self.pub.start())
        self.run(self._start_proc())  # the durable exists before the first publish

    # -- plumbing ----------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.conn.execute(statement.format(p=P), args).fetchall()

    def live(self) -> list[Proc]:
        return [p for p in self.procs if p.state == "live"]

    def busy(self) -> list[Proc]:
        return [p for p in self.live() if p.current is not None and not p.auto]

    def pending_seqs(self, owner: Proc | None = None) -> set[int]:
        """The events of the durable's pending rows (those ``owner`` holds)."""
        rows = self.sql(
            "SELECT e.data FROM {p}pending p JOIN {p}events e ON e.seq = p.seq "
            "WHERE p.consumer = ? AND (?2 IS NULL OR p.owner = ?2)",
            CONSUMER,
            None if owner is None else owner.instance,
        )
        return {self.codec.decode(data).event["seq"] for (data,) in rows}

    def claimable(self) -> int:
        """Events a live process would be handed now: unread, or pending and not owned by a
        live instance (the claim's own rule, asked from outside)."""
        now = time.time()
        ((n,),) = self.sql(
            "SELECT (SELECT COUNT(*) FROM {p}pending WHERE consumer = ?1 AND visible_at <= ?2 "
            "AND (owner IS NULL OR owner NOT IN "
            "(SELECT instance FROM {p}instances WHERE expires > ?2))) + "
            "(SELECT COUNT(*) FROM {p}events WHERE seq > "
            "(SELECT position FROM {p}consumers WHERE name = ?1))",
            CONSUMER,
            now,
        )
        return int(n)

    def owned(self, proc: Proc) -> int:
        ((n,),) = self.sql("SELECT COUNT(*) FROM {p}pending WHERE owner = ?", proc.instance)
        return int(n)

    async def settle(self) -> None:
        """Wait until the system is at rest: every live process whose handler is free holds
        nothing (no queued event, no acknowledgement on its way) and nothing is left that it
        could claim. A live process with a held event may still fill its queue: no matter."""
        deadline = time.monotonic() + SETTLE
        while True:
            idle = [p for p in self.live() if p.current is None or p.auto]
            if all(self.owned(p) == 0 for p in idle) and (not idle or self.claimable() == 0):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no rest after {SETTLE}s: idle {idle} own "
                    f"{[self.owned(p) for p in idle]}, {self.claimable()} claimable"
                )
            await asyncio.sleep(0.002)

    async def _start_proc(self) -> None:
        proc = Proc(len(self.procs), self.url, self.on_delivery)
        self.procs.append(proc)
        await proc.bus.start()
        await proc.bus.flush()  # registered

    def on_delivery(
        self, proc: Proc, seq: int, attempt: int, event_id: str, redelivered: bool
    ) -> None:
        """Called by a handler as it begins: check the delivery against the model."""
        bad = self.violations.append
        if seq not in self.attempted:
            bad(f"{proc} got seq {seq}, never published")
        if seq in self.acked:
            bad(f"{proc} got seq {seq} (attempt {attempt}) after its ack was committed")
        earlier = self.holders.setdefault(seq, [])
        for other in earlier:
            if other.state not in ("expired", "closed"):
                bad(f"{proc} got seq {seq} (attempt {attempt}) while {other} still held it")
        # (attempt > 1 the first time a handler sees it is fine: a process that crashed or
        # closed had claimed it without beginning it)
        previous = self.attempts.get(seq, 0)
        if attempt < previous or (attempt == previous and seq in self.charged):
            bad(f"{proc} got seq {seq} at attempt {attempt}, after attempt {previous}")
        if redelivered:
            self.charged.add(seq)  # this call is recorded before it starts
        if not redelivered:
            # log order, which is publish order per publisher (not across them: each one's
            # writer commits when it does)
            ((offset,),) = self.sql("SELECT seq FROM {p}events WHERE event_id = ?", event_id)
            if offset <= proc.last_first:
                bad(f"{proc} got offset {offset} first after {proc.last_first}: out of order")
            proc.last_first = offset
        earlier.append(proc)
        self.attempts[seq] = max(previous, attempt)
        self.must_redeliver.discard(seq)

    # -- rules -------------------------------------------------------------------------------

    @rule(n=st.integers(min_value=1, max_value=6))
    def publish(self, n: int) -> None:
        async def go() -> None:
            seqs = range(self.next_seq, self.next_seq + n)
            self.next_seq += n
            for seq in seqs:
                self.attempted.add(seq)
                await self.pub.publish(TOPIC, {"seq": seq})
            await self.pub.flush()
            self.published.update(seqs)
            await self.settle()

        self.run(go())

    @precondition(lambda self: bool(self.live()))
    @rule(
        pick=st.integers(min_value=0, max_value=MAX_LIVE - 1),
        n=st.integers(min_value=1, max_value=4),
        flush=st.booleans(),
    )
    def publish_from(self, pick: int, n: int, flush: bool) -> None:
        """A consumer process publishes too. Without ``flush`` the step ends with the events
        maybe still queued: a crash next loses them, and then nobody may receive them."""
        live = self.live()
        proc = live[pick % len(live)]

        async def go() -> None:
            seqs = range(self.next_seq, self.next_seq + n)
            self.next_seq += n
            for seq in seqs:
                self.attempted.add(seq)
                await proc.bus.publish(TOPIC, {"seq": seq})
            if flush:
                await proc.bus.flush()
                self.published.update(seqs)
                await self.settle()

        self.run(go())

    @precondition(lambda self: len(self.live()) < MAX_LIVE)
    @rule()
    def start(self) -> None:
        """A new process (or a restarted one: a new instance either way)."""

        async def go() -> None:
            await self._start_proc()
            await self.settle()

        self.run(go())

    # preconditions depend only on the model, never on which process got what (a race):
    # hypothesis needs the same choices to draw the same steps
    @rule(pick=st.integers(min_value=0, max_value=MAX_LIVE - 1))
    def ack(self, pick: int) -> None:
        """A handler returns; the acknowledgement is committed (nothing if none is held)."""
        busy = self.busy()
        if not busy:
            return
        proc = busy[pick % len(busy)]

        async def go() -> None:
            seq = proc.release()
            assert seq is not None
            await until(lambda: seq in proc.finished)  # the ack is queued
            await proc.bus.flush()
            self.acked.add(seq)
            assert seq not in self.pending_seqs(), f"seq {seq} still pending after its ack"
            await self.settle()

        self.run(go())

    @precondition(lambda self: bool(self.live()))
    @rule(
        pick=st.integers(min_value=0, max_value=MAX_LIVE - 1),
        finish=st.booleans(),
        ticks=st.integers(min_value=0, max_value=3),
    )
    def crash(self, pick: int, finish: bool, ticks: int) -> None:
        """kill -9 of a process: idle, in the middle of a handler, or just after a handler
        returned (``finish``: its acknowledgement queued, maybe written, ``ticks`` loop turns
        later)."""
        live = self.live()
        proc = live[pick % len(live)]

        async def go() -> None:
            seq = proc.release() if finish else None
            if seq is not None:
                await until(lambda: seq in proc.finished)  # the ack is queued
            for _ in range(ticks):
                await asyncio.sleep(0)
            await crash(proc.bus)
            proc.state = "crashed"
            for seq in self.pending_seqs(proc):
                self.must_redeliver.add(seq)
                if proc not in self.holders.setdefault(seq, []):
                    self.holders[seq].append(proc)  # claimed, never begun: held all the same
            await self.settle()

        self.run(go())

    @precondition(lambda self: any(p.state == "crashed" for p in self.procs))
    @rule()
    def expire(self) -> None:
        """claim_idle passes: the dead processes' heartbeats run out."""

        async def go() -> None:
            for proc in self.procs:
                if proc.state == "crashed":
                    self.sql(
                        "UPDATE {p}instances SET expires = ? WHERE instance = ?",
                        time.time() - 1,
                        proc.instance,
                    )
                    proc.state = "expired"
            await self.settle()

        self.run(go())

    @precondition(lambda self: bool(self.live()))
    @rule(pick=st.integers(min_value=0, max_value=MAX_LIVE - 1))
    def close(self, pick: int) -> None:
        """A graceful stop: the handler finishes what the process holds, acknowledgements are
        committed, and what it had claimed but not begun goes back at once."""
        live = self.live()
        proc = live[pick % len(live)]

        async def go() -> None:
            proc.auto = True
            proc.release()
            await proc.bus.close()
            proc.state = "closed"
            self.acked.update(proc.finished)
            await self.settle()

        self.run(go())

    # -- invariants and the end --------------------------------------------------------------

    @invariant()
    def deliveries_are_sound(self) -> None:
        assert not self.violations, "\n".join(self.violations)

    def teardown(self) -> None:
        try:
            if not self.violations:
                self.run(self._drain())
        finally:
            self.run(self._close_all())
            self.conn.close()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    async def _drain(self) -> None:
        """Time passes, a process is there, every handler returns at once: all is handled."""
        for proc in self.procs:
            if proc.state == "crashed":
                self.sql(
                    "UPDATE {p}instances SET expires = ? WHERE instance = ?",
                    time.time() - 1,
                    proc.instance,
                )
                proc.state = "expired"
        if not self.live():
            await self._start_proc()
        for proc in self.live():
            proc.auto = True
            proc.release()
        for proc in self.live():
            await proc.bus.flush()  # what live processes queued is in the log now
        # what a crashed process queued and never confirmed is required only if it got in
        in_log = {self.codec.decode(data).event["seq"] for (data,) in self.sql(
            "SELECT data FROM {p}events"
        )}  # fmt: skip
        assert in_log <= self.attempted, f"stored, never published: {in_log - self.attempted}"
        required = self.published | in_log
        deadline = time.monotonic() + SETTLE
        handled: set[int] = set()
        while not required <= handled:
            handled = {seq for p in self.procs for seq in p.finished}
            assert time.monotonic() < deadline, (
                f"never handled: {sorted(required - handled)}; procs {self.procs}"
            )
            await asyncio.sleep(0.005)
        for proc in self.live():
            await proc.bus.close()
            proc.state = "closed"
        assert not self.violations, "\n".join(self.violations)
        lost = sorted(self.must_redeliver)
        assert not lost, f"held by a crashed process, never delivered again: {lost}"
        assert self.sql("SELECT COUNT(*) FROM {p}pending") == [(0,)]
        assert self.claimable() == 0  # nothing left unread
        # a publish lost with its process before it was committed reached nobody
        handled = {seq for p in self.procs for seq in p.finished}
        assert handled <= in_log, f"handled, never stored: {sorted(handled - in_log)}"

    async def _close_all(self) -> None:
        for proc in self.procs:
            if proc.state == "live":
                proc.auto = True
                proc.release()
                await proc.bus.close()
                proc.state = "closed"
        await self.pub.close()


DurableMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDurableMachine = DurableMachine.TestCase
