"""Nodes of a 3-node JetStream cluster killed (-9) during a durable run: nothing JetStream
confirmed is lost, duplicates are bounded and reported, clients recover by themselves.

The publisher (this process) sends 10,000 durable events to 3 worker processes
(tests/faults/worker.py) of one durable subscription, on a stream and consumer with 3
replicas. Every URL names the three nodes. Two runs:

- ``leader``: the node that leads the stream is killed once and stays down (2 of 3 nodes keep
  a quorum: a new leader is elected, the publisher's unconfirmed batch is sent again);
- ``rolling``: a random node is killed 3 times, a couple of seconds apart, each time restarted
  (same port and store directory) and caught up before the next.

Counted: events never handled (must be 0: the publisher's ``flush`` confirmed every event,
so each one is in the replicated stream), events handled more than once (reported; each must
be a publish not yet confirmed when the node died, or an event handled in the failover window:
from ``ACK_WINDOW`` before the kill to ``ACK_WINDOW`` after the recovery, while the consumer's
acknowledgements may not reach a quorum), and per kill the time until the publisher had a
batch confirmed again and until a worker handled an event published after the kill.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

import pytest

from axonbus import Bus
from tests.clusters.failover import confirmed_after, first_handled_after, wait_all_done
from tests.faults.harness import Fleet, publish_paced, unconfirmed
from tests.support.clusters import NatsCluster, NatsNode

N = 10_000
WORKERS = 3
# a worker's acknowledgement reaches the consumer's replicas through its leader's log: one
# sent just before the leader died may be gone, and the event is delivered again
ACK_WINDOW = 3.0
PAUSE = {"leader": 0.025, "rolling": 0.1}  # seconds between chunks of 50 publishes

pytestmark = pytest.mark.slow


@pytest.mark.timeout(150)
@pytest.mark.parametrize("mode", ["leader", "rolling"])
async def test_node_kills_during_a_durable_run(
    mode: str, healthy_nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    cluster = healthy_nats_cluster
    bus_name = f"fo{uuid.uuid4().hex[:8]}"
    stream, topic = f"AXONBUS_{bus_name}", "jobs.work"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    url = f"{cluster.url}?replicas=3"
    fleet = Fleet(
        tmp_path,
        ["--url", url, "--bus", bus_name, "--topic", topic,
         "--durable", "workers", "--sleep", "0.003"],
    )  # fmt: skip
    suspects: set[int] = set()  # events that may be handled twice
    recoveries: list[tuple[str, float, float]] = []  # (node, publisher s, consumers s)
    killed: list[NatsNode] = []
    try:
        for _ in range(WORKERS):
            await fleet.wait_ready(fleet.spawn())
        published = 0

        def progress(n: int) -> None:
            nonlocal published
            published = n

        async with Bus(url, name=bus_name) as pub:
            await pub.flush()
            publishing = asyncio.create_task(
                # the rolling run lasts longer: each kill waits for the recovery and the restart
                publish_paced(pub, topic, N, chunk=50, pause=PAUSE[mode], progress=progress)
            )
            thresholds = (0.3,) if mode == "leader" else (0.2, 0.45, 0.7)
            for threshold in (int(N * f) for f in thresholds):
                while published < threshold and not publishing.done():
                    await asyncio.sleep(0.01)
                if mode == "leader":
                    victim = await cluster.leader_of(stream)
                else:
                    victim = rng.choice(cluster.nodes)
                at_kill = published
                t_kill = time.monotonic()
                victim.kill()
                killed.append(victim)
                suspects.update(unconfirmed(pub))
                for w in fleet.alive():
                    w.read()
                    suspects.update(w.held() | w.done_since(t_kill - ACK_WINDOW))
                pub_s = await confirmed_after(
                    pub, t_kill, lambda k=at_kill: published > k or publishing.done()
                )
                consumers_s = float("nan")  # nothing published after the kill to measure it
                try:
                    if at_kill < N - 100:
                        consumers_s = await first_handled_after(fleet, at_kill, t_kill)
                except AssertionError as exc:
                    state = await consumer_state(cluster, stream, "workers")
                    raise AssertionError(f"killed {victim.server_name}; {state}") from exc
                # until the consumer's new leader settled, an acknowledgement may not be kept:
                # what was handled (or held) from just before the kill to ACK_WINDOW after the
                # recovery may be delivered again
                await asyncio.sleep(ACK_WINDOW)
                for w in fleet.alive():
                    w.read()
                    suspects.update(w.held() | w.done_since(t_kill - ACK_WINDOW))
                recoveries.append((victim.server_name, pub_s, consumers_s))
                if mode == "rolling":
                    await asyncio.sleep(1.0)
                    await victim.astart()
                    await asyncio.to_thread(cluster.wait_jetstream)
                    await asyncio.sleep(1.0)  # catching up with the stream before the next
            stats = await publishing

        done = await wait_all_done(fleet, N, timeout=60)
        lost = sorted(set(range(N)) - set(done))
        twice = {seq: n for seq, n in done.items() if n > 1}
        unexplained = sorted(set(twice) - suspects)
        print(
            f"\nnats cluster, {mode}: published {stats.sent} ({stats.connection_lost} publishes "
            f"retried after ConnectionLost), lost {len(lost)}, handled twice {len(twice)} "
            f"(suspects {len(suspects)}, unexplained {len(unexplained)}), seed {seed}"
        )
        for node, pub_s, consumers_s in recoveries:
            print(
                f"  killed {node}: publisher confirmed again after {pub_s:.2f}s, "
                f"a new event handled after {consumers_s:.2f}s"
            )
        assert not lost, f"lost {len(lost)}: {lost[:20]} (seed {seed})\n{fleet.stderr_tails()}"
        assert not unexplained, f"duplicates beyond the bound: {unexplained[:20]} (seed {seed})"
        assert not fleet.dead(), fleet.dead()
    finally:
        fleet.stop_all()
        for node in killed:
            await node.astart()


async def consumer_state(cluster: NatsCluster, stream: str, consumer: str) -> str:
    """The consumer's counters and replicas as a live node sees them (for failure messages)."""
    try:
        leader = await cluster.leader_of(stream, consumer)
        return f"consumer leader {leader.server_name}"
    except Exception as exc:
        return f"consumer info failed: {exc!r}"
