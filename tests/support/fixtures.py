"""Pytest fixtures for services and private brokers (registered from ``tests/conftest.py``)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import nats
import pytest
import redis.asyncio as aioredis

from axonbus.transports.log._store import table_prefix
from tests.support.brokers import NatsServer, RabbitServer, RedisServer, find_binary
from tests.support.services import (
    amqp_url,
    nats_url,
    postgres_url,
    redis_url,
    require,
    skip_or_fail,
)

__all__ = [
    "amqp_bus_name",
    "amqp_service",
    "delete_amqp_bus",
    "delete_nats_stream",
    "drop_postgres_tables",
    "make_nats",
    "make_redis",
    "nats_bus_name",
    "nats_service",
    "postgres_bus_name",
    "postgres_service",
    "private_nats",
    "private_rabbit",
    "private_redis",
    "redis_bus_name",
    "redis_raw",
    "redis_service",
]


def make_redis(data_dir: str | os.PathLike[str] | None = None, **options: Any) -> RedisServer:
    """A (not yet started) RedisServer; skips, or fails in CI, if redis-server is missing."""
    try:
        return RedisServer(data_dir, **options)
    except FileNotFoundError as exc:
        skip_or_fail(str(exc))


def make_nats(data_dir: str | os.PathLike[str] | None = None, **options: Any) -> NatsServer:
    """A (not yet started) NatsServer; skips, or fails in CI, if nats-server is missing."""
    try:
        return NatsServer(data_dir, **options)
    except FileNotFoundError as exc:
        skip_or_fail(str(exc))


@pytest.fixture(scope="session")
def redis_service() -> str:
    """URL of the shared Redis; skips (fails in CI) if it is not up."""
    url = redis_url()
    require("redis", url)
    return url


@pytest.fixture(scope="session")
def nats_service() -> str:
    """URL of the shared NATS with JetStream; skips (fails in CI) if it is not up."""
    url = nats_url()
    require("nats", url)
    return url


@pytest.fixture(scope="session")
def postgres_service() -> str:
    """URL of the shared PostgreSQL; skips (fails in CI) if it is not up."""
    url = postgres_url()
    require("postgres", url)
    return url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A started private Redis (appendonly) on its own port, stopped after the test."""
    with make_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A started private NATS with JetStream on its own port, stopped after the test."""
    with make_nats(tmp_path / "nats") as server:
        yield server


async def delete_nats_stream(url: str, name: str) -> None:
    """Delete the JetStream stream of bus ``name`` (``AXONBUS_{name}``), if there is one."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        await nc.jetstream().delete_stream(f"AXONBUS_{name}")
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


@pytest.fixture
async def nats_bus_name(nats_service: str) -> AsyncIterator[str]:
    """A bus name of its own on the shared NATS; its JetStream stream is deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    await delete_nats_stream(nats_service, name)


@pytest.fixture
def redis_bus_name() -> str:
    """A bus name of its own on the shared Redis (its keys go with ``redis_raw``)."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_raw(redis_service: str, redis_bus_name: str) -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client; every key of ``redis_bus_name`` is deleted afterwards."""
    client = aioredis.Redis.from_url(redis_service)
    yield client
    keys = [k async for k in client.scan_iter(f"{redis_bus_name}[:/]*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def drop_postgres_tables(url: str, name: str) -> None:
    """Drop every table and sequence of bus ``name`` (``ab_{name}_*``) at ``url``."""
    like = table_prefix(name).replace("_", r"\_") + "%"
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, c.relkind::text AS relkind FROM pg_class c "  # "char" is bytes
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'S') AND c.relname LIKE $1",
            like,
        )
        tables = [r["relname"] for r in rows if r["relkind"] == "r"]
        sequences = [r["relname"] for r in rows if r["relkind"] == "S"]
        if tables:
            await conn.execute(f"DROP TABLE IF EXISTS {', '.join(tables)} CASCADE")
        if sequences:
            await conn.execute(f"DROP SEQUENCE IF EXISTS {', '.join(sequences)} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def postgres_bus_name(postgres_service: str) -> AsyncIterator[str]:
    """A bus name of its own on the shared Postgres; its tables are dropped afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    await drop_postgres_tables(postgres_service, name)


def _rabbitmqctl(*args: str) -> bool:
    """Run ``rabbitmqctl`` against the local node; False if it is missing or refused."""
    ctl = find_binary("rabbitmqctl")
    if ctl is None:
        return False
    try:
        done = subprocess.run([ctl, *args], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


async def delete_amqp_bus(url: str, name: str, durables: list[str]) -> None:
    """Delete what bus ``name`` made on the RabbitMQ at ``url``: its exchanges, its dead
    letters and the queues of ``durables`` (the rest is auto-deleted with its consumers)."""
    import aiormq

    root = f"axonbus.{name}"
    conn = await aiormq.connect(url)
    try:
        channel = await conn.channel()
        for queue in [f"{root}.dead_letters", *(f"{root}.durable.{d}" for d in durables)]:
            await channel.queue_delete(queue)
        for exchange in (root, f"{root}.rpc", f"{root}.retry"):
            await channel.exchange_delete(exchange)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def amqp_service() -> Iterator[str]:
    """URL of the shared RabbitMQ; skips (fails in CI) if it is not up.

    On a local node the tests get a virtual host of their own, deleted at the end of the run
    with every exchange and queue in it; elsewhere they rely on unique bus names.
    """
    url = amqp_url()
    require("amqp", url)
    parts = urlsplit(url)
    local = parts.hostname in ("127.0.0.1", "localhost") and parts.path in ("", "/")
    vhost = f"axonbus-test-{uuid.uuid4().hex[:8]}"
    if not (local and _rabbitmqctl("add_vhost", vhost)):
        yield url
        return
    user = unquote(parts.username or "guest")
    try:
        if not _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*"):
            yield url
            return
        yield parts._replace(path=f"/{vhost}").geturl()
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def amqp_bus_name(amqp_service: str) -> str:
    """A bus name of its own on the shared RabbitMQ (its names start with ``axonbus.{name}``)."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def private_rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitServer]:
    """A private RabbitMQ node for the fault tests, started once per run (it boots slowly);
    tests kill and restart it, each with bus names of its own."""
    try:
        server = RabbitServer(tmp_path_factory.mktemp("rabbit"))
    except FileNotFoundError as exc:
        skip_or_fail(str(exc))
    with server:
        yield server
