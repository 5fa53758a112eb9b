"""The benchmark harness keeps working (rates are not asserted: this machine is shared)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.services import amqp_url, nats_url, postgres_url, redis_url, require

ROOT = Path(__file__).parent.parent


def _run_quick(
    module: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float
) -> dict[str, Any]:
    """``python -m benchmarks.<module> --quick --plain *args``: exits 0; its JSON report."""
    out = tmp_path / f"{module}.json"
    command = [sys.executable, "-m", f"benchmarks.{module}", "--quick", "--plain", *args]
    proc = subprocess.run(
        [*command, "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def _check_workloads(report: dict[str, Any], keys: Iterable[str], *, skippable: bool) -> None:
    """Every workload in ``keys`` ran: axonbus and its anchor have positive rates, no row errors;
    with ``skippable``, other rows may be skipped (their library is not installed)."""
    assert set(report["workloads"]) == set(keys)
    for key, workload in report["workloads"].items():
        rows = {row["name"]: row for row in workload["rows"]}
        for name in ("axonbus", workload["anchor"]):
            row = rows[name]
            assert row["rates"], f"{key} / {name}: {row['note']}"
            assert all(rate > 0 for rate in row["rates"]), f"{key} / {name}: {row['rates']}"
        for row in workload["rows"]:
            assert not row["note"].startswith("error:"), f"{key} / {row['name']}: {row['note']}"
            if not (skippable and row["note"].startswith("skipped:")):
                assert row["median"] > 0, f"{key} / {row['name']}"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_amqp_benchmark_runs(tmp_path: Path) -> None:
    """Every RabbitMQ workload runs end to end (FastStream rows may be skipped)."""
    require("amqp", amqp_url())
    from benchmarks.amqp import WORKLOAD_KEYS

    keys = list(WORKLOAD_KEYS)
    env = {"AXONBUS_BENCH_AMQP_URL": amqp_url()}
    report = _run_quick("amqp", tmp_path, "--only", ",".join(keys), env=env, timeout=110)
    _check_workloads(report, keys, skippable=True)
    assert "guest:guest" not in json.dumps(report)  # no credentials in a report


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_benchmark_runs(tmp_path: Path) -> None:
    text = json.dumps(_run_quick("core", tmp_path, timeout=170))
    assert "axonbus" in text
    assert '"error:' not in text


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_broker_benchmark_runs(tmp_path: Path) -> None:
    """Every broker workload runs end to end: axonbus and its anchor have positive rates, no row
    errors. Context rows (FastStream) may be skipped when their library is not installed."""
    require("redis", redis_url())
    require("nats", nats_url())
    from benchmarks.brokers import WORKLOAD_KEYS

    keys = list(WORKLOAD_KEYS)
    env = {"AXONBUS_BENCH_REDIS_URL": redis_url(), "AXONBUS_BENCH_NATS_URL": nats_url()}
    report = _run_quick("brokers", tmp_path, "--only", ",".join(keys), env=env, timeout=110)
    _check_workloads(report, keys, skippable=True)


def _check_storage_benchmark(tmp_path: Path, workloads: list[str]) -> None:
    env = {"AXONBUS_BENCH_POSTGRES_URL": postgres_url()}
    report = _run_quick("storage", tmp_path, "--only", ",".join(workloads), env=env, timeout=110)
    _check_workloads(report, workloads, skippable=False)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_sqlite_storage_benchmark_runs(tmp_path: Path) -> None:
    """The sqlite storage workloads run end to end (no service needed): axonbus and every
    anchor have positive rates, no row errors."""
    _check_storage_benchmark(tmp_path, ["sqlite-publish", "sqlite-consume"])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_postgres_storage_benchmark_runs(tmp_path: Path) -> None:
    """The postgres storage workload runs end to end against the shared Postgres."""
    require("postgres", postgres_url())
    _check_storage_benchmark(tmp_path, ["postgres-publish"])


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_quick_gateway_benchmark_runs(tmp_path: Path) -> None:
    """The gateway workloads run end to end (no service needed): every SSE trial and ramp step
    delivered events to its client process without an error, the WebSocket rows (axonbus,
    the Starlette echo anchor, the context rows) have positive rates, and the many-client and
    fan-out trials (a few hundred clients here, on uvloop when installed) ran without an error."""
    report = _run_quick("gateway", tmp_path, timeout=190)
    _check_workloads(report, ["ws"], skippable=False)
    assert set(report["sse"]) == {"sse", "sse-topics"}
    trials = [t for phase in report["sse"].values() for t in phase["rounds"]]
    trials += report["ramp"]["steps"]
    assert trials
    for trial in trials:
        assert not trial["error"], trial["error"]
        assert trial["received"] > 0, trial
    many = report["many"]
    assert set(many) == {"loops", "many-sse", "many-ws", "fanout"}
    for key in ("many-sse", "many-ws"):
        assert many[key], key
        for row in many[key]:
            assert "error" not in row, row
            assert row["received"] > 0, row
            assert row["rss_per_client"] > 0, row
    servers = {(row["loop"], row["server"]) for row in many["fanout"]}
    assert {server for _, server in servers} == {"axonbus", "bare"}
    for row in many["fanout"]:
        assert "error" not in row, row
        assert row["lost"] == 0, row
        assert row["rate"] > 0, row


# -- the raw NATS anchors cannot race their own subscriber ---------------------------------------

HOLD = 0.3  # seconds a "loaded server" takes to read what follows a PING


class _SlowReader:
    """A TCP proxy to NATS that plays a loaded server: a SUB right behind a PING (after the
    handshake's) reaches the server ``HOLD`` seconds after the PING. A client that takes that
    PONG as proof of the SUB then publishes to a subject the server has no subscription for
    yet."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 4222)
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"nats://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        for task in (self._up(reader, up_writer), self._down(up_reader, writer)):
            t = asyncio.create_task(task)
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _down(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pings = 0
        after_ping = False  # the last bytes forwarded ended with a PING of the client's own
        try:
            while data := await reader.read(65536):
                while data:
                    if after_ping and data.startswith(b"SUB "):
                        await asyncio.sleep(HOLD)  # the "loaded server" reads the SUB late
                    after_ping = False
                    cut = data.find(b"PING\r\n")
                    if cut == -1:
                        writer.write(data)
                        break
                    end = cut + len(b"PING\r\n")
                    writer.write(data[:end])
                    data = data[end:]
                    pings += 1
                    after_ping = pings > 1  # the first PING belongs to the handshake
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("anchor", ["nats_rpc_raw", "nats_plain_raw"])
async def test_raw_nats_anchors_wait_for_their_subscription(
    monkeypatch: pytest.MonkeyPatch, anchor: str
) -> None:
    """nats-py's flush() sends its PING ahead of a SUB still queued for its flusher task; on a
    loaded server the PONG came back first and the request anchor failed with
    NoRespondersError (the plain anchor lost events and waited forever)."""
    require("nats", nats_url())
    from benchmarks import brokers

    async with _SlowReader(nats_url()) as url:
        monkeypatch.setenv("AXONBUS_BENCH_NATS_URL", url)
        lap = await asyncio.wait_for(getattr(brokers, anchor)(20), 10)
    assert lap is not None


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_wire_benchmark_runs(tmp_path: Path) -> None:
    """Both wires and the raw anchors run on Redis, NATS and RabbitMQ (rates are not
    asserted)."""
    require("redis", redis_url())
    require("nats", nats_url())
    require("amqp", amqp_url())
    from benchmarks.wire import CE, RAW_CE, WORKLOAD_KEYS

    env = {"AXONBUS_BENCH_REDIS_URL": redis_url(), "AXONBUS_BENCH_NATS_URL": nats_url(),
           "AXONBUS_BENCH_AMQP_URL": amqp_url()}  # fmt: skip
    report = _run_quick("wire", tmp_path, env=env, timeout=110)
    _check_workloads(report, WORKLOAD_KEYS, skippable=False)
    assert "guest:guest" not in json.dumps(report)  # no credentials in a report
    for key in WORKLOAD_KEYS:
        rows = {row["name"]: row for row in report["workloads"][key]["rows"]}
        assert rows[CE]["median"] > 0, key
        if key in ("redis", "nats", "amqp"):
            assert rows[RAW_CE]["median"] > 0, key
