"""The benchmark harness keeps working (rates are not asserted: this machine is shared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.services import nats_url, postgres_url, redis_url, require

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.core", "--quick", "--plain", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    text = json.dumps(report)
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

    out = tmp_path / "brokers.json"
    env = {
        **os.environ,
        "AXONBUS_BENCH_REDIS_URL": redis_url(),
        "AXONBUS_BENCH_NATS_URL": nats_url(),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.brokers", "--quick", "--plain", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["workloads"]) == set(WORKLOAD_KEYS)
    for key, workload in report["workloads"].items():
        rows = {row["name"]: row for row in workload["rows"]}
        for name in ("axonbus", workload["anchor"]):
            row = rows[name]
            assert row["rates"], f"{key} / {name}: {row['note']}"
            assert all(rate > 0 for rate in row["rates"]), f"{key} / {name}: {row['rates']}"
        for row in workload["rows"]:
            assert not row["note"].startswith("error:"), f"{key} / {row['name']}: {row['note']}"
            if not row["note"].startswith("skipped:"):
                assert row["median"] > 0, f"{key} / {row['name']}"


def _run_storage_benchmark(tmp_path: Path, workloads: list[str]) -> None:
    out = tmp_path / "storage.json"
    env = {**os.environ, "AXONBUS_BENCH_POSTGRES_URL": postgres_url()}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.storage",
            "--quick",
            "--plain",
            "--only",
            ",".join(workloads),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["workloads"]) == set(workloads)
    for key, workload in report["workloads"].items():
        rows = {row["name"]: row for row in workload["rows"]}
        for name in ("axonbus", workload["anchor"]):
            row = rows[name]
            assert row["rates"], f"{key} / {name}: {row['note']}"
            assert all(rate > 0 for rate in row["rates"]), f"{key} / {name}: {row['rates']}"
        for row in workload["rows"]:
            assert not row["note"].startswith("error:"), f"{key} / {row['name']}: {row['note']}"
            assert row["median"] > 0, f"{key} / {row['name']}"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_sqlite_storage_benchmark_runs(tmp_path: Path) -> None:
    """The sqlite storage workloads run end to end (no service needed): axonbus and every
    anchor have positive rates, no row errors."""
    _run_storage_benchmark(tmp_path, ["sqlite-publish", "sqlite-consume"])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_postgres_storage_benchmark_runs(tmp_path: Path) -> None:
    """The postgres storage workload runs end to end against the shared Postgres."""
    require("postgres", postgres_url())
    _run_storage_benchmark(tmp_path, ["postgres-publish"])
