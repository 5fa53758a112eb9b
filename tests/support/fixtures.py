"""Pytest fixtures for services and private brokers (registered from ``tests/conftest.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.brokers import NatsServer, RedisServer
from tests.support.services import nats_url, redis_url, require, skip_or_fail

__all__ = [
    "make_nats",
    "make_redis",
    "nats_service",
    "private_nats",
    "private_redis",
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
