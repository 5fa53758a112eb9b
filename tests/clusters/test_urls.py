"""Cluster URLs without a server: seeds, credentials on each, ``replicas=``, ``servers=``."""

from __future__ import annotations

import pytest

from axonbus import Bus, Config, ConfigError
from axonbus.transports.nats import NatsTransport


def test_nats_url_names_every_seed_with_its_credentials() -> None:
    bus = Bus("nats://app:s3cret@n1:4222,n2:4223, n3:4224?replicas=3")
    transport = bus.transport
    assert isinstance(transport, NatsTransport)
    assert transport._servers == [
        "nats://app:s3cret@n1:4222",
        "nats://app:s3cret@n2:4223",
        "nats://app:s3cret@n3:4224",
    ]
    assert transport.limits.replicas == 3
    assert "s3cret" not in repr(transport)


def test_replicas_default_alias_and_bounds() -> None:
    def replicas(url: str) -> int:
        transport = Bus(url).transport
        assert isinstance(transport, NatsTransport)
        return transport.limits.replicas

    assert replicas("nats://n1:4222") == 1
    assert replicas("nats://n1:4222?stream_replicas=3") == 3
    for bad in ("0", "6"):
        with pytest.raises(ValueError, match="replicas"):
            Bus(f"nats://n1:4222?replicas={bad}")
    with pytest.raises(ValueError, match="host"):
        Bus("nats://?replicas=1")


def test_config_servers_join_the_url_hosts() -> None:
    config = Config.from_mapping(
        {"bus": {"url": "nats://u:p@n1:4222?replicas=3", "servers": ["n2:4222", "n1:4222"]}}
    )
    assert config.bus_url() == "nats://u:p@n1:4222,n2:4222?replicas=3"
    only = Config.from_mapping({"bus": {"url": "nats://", "servers": ["a:1", "b:2"]}})
    assert only.bus_url() == "nats://a:1,b:2"
    with pytest.raises(ConfigError, match=r"bus\.servers"):
        Config.from_mapping({"bus": {"url": "sqlite:///x.db", "servers": ["a:1"]}}).check()


def test_redis_cluster_url_seeds_options_and_hash_tag() -> None:
    from axonbus.transports.redis import RedisClusterTransport

    bus = Bus("redis+cluster://:s3cret@a:7000,b:7001/0?wait_replicas=1&maxlen=50")
    transport = bus.transport
    assert isinstance(transport, RedisClusterTransport)
    assert transport.seeds == [("a", 7000), ("b", 7001)]
    assert (transport.wait_replicas, transport.maxlen) == (1, 50)
    assert transport.key_prefix("shop") == "{shop}"
    assert "s3cret" not in repr(transport)
    with pytest.raises(ValueError, match="database 0"):
        Bus("redis+cluster://a:7000/3")
    with pytest.raises(ValueError, match="host:port"):
        Bus("redis+cluster://a,b:7000")
    with pytest.raises(ValueError, match="no '\\{'"):
        transport.key_prefix("a{b}")
    config = Config.from_mapping({"bus": {"url": "redis+cluster://a:7000", "servers": ["b:7001"]}})
    config.check()
    assert config.bus_url() == "redis+cluster://a:7000,b:7001"
