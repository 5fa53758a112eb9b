"""The test-support package works: service checks, fault proxy, private brokers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import services
from tests.support.brokers import BrokerError, NatsServer, RedisServer, free_port
from tests.support.browser import require_chromium
from tests.support.fixtures import make_redis
from tests.support.proxy import Mode, TcpProxy
from tests.support.services import skip_or_fail

try:
    import nats
    import redis.asyncio as aioredis
    from nats.aio.client import Client as NatsClient
    from nats.js.errors import NotFoundError
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the environment
    skip_or_fail(f"client library missing: {exc}", allow_module_level=True)


def _client(url: str, timeout: float = 1.0) -> aioredis.Redis:
    # no retries: redis-py retries 3 times with backoff by default, which would hide the
    # fault (and cost seconds) instead of surfacing it
    return aioredis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


@pytest.fixture
async def redis_proxy(redis_service: str) -> AsyncIterator[TcpProxy]:
    host, port = services.host_port(redis_service)
    async with TcpProxy(host, port) as proxy:
        yield proxy
        assert proxy.errors == []


# -- services ---------------------------------------------------------------------------


def test_require_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"redis is not available at redis://"):
        services.require("redis", url)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so a missing service"):
        services.require("redis", url)
    assert url in services._probe_cache  # probed once, not once per call


def test_require_passes_for_shared_services(redis_service: str, nats_service: str) -> None:
    assert services.probe("redis", redis_service) is None
    assert services.probe("nats", nats_service) is None


def test_probe_tells_a_non_jetstream_port_apart() -> None:
    # a listener that never speaks: the NATS check must time out, not hang
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        problem = services.probe("nats", f"nats://127.0.0.1:{port}", timeout=0.2)
    assert problem is not None
    assert "timed out" in problem


def test_url_helpers() -> None:
    assert services.redact("redis://u:secret@h:1/0") == "redis://u:***@h:1/0"
    assert services.with_address("redis://u:p@h:1/2?x=1", "127.0.0.1", 9) == (
        "redis://u:p@127.0.0.1:9/2?x=1"
    )
    assert services.host_port("nats://example:4333") == ("example", 4333)
    assert services.host_port("postgresql://postgres@db/test") == ("db", 5432)


# -- proxy ------------------------------------------------------------------------------


async def test_proxy_forwards(redis_proxy: TcpProxy, redis_service: str) -> None:
    url = redis_proxy.url_for(redis_service)
    assert f":{redis_proxy.port}/" in url
    client = _client(url)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()
    assert redis_proxy.connections_total == 1
    assert redis_proxy.bytes_forwarded > 0


async def test_proxy_cut_and_heal(redis_proxy: TcpProxy, redis_service: str) -> None:
    url = redis_proxy.url_for(redis_service)
    client = _client(url)
    fresh = _client(url)
    healed = _client(url)
    try:
        assert await client.ping() is True
        redis_proxy.cut()
        assert redis_proxy.mode is Mode.CUT
        with pytest.raises(RedisConnectionError):
            await client.ping()  # the open connection was reset
        with pytest.raises(RedisConnectionError):
            await fresh.ping()  # and new ones are refused
        redis_proxy.heal()
        assert await healed.ping() is True
        assert await client.ping() is True  # the old client reconnects by itself
    finally:
        for c in (client, fresh, healed):
            await c.aclose()


async def test_proxy_blackhole_times_out(redis_proxy: TcpProxy, redis_service: str) -> None:
    url = redis_proxy.url_for(redis_service)
    client = _client(url, timeout=0.5)
    try:
        assert await client.ping() is True
        redis_proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await client.ping()
        assert time.monotonic() - started >= 0.4
        redis_proxy.heal()
        assert await client.ping() is True
    finally:
        await client.aclose()


async def test_proxy_blackhole_heal_resumes_held_bytes(
    redis_proxy: TcpProxy, redis_service: str
) -> None:
    reader, writer = await asyncio.open_connection(*redis_proxy.address)
    try:
        writer.write(b"PING\r\n")
        assert await asyncio.wait_for(reader.readline(), 1) == b"+PONG\r\n"
        redis_proxy.blackhole()
        writer.write(b"PING\r\n")
        late_reader, late_writer = await asyncio.open_connection(*redis_proxy.address)
        late_writer.write(b"PING\r\n")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readline(), 0.2)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(late_reader.readline(), 0.2)
        redis_proxy.heal()
        # the request held by the blackhole is delivered and answered now
        assert await asyncio.wait_for(reader.readline(), 1) == b"+PONG\r\n"
        # and a connection accepted during the blackhole is connected upstream now
        assert await asyncio.wait_for(late_reader.readline(), 1) == b"+PONG\r\n"
        late_writer.close()
        await late_writer.wait_closed()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_proxy_close_leaves_nothing_running(redis_service: str) -> None:
    proxy = await TcpProxy(*services.host_port(redis_service)).start()
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(b"PING\r\n")
    assert await asyncio.wait_for(reader.readline(), 1) == b"+PONG\r\n"
    proxy.blackhole()  # the hardest case: a pump parked on the blackhole
    writer.write(b"PING\r\n")
    await asyncio.sleep(0.05)
    await proxy.close()
    assert proxy.active_connections == 0
    assert proxy.errors == []
    assert asyncio.all_tasks() == {asyncio.current_task()}
    with pytest.raises(ConnectionResetError):  # the client saw it go, as a reset
        await asyncio.wait_for(reader.read(), 1)
    writer.close()
    with contextlib.suppress(ConnectionResetError):
        await writer.wait_closed()


# -- private brokers --------------------------------------------------------------------


async def _get(url: str, key: str) -> bytes | None:
    # a fresh client: a pooled connection from before a restart is dead, and with retries
    # off its first command would fail
    client = _client(url)
    try:
        value = await client.get(key)
        assert value is None or isinstance(value, bytes)
        return value
    finally:
        await client.aclose()


async def test_private_redis_survives_restart_and_kill(private_redis: RedisServer) -> None:
    assert private_redis.port not in (6379, 4222)
    client = _client(private_redis.url)
    try:
        await client.set("k", "v")
    finally:
        await client.aclose()
    await private_redis.arestart()  # SIGKILL, then start on the same port and dir
    assert await _get(private_redis.url, "k") == b"v"
    private_redis.kill()
    assert not private_redis.running
    with pytest.raises(RedisConnectionError):
        await _get(private_redis.url, "k")
    private_redis.start()
    assert await _get(private_redis.url, "k") == b"v"


async def test_private_redis_without_appendonly_forgets(tmp_path: Path) -> None:
    with make_redis(tmp_path, appendonly=False) as server:
        client = _client(server.url)
        try:
            await client.set("k", "v")
        finally:
            await client.aclose()
        server.restart()
        assert await _get(server.url, "k") is None


def test_private_redis_start_failure_shows_the_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = make_redis(tmp_path, port=taken.getsockname()[1])
        with pytest.raises(BrokerError, match=r"(?s)exited with code.*Address already in use"):
            server.start()
        server.stop()


async def test_private_nats_keeps_streams_across_restart(private_nats: NatsServer) -> None:
    async def connect() -> NatsClient:
        return await nats.connect(private_nats.url, connect_timeout=1, allow_reconnect=False)

    nc = await connect()
    try:
        js = nc.jetstream(timeout=2)
        with pytest.raises(NotFoundError):
            await js.stream_info("ORDERS")
        await js.add_stream(name="ORDERS", subjects=["orders.>"])
        await js.publish("orders.new", b"1")
    finally:
        await nc.close()

    await private_nats.arestart()
    assert (private_nats.store_dir / "jetstream").is_dir()

    nc = await connect()
    try:
        info = await nc.jetstream(timeout=2).stream_info("ORDERS")
        assert info.config.subjects == ["orders.>"]
    finally:
        await nc.close()


def test_missing_chromium_skips_locally_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AXONBUS_TEST_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(
        pytest.skip.Exception, match=r"Chromium is not installed at .*ensure-browser"
    ):
        require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_chromium()
