"""The public surface plugins build on: the Bus's loop, middleware, subscriptions' version and
event log, the sync Bus's async Bus, an envelope's headers without creating them, and the
configuration split into settings and what builds from them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from axonbus import Bus, Config, ConfigError, Envelope, Middleware, load_config
from axonbus._config import ConfigData
from axonbus.sync import Bus as SyncBus


async def test_loop_is_the_one_the_bus_started_on() -> None:
    bus = Bus()
    assert bus.loop is None
    async with bus:
        assert bus.loop is asyncio.get_running_loop()


def test_middleware_is_what_the_constructor_got() -> None:
    first, second = Middleware(), Middleware()
    bus = Bus(middleware=[first, second])
    assert bus.middleware == (first, second)
    assert Bus().middleware == ()


async def test_subscriptions_version_changes_when_a_subscription_comes_or_goes() -> None:
    async def handler(event: object) -> None:
        pass

    async with Bus() as bus:
        before = bus.subscriptions_version
        sub = bus.subscribe("a.b", handler)
        added = bus.subscriptions_version
        assert added != before
        assert bus.subscriptions_version == added  # reading it changes nothing
        bus.unsubscribe(sub)
        assert bus.subscriptions_version not in (before, added)


async def test_event_log_is_the_transport_when_it_keeps_one(tmp_path: Path) -> None:
    assert Bus().event_log is None
    bus = Bus(f"sqlite:///{tmp_path / 'events.db'}")
    assert bus.event_log is bus.transport
    async with bus:
        await bus.publish("a.b", {"n": 1}, wait=True)
        log = bus.event_log
        assert log is not None
        assert [env.topic async for env in log.replay("a.>", None, None, False, None)] == ["a.b"]


def test_sync_bus_hands_out_its_async_bus() -> None:
    with SyncBus() as bus:
        inner = bus.async_bus
        assert isinstance(inner, Bus)
        assert inner.state == "started"
        assert inner.loop is not None
        assert inner.loop.is_running()


def test_headers_or_none_creates_no_dict() -> None:
    env = Envelope("a.b", {})
    assert env.headers_or_none is None
    assert env.headers_or_none is None  # still: reading did not create them
    env.headers["traceparent"] = "00-x"
    assert env.headers_or_none == {"traceparent": "00-x"}


def test_config_is_settings_plus_building(tmp_path: Path) -> None:
    path = tmp_path / "axonbus.toml"
    path.write_text('[bus]\nurl = "memory://"\nname = "n1"\n', encoding="utf-8")
    config = load_config(path)
    assert isinstance(config, Config)
    assert isinstance(config, ConfigData)
    assert config.make_bus().name == "n1"
    data = ConfigData.from_mapping({"bus": {"url": "memory://", "name": "n2"}})
    assert not hasattr(data, "make_bus")  # the settings alone build nothing
    assert data.bus.name == "n2"


def test_the_gateway_checks_inline_tokens_of_a_config_only() -> None:
    """Inline tokens are checked by the gateway's rules, which the settings do not import:
    ``Config`` (the composition) reports a bad one, ``ConfigData`` leaves it to it."""
    bad = {"gateway": {"tokens": [{"name": "t", "token": "short", "publish": ["a.>"]}]}}
    ConfigData.from_mapping(bad)
    with pytest.raises(ConfigError, match=r"gateway\.tokens\[0\]"):
        Config.from_mapping(bad)
