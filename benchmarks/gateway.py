"""The web gateway under load: SSE fan-out to clients in another process, WebSocket round trips.

    python -m benchmarks.gateway            # full run, about 3-4 minutes on 2 cores
    python -m benchmarks.gateway --quick    # smoke run, under a minute (the test suite runs it)
    python -m benchmarks.gateway --only sse,ws --json artifacts/gateway.json

The server is the gateway as ``axonbus serve`` runs it (``create_app`` on an in-process
``memory://`` bus, served by uvicorn with ``server_config``: h11 or httptools, whichever uvicorn
picks, and the sans-I/O ``websockets`` protocol), on a free loopback port, in this process. Every
trial starts it in a fresh event loop. The clients run in a separate process (one per trial,
spawned before the timed part), so that they never take the server's CPU inside its process.

- ``sse``: 100 SSE clients, each receiving 50 events/s: the broadcast reading of the issue. One
  publisher task in the server process publishes 50 events/s on ``bench.sse.all``, on an
  absolute schedule (event ``k`` at ``start + k / rate``, no sleep drift), each carrying
  ``{"seq": k, "t": time.time()}`` taken just before ``await bus.publish``; every client reads
  ``GET /v1/events?pattern=bench.sse.>``, so the gateway fans each event out to 100 streams:
  5,000 deliveries/s. The clients are hand-rolled asyncio protocols on raw sockets (HTTP/1.1,
  chunked transfer decoding, SSE blocks), so that they cost little next to the server: a
  delivery's latency is the client's receive time (``time.time()`` when the bytes arrived) minus
  ``t`` (same host, same clock). An event is lost when a client has not received it by the end
  (the clients stop on their own once every client has every event, at most ``grace`` seconds
  after the last publish); ``event: dropped`` notices are counted too.
- ``sse-topics``: the per-client-topic reading, for context: client ``i`` reads its own topic
  ``bench.sse.c{i}``, and the publisher publishes 50 events/s on each of the 100 topics,
  spread evenly (5,000 publishes/s, 5,000 deliveries/s).
- ``sse-ramp``: the broadcast workload again, its publish rate multiplied by ``RAMP`` at every
  step from 50 events/s per client, ``ramp_seconds`` per step, until a step fails (p99 latency at
  or over 100 ms, a lost or dropped event, or the publisher falling more than 5% behind its
  schedule: the loop it shares with the gateway is saturated). A failing step is tried once
  more; after the ramp one step at the geometric mean of the last passing and the failing rate
  narrows it down. Reported: the highest total delivery rate (deliveries/s over all clients)
  at which p99 stayed under 100 ms.
- ``stall``: 10 SSE readers of 100 events/s (2 kB each) next to 100 clients that subscribe and
  never read (4 KiB receive buffers; SSE, or WebSockets with 7 subscriptions each), on memory://
  and sqlite://, and the same readers alone. Before the timed part, events on another topic are
  published until every stalled client stopped taking them (its socket buffers are full). The
  server's RSS is sampled every 0.1 s: flat means it grew less than 32 MiB after the warm-up (a
  third of the trial, and the feeds' rings full); the readers' p99 must stay within 2x of the
  no-stall trial's on the same transport, nothing lost.
- ``ws``: sequential WebSocket round trips from one ``websockets`` client (the asyncio API) in the
  client process. axonbus: the client has subscribed to ``bench.ws.rt`` on ``/v1/ws``, sends
  ``{"op": "publish", "topic": "bench.ws.rt", "event": {"n": i}, "id": i}`` and waits for both
  answers, the ``published`` frame (``ref`` = i) and the ``event`` frame carrying ``{"n": i}``.
  Anchor: a bare Starlette WebSocket echo app (``receive_text``/``send_text``) on the same uvicorn
  configuration, sent the same frames; its reply is the frame itself. For context: ``publish``
  without a subscription (the ``published`` answer only) and ``ping`` -> ``pong`` (the ws trials
  raise the gateway's per-connection frame rate, which a client sending thousands of pings a second
  would otherwise hit). The client decodes every frame it receives with orjson in every row. Each
  trial runs ``ws_n`` round trips after 100 untimed ones. With two CPUs or more, each ws trial pins
  the client process to the last CPU and the server's event loop thread to the others
  (``os.sched_setaffinity``, undone after the trial; ``AXONBUS_BENCH_PIN=0`` leaves both alone), as
  if the client were on another machine: every frame between them wakes the other side on another
  CPU, as a network would. Left alone, the scheduler sometimes runs both processes on one CPU, where
  a strict ping-pong of one frame each way (the echo) gets much faster than any exchange of more
  frames (axonbus's publish is answered with two), and sometimes does not: the ratio would measure
  that placement more than the gateway. (The SSE trials are not pinned: there the scheduler keeps
  the two busy processes on separate CPUs by itself, and can move them away from other load.) A ws
  trial's "quiet" flag means the two processes together were on the CPU for at least 90% of the wall
  time (rare: the wake-ups between CPUs are on neither's clock).

- ``many-sse``, ``many-ws``, ``fanout``: thousands of clients on one gateway process (1k, 5k,
  10k idle-but-subscribed clients plus 100 on a busy topic; one event fanned out to 10k clients
  against a bare Starlette SSE endpoint), on asyncio and uvloop, each trial in a fresh server
  process: see :mod:`benchmarks.gateway_scale`.

Targets (``--strict`` exits 1 when one fails): ``sse``: median p99 over the rounds under 100 ms
and no event lost in any round; ``sse-ramp``: the highest delivery rate with p99 under 100 ms is
reported (the target only asks that it be at least the ``sse`` load, 5,000 deliveries/s);
``ws``: axonbus's publish -> event round trips >= 0.7x the bare Starlette echo's.

``sse`` and ``sse-topics`` run a short warm-up trial, then ``sse_rounds`` trials (3); ``ws`` runs
every row once on a few round trips (warm-up), then ``rounds`` (5, ``--rounds``) interleaved
rounds in alternating order (A B C D, D C B A, ...). Reported: medians, and every round. The
machine is shared and noisy, so only ratios from the same run mean anything. The server's and
the client process's CPU use during the trial (a fraction of one core: each is one thread) say
which side was the limit.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._harness import (
    AXONBUS,
    Entry,
    Lap,
    Medians,
    Printer,
    Row,
    Target,
    Workload,
    begin,
    conclude,
    environment,
    failure,
    fmt_rate,
    percentile,
    report,
    require,
    rounds_cli,
    run_fresh,
    run_workloads,
    workload_results,
)

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent  # the client process imports benchmarks from here
P99_LIMIT = 0.100  # seconds: the SSE latency target
RAMP = 1.5  # sse-ramp: publish rate factor per step
BEHIND = 0.05  # sse-ramp: a step fails when the publisher fell this far behind its schedule
BROADCAST_TOPIC = "bench.sse.all"
BROADCAST_PATTERN = "bench.sse.>"
WS_TOPIC = "bench.ws.rt"
WS_WARMUP = 100  # untimed round trips at the start of every ws trial
START_TIMEOUT = 30.0  # seconds for the server to start and the clients to connect

# -- the client process -----------------------------------------------------------------------

CLIENT_CODE = "import sys; from benchmarks.gateway import client_main; sys.exit(client_main())"


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def client_main() -> int:
    """The client process: its plan is ``sys.argv[1]`` (JSON); it writes JSON lines to stdout,
    ``{"ready": ...}`` once connected, then ``{"result": ...}`` (or ``{"error": ...}``). An SSE
    plan also ends when a line (``stop``) or EOF arrives on stdin."""
    plan = json.loads(sys.argv[1])
    try:
        body = sse_clients(plan) if plan["kind"] == "sse" else ws_client(plan)
        result = asyncio.run(body)
    except Exception as exc:
        _emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _emit({"result": result})
    return 0


class Tally:
    """What the SSE clients of one trial received: latencies, counts per client, drops."""

    def __init__(self, clients: int, expected: int) -> None:
        loop = asyncio.get_running_loop()
        self.expected = expected
        self.latencies = array.array("d")
        self.received = 0
        self.duplicates = 0
        self.dropped = 0  # as reported by `event: dropped` notices
        self.unready = clients
        self.unfinished = clients if expected > 0 else 0
        self.ready: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.first = math.inf
        self.last = -math.inf
        self.errors: list[str] = []
        if expected == 0:
            self.done.set_result(None)

    def fail(self, why: str) -> None:
        self.errors.append(why)
        for fut in (self.ready, self.done):
            if not fut.done():
                fut.set_exception(RuntimeError(why))

    def client_ready(self) -> None:
        self.unready -= 1
        if self.unready == 0 and not self.ready.done():
            self.ready.set_result(None)

    def client_finished(self) -> None:
        self.unfinished -= 1
        if self.unfinished == 0 and not self.done.done():
            self.done.set_result(None)


class SSEClient(asyncio.Protocol):
    """One ``GET /v1/events`` on a raw socket: HTTP/1.1 response head, chunked transfer decoding,
    SSE blocks. Every block with data is decoded with orjson; an event's latency is the time
    its bytes arrived minus the ``t`` it carries."""

    def __init__(self, tally: Tally, request: bytes, loads: Callable[[Any], Any]) -> None:
        self.tally = tally
        self.request = request
        self.loads = loads
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()  # undecoded bytes from the socket
        self.body = bytearray()  # the decoded body, up to an incomplete SSE block
        self.head = False  # the response head was read
        self.chunked = False
        self.left = 0  # bytes of the current chunk still to come
        self.crlf = 0  # bytes of the CRLF after a chunk still to skip
        self.ready = False  # the first block (the stream's hello comment) arrived
        self.seen = bytearray(tally.expected)
        self.count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.tally.done.done():
            self.tally.fail(f"an SSE connection closed early ({exc})")

    def data_received(self, data: bytes) -> None:
        now = time.time()
        raw = self.raw
        raw += data
        if not self.head:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(raw[:end]).lower()
            if not head.startswith(b"http/1.1 200"):
                self.tally.fail(f"SSE answer: {bytes(raw[:end])[:200]!r}")
                return
            self.chunked = b"transfer-encoding: chunked" in head
            del raw[: end + 4]
            self.head = True
        if self.chunked:
            self._dechunk()
        else:
            self.body += raw
            raw.clear()
        self._blocks(now)

    def _dechunk(self) -> None:
        raw, body = self.raw, self.body
        pos, size = 0, len(raw)
        while pos < size:
            if self.left:
                take = min(self.left, size - pos)
                body += raw[pos : pos + take]
                pos += take
                self.left -= take
                if self.left == 0:
                    self.crlf = 2
            elif self.crlf:
                skip = min(self.crlf, size - pos)
                pos += skip
                self.crlf -= skip
            else:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                self.left = int(raw[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                if self.left == 0:  # the last chunk: the server ended the stream
                    self.crlf = 2
        del raw[:pos]

    def _blocks(self, now: float) -> None:
        body = self.body
        tally = self.tally
        loads = self.loads
        pos = 0
        while (end := body.find(b"\n\n", pos)) >= 0:
            data = body.find(b"data: ", pos, end)
            if data < 0:  # comments: the hello, keep-alives
                if not self.ready:
                    self.ready = True
                    tally.client_ready()
            else:
                record = loads(body[data + 6 : end])
                event = record.get("event")
                if event is None:
                    tally.dropped += record.get("dropped", 0)
                else:
                    seq = event["seq"]
                    tally.latencies.append(now - event["t"])
                    tally.received += 1
                    if tally.first > now:
                        tally.first = now
                    tally.last = now
                    if self.seen[seq]:
                        tally.duplicates += 1
                    else:
                        self.seen[seq] = 1
                        self.count += 1
                        if self.count == tally.expected:
                            tally.client_finished()
            pos = end + 2
        del body[:pos]

    @property
    def lost(self) -> int:
        return self.tally.expected - self.count


def _stop_on_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Future[None]) -> None:
    """A daemon thread that resolves ``stop`` when a line or EOF arrives on stdin."""

    def wait() -> None:
        sys.stdin.readline()
        with contextlib.suppress(RuntimeError):  # the loop is gone: nothing left to stop
            loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))

    threading.Thread(target=wait, name="stdin", daemon=True).start()


async def sse_clients(plan: dict[str, Any]) -> dict[str, Any]:
    """Open one SSE connection per pattern of the plan; count and time what arrives until every
    client has ``expected`` distinct events, or the server says stop."""
    orjson = require("orjson")
    loop = asyncio.get_running_loop()
    patterns: list[str] = plan["patterns"]
    tally = Tally(len(patterns), plan["expected"])
    stop: asyncio.Future[None] = loop.create_future()
    _stop_on_stdin(loop, stop)
    clients: list[SSEClient] = []
    port = plan["port"]
    stalled = [
        stalled_connection(port, plan.get("stalled_kind", "sse"))
        for _ in range(plan.get("stalled", 0))
    ]
    for pattern in patterns:
        request = (
            f"GET /v1/events?pattern={quote(pattern, safe='')} HTTP/1.1\r\n"
            f"Host: {HOST}:{port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ).encode()
        _, client = await loop.create_connection(
            partial(SSEClient, tally, request, orjson.loads), HOST, port
        )
        clients.append(client)
    try:
        async with asyncio.timeout(START_TIMEOUT):
            await tally.ready
        _emit({"ready": len(clients)})
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.wait({tally.done, stop}, return_when=asyncio.FIRST_COMPLETED)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if tally.errors:
            raise RuntimeError(tally.errors[0])
    finally:
        if not tally.done.done():  # closing now is not an early close
            tally.done.set_result(None)
        for client in clients:
            if client.transport is not None:
                client.transport.close()
        for sock in stalled:
            sock.close()
    latencies = sorted(tally.latencies)
    return {
        "clients": len(clients),
        "expected": tally.expected * len(clients),
        "received": tally.received,
        "lost": sum(c.lost for c in clients),
        "duplicates": tally.duplicates,
        "dropped": tally.dropped,
        "p50": percentile(latencies, 50) if latencies else None,
        "p99": percentile(latencies, 99) if latencies else None,
        "max": latencies[-1] if latencies else None,
        "first": tally.first if latencies else None,
        "last": tally.last if latencies else None,
        "cpu": cpu,
        "wall": wall,
    }


#: the patterns a stalled WebSocket client subscribes to (7, as in the report that found the
#: per-feed copies: each is a feed of its own)
STALLED_WS_PATTERNS = (
    "bench.>", ">", "bench.sse.all", "bench.*.all", "*.sse.all", "bench.*.*", "*.*.all"
)  # fmt: skip
#: what a stalled SSE client reads (it also matches :data:`FILL_TOPIC`)
STALLED_SSE_PATTERN = "bench.>"
#: published before the timed part until every stalled client stopped taking events, so that
#: the trial measures stalled clients, not clients still filling their socket buffers
FILL_TOPIC = "bench.fill"


def _ws_frame(text: str) -> bytes:
    """One masked client text frame (the mask is zero: the payload goes as it is)."""
    payload = text.encode()
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def stalled_connection(port: int, kind: str) -> socket.socket:
    """A client that subscribes, then never reads: a 4 KiB receive buffer, a blocking socket
    nobody reads. ``kind``: ``sse`` (one ``GET /v1/events``) or ``ws`` (a WebSocket with a
    subscription on each of :data:`STALLED_WS_PATTERNS`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((HOST, port))
    head = f"Host: {HOST}:{port}\r\n"
    if kind == "sse":
        pattern = quote(STALLED_SSE_PATTERN, safe="")
        request = f"GET /v1/events?pattern={pattern} HTTP/1.1\r\n{head}\r\n"
        sock.sendall(request.encode())
    else:
        sock.sendall(
            (
                f"GET /v1/ws HTTP/1.1\r\n{head}Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:  # frames sent before the 101 would be lost
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("the WebSocket handshake was refused")
            answer += chunk
        sock.sendall(
            b"".join(
                _ws_frame(json.dumps({"op": "subscribe", "pattern": p}))
                for p in STALLED_WS_PATTERNS
            )
        )
    return sock


async def ws_client(plan: dict[str, Any]) -> dict[str, Any]:
    """Sequential round trips on one WebSocket (see the module docstring); times the last ``n``."""
    connect = require("websockets.asyncio.client").connect
    orjson = require("orjson")
    loads, dumps = orjson.loads, orjson.dumps
    mode: str = plan["mode"]
    n: int = plan["n"]
    async with connect(plan["url"], max_size=None) as ws:
        send, recv = ws.send, ws.recv
        if mode != "echo":
            hello = loads(await recv())
            if hello.get("op") != "ready":
                raise AssertionError(f"first frame {hello!r}")
        if mode == "publish":
            await send(dumps({"op": "subscribe", "pattern": WS_TOPIC, "id": -1}).decode())
            answer = loads(await recv())
            if answer.get("op") != "subscribed":
                raise AssertionError(f"subscribe answered {answer!r}")

        async def publish(i: int) -> None:
            frame = {"op": "publish", "topic": WS_TOPIC, "event": {"n": i}, "id": i}
            await send(dumps(frame).decode())
            acked, evented = False, mode == "publish-ack"  # unsubscribed: the ack only
            while not (acked and evented):
                got = loads(await recv())
                op = got.get("op")
                if op == "published" and got.get("ref") == i:
                    acked = True
                elif op == "event" and got.get("event") == {"n": i} and not evented:
                    evented = True
                else:
                    raise AssertionError(f"unexpected frame {got!r} in round trip {i}")

        async def ping(i: int) -> None:
            await send(dumps({"op": "ping", "id": i}).decode())
            got = loads(await recv())
            if got.get("op") != "pong" or got.get("ref") != i:
                raise AssertionError(f"ping {i} answered {got!r}")

        async def echo(i: int) -> None:
            frame = {"op": "publish", "topic": WS_TOPIC, "event": {"n": i}, "id": i}
            await send(dumps(frame).decode())
            got = loads(await recv())
            if got != frame:
                raise AssertionError(f"echo of {frame!r}: {got!r}")

        trip = {"publish": publish, "publish-ack": publish, "ping": ping, "echo": echo}[mode]
        for i in range(-WS_WARMUP, 0):
            await trip(i)
        _emit({"ready": True})
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(n):
            await trip(i)
        return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall, "n": n}


# -- the server side: client processes, servers, the publisher ----------------------------------


class ClientProcess:
    """The client process of one trial (see :func:`client_main`)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def message(self, key: str, timeout: float) -> Any:
        """The next JSON line from the client, which must carry ``key``: its value."""
        return (await self.message_full(key, timeout))[key]

    async def message_full(self, key: str, timeout: float) -> dict[str, Any]:
        """The next JSON line from the client, which must carry ``key``."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            line = await self.proc.stdout.readline()
        if not line:
            assert self.proc.stderr is not None
            err = (await self.proc.stderr.read()).decode(errors="replace").strip()
            await self.proc.wait()
            raise RuntimeError(f"the client process exited ({self.proc.returncode}): {err[-300:]}")
        found = json.loads(line)
        if "error" in found:
            raise RuntimeError(f"client: {found['error']}")
        if key not in found:
            raise RuntimeError(f"client said {found!r}, expected {key!r}")
        return dict(found)

    def stop(self) -> None:
        """Ask an SSE client process to stop now and report."""
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            with contextlib.suppress(OSError):
                stdin.write(b"stop\n")


@contextlib.asynccontextmanager
async def client_process(
    plan: dict[str, Any], *, pin: bool = False, code: str = CLIENT_CODE
) -> AsyncIterator[ClientProcess]:
    """``python -c CODE <plan>`` with ``benchmarks`` importable; stopped afterwards.
    ``pin``: :func:`split_cpus` meanwhile."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        json.dumps(plan),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    client = ClientProcess(proc)
    try:
        with split_cpus(proc.pid) if pin else contextlib.nullcontext():
            yield client
    finally:
        client.stop()
        try:
            async with asyncio.timeout(10):
                await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.communicate()


def _cpus() -> list[int]:
    if os.environ.get("AXONBUS_BENCH_PIN", "1") == "0" or not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


CPUS = _cpus()
"""The CPUs this process may run on; empty (no pinning) with ``AXONBUS_BENCH_PIN=0`` or where
there is no affinity API."""


@contextlib.contextmanager
def split_cpus(client: int) -> Iterator[None]:
    """Pin the process ``client`` to the last CPU of :data:`CPUS` and this thread (the event
    loop's) to the others, as if the clients were on another machine; undone afterwards (see
    the module docstring for why)."""
    if len(CPUS) < 2:
        yield
        return
    try:
        os.sched_setaffinity(client, {CPUS[-1]})
    except OSError:  # it exited already: its trial fails on its own
        yield
        return
    os.sched_setaffinity(0, set(CPUS[:-1]))
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(CPUS))


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[int]:
    """``app`` on uvicorn with the gateway's ``server_config`` on a free loopback port, in this
    event loop; yields the port."""
    gateway = require("axonbus.gateway")
    config = require("axonbus.gateway._server").server_config(app, HOST, 0, log_level="warning")
    server = gateway.GatewayServer(config, handle_signals=False)
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped while starting")
                await asyncio.sleep(0.005)
        yield server.port
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task


@contextlib.asynccontextmanager
async def gateway_server() -> AsyncIterator[tuple[int, Any, Any]]:
    """The gateway on a started ``memory://`` bus: ``(port, bus, gateway)``."""
    ax = require("axonbus")
    create_app = require("axonbus.gateway").create_app
    async with ax.Bus("memory://", name="bench") as bus:
        # the ping row sends thousands of pings a second on one connection: more than the
        # per-connection frame rate allows a client (publishes spend the token's rate instead)
        app = create_app(bus, frame_rate=1e9, frame_burst=1e9)
        async with serving(app) as port:
            yield port, bus, app.state.gateway


def echo_app() -> Any:
    """A bare Starlette app: ``/echo`` sends every text frame back as it came."""
    starlette = require("starlette.applications")
    routing = require("starlette.routing")
    websockets = require("starlette.websockets")

    async def echo(ws: Any) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text(await ws.receive_text())
        except websockets.WebSocketDisconnect:
            return

    return starlette.Starlette(routes=[routing.WebSocketRoute("/echo", echo)])


@dataclass
class Pacing:
    """How the publisher kept to its schedule."""

    published: int
    seconds: float  # from the first publish to one interval after the last
    scheduled: float  # what that should have taken

    @property
    def behind(self) -> float:
        """How far behind schedule the publisher ended, as a fraction of the schedule."""
        return self.seconds / self.scheduled - 1 if self.scheduled else 0.0


async def publish_paced(
    bus: Any, topics: Sequence[str], rate: float, n: int, pad: int = 0
) -> Pacing:
    """``n`` events on every topic, ``rate`` per topic per second, spread evenly: publish ``k``
    (topic ``k % len(topics)``, seq ``k // len(topics)``) is due at ``start + k / total`` on an
    absolute schedule (a late loop catches up at once instead of drifting). Each payload is
    ``{"seq": seq, "t": time.time()}``, taken just before ``await bus.publish`` (with
    ``pad``, also ``"pad"``: that many bytes)."""
    loop = asyncio.get_running_loop()
    clock, now, publish = loop.time, time.time, bus.publish
    width = len(topics)
    total_rate = rate * width
    count = n * width
    start = clock()
    k = 0
    while k < count:
        due = min(count, int((clock() - start) * total_rate) + 1)
        while k < due:
            if pad:
                payload = {"seq": k // width, "t": now(), "pad": "x" * pad}
            else:
                payload = {"seq": k // width, "t": now()}
            await publish(topics[k % width], payload)
            k += 1
        if k < count:
            await asyncio.sleep(start + k / total_rate - clock())
    seconds = clock() - start + 1 / total_rate
    return Pacing(count, seconds, count / total_rate)


# -- SSE trials -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SsePlan:
    """One SSE trial: ``clients`` streams, ``rate`` events/s on each topic for ``seconds``."""

    clients: int
    rate: float  # events/s each client receives
    seconds: float
    per_client_topics: bool = False
    grace: float = 3.0  # seconds after the last publish before unfinished clients must stop

    @property
    def n(self) -> int:
        return max(1, round(self.rate * self.seconds))

    @property
    def topics(self) -> list[str]:
        if self.per_client_topics:
            return [f"bench.sse.c{i}" for i in range(self.clients)]
        return [BROADCAST_TOPIC]

    @property
    def patterns(self) -> list[str]:
        return self.topics if self.per_client_topics else [BROADCAST_PATTERN] * self.clients

    @property
    def publish_rate(self) -> float:
        return self.rate * len(self.topics)

    @property
    def offered(self) -> float:
        """Deliveries per second over all clients."""
        return self.rate * self.clients


@dataclass
class SseOutcome:
    """What one SSE trial measured (latencies in seconds; CPU as a fraction of one core)."""

    plan: SsePlan
    expected: int = 0
    received: int = 0
    lost: int = 0  # events some client never received (the dropped ones among them)
    duplicates: int = 0
    dropped: int = 0  # as the gateway reported them (`event: dropped`)
    p50: float | None = None
    p99: float | None = None
    max: float | None = None
    achieved: float | None = None  # deliveries/s over the publishing time
    behind: float = 0.0  # Pacing.behind
    server_cpu: float | None = None
    client_cpu: float | None = None
    error: str = ""

    @property
    def passed(self) -> bool:
        return (
            not self.error
            and self.p99 is not None
            and self.p99 < P99_LIMIT
            and self.lost == 0
            and self.dropped == 0
            and self.duplicates == 0
            and self.behind <= BEHIND
        )

    @property
    def why(self) -> str:
        """Why the trial failed ("" when it passed)."""
        if self.error:
            return self.error
        reasons = []
        if self.p99 is None or self.p99 >= P99_LIMIT:
            reasons.append("p99")
        if self.lost or self.dropped:
            reasons.append("lost")
        if self.duplicates:
            reasons.append("duplicates")
        if self.behind > BEHIND:
            reasons.append(f"publisher {self.behind:.0%} behind")
        return ", ".join(reasons)


class _NoDropWarnings(logging.Filter):
    """Leaves out axonbus's warnings about full ``drop_oldest`` mailboxes (one per client feed
    when the server falls behind): the trial counts the drops from the clients' side."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("mailbox %r is full", "mailbox %r recovered"))


async def sse_trial(plan: SsePlan) -> SseOutcome:
    """The gateway, ``plan.clients`` SSE clients in a client process, the paced publisher."""
    out = SseOutcome(plan)
    client_plan = {"kind": "sse", "expected": plan.n, "patterns": plan.patterns}
    quiet = _NoDropWarnings()
    async with (
        log_filter(logging.getLogger("axonbus"), quiet),
        gateway_server() as (port, bus, gw),
        client_process({**client_plan, "port": port}) as client,
    ):
        await client.message("ready", START_TIMEOUT)
        if len(gw.feeds) != plan.clients:
            raise RuntimeError(f"{len(gw.feeds)} feeds open, expected {plan.clients}")
        cpu, wall = time.process_time(), time.perf_counter()
        pacing = await publish_paced(bus, plan.topics, plan.rate, plan.n)
        try:
            result = await client.message("result", plan.grace)
        except TimeoutError:
            client.stop()
            result = await client.message("result", START_TIMEOUT)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    out.expected, out.received = result["expected"], result["received"]
    out.lost, out.duplicates, out.dropped = result["lost"], result["duplicates"], result["dropped"]
    out.p50, out.p99, out.max = result["p50"], result["p99"], result["max"]
    out.achieved = result["received"] / max(pacing.seconds, pacing.scheduled)
    out.behind = pacing.behind
    out.server_cpu = cpu / wall
    out.client_cpu = result["cpu"] / result["wall"] if result["wall"] else None
    return out


@contextlib.asynccontextmanager
async def log_filter(logger: logging.Logger, keep: logging.Filter) -> AsyncIterator[None]:
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def run_sse(plan: SsePlan, timeout: float) -> SseOutcome:
    """:func:`sse_trial` in a fresh event loop; an exception becomes the outcome's error."""
    try:
        return run_fresh(partial(sse_trial, plan), timeout)
    except Exception as exc:
        return SseOutcome(plan, error=failure(exc))


def sse_timeout(plan: SsePlan) -> float:
    return plan.seconds + plan.grace + 2 * START_TIMEOUT


@dataclass
class Phase:
    """A fixed SSE load: its warm-up, then ``rounds`` trials."""

    key: str
    title: str
    plan: SsePlan
    rounds: list[SseOutcome] = field(default_factory=list)
    warmup: SseOutcome | None = None

    def median(self, name: str) -> float | None:
        values = [getattr(r, name) for r in self.rounds if not r.error]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    @property
    def lost(self) -> int | None:
        ok = [r for r in self.rounds if not r.error]
        return sum(r.lost for r in ok) if ok else None

    @property
    def error(self) -> str:
        return next((r.error for r in self.rounds if r.error), "")


def measure_phase(phase: Phase, cfg: Config, progress: Callable[[str], None]) -> Phase:
    """A warm-up trial of ``cfg.warmup_seconds``, then ``cfg.sse_rounds`` trials of the plan."""
    warm = replace(phase.plan, seconds=cfg.warmup_seconds)
    progress(f"{phase.key} warm-up ({warm.seconds:g} s)")
    phase.warmup = run_sse(warm, sse_timeout(warm))
    for i in range(cfg.sse_rounds):
        progress(f"{phase.key} round {i + 1}: {phase.plan.offered:,.0f} deliveries/s")
        outcome = run_sse(phase.plan, sse_timeout(phase.plan))
        phase.rounds.append(outcome)
        if outcome.error:
            break
    return phase


@dataclass
class Ramp:
    """The ``sse-ramp`` steps, in the order they ran; ``best`` the highest passing plan."""

    steps: list[SseOutcome] = field(default_factory=list)
    best: SseOutcome | None = None
    saturated: bool = False  # a step failed (else the ramp ran out of steps)


def measure_ramp(cfg: Config, progress: Callable[[str], None]) -> Ramp:
    ramp = Ramp()
    base = SsePlan(cfg.clients, cfg.rate, cfg.ramp_seconds, grace=cfg.grace)

    def step(rate: float, label: str) -> SseOutcome:
        plan = replace(base, rate=rate)
        progress(f"sse-ramp {label}: {plan.offered:,.0f} deliveries/s")
        outcome = run_sse(plan, sse_timeout(plan))
        ramp.steps.append(outcome)
        return outcome

    progress("sse-ramp warm-up")
    run_sse(replace(base, seconds=cfg.warmup_seconds), sse_timeout(base))
    rate = cfg.rate
    failed: float | None = None
    for i in range(cfg.ramp_steps):
        outcome = step(rate, f"step {i + 1}")
        if not outcome.passed and not outcome.error:
            outcome = step(rate, f"step {i + 1} again")
        if not outcome.passed:
            failed = None if outcome.error else rate
            ramp.saturated = not outcome.error
            break
        ramp.best = outcome
        rate *= RAMP
    if failed is not None and ramp.best is not None:
        outcome = step(math.sqrt(ramp.best.plan.rate * failed), "between")
        if outcome.passed:
            ramp.best = outcome
    return ramp


# -- WebSocket trials -------------------------------------------------------------------------


async def _ws_rounds(plan: dict[str, Any], n: int) -> Lap:
    """Run the client's ``n`` round trips; the lap is the client's wall time and both processes'
    CPU time meanwhile (a sequential round trip keeps one of them busy at a time)."""
    async with client_process({"kind": "ws", "n": n, **plan}, pin=True) as client:
        await client.message("ready", START_TIMEOUT)
        cpu = time.process_time()
        result = await client.message("result", START_TIMEOUT + n / 100)
        cpu = time.process_time() - cpu
    return Lap(result["wall"], result["cpu"] + cpu)


async def ws_axonbus(n: int, mode: str = "publish") -> Lap:
    """The gateway's ``/v1/ws``: ``mode`` is ``publish`` (subscribed: the ack and the event),
    ``publish-ack`` (no subscription: the ack) or ``ping``."""
    async with gateway_server() as (port, _, _):
        url = f"ws://{HOST}:{port}/v1/ws"
        return await _ws_rounds({"url": url, "mode": mode}, n)


async def ws_echo(n: int) -> Lap:
    """The bare Starlette echo app on the same uvicorn configuration."""
    async with serving(echo_app()) as port:
        return await _ws_rounds({"url": f"ws://{HOST}:{port}/echo", "mode": "echo"}, n)


# -- workloads -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Sizes of one run."""

    clients: int = 100
    rate: float = 50.0  # events/s each SSE client receives (sse, sse-topics, the ramp's start)
    sse_seconds: float = 10.0
    topics_seconds: float = 10.0
    ramp_seconds: float = 5.0
    ramp_steps: int = 12
    grace: float = 3.0
    warmup_seconds: float = 2.0  # sse phases and the ramp: one untimed trial this long
    ws_n: int = 5_000
    sse_rounds: int = 3  # sse, sse-topics: trials after the warm-up
    stall_clients: int = 100  # stall: clients that subscribe and never read
    stall_readers: int = 10  # stall: SSE clients that do read (their latency is measured)
    stall_rate: float = 100.0  # stall: events/s
    stall_pad: int = 2_000  # stall: bytes of padding per event
    stall_seconds: float = 20.0  # stall: per trial
    rounds: int = 5  # ws: interleaved rounds
    warmup: float = 0.1  # ws: the warm-up trial runs this fraction of each row's N
    timeout: float = 90.0
    many_sizes: tuple[int, ...] = (1_000, 5_000, 10_000)  # many-sse, many-ws: N clients
    many_seconds: float = 10.0  # many-sse, many-ws: publishing time per trial
    fanout_clients: int = 10_000
    many_loops: str = "asyncio,uvloop"  # unless AXONBUS_BENCH_LOOPS says otherwise


FULL = Config()
QUICK = Config(
    sse_seconds=2.0,
    topics_seconds=2.0,
    ramp_seconds=1.0,
    ramp_steps=3,
    grace=2.0,
    warmup_seconds=0.5,
    ws_n=500,
    sse_rounds=2,
    stall_seconds=3.0,
    rounds=2,
    warmup=0.2,
    timeout=30.0,
    many_sizes=(200,),
    many_seconds=1.0,
    fanout_clients=200,
    many_loops="uvloop",  # the rest of the quick run is on asyncio
)

ECHO = "Starlette echo"
SSE, SSE_TOPICS, SSE_RAMP, WS = "sse", "sse-topics", "sse-ramp", "ws"

WS_WORKLOAD = Workload(
    WS,
    "ws: sequential WebSocket round trips, client in another process",
    ECHO,
    [
        Entry(AXONBUS, ws_axonbus, note="publish frame -> published + event frames"),
        Entry(ECHO, ws_echo, note="bare receive_text / send_text"),
        Entry(
            "axonbus publish (ack only)",
            partial(ws_axonbus, mode="publish-ack"),
            note="publish frame -> published frame",
        ),
        Entry("axonbus ping", partial(ws_axonbus, mode="ping"), note="ping -> pong"),
    ],
    lambda c: c.ws_n,
    unit="round trips/s",
)

STALL = "stall"
SCALE_KEYS = ("many-sse", "many-ws", "fanout")  # benchmarks.gateway_scale
WORKLOAD_KEYS = (SSE, SSE_TOPICS, SSE_RAMP, WS, STALL, *SCALE_KEYS)


def phases(cfg: Config) -> list[Phase]:
    c, r = cfg.clients, cfg.rate
    return [
        Phase(
            SSE,
            f"sse: {c} SSE clients x {r:g} events/s, broadcast ({r:g} publishes/s on one topic, "
            f"every client reads {BROADCAST_PATTERN}), {cfg.sse_seconds:g} s per round",
            SsePlan(c, r, cfg.sse_seconds, grace=cfg.grace),
        ),
        Phase(
            SSE_TOPICS,
            f"sse-topics: {c} SSE clients x {r:g} events/s, one topic per client "
            f"({c * r:,.0f} publishes/s), {cfg.topics_seconds:g} s per round",
            SsePlan(c, r, cfg.topics_seconds, per_client_topics=True, grace=cfg.grace),
        ),
    ]


# -- tables ------------------------------------------------------------------------------------


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def fmt_share(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def outcome_cells(o: SseOutcome) -> list[str]:
    return [
        fmt_rate(o.plan.publish_rate),
        fmt_rate(o.plan.offered),
        fmt_rate(o.achieved),
        fmt_ms(o.p50),
        fmt_ms(o.p99),
        fmt_ms(o.max),
        f"{o.lost:,}" + (f" ({o.dropped:,} reported dropped)" if o.dropped else ""),
        fmt_share(o.server_cpu),
        fmt_share(o.client_cpu),
    ]


OUTCOME_COLUMNS = [
    "publishes/s",
    "deliveries/s",
    "achieved",
    "p50",
    "p99",
    "max",
    "lost",
    "server CPU",
    "clients CPU",
]


def phase_table(printer: Printer, phase: Phase) -> None:
    rows = []
    for i, o in enumerate(phase.rounds):
        rows.append([f"round {i + 1}", *outcome_cells(o), o.why or "ok"])
    if phase.warmup is not None:
        rows.append(["(warm-up)", *outcome_cells(phase.warmup), phase.warmup.why or "ok"])
    printer.table(phase.title, ["trial", *OUTCOME_COLUMNS, "notes"], rows)


def ramp_table(printer: Printer, ramp: Ramp) -> None:
    rows = [[f"{i + 1}", *outcome_cells(o), o.why or "ok"] for i, o in enumerate(ramp.steps)]
    printer.table(
        f"sse-ramp: broadcast to SSE clients, publish rate x{RAMP:g} per step "
        f"(pass: p99 < {P99_LIMIT * 1000:.0f} ms, nothing lost, publisher on schedule)",
        ["step", *OUTCOME_COLUMNS, "notes"],
        rows,
    )
    if ramp.best is not None:
        more = "" if ramp.saturated else " (the ramp ended before a step failed: at least this)"
        printer.line(
            f"highest delivery rate with p99 < {P99_LIMIT * 1000:.0f} ms: "
            f"{ramp.best.plan.offered:,.0f} deliveries/s offered, "
            f"{fmt_rate(ramp.best.achieved)}/s achieved, p99 {fmt_ms(ramp.best.p99)}{more}"
        )


# -- targets and the run -----------------------------------------------------------------------


# -- stalled clients ----------------------------------------------------------------------------

#: how much the server's RSS may grow after the warm-up (a third of the trial) for it to count
#: as flat: the feeds' rings and the allocator's slack, never a per-client copy of the stream
STALL_RSS_GROWTH = 32 * 1024 * 1024
STALL_P99_FACTOR = 2.0
QUEUE_SIZE = 1000  # create_app's default: the events each pattern's ring keeps


@dataclass
class StallOutcome:
    """One stall trial: the readers' latency and the server's resident memory."""

    transport: str
    stalled: str  # "none", "sse" or "ws"
    clients: int = 0  # stalled clients
    feeds: int = 0  # open feeds when the publishing began
    p50: float | None = None
    p99: float | None = None
    lost: int = 0
    rss_start: int = 0  # bytes, once every client connected
    rss_warm: int = 0  # after a third of the publishing
    rss_peak: int = 0  # the highest after the warm-up
    rss_end: int = 0  # after the stalled clients closed
    behind: float = 0.0
    error: str = ""

    @property
    def growth(self) -> int:
        return self.rss_peak - self.rss_warm


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def stall_trial(cfg: Config, scheme: str, stalled: str) -> StallOutcome:
    """The gateway on ``scheme`` (``memory`` or ``sqlite``), ``stall_readers`` SSE readers and,
    unless ``stalled == "none"``, ``stall_clients`` clients that subscribe and never read."""
    ax = require("axonbus")
    create_app = require("axonbus.gateway").create_app
    out = StallOutcome(scheme, stalled)
    n = max(1, round(cfg.stall_rate * cfg.stall_seconds))
    plan = {
        "kind": "sse",
        "expected": n,
        "patterns": [BROADCAST_PATTERN] * cfg.stall_readers,
        "stalled": 0 if stalled == "none" else cfg.stall_clients,
        "stalled_kind": stalled,
    }
    out.clients = plan["stalled"]
    want = cfg.stall_readers + out.clients * (len(STALLED_WS_PATTERNS) if stalled == "ws" else 1)
    with tempfile.TemporaryDirectory() as tmp:
        url = "memory://" if scheme == "memory" else f"sqlite:///{tmp}/stall.db"
        async with ax.Bus(url, name="bench") as bus:
            gw = create_app(bus)
            async with serving(gw) as port:
                async with client_process({**plan, "port": port}) as client:
                    await client.message("ready", START_TIMEOUT)
                    async with asyncio.timeout(START_TIMEOUT):
                        while len(gw.state.gateway.feeds) < want:
                            await asyncio.sleep(0.01)
                    out.feeds = len(gw.state.gateway.feeds)
                    if stalled != "none":
                        await fill(bus, gw.state.gateway, cfg.stall_pad)
                    out.rss_start = _rss()
                    samples: list[tuple[float, int]] = []

                    async def sample() -> None:
                        while True:
                            samples.append((time.perf_counter(), _rss()))
                            await asyncio.sleep(0.1)

                    sampler = asyncio.get_running_loop().create_task(sample())
                    began = time.perf_counter()
                    try:
                        pacing = await publish_paced(
                            bus, [BROADCAST_TOPIC], cfg.stall_rate, n, pad=cfg.stall_pad
                        )
                    finally:
                        sampler.cancel()
                    try:
                        result = await client.message("result", cfg.grace)
                    except TimeoutError:
                        client.stop()
                        result = await client.message("result", START_TIMEOUT)
                # warm: a third of the way, and the feeds' rings full (queue_size events each)
                warm = began + max(cfg.stall_seconds / 3, QUEUE_SIZE / cfg.stall_rate)
                out.rss_warm = next((r for t, r in samples if t >= warm), out.rss_start)
                out.rss_peak = max((r for t, r in samples if t >= warm), default=out.rss_warm)
                await asyncio.sleep(0.5)  # the server saw the clients go
                out.rss_end = _rss()
    out.p50, out.p99, out.lost = result["p50"], result["p99"], result["lost"]
    out.behind = pacing.behind
    return out


async def fill(bus: Any, gateway: Any, pad: int) -> None:
    """Publish on :data:`FILL_TOPIC` until every stalled feed stopped taking events (at least
    20 behind): their socket buffers are full, as a stalled client's are."""
    filled = (STALLED_SSE_PATTERN, ">")
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            for _ in range(20):
                await bus.publish(FILL_TOPIC, {"pad": "x" * pad})
            await asyncio.sleep(0.05)
            feeds = [entry[-1] for entry in gateway.feeds.values()]  # (..., feed)
            stalled = [f for f in feeds if f.pattern in filled]
            if stalled and all(f.pending >= 20 for f in stalled):
                return


def measure_stall(cfg: Config, progress: Callable[[str], None]) -> list[StallOutcome]:
    outcomes = []
    kinds = ("none", "sse") if cfg.stall_seconds < 5 else ("none", "sse", "ws")
    for scheme in ("memory", "sqlite"):
        for stalled in kinds:
            progress(f"stall: {scheme}:// with {stalled} stalled clients")
            try:
                outcome = run_fresh(
                    partial(stall_trial, cfg, scheme, stalled),
                    cfg.stall_seconds + cfg.grace + 3 * START_TIMEOUT,
                )
            except Exception as exc:
                outcome = StallOutcome(scheme, stalled, error=failure(exc))
            outcomes.append(outcome)
    return outcomes


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MiB"


def stall_table(printer: Printer, cfg: Config, outcomes: list[StallOutcome]) -> None:
    rows = [
        [
            f"{o.transport}://",
            o.stalled if o.stalled == "none" else f"{o.clients} {o.stalled}",
            str(o.feeds),
            fmt_ms(o.p50),
            fmt_ms(o.p99),
            str(o.lost),
            _mib(o.rss_start),
            _mib(o.rss_warm),
            _mib(o.rss_peak),
            _mib(o.rss_end),
            o.error or "",
        ]
        for o in outcomes
    ]
    printer.table(
        f"stall: {cfg.stall_readers} SSE readers of {cfg.stall_rate:g} events/s "
        f"({cfg.stall_pad:,} B each) for {cfg.stall_seconds:g} s, beside clients that subscribe "
        "and never read (4 KiB receive buffers; a stalled WebSocket holds "
        f"{len(STALLED_WS_PATTERNS)} subscriptions)",
        ["bus", "stalled", "feeds", "p50", "p99", "lost", "RSS start", "RSS warm", "RSS peak",
         "RSS end", "error"],
        rows,
    )  # fmt: skip


def stall_targets(outcomes: list[StallOutcome]) -> list[Target]:
    goals = []
    base = {o.transport: o for o in outcomes if o.stalled == "none" and not o.error}
    for o in outcomes:
        if o.stalled == "none":
            continue
        label = f"{o.clients} stalled {o.stalled} clients on {o.transport}://"
        goals.append(
            Target(
                f"{label}: server RSS growth after warm-up",
                "-" if o.error else _mib(o.growth),
                f"< {_mib(STALL_RSS_GROWTH)}",
                None if o.error else o.growth < STALL_RSS_GROWTH,
            )
        )
        ref = base.get(o.transport)
        ratio = None
        if ref is not None and ref.p99 and o.p99 is not None and not o.error:
            ratio = o.p99 / ref.p99
        goals.append(
            Target(
                f"{label}: readers' p99 / no-stall p99",
                "-"
                if ratio is None
                else f"{ratio:.2f}x ({fmt_ms(o.p99)} / {fmt_ms(ref.p99 if ref else None)})",
                f"<= {STALL_P99_FACTOR:g}x, nothing lost",
                None if ratio is None else ratio <= STALL_P99_FACTOR and o.lost == 0,
            )
        )
    return goals


def targets(cfg: Config, found: dict[str, Phase], ramp: Ramp | None, ws: list[Row]) -> list[Target]:
    goals = []
    load = f"{cfg.clients} SSE clients x {cfg.rate:g} events/s"
    phase = found.get(SSE)
    p99 = phase.median("p99") if phase is not None else None
    lost = phase.lost if phase is not None else None
    each = ", ".join(fmt_ms(r.p99) for r in phase.rounds) if phase is not None else ""
    goals.append(
        Target(
            f"{load}: p99 publish-to-client latency (median of rounds)",
            f"{fmt_ms(p99)} ({each})" if p99 is not None else "-",
            f"< {P99_LIMIT * 1000:.0f} ms",
            None if p99 is None else p99 < P99_LIMIT,
        )
    )
    goals.append(
        Target(
            f"{load}: events lost (all rounds)",
            "-" if lost is None else f"{lost:,}",
            "0",
            None if lost is None else lost == 0,
        )
    )
    if ramp is not None:
        best = ramp.best.plan.offered if ramp.best is not None else None
        floor = cfg.clients * cfg.rate
        measured = "-" if best is None else f"{fmt_rate(best)} deliveries/s"
        if ramp.best is not None and not ramp.saturated:
            measured += " (not saturated)"
        goals.append(
            Target(
                f"highest SSE delivery rate with p99 < {P99_LIMIT * 1000:.0f} ms",
                measured,
                f"reported (>= {fmt_rate(floor)}/s)",
                None if not ramp.steps else best is not None and best >= floor,
            )
        )
    if ws:
        goals.append(Medians({WS: ws}).at_least("WebSocket publish->event / echo", WS, ECHO, 0.7))
    return goals


VERSIONS = ("axonbus", "starlette", "uvicorn", "h11", "httptools", "websockets", "orjson")


def run(cfg: Config, printer: Printer, only: set[str] | None = None) -> dict[str, Any]:
    env = environment(VERSIONS)
    started = begin(
        printer,
        "axonbus gateway benchmarks",
        env,
        services=f"uvicorn on {HOST} (a free port per trial), clients in a child process",
        preload=("axonbus", "axonbus.gateway", "uvicorn", "starlette", "websockets", "orjson"),
    )
    found: dict[str, Phase] = {}
    for phase in phases(cfg):
        if only is None or phase.key in only:
            found[phase.key] = measure_phase(phase, cfg, printer.progress)
            phase_table(printer, phase)
    ramp = None
    if only is None or SSE_RAMP in only:
        ramp = measure_ramp(cfg, printer.progress)
        ramp_table(printer, ramp)
    results = run_workloads([WS_WORKLOAD], cfg, printer, only)
    stall: list[StallOutcome] = []
    if only is None or STALL in only:
        stall = measure_stall(cfg, printer.progress)
        stall_table(printer, cfg, stall)
    from . import gateway_scale as scale  # it imports this module

    many: dict[str, Any] = {}
    if only is None or only & set(SCALE_KEYS):
        many = scale.measure(
            only,
            cfg.many_sizes,
            cfg.many_seconds,
            cfg.fanout_clients,
            printer.progress,
            cfg.many_loops,
        )
    goals = targets(cfg, found, ramp, results.get(WS, [])) + stall_targets(stall)
    goals += scale.tables(printer, many, cfg.many_seconds)
    elapsed = conclude(printer, "targets (medians within this run)", goals, started)
    return report(
        env,
        cfg,
        elapsed,
        goals,
        sse={key: phase_json(p) for key, p in found.items()},
        ramp=None if ramp is None else ramp_json(ramp),
        workloads=workload_results([WS_WORKLOAD], results),
        stall=[{**asdict(o), "growth": o.growth} for o in stall],
        many=many,
    )


def outcome_json(o: SseOutcome) -> dict[str, Any]:
    return {
        **asdict(o),
        "publish_rate": o.plan.publish_rate,
        "offered": o.plan.offered,
        "passed": o.passed,
    }


def phase_json(p: Phase) -> dict[str, Any]:
    return {
        "title": p.title,
        "rounds": [outcome_json(o) for o in p.rounds],
        "warmup": None if p.warmup is None else outcome_json(p.warmup),
        "p99_median": p.median("p99"),
        "lost": p.lost,
        "error": p.error,
    }


def ramp_json(r: Ramp) -> dict[str, Any]:
    return {
        "steps": [outcome_json(o) for o in r.steps],
        "best": None if r.best is None else outcome_json(r.best),
        "saturated": r.saturated,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return rounds_cli(
        argv,
        prog="python -m benchmarks.gateway",
        description=__doc__,
        workloads=WORKLOAD_KEYS,
        full=FULL,
        quick=QUICK,
        run=run,
    )


if __name__ == "__main__":
    sys.exit(main())
