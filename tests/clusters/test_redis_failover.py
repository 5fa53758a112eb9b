"""The master that serves a bus's slot killed (-9) during a durable run on a Redis Cluster: its
replica takes over, clients find it by themselves; lost events counted with and without
``wait_replicas=1``.

The publisher (this process) sends 10,000 durable events to 3 worker processes
(tests/faults/worker.py) of one durable subscription; at 30% the master serving the bus's
slot is killed; once its replica took over, it is restarted and rejoins as the new master's
replica (with ``wait_replicas=1`` publishing waits for it).

Redis replicates asynchronously. Without ``wait_replicas`` an event the master acknowledged
may not have reached its replica when the master died: it is lost. Such an event was published
shortly before the kill (the replica lags by a replication round trip, on loopback well under
``LAG``). With ``wait_replicas=1`` a batch is confirmed only once the replica has it, and each
master here has exactly one replica (the one promoted): nothing may be lost. Duplicates come
from deliveries and acknowledgements not yet replicated, and batches sent again; they are
reported.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
from pathlib import Path

import pytest

from axonbus import Bus
from tests.clusters.failover import confirmed_after, first_handled_after, wait_all_done
from tests.faults.harness import Fleet, publish_paced
from tests.support.clusters import RedisCluster

N = 10_000
WORKERS = 3
LAG = 1.0  # s: how far before the kill an event lost without wait_replicas may be published

pytestmark = pytest.mark.slow


@pytest.mark.timeout(150)
@pytest.mark.parametrize("wait", [0, 1], ids=["async", "wait_replicas=1"])
async def test_slot_master_killed_during_a_durable_run(
    wait: int, redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    cluster = redis_cluster
    await asyncio.to_thread(cluster.wait_ok)
    bus_name = f"fo{uuid.uuid4().hex[:8]}"
    topic = "jobs.work"
    url = f"{cluster.url}?wait_replicas={wait}"
    fleet = Fleet(
        tmp_path,
        ["--url", f"{url}&claim_idle=1", "--bus", bus_name, "--topic", topic,
         "--durable", "workers", "--sleep", "0.003"],
    )  # fmt: skip
    victim = cluster.master_of("{" + bus_name + "}:bindings")
    progress_at: list[tuple[float, int]] = []  # (time, events published by then)
    try:
        for _ in range(WORKERS):
            await fleet.wait_ready(fleet.spawn())
        published = 0

        def progress(n: int) -> None:
            nonlocal published
            published = n
            progress_at.append((time.monotonic(), n))

        async with Bus(url, name=bus_name) as pub:
            await pub.flush()
            publishing = asyncio.create_task(
                publish_paced(pub, topic, N, chunk=50, pause=0.025, progress=progress)
            )
            while published < N * 0.3:
                await asyncio.sleep(0.01)
            at_kill, t_kill = published, time.monotonic()
            victim.kill()
            # once a replica took over, the old master comes back as its replica: without
            # one, wait_replicas=1 holds up publishing (as it should)
            await asyncio.to_thread(cluster.wait_master_moved, "{" + bus_name + "}", victim)
            failover_s = time.monotonic() - t_kill
            await victim.astart()
            pub_s = await confirmed_after(
                pub, t_kill, lambda: published > at_kill or publishing.done()
            )
            consumers_s = await first_handled_after(fleet, at_kill, t_kill)
            stats = await publishing
            unreplicated = pub.transport.unreplicated  # type: ignore[attr-defined]
            new_master = pub.transport.master  # type: ignore[attr-defined]

        done = await wait_all_done(fleet, N, timeout=60)
        lost = sorted(set(range(N)) - set(done))
        twice = sum(1 for n in done.values() if n > 1)
        # the events published from LAG before the kill on: what the replica may lack
        times = [t for t, _ in progress_at]
        before = progress_at[max(0, bisect.bisect_left(times, t_kill - LAG) - 1)][1]
        print(
            f"\nredis cluster, {'wait_replicas=1' if wait else 'async replication'}: "
            f"published {stats.sent} ({stats.connection_lost} retried after ConnectionLost, "
            f"{unreplicated} WAITs timed out and asked again), lost {len(lost)}, "
            f"handled twice {twice}; master {victim.port} killed, {new_master} took over "
            f"after {failover_s:.2f}s (the old master restarted then, as its replica): "
            f"publisher confirmed again after {pub_s:.2f}s, a new event handled after "
            f"{consumers_s:.2f}s"
        )
        assert new_master != f"127.0.0.1:{victim.port}"
        if wait:
            assert not lost, f"lost {len(lost)} with wait_replicas=1: {lost[:20]}"
        else:
            early = [seq for seq in lost if seq < before]
            assert not early, f"lost events published long before the kill: {early[:20]}"
        assert not fleet.dead(), fleet.dead()
    finally:
        fleet.stop_all()
        await victim.astart()
        await asyncio.to_thread(cluster.wait_ok)
