"""kill -9 of the process writing a sqlite:// log, 20 times: the file stays sound, no commit lost.

An appender process (tests/faults/appender.py) publishes continuously to one file: rounds of 1
to 50 events, each round followed by ``bus.flush()`` (the writer thread has committed it),
then a log line ``committed <seq>``. Every event carries its run (one per process) and its
sequence number in the run, and 200 bytes of filler, so the WAL fills and is checkpointed while
the kills land. The test kills the appender with SIGKILL 50 to 300 ms after it first reported a
commit, at whatever it is doing then (encoding, inside a transaction, committing, checkpointing),
then, before anything else touches the file:

- opens it with plain ``sqlite3`` (which recovers the WAL) and runs ``PRAGMA integrity_check``:
  it must say ``ok``;
- reads the events the run appended: their sequence numbers must be 0, 1, 2, ... in offset
  order (a transaction is all or nothing and batches commit in order: no hole, no reordering),
  and must include every one the appender reported committed (what ``flush()`` confirmed
  survives ``kill -9``, even with ``synchronous=normal``);
- checks that the events of the earlier runs are all still there.

The next run starts a new appender on the same file. At the end a bus replays the whole log
and must find exactly what plain SQL found.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

import pytest

from axonbus import Bus
from axonbus._codec import get_codec
from axonbus.transports.log._store import table_prefix
from tests.faults.harness import Appender, SqliteFile

KILLS = 20
BUS = "appends"
TOPIC = "append.log"

pytestmark = pytest.mark.slow


def check_file(path: Path, after: int) -> tuple[str, int, list[tuple[int, int]]]:
    """``(integrity_check result, events up to offset `after`, [(run, seq)] after it)``."""
    codec = get_codec("json")
    p = table_prefix(BUS)
    conn = sqlite3.connect(path)
    try:
        integrity = "\n".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
        (before,) = conn.execute(f"SELECT COUNT(*) FROM {p}events WHERE seq <= ?", (after,))
        rows = conn.execute(
            f"SELECT seq, data FROM {p}events WHERE seq > ? ORDER BY seq", (after,)
        ).fetchall()
    finally:
        conn.close()
    new = []
    for _, data in rows:
        event = codec.decode(data).event
        new.append((event["run"], event["seq"]))
    last = rows[-1][0] if rows else after
    assert not rows or last == after + len(rows), "offsets are not consecutive"
    return integrity, before[0], new


@pytest.mark.timeout(120)
async def test_kill_the_writer_20_times(tmp_path: Path) -> None:
    db = SqliteFile(tmp_path / "bus.db")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    checked = 0  # the offset of the last event verified
    stored = 0  # events in the log up to there
    per_run: list[int] = []  # events each run left in the log
    lines: list[str] = []
    t0 = time.monotonic()
    for run in range(KILLS):
        child = Appender(run, tmp_path, ["--url", db.url, "--bus", BUS, "--run", str(run)])
        try:
            deadline = time.monotonic() + 20
            while child.committed < 0:
                child.read()
                if not child.alive:
                    raise AssertionError(f"appender {run} exited:\n{child.stderr_tail()}")
                assert time.monotonic() < deadline, f"appender {run} reported nothing in 20 s"
                await asyncio.sleep(0.005)
            delay = rng.uniform(0.05, 0.3)
            await asyncio.sleep(delay)
            wal = tmp_path / "bus.db-wal"
            wal_bytes = wal.stat().st_size if wal.exists() else 0
        finally:
            child.kill()  # reads its log to the end

        integrity, before, new = await asyncio.to_thread(check_file, db.path, checked)
        lines.append(
            f"run {run}: killed {delay * 1000:.0f} ms after its first report, "
            f"{child.reports} flushes reported up to seq {child.committed}, "
            f"{len(new)} events stored, WAL {wal_bytes // 1024} KiB; integrity {integrity}"
        )
        report = f"seed={seed}\n" + "\n".join(lines)
        assert integrity == "ok", report
        assert before == stored, f"earlier runs lost {stored - before} events; {report}"
        assert {r for r, _ in new} <= {run}, f"events of another run appended; {report}"
        seqs = [s for _, s in new]
        assert seqs == list(range(len(seqs))), f"a hole or reordering in run {run}; {report}"
        assert child.committed < len(seqs), (
            f"run {run} reported seq {child.committed} committed, the log ends at "
            f"{len(seqs) - 1}; {report}"
        )
        checked += len(new)
        stored += len(new)
        per_run.append(len(new))
    kills_done = time.monotonic() - t0

    # the transport itself reads the file back: exactly the events plain SQL found
    found: dict[int, list[int]] = {}
    async with Bus(db.url, name=BUS) as bus:
        async for env in bus.replay(TOPIC):
            found.setdefault(env.event["run"], []).append(env.event["seq"])
    assert [len(found.get(run, [])) for run in range(KILLS)] == per_run
    assert all(seqs == list(range(len(seqs))) for seqs in found.values())
    print(
        f"seed={seed}; {KILLS} kills in {kills_done:.1f}s, {stored} events stored, "
        f"{sum(1 for n in per_run if n)} runs stored events\n" + "\n".join(lines)
    )
