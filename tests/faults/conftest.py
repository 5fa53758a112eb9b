"""The private broker each multi-process fault test runs against: redis://, nats:// and amqp://
by default; a test that also runs on sqlite:// says so with
``@pytest.mark.parametrize("broker", [..., "sqlite"], indirect=True)``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Broker, SharedPostgres, SqliteFile
from tests.support.fixtures import make_nats, make_redis
from tests.support.services import postgres_url, require


@pytest.fixture(params=["redis", "nats", "amqp"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """A started private broker that keeps its data across ``kill -9`` and restarts."""
    if request.param == "redis":
        # appendonly + appendfsync always: what Redis acknowledged is on disk
        with make_redis(tmp_path / "redis", appendonly=True, appendfsync="always") as redis:
            yield Broker("redis", redis, takeover="claim_idle=1")
    elif request.param == "nats":
        # JetStream with a store directory (-sd), kept across restarts
        with make_nats(tmp_path / "nats") as nats:
            yield Broker("nats", nats, takeover="ack_wait=1")
    elif request.param == "amqp":
        # the run's private RabbitMQ node (it boots slowly: one per run), durable quorum
        # queues on disk; a test that killed it left it restarted
        rabbit = request.getfixturevalue("private_rabbit")
        rabbit.start()
        yield Broker("amqp", rabbit, takeover="")
    elif request.param == "postgres":
        # the shared server (only worker processes are killed): tables per bus name
        url = postgres_url()
        require("postgres", url)
        yield Broker("postgres", SharedPostgres(url), takeover="claim_idle=1")
    else:
        # no server: the processes share one WAL file (nothing to restart)
        yield Broker("sqlite", SqliteFile(tmp_path / "bus.db"), takeover="claim_idle=1")
