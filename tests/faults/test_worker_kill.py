"""kill -9 of consumer processes mid-stream, with the default subscription options.

The test process publishes 10,000 durable events; worker processes (tests/faults/worker.py)
consume them through one durable subscription (``concurrency=4``, the default mailbox and the
default retry budget, ``Retry()``: 3 handler calls). Four times, a worker that is in the middle
of handling events is killed with SIGKILL and replaced; and one event is poison: the handler
kills its own process when it begins it, every time, so each worker that gets it dies (and is
replaced). Workers run with a 1 s takeover (``claim_idle=1``; ``ack_wait=1`` on NATS), the only
option the test shortens; on amqp:// nothing is shortened (RabbitMQ requeues what a consumer
held as soon as its connection drops).

What the defaults promise, and the test asserts on every durable transport:

- nothing is lost: every event but the poison one is handled;
- only the poison event is dead-lettered, once, as ``RedeliveryExhausted``: events that sat
  unstarted in a dead worker's prefetch are handed out again uncharged, and an event is
  charged only for handler calls in flight at a death (``attempt`` never exceeds the deaths it
  was in flight at, nor 1: a call that finished just before a death, its acknowledgement not
  yet written, is handled again and was charged when it started; and a death between the
  record of a call and its handler's first line charges one held event, at most one per death);
- an event is handled twice only if it was in flight at a death, which is exactly what the
  broker can redeliver: its handler was running, or it had finished and its acknowledgement
  was on its way (done within ``ACK_WINDOW`` of the death); on nats:// a delivery is a pack of
  events acknowledged once all of them are settled, so the whole pack of an event in flight is.

On Redis and SQLite the test also asks the broker, right after each kill, which entries the
dead consumer held unacknowledged: every event it had begun must be among them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from axonbus import Bus
from tests.faults.harness import (
    AmqpProbe,
    Broker,
    NatsProbe,
    Scenario,
    SharedPostgres,
    Worker,
    publish_paced,
)
from tests.support.fixtures import drop_postgres_tables

# larger runs for measuring, e.g. AXONBUS_FAULT_EVENTS=20000 AXONBUS_FAULT_KILLS=8
# AXONBUS_FAULT_POISON=-1 (no poison event) AXONBUS_FAULT_SLEEP=0.005
N = int(os.environ.get("AXONBUS_FAULT_EVENTS", "10000"))
KILLS = int(os.environ.get("AXONBUS_FAULT_KILLS", "4"))
WORKERS = 3
POISON = int(os.environ.get("AXONBUS_FAULT_POISON", str(N // 3)))  # -1: none
SLEEP = os.environ.get("AXONBUS_FAULT_SLEEP", "0.003")  # seconds per event
#: an acknowledgement is queued when the handler returns and written within a loop turn or
#: two; the window is slack for a loaded machine
ACK_WINDOW = 0.25
HOLD = 1000  # events published past the next kill's threshold before that kill

pytestmark = pytest.mark.slow


@dataclass
class Death:
    """A worker that died (killed by the test, or by the poison event) and what it had."""

    worker: Worker
    at: float  # time.monotonic() of the kill; for a self-kill, its last "done" line
    running: set[int]  # begun and not finished: the handler calls cut short
    unacked: set[Hashable] = field(default_factory=set)  # Redis / SQLite, from the broker

    def in_flight(self) -> set[int]:
        """What the broker can redeliver and a handler may have finished: running, just
        finished (its ack on the way) and, on nats://, every event of a pack not all settled
        or settled just now."""
        w = self.worker
        recent = w.done_since(self.at - ACK_WINDOW)
        out = self.running | recent
        for pack in w.packs:
            if any(not w.done[s] for s in pack) or any(s in recent for s in pack):
                out.update(pack)
        return out


def _died(worker: Worker, at: float | None) -> Death:
    running = worker.in_flight()
    if at is None:  # it killed itself: the clock of its log
        at = max(worker.done_times.values(), default=time.monotonic())
    return Death(worker, at, running)


@pytest.mark.parametrize("broker", ["redis", "nats", "amqp", "sqlite", "postgres"], indirect=True)
@pytest.mark.timeout(180)
async def test_kill_workers_mid_stream(broker: Broker, tmp_path: Path) -> None:
    run = Scenario.make(
        broker,
        tmp_path,
        ["--defaults", "--concurrency", "4", "--poison", str(POISON), "--sleep", SLEEP],
    )
    bus_name, topic, durable, rng = run.bus_name, run.topic, run.durable, run.rng
    fleet, probe = run.fleet, run.probe
    deaths: list[Death] = []
    handled: set[int] = set()  # workers whose death was accounted
    try:
        first = fleet.spawn()
        await fleet.wait_ready(first)  # the durable exists: every publish from now on is kept
        for _ in range(WORKERS - 1):
            await fleet.wait_ready(fleet.spawn())

        async with Bus(broker.url, name=bus_name) as pub:
            thresholds = [int(N * (0.1 + 0.7 * i / max(1, KILLS - 1))) for i in range(KILLS)]
            # faster than the workers consume, so they are always busy when one is killed; but
            # never more than HOLD past the next kill's threshold until that kill happened: on
            # a loaded machine this loop may look late, and the workers must still be busy then
            limit = [thresholds[0] + HOLD if thresholds else N]
            publishing = asyncio.create_task(
                publish_paced(pub, topic, N, chunk=100, pause=0.01, allowed=lambda: limit[0])
            )
            deadline = time.monotonic() + 120 + N / 200
            while time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                fleet.read()
                done = fleet.done()
                if len(done.keys() - {POISON}) >= N - (POISON >= 0) and (
                    fleet.dead() or POISON < 0
                ):
                    break
                for w in fleet:
                    if w.index not in handled and not w.alive and not w.killed:
                        handled.add(w.index)  # the poison event took it down
                        w.kill()  # reap it, read its log to the end
                        deaths.append(_died(w, None))
                        fleet.spawn()
                if not thresholds or len(done) < thresholds[0]:
                    continue
                # not one that began the poison event: it is dying by itself (where the broker
                # hands the poison event out again at once, amqp://, it often is one)
                busy = [
                    w
                    for w in fleet.alive()
                    if w.ready and w.in_flight() and POISON not in w.in_flight()
                ]
                if not busy:
                    if len(done) >= limit[0] - 1:  # all it may publish is handled: some more
                        limit[0] = min(N, limit[0] + 100)
                    continue
                thresholds.pop(0)
                limit[0] = thresholds[0] + HOLD if thresholds else N
                victim = rng.choice(busy)
                at = time.monotonic()
                victim.kill()  # reads its log to the end
                handled.add(victim.index)
                death = _died(victim, at)
                if probe is not None:
                    assert victim.consumer is not None
                    death.unacked = set(await probe.pending(victim.consumer))
                deaths.append(death)
                fleet.spawn()
            stats = await publishing
        # what dead workers had done but not acknowledged comes back after the takeover
        await fleet.wait_quiet(quiet=2.5, timeout=20)
        seq_of: dict[Hashable, int] | None = None
        if probe is not None:
            seq_of = dict(await probe.seqs())
            left_over = await probe.left_over()
        elif broker.kind == "nats":
            nats = NatsProbe(broker.url, bus_name, durable)
            left_over = await nats.left_over()
            # interest retention: an event leaves the stream once the durable acknowledged it
            left_over["stream messages"] = await nats.stream_messages(topic)
        elif broker.kind == "amqp":
            left_over = await AmqpProbe(broker.url, bus_name, durable).left_over()
        else:
            left_over = {}
    finally:
        fleet.stop_all()
        if isinstance(broker.server, SharedPostgres):
            await drop_postgres_tables(broker.url, bus_name)

    done = fleet.done()
    lost = set(range(N)) - {POISON} - set(done)
    duplicated = {seq for seq, n in done.items() if n > 1}
    duplicates = sum(done[seq] - 1 for seq in duplicated)
    in_flight = set().union(*(d.in_flight() for d in deaths))
    dead = fleet.dead()
    kills = [d for d in deaths if POISON not in d.running]
    running_at: Counter[int] = Counter(s for d in deaths for s in d.running)
    in_flight_at: Counter[int] = Counter(s for d in deaths for s in d.in_flight())
    max_attempt: dict[int, int] = {}
    for w in fleet:
        for seq, attempt in w.max_attempt.items():
            max_attempt[seq] = max(attempt, max_attempt.get(seq, 0))
    overcharged = {
        seq: (a, in_flight_at[seq])
        for seq, a in max_attempt.items()
        if a > max(1, in_flight_at[seq]) and seq != POISON
    }
    dead_seqs = {int(line.split()[0]) for line in dead}
    never_started = {seq for seq in dead_seqs if not any(w.started[seq] for w in fleet)}
    report = (
        f"{broker.kind} seed={run.seed}; published {stats.sent} in {stats.seconds:.1f}s; "
        f"dead-lettered {len(dead_seqs)} of {N}, {len(never_started)} never started; "
        f"{len(kills)} kills, {len(deaths) - len(kills)} poison deaths; "
        f"lost={len(lost)} dead-lettered={len(dead)} {dead} duplicates={duplicates} "
        f"in flight at deaths={len(in_flight)} running at deaths={sum(running_at.values())} "
        f"charged without running={len(overcharged)}"
    )
    print(report)
    assert len(kills) == KILLS, report
    assert not lost, f"lost e.g. {sorted(lost)[:10]}; {report}\n{fleet.stderr_tails()}"
    # every worker hears the dead letter ($bus.dead_letter): one event, seen by several
    expected = {(str(POISON), "RedeliveryExhausted")} if POISON >= 0 else set()
    assert {tuple(line.split()[::2]) for line in dead} == expected, report
    # a call is recorded just before its handler starts: a death in between charges an event
    # whose "start" line was never written. Only one redelivered event runs at a time (alone),
    # so that is at most one per death, and one the dead worker held; charging what waited
    # in the prefetch would charge dozens per death
    held_at_death = set().union(*(d.worker.held() for d in deaths))
    assert len(overcharged) <= len(deaths), f"charged without a call: {overcharged}; {report}"
    assert set(overcharged) <= held_at_death, f"charged, never held: {overcharged}; {report}"
    for d in deaths:
        # every event the dead worker had begun is delivered again, to another worker
        for seq in d.running - {POISON}:
            others = [w for w in fleet if w is not d.worker and w.started[seq]]
            assert others, f"seq {seq} running in dead w{d.worker.index} never redelivered"
            assert any(w.done[seq] for w in others), f"seq {seq} redelivered but never done"
    unexpected = sorted(duplicated - in_flight)
    assert not unexpected, f"duplicates not in flight: {unexpected[:10]}; {report}"
    assert duplicates <= len(in_flight), report
    assert not any(left_over.values()), f"never acknowledged: {left_over}; {report}"
    if seq_of is not None:  # Redis, SQLite: what the broker says a killed worker held
        for d in deaths:
            if d.unacked:
                assert d.running <= {seq_of[e] for e in d.unacked}, report
