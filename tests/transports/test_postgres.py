"""What only ``postgresql://`` does: URL handling, outages, cross-process delivery (shared
Postgres; the store itself is tested in test_postgres_store.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from axonbus import Bus, ConnectionLost
from axonbus.testing import settle
from axonbus.transports.base import open_transport
from axonbus.transports.log._store import table_prefix
from axonbus.transports.postgres import PostgresAliasTransport, PostgresTransport


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_both_schemes_and_the_options() -> None:
    transport = open_transport(
        "postgresql://u:secret@db:5433/app?pool=2&claim_idle=3&sslmode=disable"
    )
    assert type(transport) is PostgresTransport
    assert transport.pool_size == 2
    assert transport.claim_idle == 3
    # axonbus's own options are taken out, the rest goes to asyncpg
    assert transport.dsn == "postgresql://u:secret@db:5433/app?sslmode=disable"
    assert "secret" not in repr(transport)
    assert type(open_transport("postgres://db/app")) is PostgresAliasTransport


@pytest.mark.parametrize("query", ["pool=0", "pool=x", "pool=1.5"])
def test_bad_url_options_are_refused(query: str) -> None:
    with pytest.raises(ValueError, match="pool"):
        open_transport(f"postgresql://db/app?{query}")


async def test_unreachable_postgres_fails_start_with_connection_lost() -> None:
    bus = Bus("postgresql://postgres@127.0.0.1:1/test?unavailable_timeout=1")
    with pytest.raises(ConnectionLost):
        await bus.start()
    await bus.close()


async def test_events_cross_processes_by_kind(
    postgres_service: str,
    postgres_bus_name: str,
) -> None:
    plain: list[int] = []
    durable: list[int] = []
    async with (
        Bus(postgres_service, name=postgres_bus_name) as sender,
        Bus(postgres_service, name=postgres_bus_name) as receiver,
    ):
        receiver.subscribe("x.>", plain.append)
        receiver.subscribe("x.>", durable.append, durable="d")
        await receiver.flush()
        for i in range(50):
            await sender.publish("x.y", i)
        await settle(receiver, lambda: len(plain) == 50 and len(durable) == 50)
        assert plain == list(range(50))
        assert durable == list(range(50))


async def test_a_durable_survives_its_connections_being_killed(
    postgres_service: str,
    postgres_bus_name: str,
) -> None:
    got: list[int] = []
    url = f"{postgres_service}?unavailable_timeout=10"
    async with (
        Bus(url, name=postgres_bus_name) as sender,
        Bus(url, name=postgres_bus_name) as receiver,
    ):
        receiver.subscribe("k.x", got.append, durable="d")
        await receiver.flush()
        await sender.publish("k.x", 0)
        await until(lambda: got == [0])
        # every connection of this bus, both processes' pools and listeners
        admin = await asyncpg.connect(postgres_service)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                f"axonbus {table_prefix(postgres_bus_name)}"[:63],
            )
        finally:
            await admin.close()
        assert killed >= 2
        for i in range(1, 20):
            await sender.publish("k.x", i)
        await until(lambda: sorted(set(got)) == list(range(20)), timeout=10)
