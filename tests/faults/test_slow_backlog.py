"""No fault at all: healthy slow consumers with a backlog older than the takeover time.

Two worker processes (tests/faults/worker.py) share one durable subscription with the default
options (``concurrency=1``, default mailbox and retry budget) and a 40 ms handler; 200 events
are published at once, so each worker has seconds of backlog, far longer than the 1 s takeover
(``claim_idle=1``; ``ack_wait=1`` on NATS; RabbitMQ takes nothing over from a live consumer).
Nobody dies, so nothing may be handled twice: a
live consumer keeps what it holds (Redis: its pending entries stay fresh; NATS: in progress;
SQLite / PostgreSQL: its heartbeat), fetches only what its worker starts soon, and never
claims back what it handled while the acknowledgement is on its way.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from axonbus import Bus
from tests.faults.harness import Broker, Scenario, SharedPostgres, publish_paced
from tests.support.fixtures import drop_postgres_tables

N = 200
WORKERS = 2

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("broker", ["redis", "nats", "amqp", "sqlite", "postgres"], indirect=True)
@pytest.mark.timeout(90)
async def test_a_slow_backlog_is_handled_once(broker: Broker, tmp_path: Path) -> None:
    run = Scenario.make(broker, tmp_path, ["--defaults", "--concurrency", "1", "--sleep", "0.04"])
    fleet = run.fleet
    try:
        for _ in range(WORKERS):
            await fleet.wait_ready(fleet.spawn())
        async with Bus(broker.url, name=run.bus_name) as pub:
            await publish_paced(pub, run.topic, N, chunk=N, pause=0)
        deadline = time.monotonic() + 60
        while len(fleet.done()) < N and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            fleet.read()
        # a takeover would show up within claim_idle / ack_wait (1 s) of the last event
        await fleet.wait_quiet(quiet=2.5, timeout=10)
    finally:
        fleet.stop_all()
        if isinstance(broker.server, SharedPostgres):
            await drop_postgres_tables(broker.url, run.bus_name)
    done = fleet.done()
    duplicates = {seq: n for seq, n in done.items() if n > 1}
    per_worker = [sum(w.done.values()) for w in fleet]
    report = f"{broker.kind}: done {len(done)} of {N} by {per_worker}, duplicates {duplicates}"
    print(report)
    assert len(done) == N, report
    assert not duplicates, report
    assert not fleet.dead(), report
