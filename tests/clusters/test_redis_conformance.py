"""The conformance kit on a private Redis Cluster (3 masters, 3 replicas) through
``redis+cluster://``: every key of a bus carries its name as a hash tag."""

from __future__ import annotations

import uuid

import pytest

from axonbus import Bus
from axonbus.testing import CHECKS, CheckSkipped
from tests.support.clusters import RedisCluster


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_redis_cluster_conformance(check: str, redis_cluster: RedisCluster) -> None:
    name = f"rc{uuid.uuid4().hex[:8]}"  # both buses of a two-bus check share the name
    try:
        await CHECKS[check](lambda: Bus(redis_cluster.url, name=name))
    except CheckSkipped as skip:
        pytest.skip(str(skip))


async def test_buses_spread_over_the_shards(redis_cluster: RedisCluster) -> None:
    """Each bus lives on the master of its name's slot; many names use every master."""
    masters = set()
    for i in range(12):
        async with Bus(redis_cluster.url, name=f"spread{i}") as bus:
            got: list[int] = []
            bus.subscribe("x.y", got.append, durable="d")
            await bus.flush()
            await bus.publish("x.y", i)
            await bus.drain(timeout=5)
            master = bus.transport.master  # type: ignore[attr-defined]
            assert master.endswith(f":{redis_cluster.master_of('{' + f'spread{i}' + '}').port}")
            masters.add(master)
    assert len(masters) == 3, masters
