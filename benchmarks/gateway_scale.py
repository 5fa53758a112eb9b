"""Thousands of SSE / WebSocket clients on one gateway process (the ``many-sse``, ``many-ws`` and
``fanout`` workloads of ``python -m benchmarks.gateway``).

    python -m benchmarks.gateway --only many-sse,many-ws,fanout
    AXONBUS_BENCH_LOOPS=uvloop python -m benchmarks.gateway --only many-sse

Every trial runs in a fresh server process (``python -m benchmarks.gateway_scale TRIAL``: the
gateway on a ``memory://`` bus under uvicorn with the gateway's ``server_config``, and the
publisher, in one event loop: asyncio or uvloop), so that its resident memory is its own; the
clients run in one more process (hand-rolled asyncio protocols on raw sockets, on uvloop when it
is installed, so that 10,000 of them cost little). Both raise their open-file limit to the hard
limit.

- ``many-sse`` / ``many-ws``: N clients (1k, 5k, 10k), each subscribed to its own session topic
  ``bench.s.{i}`` and receiving one event every 2 s on it (N / 2 publishes/s, spread evenly on
  an absolute schedule), plus 100 clients on one busy shared topic (``bench.busy``, 20 events/s:
  2,000 deliveries/s). SSE: ``GET /v1/events?pattern=...``; WebSocket: ``/v1/ws`` and one
  ``subscribe`` frame. Reported: the server's RSS growth per client (RSS at the end of the
  publishing minus RSS before the first client connected, over N + 100), p50 / p99
  publish-to-client latency over every delivery, the server's and the clients' CPU (a fraction
  of one core), the accept rate (clients connected and subscribed per second, 256 connecting at
  once), the garbage collector's longest pause while publishing (and how many full
  collections ran), the machine's load average, and the largest N whose p99 stayed under 250 ms
  with nothing lost.
- ``fanout``: N clients (10k) on one topic; one event published at a time (the next once the
  last client has the previous one), 5 times: the time from the publish until the last client
  has it, and the delivery rate N / that time (median of the 5). Anchor, in the same run: a bare
  Starlette SSE endpoint (a ``StreamingResponse`` per client, fed by its own ``asyncio.Queue``;
  publishing puts the same pre-encoded SSE block on every queue) on the same uvicorn
  configuration. Target: axonbus >= 0.8x the bare endpoint's delivery rate.

``AXONBUS_BENCH_LOOPS`` (``asyncio,uvloop`` by default; uvloop only when installed) chooses the
server's event loops; every row says which.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any
from urllib.parse import quote

from ._harness import percentile, require
from .gateway import (
    HOST,
    ROOT,
    START_TIMEOUT,
    SSEClient,
    Tally,
    _emit,
    _rss,
    _stop_on_stdin,
    client_process,
    publish_paced,
)

P99_LIMIT = 0.250  # seconds: the target at N clients
BUSY_CLIENTS = int(os.environ.get("AXONBUS_BENCH_BUSY", "100"))
BUSY_RATE = 20.0  # events/s on the busy shared topic
SESSION_RATE = 0.5  # events/s on each session topic
CONNECTING = 256  # clients connecting at once
FANOUT_EVENTS = 5
FANOUT_RATIO = 0.8
BUSY_TOPIC = "bench.busy"
FAN_TOPIC = "bench.fan"

SCALE_CLIENT_CODE = (
    "import sys; from benchmarks.gateway_scale import client_main; sys.exit(client_main())"
)


def raise_nofile() -> int:
    """The open-file limit raised to the hard limit (10k sockets need more than 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        uvloop = require("uvloop")
        return uvloop.new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


def loops(default: str = "asyncio,uvloop") -> list[str]:
    """The server event loops to measure (``AXONBUS_BENCH_LOOPS``, else ``default``; uvloop
    only when installed)."""
    wanted = os.environ.get("AXONBUS_BENCH_LOOPS", default).split(",")
    found = []
    for name in (w.strip() for w in wanted):
        if name == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                continue
        if name in ("asyncio", "uvloop"):
            found.append(name)
    return found or ["asyncio"]


# -- the client process ------------------------------------------------------------------------


class Group(Tally):
    """The clients of one kind of subscription; also the latest arrival of each event (seq)."""

    def __init__(self, clients: int, expected: int, announce: bool = False) -> None:
        super().__init__(clients, expected)
        self.clients = clients
        self.latest = array.array("d", [0.0] * expected)  # the slowest client's latency per seq
        self.holders = array.array("l", [0] * expected)  # clients that have each seq
        self.announce = announce  # emit {"got": seq} once every client has it

    def got(self, client: Any, seq: int, latency: float, now: float) -> None:
        self.latencies.append(latency)
        self.received += 1
        self.first = min(self.first, now)
        self.last = max(self.last, now)
        if client.seen[seq]:
            self.duplicates += 1
            return
        client.seen[seq] = 1
        client.count += 1
        if latency > self.latest[seq]:
            self.latest[seq] = latency
        self.holders[seq] += 1
        if self.announce and self.holders[seq] == self.clients:
            _emit({"got": seq})
        if client.count == self.expected:
            self.client_finished()


class ScaleSSE(SSEClient):
    """An SSE client whose events go to :meth:`Group.got`."""

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport
        transport.write(self.request)

    def _blocks(self, now: float) -> None:
        body = self.body
        group = self.tally
        assert isinstance(group, Group)
        pos = 0
        while (end := body.find(b"\n\n", pos)) >= 0:
            data = body.find(b"data: ", pos, end)
            if data < 0:
                if not self.ready:
                    self.ready = True
                    group.client_ready()
            else:
                record = self.loads(body[data + 6 : end])
                event = record.get("event")
                if event is None:
                    group.dropped += record.get("dropped", 0)
                else:
                    group.got(self, event["seq"], now - event["t"], now)
            pos = end + 2
        del body[:pos]


class ScaleWS(asyncio.Protocol):
    """One WebSocket on ``/v1/ws`` on a raw socket: the handshake, one ``subscribe`` frame,
    then the server's frames (pings answered)."""

    def __init__(self, group: Group, request: bytes, subscribe: bytes, loads: Any) -> None:
        self.tally = group
        self.request = request
        self.subscribe = subscribe
        self.loads = loads
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()
        self.head = False
        self.ready = False
        self.seen = bytearray(group.expected)
        self.count = 0

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.tally.done.done():
            self.tally.fail(f"a WebSocket closed early ({exc})")

    def data_received(self, data: bytes) -> None:
        now = time.time()
        raw = self.raw
        raw += data
        if not self.head:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            if not raw.startswith(b"HTTP/1.1 101"):
                self.tally.fail(f"WebSocket answer: {bytes(raw[:end])[:200]!r}")
                return
            del raw[: end + 4]
            self.head = True
            assert self.transport is not None
            self.transport.write(self.subscribe)
        pos, size = 0, len(raw)
        while size - pos >= 2:
            opcode, length = raw[pos] & 0x0F, raw[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - start < 2:
                    break
                length, start = int.from_bytes(raw[start : start + 2], "big"), start + 2
            elif length == 127:
                if size - start < 8:
                    break
                length, start = int.from_bytes(raw[start : start + 8], "big"), start + 8
            if size - start < length:
                break
            payload = raw[start : start + length]
            pos = start + length
            self._frame(opcode, payload, now)
        del raw[:pos]

    def _frame(self, opcode: int, payload: bytearray, now: float) -> None:
        group = self.tally
        assert isinstance(group, Group)
        if opcode == 0x9:  # ping: a masked pong with the same payload (mask zero)
            assert self.transport is not None
            assert len(payload) < 126
            self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            return
        if opcode == 0x8:
            group.fail(f"the server closed a WebSocket: {bytes(payload)!r}")
            return
        if opcode != 0x1:
            return
        frame = self.loads(payload)
        op = frame.get("op")
        if op == "event":
            event = frame["event"]
            group.got(self, event["seq"], now - event["t"], now)
        elif op == "subscribed" and not self.ready:
            self.ready = True
            group.client_ready()
        elif op == "dropped":
            group.dropped += frame.get("dropped", 0)
        elif op == "error":
            group.fail(f"WebSocket error frame: {frame!r}")


def _ws_frame(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def client_main() -> int:
    """The client process: plan in ``sys.argv[1]``; JSON lines on stdout (``ready``, ``got``
    in a fan-out, then ``result``); stops when every client has every event, or on stdin."""
    plan = json.loads(sys.argv[1])
    raise_nofile()
    try:
        factory = loop_factory("uvloop")
    except Exception:
        factory = asyncio.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            result = runner.run(many_clients(plan))
    except Exception as exc:
        _emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _emit({"result": result})
    return 0


async def many_clients(plan: dict[str, Any]) -> dict[str, Any]:
    orjson = require("orjson")
    loop = asyncio.get_running_loop()
    port, kind = plan["port"], plan["kind"]
    stop: asyncio.Future[None] = loop.create_future()
    _stop_on_stdin(loop, stop)
    groups: list[Group] = []
    jobs: list[tuple[Group, str]] = []
    for spec in plan["groups"]:
        group = Group(spec["count"], spec["expected"], announce=plan.get("announce", False))
        groups.append(group)
        for i in range(spec["count"]):
            jobs.append((group, spec["pattern"].format(i=i)))
    protocols: list[Any] = []
    host = f"Host: {HOST}:{port}\r\n"
    path = plan.get("path", "/v1/events")

    def factory(group: Group, pattern: str) -> Any:
        if kind == "sse":
            request = (
                f"GET {path}?pattern={quote(pattern, safe='')} HTTP/1.1\r\n{host}"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
            return ScaleSSE(group, request, orjson.loads)
        request = (
            f"GET /v1/ws HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        subscribe = _ws_frame(json.dumps({"op": "subscribe", "pattern": pattern}))
        return ScaleWS(group, request, subscribe, orjson.loads)

    gate = asyncio.Semaphore(CONNECTING)

    async def connect(group: Group, pattern: str) -> None:
        async with gate:
            _, proto = await loop.create_connection(partial(factory, group, pattern), HOST, port)
            protocols.append(proto)
            while not proto.ready and not group.ready.done():
                # hold the slot until subscribed: the accept rate is of ready clients
                await asyncio.sleep(0.005)

    began = time.perf_counter()
    try:
        async with asyncio.timeout(plan.get("connect_timeout", 120.0)):
            await asyncio.gather(*(connect(g, p) for g, p in jobs))
            await asyncio.gather(*(g.ready for g in groups))
        connect_seconds = time.perf_counter() - began
        _emit({"ready": len(protocols), "connect_seconds": connect_seconds})
        cpu, wall = time.process_time(), time.perf_counter()
        done = asyncio.gather(*(g.done for g in groups))
        await asyncio.wait({done, stop}, return_when=asyncio.FIRST_COMPLETED)
        if done.done():
            done.result()
        else:
            done.cancel()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        errors = [e for g in groups for e in g.errors]
        if errors:
            raise RuntimeError(errors[0])
    finally:
        for g in groups:
            for fut in (g.ready, g.done):
                if not fut.done():
                    fut.set_result(None)
        for proto in protocols:
            if proto.transport is not None:
                proto.transport.close()
    latencies = sorted(x for g in groups for x in g.latencies)
    return {
        "clients": len(protocols),
        "connect_seconds": connect_seconds,
        "expected": sum(g.expected * g.clients for g in groups),
        "received": sum(g.received for g in groups),
        "lost": sum(g.expected - p.count for p in protocols for g in [p.tally]),
        "duplicates": sum(g.duplicates for g in groups),
        "dropped": sum(g.dropped for g in groups),
        "p50": percentile(latencies, 50) if latencies else None,
        "p99": percentile(latencies, 99) if latencies else None,
        "max": latencies[-1] if latencies else None,
        "latest": [list(g.latest) for g in groups],
        "cpu": cpu,
        "wall": wall,
    }


# -- the server process: one trial -------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(app: Any, max_connections: int) -> AsyncIterator[int]:
    """``app`` under uvicorn with the gateway's ``server_config`` (room for every client)."""
    gateway = require("axonbus.gateway")
    server_config = require("axonbus.gateway._server").server_config
    config = server_config(app, HOST, 0, log_level="warning", max_connections=max_connections)
    config.backlog = 4096
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
        async with asyncio.timeout(30):
            await task


async def many_trial(kind: str, clients: int, seconds: float) -> dict[str, Any]:
    """N session clients + the busy ones on the gateway; the publisher paced as described."""
    ax = require("axonbus")
    create_app = require("axonbus.gateway").create_app
    n_session = max(1, round(SESSION_RATE * seconds))
    n_busy = max(1, round(BUSY_RATE * seconds))
    total = clients + BUSY_CLIENTS
    plan = {
        "kind": kind,
        "groups": [
            {"pattern": "bench.s.{i}", "count": clients, "expected": n_session},
            {"pattern": BUSY_TOPIC, "count": BUSY_CLIENTS, "expected": n_busy},
        ],
    }
    pauses = GcPauses()
    async with ax.Bus("memory://", name="bench") as bus:
        app = create_app(bus, max_feeds_per_token=total + 10)
        async with serving(app, total + 100) as port:
            gc.collect()
            rss_base = _rss()
            async with client_process({**plan, "port": port}, code=SCALE_CLIENT_CODE) as proc:
                ready = await proc.message_full("ready", 180.0)
                topics = [f"bench.s.{i}" for i in range(clients)]
                load = os.getloadavg()[0]
                cpu, wall = time.process_time(), time.perf_counter()
                with pauses:
                    session, busy = await asyncio.gather(
                        publish_paced(bus, topics, SESSION_RATE, n_session),
                        publish_paced(bus, [BUSY_TOPIC], BUSY_RATE, n_busy),
                    )
                rss_end = _rss()
                try:
                    result = await proc.message("result", 5.0)
                except TimeoutError:
                    proc.stop()
                    result = await proc.message("result", START_TIMEOUT)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "kind": kind,
        "clients": clients,
        "total": total,
        "rss_base": rss_base,
        "rss_end": rss_end,
        "rss_per_client": (rss_end - rss_base) / total,
        "accept_rate": total / ready["connect_seconds"],
        "p50": result["p50"],
        "p99": result["p99"],
        "max": result["max"],
        "lost": result["lost"],
        "dropped": result["dropped"],
        "duplicates": result["duplicates"],
        "received": result["received"],
        "server_cpu": cpu / wall,
        "client_cpu": result["cpu"] / result["wall"] if result["wall"] else None,
        "behind": max(session.behind, busy.behind),
        "gc_full": pauses.full,  # full collections while publishing
        "gc_max": pauses.longest,  # seconds: the longest collection while publishing
        "load": load,  # the machine's 1-minute load average when publishing began
    }


class GcPauses:
    """The garbage collector's pauses while in the ``with`` block: the longest, and how many
    full (generation 2) collections ran."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.full = 0
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        self.longest = max(self.longest, time.perf_counter() - self._began)
        if info.get("generation") == 2:
            self.full += 1

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def bare_app() -> tuple[Any, Callable[[bytes], None]]:
    """A bare Starlette SSE endpoint fed by one ``asyncio.Queue`` per client, and the function
    that puts a block on every client's queue."""
    applications = require("starlette.applications")
    responses = require("starlette.responses")
    routing = require("starlette.routing")
    queues: set[asyncio.Queue[bytes]] = set()

    async def events(request: Any) -> Any:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.add(queue)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": hello\n\n"
                while True:
                    yield await queue.get()
            finally:
                queues.discard(queue)

        return responses.StreamingResponse(stream(), media_type="text/event-stream")

    def publish(block: bytes) -> None:
        for queue in queues:
            queue.put_nowait(block)

    app = applications.Starlette(routes=[routing.Route("/sse", events)])
    return app, publish


async def fanout_trial(server: str, clients: int) -> dict[str, Any]:
    """``clients`` SSE clients on one topic; ``FANOUT_EVENTS`` events one at a time."""
    ax = require("axonbus")
    create_app = require("axonbus.gateway").create_app
    dumps = require("orjson").dumps
    plan: dict[str, Any] = {
        "kind": "sse",
        "announce": True,
        "groups": [{"pattern": FAN_TOPIC, "count": clients, "expected": FANOUT_EVENTS}],
    }
    async with contextlib.AsyncExitStack() as stack:
        if server == "axonbus":
            bus = await stack.enter_async_context(ax.Bus("memory://", name="bench"))
            app = create_app(bus, max_feeds_per_token=clients + 10)

            async def publish(seq: int) -> None:
                await bus.publish(FAN_TOPIC, {"seq": seq, "t": time.time()})

        else:
            app, put = bare_app()
            plan["path"] = "/sse"

            async def publish(seq: int) -> None:
                record = {"topic": FAN_TOPIC, "event": {"seq": seq, "t": time.time()}}
                put(f"id: {seq}\nevent: {FAN_TOPIC}\ndata: ".encode() + dumps(record) + b"\n\n")

        port = await stack.enter_async_context(serving(app, clients + 100))
        proc = await stack.enter_async_context(
            client_process({**plan, "port": port}, code=SCALE_CLIENT_CODE)
        )
        ready = await proc.message_full("ready", 180.0)
        cpu, wall = time.process_time(), time.perf_counter()
        for seq in range(FANOUT_EVENTS):
            await asyncio.sleep(0.3)  # the loop is idle when the event goes out
            await publish(seq)
            got = await proc.message("got", 60.0)
            if got != seq:
                raise RuntimeError(f"expected event {seq} everywhere, got {got}")
        result = await proc.message("result", 30.0)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latest = result["latest"][0]
    last = statistics.median(latest)
    return {
        "server": server,
        "clients": clients,
        "last": last,  # median over the events: seconds until the last client had it
        "each": latest,
        "p50": result["p50"],
        "rate": clients / last if last > 0 else None,
        "accept_rate": clients / ready["connect_seconds"],
        "server_cpu": cpu / wall,
        "lost": result["lost"],
    }


def trial_main(argv: list[str]) -> int:
    """``python -m benchmarks.gateway_scale TRIAL``: one trial in this process, its result as
    one JSON line on stdout."""
    trial = json.loads(argv[0])
    raise_nofile()
    if trial["workload"] == "fanout":
        body = partial(fanout_trial, trial["server"], trial["clients"])
    else:
        body = partial(many_trial, trial["kind"], trial["clients"], trial["seconds"])
    try:
        with asyncio.Runner(loop_factory=loop_factory(trial["loop"])) as runner:
            result = runner.run(asyncio.wait_for(body(), trial["timeout"]))
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}), flush=True)
        return 1
    print(json.dumps({"result": result}), flush=True)
    return 0


def run_trial(trial: dict[str, Any]) -> dict[str, Any]:
    """One trial in a fresh server process: its result, or ``{"error": ...}``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.gateway_scale", json.dumps(trial)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=trial["timeout"] + 60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": "the trial process timed out"}
    for line in reversed(proc.stdout.splitlines()):
        with contextlib.suppress(ValueError):
            found = json.loads(line)
            if isinstance(found, dict) and ("result" in found or "error" in found):
                return found.get("result") or {"error": found["error"]}
    return {"error": f"no result (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"}


# -- the workloads, as python -m benchmarks.gateway runs them -------------------------------------

MANY_SSE, MANY_WS, FANOUT = "many-sse", "many-ws", "fanout"
KEYS = (MANY_SSE, MANY_WS, FANOUT)


def passed(row: dict[str, Any]) -> bool:
    return (
        "error" not in row
        and row["p99"] is not None
        and row["p99"] < P99_LIMIT
        and row["lost"] == 0
        and row["dropped"] == 0
        and row["behind"] <= 0.05
    )


def measure(
    only: set[str] | None, sizes: tuple[int, ...], seconds: float, fan_clients: int,
    progress: Callable[[str], None], default_loops: str = "asyncio,uvloop",
) -> dict[str, Any]:  # fmt: skip
    """Every ``many-*`` size on every loop, then the fan-out rows: ``{key: [rows]}``."""
    found: dict[str, Any] = {"loops": loops(default_loops)}
    for key, kind in ((MANY_SSE, "sse"), (MANY_WS, "ws")):
        if only is not None and key not in only:
            continue
        rows = found[key] = []
        for loop in found["loops"]:
            for n in sizes:
                progress(f"{key}: {n:,} clients + {BUSY_CLIENTS} busy, {loop}")
                timeout = seconds + 240 + n / 50
                trial = {"workload": "many", "kind": kind, "clients": n, "seconds": seconds,
                         "loop": loop, "timeout": timeout}  # fmt: skip
                rows.append({"loop": loop, "clients": n, **run_trial(trial)})
    if only is None or FANOUT in only:
        rows = found[FANOUT] = []
        for loop in found["loops"]:
            for server in ("axonbus", "bare"):
                progress(f"fanout: {server}, {fan_clients:,} clients, {loop}")
                trial = {"workload": "fanout", "server": server, "clients": fan_clients,
                         "loop": loop, "timeout": 240 + fan_clients / 50}  # fmt: skip
                rows.append({"loop": loop, **run_trial(trial)})
    return found


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f} ms"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def tables(printer: Any, found: dict[str, Any], seconds: float) -> list[Any]:
    """Print the tables; the targets (``Target`` rows of the harness)."""
    from ._harness import Target

    goals = []
    for key in (MANY_SSE, MANY_WS):
        rows = found.get(key)
        if rows is None:
            continue
        printer.table(
            f"{key}: N clients on their own topic (1 event / 2 s each) + {BUSY_CLIENTS} on a "
            f"busy topic ({BUSY_RATE:g} events/s), {seconds:g} s of publishing, one server "
            "process (pass: p99 < 250 ms, nothing lost)",
            ["loop", "N", "RSS/client", "p50", "p99", "max", "lost", "server CPU",
             "clients CPU", "accepts/s", "GC pause (full)", "load", "notes"],
            [
                [r["loop"], f"{r['clients']:,}"]
                + (
                    ["-"] * 10 + [r["error"]]
                    if "error" in r
                    else [
                        f"{r['rss_per_client'] / 1024:.1f} KiB", _ms(r["p50"]), _ms(r["p99"]),
                        _ms(r["max"]), f"{r['lost']:,}", _pct(r["server_cpu"]),
                        _pct(r["client_cpu"]), f"{r['accept_rate']:,.0f}",
                        f"{_ms(r['gc_max'])} ({r['gc_full']})", f"{r['load']:.1f}",
                        "ok" if passed(r) else "fail",
                    ]
                )
                for r in rows
            ],
        )  # fmt: skip
        for loop in found["loops"]:
            ok = [r["clients"] for r in rows if r["loop"] == loop and passed(r)]
            best = max(ok) if ok else None
            printer.line(f"{key} on {loop}: largest N with p99 < 250 ms: {best or '-'}")
            at = [r for r in rows if r["loop"] == loop and "error" not in r]
            top = max(at, key=lambda r: r["clients"]) if at else None
            goals.append(
                Target(
                    f"{key} on {loop}: p99 at {top['clients']:,} clients" if top else key,
                    _ms(top["p99"]) if top else "-",
                    "< 250 ms",
                    None if top is None else passed(top),
                )
            )
            if key == MANY_SSE and top is not None:
                goals.append(
                    Target(
                        f"{key} on {loop}: server memory per client at {top['clients']:,}",
                        f"{top['rss_per_client'] / 1024:.1f} KiB",
                        "< 30 KB",
                        top["rss_per_client"] < 30_000,
                    )
                )
    rows = found.get(FANOUT)
    if rows is not None:
        printer.table(
            f"fanout: one event to N SSE clients on one topic, {FANOUT_EVENTS} events one at a "
            "time: time until the last client has it (median), delivery rate",
            ["loop", "server", "N", "last client", "p50", "deliveries/s", "server CPU", "notes"],
            [
                [r["loop"], r.get("server", "?"), f"{r.get('clients', 0):,}"]
                + (
                    ["-"] * 4 + [r["error"]]
                    if "error" in r
                    else [_ms(r["last"]), _ms(r["p50"]), f"{r['rate']:,.0f}",
                          _pct(r["server_cpu"]), "ok" if r["lost"] == 0 else "lost"]
                )
                for r in rows
            ],
        )  # fmt: skip
        for loop in found["loops"]:
            mine = [r for r in rows if r["loop"] == loop and r.get("server") == "axonbus"]
            bare = [r for r in rows if r["loop"] == loop and r.get("server") == "bare"]
            ratio = None
            if mine and bare and mine[0].get("rate") and bare[0].get("rate"):
                ratio = mine[0]["rate"] / bare[0]["rate"]
            goals.append(
                Target(
                    f"fanout on {loop}: axonbus / bare Starlette delivery rate",
                    "-" if ratio is None else f"{ratio:.2f}x",
                    f">= {FANOUT_RATIO:g}x",
                    None if ratio is None else ratio >= FANOUT_RATIO,
                )
            )
    return goals


if __name__ == "__main__":
    sys.exit(trial_main(sys.argv[1:]))
