"""Scaling out one durable group: N consumer processes (1, 2, 4) on single brokers and on
clusters, in one run.

    python -m benchmarks.clusters                # the full table, ~3 minutes on 2 cores
    python -m benchmarks.clusters --quick        # 1 and 2 consumers, fewer events
    python -m benchmarks.clusters --json artifacts/clusters.json

Every broker is private, started here on free loopback ports (tests/support/brokers.py and
tests/support/clusters.py) and stopped at the end: a nats-server with JetStream, a 3-node
JetStream cluster (``replicas=3``), a redis-server, and a Redis Cluster of 3 masters and 3
replicas (``redis+cluster://``, without and with ``wait_replicas=1``).

For each broker and N, N processes (``benchmarks.cluster_consumer``) share one durable
subscription (concurrency 8 each) and this process publishes, after ``WARM_UP`` untimed events:

- throughput: ``EVENTS`` events as fast as the publisher goes; the rate is ``EVENTS`` over the
  time from the first publish until the consumers together handled them all;
- latency: then ``PACED`` events at ``RATE`` events/s, each carrying its publish time
  (``time.time()``); the p50 and p99 of handle time minus publish time, over every process.

This machine has 2 cores shared by the publisher, N consumers and every broker process (a
cluster is 3 or 6 of them): more consumers add processes competing for the same cores, so the
absolute figures say little. What they show is the shape: what replication costs, and where
adding consumers stops helping.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from axonbus import Bus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the private brokers of the test suite

from tests.support.brokers import NatsServer, RedisServer  # noqa: E402
from tests.support.clusters import NatsCluster, RedisCluster  # noqa: E402

EVENTS = 5000
PACED = 400
RATE = 400.0  # events/s of the latency phase
WARM_UP = 200


@contextmanager
def brokers(base: Path) -> Iterator[dict[str, str]]:
    """name -> URL of every broker of the run, all started; stopped on exit."""
    with ExitStack() as stack:
        nats = stack.enter_context(NatsServer(base / "nats"))
        redis = stack.enter_context(RedisServer(base / "redis", appendfsync="everysec"))
        nats_cluster = stack.enter_context(NatsCluster(base / "natsc"))
        redis_cluster = stack.enter_context(RedisCluster(base / "redisc"))
        yield {
            "nats (1 node)": nats.url,
            "nats cluster (3 nodes, R3)": f"{nats_cluster.url}?replicas=3",
            "redis (1 node)": redis.url,
            "redis cluster (3+3)": redis_cluster.url,
            "redis cluster, wait_replicas=1": f"{redis_cluster.url}?wait_replicas=1",
        }


class Consumers:
    """N consumer processes of one durable subscription."""

    def __init__(self, url: str, bus: str, n: int, out: Path) -> None:
        self.outs = [out / f"c{i}" for i in range(n)]
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.cluster_consumer",
                    "--url",
                    url,
                    "--bus",
                    bus,
                    "--out",
                    str(o),
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
            for o in self.outs
        ]

    def handled(self) -> int | None:
        """Events handled so far over every process; None until every one is ready."""
        total = 0
        for o in self.outs:
            try:
                text = o.with_suffix(".status").read_text().split()
            except FileNotFoundError:
                return None
            if len(text) < 2:
                return None
            total += int(text[1])
        return total

    async def wait(self, at_least: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (self.handled() or 0) < at_least:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.handled()} of {at_least} handled in {timeout}s")
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError("a consumer process exited")
            await asyncio.sleep(0.02)

    def stop(self) -> list[float]:
        """Stop every process; the latencies they recorded."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        latencies: list[float] = []
        for p, o in zip(self.procs, self.outs, strict=True):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            lat = o.with_suffix(".lat")
            if lat.exists():
                latencies += [float(x) for x in lat.read_text().split()]
        return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def one(url: str, n: int, events: int, paced: int, out: Path) -> dict[str, Any]:
    bus_name = f"sc{uuid.uuid4().hex[:8]}"
    consumers = Consumers(url, bus_name, n, out)
    try:
        deadline = time.monotonic() + 30
        while consumers.handled() is None:
            if time.monotonic() > deadline:
                raise TimeoutError("consumers not ready")
            await asyncio.sleep(0.05)
        async with Bus(url, name=bus_name) as pub:
            for i in range(WARM_UP):  # connections, scripts and consumers in use, untimed
                await pub.publish("bench.work", {"i": i})
            await consumers.wait(WARM_UP, timeout=60)
            t0 = time.perf_counter()
            for i in range(events):
                await pub.publish("bench.work", {"i": i})
            await pub.flush()
            await consumers.wait(WARM_UP + events, timeout=120)
            seconds = time.perf_counter() - t0
            for i in range(paced):
                await pub.publish("bench.work", {"i": i, "t": time.time()})
                await asyncio.sleep(1 / RATE)
            await pub.flush()
            await consumers.wait(WARM_UP + events + paced, timeout=60)
    finally:
        latencies = consumers.stop()
    return {
        "consumers": n,
        "rate": events / seconds,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    counts = (1, 2) if args.quick else (1, 2, 4)
    events, paced = (1000, 100) if args.quick else (EVENTS, PACED)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="axonbus-bench-clusters-") as tmp:
        base = Path(tmp)
        with brokers(base) as urls:
            print(f"{'broker':32} {'N':>2} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
            for name, url in urls.items():
                for n in counts:
                    out = base / f"run{len(results)}"
                    out.mkdir()
                    row = asyncio.run(one(url, n, events, paced, out))
                    row["broker"] = name
                    results.append(row)
                    print(
                        f"{name:32} {n:>2} {row['rate']:>9.0f} {row['p50_ms']:>8.1f} "
                        f"{row['p99_ms']:>8.1f}",
                        flush=True,
                    )
    if args.json:
        payload = {"events": events, "paced": paced, "rate": RATE, "cpus": os.cpu_count()}
        Path(args.json).write_text(json.dumps({**payload, "rows": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
