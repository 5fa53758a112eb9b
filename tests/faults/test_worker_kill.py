"""kill -9 of consumer processes mid-stream: nothing lost, duplicates only from what was in flight.

The test process publishes 10,000 durable events; worker processes (tests/faults/worker.py)
consume them through one durable subscription, 3 concurrent handlers each (the "group of
workers": one durable name shared by several processes). Five times, a worker that is in the
middle of handling events is killed with SIGKILL and replaced. Workers run with a 1 s takeover
(``claim_idle=1`` on Redis and SQLite, ``ack_wait=1`` on NATS), so what a dead worker held is
redelivered to the others after a second. On sqlite:// there is no server: every process
opens the same WAL file.

What was in flight at a kill, from the workers' own logs: events delivered to the killed
worker and not done (waiting in its local queue, or begun: "started-not-done"), and events it
finished in the last ``ACK_WINDOW`` seconds, whose acknowledgement may not have reached the
broker (an acknowledgement is queued when the handler returns and sent within a loop turn or
two: on Redis, where the broker can tell, they were at most 5 ms old; the window is slack for
a loaded machine). Only events it finished may be handled twice, so duplicates must be among
those finished in the window.

On Redis and SQLite the test also asks the broker, right after each kill, which entries the
dead consumer held unacknowledged (SQLite: its pending rows). That set is exact: the process is
dead, so nothing can be acknowledged for it any more, and nobody takes its entries over before
they have been idle (Redis) or its heartbeat has been silent (SQLite) for ``claim_idle``
(1 s, at least 2/3 s after the kill on SQLite), far longer than the query takes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.faults.harness import (
    Broker,
    NatsProbe,
    Scenario,
    Worker,
    publish_paced,
)

from axonbus import Bus

N = 10_000
KILLS = 5
WORKERS = 3
ACK_WINDOW = 0.25
# NATS packs: a durable acknowledges a pack (up to 64 events) once every event in it settled, so
# its first events can be finished well before the kill and still come back with the pack
PACK_ACK_WINDOW = 3.0

pytestmark = pytest.mark.slow


@dataclass
class Kill:
    worker: Worker
    at: float  # time.monotonic() just before the SIGKILL
    at_done: int  # distinct events done over all workers then
    held: set[int]  # delivered to it and not done: queued there, or being handled
    started_not_done: set[int]  # its handlers had begun these and not finished them
    # Redis / SQLite: entry ids (log offsets) it held unacknowledged
    unacked: set[Hashable] = field(default_factory=set)
    window: float = ACK_WINDOW  # PACK_ACK_WINDOW on NATS

    def recently_done(self) -> set[int]:
        """Finished less than ``window`` before the kill: maybe not acknowledged."""
        return self.worker.done_since(self.at - self.window)

    def in_flight(self) -> set[int]:
        return self.held | self.recently_done()

    def describe(self, seq_of: dict[Hashable, int] | None) -> str:
        text = (
            f"w{self.worker.index}@{self.at_done}: {len(self.held)} held "
            f"({len(self.started_not_done)} started), "
            f"{len(self.recently_done())} done in the last {self.window}s"
        )
        if seq_of is not None:
            done_unacked = {seq_of[e] for e in self.unacked if self.worker.done[seq_of[e]]}
            ages = [self.at - self.worker.done_times[s] for s in done_unacked]
            text += f", {len(self.unacked)} unacked ({len(done_unacked)} of them done"
            text += f", {max(ages) * 1000:.1f} ms before)" if ages else ")"
        return text


@pytest.mark.parametrize("broker", ["redis", "nats", "sqlite"], indirect=True)
@pytest.mark.timeout(150)
async def test_kill_workers_mid_stream(broker: Broker, tmp_path: Path) -> None:
    run = Scenario.make(broker, tmp_path)
    bus_name, topic, durable, seed, rng = run.bus_name, run.topic, run.durable, run.seed, run.rng
    fleet, probe = run.fleet, run.probe
    kills: list[Kill] = []
    try:
        first = fleet.spawn()
        await fleet.wait_ready(first)  # the durable exists: every publish from now on is kept
        for _ in range(WORKERS - 1):
            await fleet.wait_ready(fleet.spawn())

        async with Bus(broker.url, name=bus_name) as pub:
            # faster than the workers consume, so they are always busy when one is killed
            publishing = asyncio.create_task(publish_paced(pub, topic, N, chunk=100, pause=0.01))
            thresholds = [int(N * f) for f in (0.1, 0.25, 0.4, 0.55, 0.7)]
            deadline = time.monotonic() + 90
            while len(fleet.done()) < N and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                fleet.read()
                done = len(fleet.done())
                if not thresholds or done < thresholds[0]:
                    continue
                busy = [w for w in fleet.alive() if w.ready and w.in_flight()]
                if not busy:
                    continue
                thresholds.pop(0)
                victim = rng.choice(busy)
                at = time.monotonic()
                victim.kill()  # reads its log to the end
                kill = Kill(victim, at, done, victim.held(), victim.in_flight())
                if broker.kind == "nats":
                    kill.window = PACK_ACK_WINDOW
                if probe is not None:
                    assert victim.consumer is not None
                    kill.unacked = set(await probe.pending(victim.consumer))
                kills.append(kill)
                fleet.spawn()
            stats = await publishing
        # what killed workers had done but not acknowledged comes back after the takeover
        await fleet.wait_quiet(quiet=2.5, timeout=20)
        if probe is not None:
            seq_of: dict[Hashable, int] | None = dict(await probe.seqs())
            left_over = await probe.left_over()
        else:
            seq_of = None
            nats = NatsProbe(broker.url, bus_name, durable)
            left_over = await nats.left_over()
            # interest retention: an event leaves the stream once the durable acknowledged it
            left_over["stream messages"] = await nats.stream_messages()
    finally:
        fleet.stop_all()

    done = fleet.done()
    lost = set(range(N)) - set(done)
    duplicated = {seq for seq, n in done.items() if n > 1}
    duplicates = sum(done[seq] - 1 for seq in duplicated)
    in_flight = set().union(*(k.in_flight() for k in kills))
    report = (
        f"{broker.kind} seed={seed}; published {stats.sent} in {stats.seconds:.1f}s; kills: "
        + "; ".join(k.describe(seq_of) for k in kills)
        + f"\nlost={len(lost)} duplicates={duplicates} in flight at kills={len(in_flight)}; "
        f"dead letters={fleet.dead()}"
    )
    print(report)
    assert len(kills) == KILLS, report
    assert not lost, f"lost e.g. {sorted(lost)[:10]}; {report}\n{fleet.stderr_tails()}"
    assert not fleet.dead(), report
    for k in kills:
        # every event the dead worker had begun is delivered again, to another worker, and done
        for seq in k.started_not_done:
            others = [w for w in fleet if w is not k.worker and w.started[seq]]
            assert others, f"seq {seq} in flight in killed w{k.worker.index} never redelivered"
            assert any(w.done[seq] for w in others), f"seq {seq} redelivered but never done"
    # an event is handled twice only if a killed worker had just finished it
    maybe_unacked = set().union(*(k.recently_done() for k in kills))
    unexpected = sorted(duplicated - maybe_unacked)
    assert not unexpected, f"duplicates not in flight: {unexpected[:10]}; {report}"
    assert duplicates <= len(in_flight), report
    assert not any(left_over.values()), f"never acknowledged: {left_over}; {report}"

    if seq_of is not None:  # Redis, SQLite: the same, checked against the broker's own records
        assert len(seq_of) == N, f"{len(seq_of)} stored entries for {N} publishes"
        unacked = {seq_of[e] for k in kills for e in k.unacked}
        for k in kills:
            assert k.started_not_done <= {seq_of[e] for e in k.unacked}, report
            for entry in k.unacked:  # every delivery the dead consumer held is redelivered
                seq = seq_of[entry]
                others = [w for w in fleet if w is not k.worker and w.started[seq]]
                assert others, f"seq {seq} held by killed w{k.worker.index} never redelivered"
        assert duplicated <= unacked, f"duplicates not unacked at a kill: {duplicated - unacked}"
        assert duplicates <= len(unacked), report
