"""Child processes (workers, appenders) and their logs, the publisher, and the probes that ask
a broker what it holds: what the fault tests share."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from axonbus import Bus, ConnectionLost
from axonbus._codec import get_codec
from axonbus.transports.base import BrokerTransport
from axonbus.transports.log._store import table_prefix
from tests.support.brokers import NatsServer, RabbitServer, RedisServer

__all__ = [
    "REPO",
    "AmqpProbe",
    "Appender",
    "Broker",
    "Child",
    "Fleet",
    "NatsProbe",
    "PublishStats",
    "RedisProbe",
    "SharedPostgres",
    "SqliteFile",
    "SqliteProbe",
    "Worker",
    "publish_paced",
    "unconfirmed",
]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SqliteFile:
    """What stands for the broker on ``sqlite://``: a database file, no server process."""

    path: Path  # absolute

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"  # an absolute path: four slashes


@dataclass(frozen=True)
class SharedPostgres:
    """The shared PostgreSQL (never restarted by the fault tests): each test has its own bus
    name, so its own tables, dropped afterwards."""

    url: str


@dataclass
class Broker:
    """A private broker of any kind, and how workers take over a dead worker's deliveries."""

    kind: str  # "redis", "nats", "sqlite" or "postgres"
    server: RedisServer | NatsServer | RabbitServer | SqliteFile | SharedPostgres
    # URL options: redeliver what a dead consumer held after 1 s (none on amqp://: RabbitMQ
    # requeues a consumer's deliveries as soon as its connection drops)
    takeover: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def worker_url(self) -> str:
        return f"{self.server.url}?{self.takeover}" if self.takeover else self.server.url


class Child:
    """A ``python -m <module>`` process of the fault tests and what its log says so far.

    The process appends one line per event to its log (line-buffered: a line written before a
    ``kill -9`` is in the file); a subclass parses the lines.
    """

    module: ClassVar[str]  # e.g. "tests.faults.worker"
    name: ClassVar[str]  # its log files: <name><index>.log and .stderr

    def __init__(self, index: int, log_dir: Path, args: list[str]) -> None:
        self.index = index
        self.log = log_dir / f"{self.name}{index}.log"
        self.stderr_path = log_dir / f"{self.name}{index}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--out", str(self.log), *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        self.pid = self.proc.pid
        self.killed = False
        self._offset = 0
        self._partial = b""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def read(self) -> int:
        """Parse what the log gained since the last call; the number of new lines."""
        try:
            with self.log.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an incomplete last line waits for the next read
        for line in lines:
            self._parse(line.decode("ascii").split())
        return len(lines)

    def _parse(self, parts: list[str]) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        """``kill -9`` the process, reap it, and read its log to the end."""
        self.killed = True
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait()
        self._stderr.close()
        self.read()

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM: the bus closes), SIGKILL if it takes too long."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        self._stderr.close()
        self.read()

    def stderr_tail(self, lines: int = 15) -> str:
        text = self.stderr_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class Worker(Child):
    """One ``tests.faults.worker`` process and what its log says so far."""

    module = "tests.faults.worker"
    name = "worker"

    def __init__(self, index: int, log_dir: Path, args: list[str]) -> None:
        super().__init__(index, log_dir, args)
        self.consumer: str | None = None  # the broker's name for it, from the ready line
        self.received: Counter[int] = Counter()
        self.started: Counter[int] = Counter()
        self.done: Counter[int] = Counter()
        self.done_times: dict[int, float] = {}  # seq -> last time it was done here
        self.dead: list[str] = []
        self.closed = False  # it logged a graceful shutdown
        self.attempts: Counter[int] = Counter()  # attempt number -> starts with it
        self.max_attempt: dict[int, int] = {}  # seq -> highest attempt it was started with
        self.packs: list[list[int]] = []  # nats://: the events of each delivery, as received

    @property
    def ready(self) -> bool:
        return self.consumer is not None

    def in_flight(self) -> set[int]:
        """Events started here and not (yet) done."""
        return {seq for seq, n in self.started.items() if n > self.done[seq]}

    def held(self) -> set[int]:
        """Events delivered here and not (yet) done: queued locally or being handled."""
        return {seq for seq, n in self.received.items() if n > self.done[seq]}

    def done_since(self, since: float) -> set[int]:
        """Events whose handling here finished at ``since`` (time.monotonic()) or later."""
        return {seq for seq, t in self.done_times.items() if t >= since}

    def _parse(self, parts: list[str]) -> None:
        kind = parts[0]
        if kind == "recv":
            self.received[int(parts[1])] += 1
        elif kind == "start":
            seq, attempt = int(parts[1]), int(parts[2])
            self.started[seq] += 1
            self.attempts[attempt] += 1
            self.max_attempt[seq] = max(attempt, self.max_attempt.get(seq, 0))
        elif kind == "pack":
            self.packs.append([int(p) for p in parts[1:]])
        elif kind == "done":
            seq = int(parts[1])
            self.done[seq] += 1
            self.done_times[seq] = float(parts[2])
        elif kind == "ready":
            self.consumer = parts[2]
        elif kind == "dead":
            self.dead.append(" ".join(parts[1:]))
        elif kind == "closed":
            self.closed = True

    def reconnected_after(self, since: float) -> float | None:
        """Wall time of the first "reconnected" the worker logged after ``since``, if any."""
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            stamp, _, rest = line.partition(" ")
            try:
                when = float(stamp)
            except ValueError:
                continue
            if when >= since and rest.endswith("reconnected"):
                return when
        return None


