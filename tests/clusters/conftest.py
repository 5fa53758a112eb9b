"""One private cluster per test session for each broker, on free loopback ports, every node
stopped (by PID) at the end: a 3-node NATS JetStream cluster and a Redis Cluster of 3 masters
and 3 replicas. Tests that kill nodes restart them before they return, so the next test finds
the whole cluster."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clusters import NatsCluster, RedisCluster
from tests.support.services import skip_or_fail


@pytest.fixture(scope="session")
def nats_cluster() -> Iterator[NatsCluster]:
    with tempfile.TemporaryDirectory(prefix="axonbus-natscluster-") as base:
        try:
            cluster = NatsCluster(Path(base))
        except FileNotFoundError as exc:
            skip_or_fail(str(exc))
        with cluster:
            yield cluster


@pytest.fixture
def healthy_nats_cluster(nats_cluster: NatsCluster) -> NatsCluster:
    """The session's NATS cluster with every node running and JetStream answering."""
    for node in nats_cluster.nodes:
        node.start()
    nats_cluster.wait_jetstream()
    return nats_cluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    with tempfile.TemporaryDirectory(prefix="axonbus-rediscluster-") as base:
        try:
            cluster = RedisCluster(Path(base))
        except FileNotFoundError as exc:
            skip_or_fail(str(exc))
        with cluster:
            yield cluster
