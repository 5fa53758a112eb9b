"""The benchmark harness keeps working (rates are not asserted: this machine is shared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from tests.support.services import nats_url, postgres_url, redis_url, require

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
@pytest.mark.timeout(150)
def test_quick_gateway_benchmark_runs(tmp_path: Path) -> None:
    """The gateway workloads run end to end (no service needed): every SSE trial and ramp step
    delivered events to its client process without an error, and the WebSocket rows (axonbus,
    the Starlette echo anchor, the context rows) have positive rates."""
    report = _run_quick("gateway", tmp_path, timeout=140)
    _check_workloads(report, ["ws"], skippable=False)
    assert set(report["sse"]) == {"sse", "sse-topics"}
    trials = [t for phase in report["sse"].values() for t in phase["rounds"]]
    trials += report["ramp"]["steps"]
    assert trials
    for trial in trials:
        assert not trial["error"], trial["error"]
        assert trial["received"] > 0, trial