class Appender(Child):
    """One ``tests.faults.appender`` process (sqlite://) and what its log says so far."""

    module = "tests.faults.appender"
    name = "appender"

    def __init__(self, index: int, log_dir: Path, args: list[str]) -> None:
        super().__init__(index, log_dir, args)
        self.committed = -1  # every seq up to this one is committed (-1: none reported yet)
        self.reports = 0  # "committed" lines read

    def _parse(self, parts: list[str]) -> None:
        if parts[0] == "committed":
            self.committed = int(parts[1])
            self.reports += 1


@dataclass
class Fleet:
    """The worker processes of one test, started with the same arguments."""

    log_dir: Path
    args: list[str]
    workers: list[Worker] = field(default_factory=list)

    def spawn(self) -> Worker:
        worker = Worker(len(self.workers), self.log_dir, self.args)
        self.workers.append(worker)
        return worker

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if not w.killed and w.alive]

    def read(self) -> None:
        for w in self.workers:
            w.read()

    async def wait_ready(self, worker: Worker, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not worker.ready:
            worker.read()
            if not worker.alive and not worker.ready:
                raise AssertionError(
                    f"worker {worker.index} exited with {worker.proc.returncode}:\n"
                    + worker.stderr_tail()
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {worker.index} not ready after {timeout}s")
            await asyncio.sleep(0.02)

    def done(self) -> Counter[int]:
        """seq -> how many times it was done, over every process."""
        total: Counter[int] = Counter()
        for w in self.workers:
            total.update(w.done)
        return total

    def dead(self) -> list[str]:
        return [line for w in self.workers for line in w.dead]

    def stop_all(self) -> None:
        """Stop every worker still running (gracefully) and reap the killed ones."""
        for w in self.workers:
            if w.killed:
                w.kill()
            else:
                w.stop()

    async def wait_quiet(self, quiet: float, timeout: float) -> None:
        """Wait until no log grew for ``quiet`` seconds (late redeliveries have landed)."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() - last < quiet and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if sum(w.read() for w in self.workers):
                last = time.monotonic()

    def stderr_tails(self) -> str:
        return "\n".join(f"--- worker {w.index} ---\n{w.stderr_tail()}" for w in self.workers)

    def __iter__(self) -> Iterator[Worker]:
        return iter(self.workers)


@dataclass
class PublishStats:
    sent: int = 0
    connection_lost: int = 0  # publishes that raised ConnectionLost and were sent again
    seconds: float = 0.0


async def publish_paced(
    bus: Bus,
    topic: str,
    n: int,
    *,
    chunk: int,
    pause: float,
    progress: Callable[[int], Any] | None = None,
    allowed: Callable[[], int] | None = None,
) -> PublishStats:
    """Publish ``{"seq": i}`` for i in range(n), ``chunk`` at a time with ``pause`` between.

    ``allowed()``: how many events may have been published by now; the publisher waits for it
    to grow (a test that must act while events are still in flight holds the rest back).

    A publish that raises :class:`ConnectionLost` was not sent (the documented contract), so
    it is sent again; every such retry is counted.
    """
    stats = PublishStats()
    t0 = time.monotonic()
    for i in range(n):
        while allowed is not None and i >= allowed():
            await asyncio.sleep(pause or 0.01)
        while True:
            try:
                await bus.publish(topic, {"seq": i})
            except ConnectionLost:
                stats.connection_lost += 1
                await asyncio.sleep(0.05)
                continue
            break
        stats.sent += 1
        if (i + 1) % chunk == 0:
            if progress is not None:
                progress(i + 1)
            await asyncio.sleep(pause)
    while True:
        try:
            await bus.flush(timeout=30)
        except ConnectionLost:
            await asyncio.sleep(0.05)
            continue
        break
    stats.seconds = time.monotonic() - t0
    return stats


@dataclass
class Scenario:
    """What both multi-process fault tests set up: a bus name, a worker fleet on one durable
    subscription, a seeded random source (the seed goes in failure messages) and, where the
    broker can tell exactly which deliveries each consumer holds (Redis, SQLite), a probe of
    the durable."""

    bus_name: str
    topic: str
    durable: str
    seed: int
    rng: random.Random
    fleet: Fleet
    probe: RedisProbe | SqliteProbe | None

    @classmethod
    def make(cls, broker: Broker, tmp_path: Path, extra: list[str] | None = None) -> Scenario:
        bus_name = f"faults{uuid.uuid4().hex[:8]}"
        topic, durable = "jobs.work", "workers"
        seed = random.randrange(1 << 30)
        fleet = Fleet(
            tmp_path,
            ["--url", broker.worker_url, "--bus", bus_name, "--topic", topic,
             "--durable", durable, "--sleep", "0.003", *(extra or [])],
        )  # fmt: skip
        probe: RedisProbe | SqliteProbe | None = None
        if isinstance(broker.server, SqliteFile):
            probe = SqliteProbe(broker.server.path, bus_name, durable)
        elif broker.kind == "redis":
            probe = RedisProbe(broker.url, bus_name, durable)
        return cls(bus_name, topic, durable, seed, random.Random(seed), fleet, probe)


def unconfirmed(bus: Bus) -> list[int]:
    """Seqs of the publishes ``bus`` has queued or sent that the broker has not confirmed yet.

    These, and only these, may reach the broker twice when it dies now: the writer keeps a
    batch in the outbox until the broker confirmed it, and sends it again after reconnecting.
    (Reads the outbox of :class:`BrokerTransport`; a test-only look inside.)
    """
    transport = bus.transport
    assert isinstance(transport, BrokerTransport)
    codec = get_codec(bus.codec)
    seqs = []
    for op in transport._outbox:
        if op[0] == "pub":
            event = codec.decode(op[2]).event
            if isinstance(event, dict) and "seq" in event:
                seqs.append(event["seq"])
    return seqs


class RedisProbe:
    """What Redis holds for a durable subscription: its entries and pending deliveries.

    Each question uses a new connection, so it works across broker restarts.
    """

    def __init__(self, url: str, bus_name: str, durable: str) -> None:
        from axonbus.transports.redis._transport import GROUP

        self.url = url
        self.group = GROUP
        self.stream = f"{bus_name}:durable:{durable}"
        self._codec = get_codec("json")

    async def _ask(self, command: str, *args: Any, **kwargs: Any) -> Any:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            return await getattr(client, command)(*args, **kwargs)
        finally:
            await client.aclose()

    async def pending(self, consumer: str | None = None) -> set[bytes]:
        """Ids of entries delivered (to ``consumer``, or to anyone) and not acknowledged."""
        kwargs: dict[str, Any] = {} if consumer is None else {"consumername": consumer}
        rows = await self._ask(
            "xpending_range", self.stream, self.group, min="-", max="+", count=1_000_000, **kwargs
        )
        return {row["message_id"] for row in rows}

    async def seqs(self) -> dict[bytes, int]:
        """Entry id -> seq, for every entry of the stream."""
        entries = await self._ask("xrange", self.stream)
        return {eid: self._codec.decode(fields[b"d"]).event["seq"] for eid, fields in entries}

    async def left_over(self) -> dict[str, int]:
        """Deliveries never acknowledged."""
        return {"pending": len(await self.pending())}


class SqliteProbe:
    """What the log file holds for a bus's durable: the questions of :class:`RedisProbe`, with
    log offsets for entry ids and process instances (the ``<consumer>`` of a worker's ready
    line) for consumer names.

    Each question opens the file with plain ``sqlite3`` (in a thread), like any other process.
    """

    def __init__(self, path: Path, bus_name: str, durable: str) -> None:
        self.path = path
        self.prefix = table_prefix(bus_name)
        self.consumer = f"durable:{durable}"  # the consumer row of a durable= subscription
        self._codec = get_codec("json")

    def _query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql.format(p=self.prefix), args).fetchall()
        finally:
            conn.close()

    async def _ask(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._query, sql, *args)

    async def pending(self, consumer: str | None = None) -> set[int]:
        """Offsets delivered (to the process ``consumer``, or to anyone) and not acknowledged."""
        if consumer is None:
            rows = await self._ask("SELECT seq FROM {p}pending WHERE consumer = ?", self.consumer)
        else:
            rows = await self._ask(
                "SELECT seq FROM {p}pending WHERE consumer = ? AND owner = ?",
                self.consumer,
                consumer,
            )
        return {offset for (offset,) in rows}

    async def seqs(self) -> dict[int, int]:
        """Offset -> seq, for every event of the log."""
        rows = await self._ask("SELECT seq, data FROM {p}events")
        events = {offset: self._codec.decode(data).event for offset, data in rows}
        # the log also holds the bus's own events ($bus.dead_letter, ...): only the jobs count
        return {o: e["seq"] for o, e in events.items() if isinstance(e, dict) and "seq" in e}

    async def left_over(self) -> dict[str, int]:
        """Deliveries never acknowledged, and events the durable never read."""
        ((pending, unread),) = await self._ask(
            "SELECT (SELECT COUNT(*) FROM {p}pending WHERE consumer = ?1), "
            "(SELECT COUNT(*) FROM {p}events WHERE seq > "
            "(SELECT position FROM {p}consumers WHERE name = ?1))",
            self.consumer,
        )
        return {"pending": pending, "not delivered": unread}


class NatsProbe:
    """What JetStream holds for a bus's durable: messages kept, deliveries not acknowledged."""

    def __init__(self, url: str, bus_name: str, durable: str) -> None:
        from axonbus.transports.nats._jetstream import consumer_name

        self.url = url
        self.stream = f"AXONBUS_{bus_name}"
        self.consumer = consumer_name(durable)

    async def _api(self, subject: str, body: dict[str, Any] | None = None) -> Any:
        import json

        import nats

        nc = await nats.connect(self.url, allow_reconnect=False)
        try:
            payload = json.dumps(body).encode() if body is not None else b""
            msg = await nc.request(f"$JS.API.{subject}", payload, timeout=5)
            return json.loads(msg.data)
        finally:
            await nc.close()

    async def left_over(self) -> dict[str, int]:
        """Deliveries the durable's consumer never had acknowledged, or never delivered."""
        consumer = await self._api(f"CONSUMER.INFO.{self.stream}.{self.consumer}")
        counts = {
            "ack pending": consumer["num_ack_pending"],
            "not delivered": consumer["num_pending"],
        }
        return {k: v for k, v in counts.items() if v}

    async def describe(self) -> str:
        """The consumer's and the stream's counters, for a failure message."""
        consumer = await self._api(f"CONSUMER.INFO.{self.stream}.{self.consumer}")
        state = (await self._api(f"STREAM.INFO.{self.stream}"))["state"]
        keys = ("delivered", "ack_floor", "num_ack_pending", "num_redelivered", "num_waiting")
        stream = {k: state.get(k) for k in ("messages", "first_seq", "last_seq", "num_deleted")}
        counters = {k: consumer.get(k) for k in keys}
        return f"consumer {counters}; stream {stream}"

    async def stream_messages(self, topic: str) -> int:
        """Messages on ``topic`` the stream still keeps (interest retention drops acknowledged
        ones; dead letters, on their own topic, are kept until replayed)."""
        subject = f"{self.stream.removeprefix('AXONBUS_')}.ev.{topic}"
        stream = await self._api(f"STREAM.INFO.{self.stream}", {"subjects_filter": subject})
        return int(sum((stream["state"].get("subjects") or {}).values()))


class AmqpProbe:
    """What RabbitMQ holds for a durable subscription: the messages still in its queue."""

    def __init__(self, url: str, bus_name: str, durable: str) -> None:
        self.url = url
        self.queue = f"axonbus.{bus_name}.durable.{durable}"

    async def left_over(self) -> dict[str, int]:
        import aiormq

        conn = await aiormq.connect(self.url)
        try:
            channel = await conn.channel()
            ok = await channel.queue_declare(self.queue, passive=True)
            return {"messages in the queue": int(ok.message_count or 0)}
        finally:
            await conn.close()
