"""The distributed actor runtime on a 3-node NATS cluster keeps answering sends while a node
is killed (-9): a send in flight may fail with ``Undeliverable`` or ``RequestTimeout``, none
hangs, and answers resume within a bound.

Two runtime worker processes (tests/faults/runtime_worker.py) host ``counter`` agents; this
process is the client. Every URL names the three nodes, so the processes connected to the
killed node reconnect to another one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from axonbus import Bus
from axonbus.runtime import AgentId, AgentRuntime, RequestTimeout, Undeliverable
from tests.faults.runtime_agents import Count, Inc
from tests.faults.runtime_worker import RuntimeWorker, wait_ready
from tests.support.clusters import NatsCluster

pytestmark = pytest.mark.slow

HEARTBEAT = 0.3
SEND_TIMEOUT = 2.0
NO_HANG = SEND_TIMEOUT + 8.0  # a send that has not returned by then hangs
RESUME_BOUND = 20.0  # answers again after the kill (reconnect, membership heartbeats)


@pytest.mark.timeout(120)
async def test_sends_keep_being_answered_across_a_node_kill(
    healthy_nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    cluster = healthy_nats_cluster
    url, bus_name = cluster.url, f"rt{uuid.uuid4().hex[:8]}"
    args = ["--url", url, "--bus", bus_name, "--name", "counters", "--heartbeat", str(HEARTBEAT)]
    workers = [RuntimeWorker(i, tmp_path, args) for i in range(2)]
    client = AgentRuntime(Bus(url, name=bus_name), name="counters", heartbeat=HEARTBEAT)
    client.message_types.register(Count)
    victim = cluster.nodes[0]
    outcomes: list[tuple[float, str]] = []  # (time sent, "ok" | exception name)
    returned: list[float] = []  # when each failed send returned
    try:
        await wait_ready(workers)
        await client.start()

        async def send(i: int) -> None:
            t = time.monotonic()
            try:
                async with asyncio.timeout(NO_HANG):
                    got = await client.send_message(
                        Inc(), AgentId("counter", f"k{i % 20}"), timeout=SEND_TIMEOUT
                    )
                assert isinstance(got, Count)
                outcomes.append((t, "ok"))
            except (Undeliverable, RequestTimeout) as exc:
                outcomes.append((t, type(exc).__name__))
                returned.append(time.monotonic())
            except TimeoutError:
                raise AssertionError(f"a send hung for {NO_HANG}s") from None

        for i in range(20):  # every key answered before the kill
            await send(i)
        assert all(o == "ok" for _, o in outcomes), outcomes
        t_kill = time.monotonic()
        victim.kill()
        i = 0
        while time.monotonic() - t_kill < RESUME_BOUND:
            await asyncio.gather(*(send(i + j) for j in range(4)))  # some in flight at once
            i += 4
            recent = [o for t, o in outcomes if t > t_kill][-20:]
            if len(recent) == 20 and all(o == "ok" for o in recent):
                break
        after = [(t - t_kill, o) for t, o in outcomes if t > t_kill]
        failed = [o for _, o in after if o != "ok"]
        # answers resumed: the last failure returned, and the 20 sends after it were answered
        resumed = max(returned, default=t_kill) - t_kill
        print(
            f"\nruntime on a nats cluster, node killed: {len(after)} sends after the kill, "
            f"{len(failed)} failed ({', '.join(sorted(set(failed))) or 'none'}), the last "
            f"failure returned {resumed:.2f}s after the kill"
        )
        recent = [o for _, o in after][-20:]
        assert recent == ["ok"] * 20, f"sends still failing {RESUME_BOUND}s after the kill"
    finally:
        await client.close(timeout=2.0)
        await client.bus.close()
        for w in workers:
            w.stop()
        await victim.astart()
