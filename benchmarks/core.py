"""axonbus against its anchors on the same workloads, in one process and one run.

    python -m benchmarks.core            # full run, about 2-3 minutes on 2 cores
    python -m benchmarks.core --quick    # smoke test, well under 30 s
    python -m benchmarks.core --json artifacts/bench.json
    python -m benchmarks.core --only w1,w10,rpc --loop uvloop   # one loop only (default: both)

Workloads (each implementation on the same one; every handler is an ``async def h(event)`` no-op
that counts):

- ``W1``: one publisher, one subscriber, N pre-built events; time until all were handled.
- ``W10``: the same with ten subscribers; the rate counts deliveries.
- ``w1-otel``: W1 with ``axonbus.observability.OpenTelemetryMiddleware`` installed and no SDK
  tracer provider (the OpenTelemetry API's no-op default: what tracing costs when it is off),
  against W1 without it; and, for context, with an SDK provider exporting to memory.
- ``RPC``: sequential request/reply round trips.
- ``rt-publish``: the actor runtime: ``publish_message`` of N messages to a topic one
  ``RoutedAgent`` is subscribed to; time until it handled the last. Against autogen-core's
  ``SingleThreadedAgentRuntime`` on the same agent and messages.
- ``rt-send``: sequential ``await runtime.send_message(...)`` to one agent (the reply is the
  request's number, checked), against autogen-core.
- ``latency``: p50/p99 publish-to-handler latency at a steady 10,000 events/s.
- ``memory``: 1,000,000 events into a stalled ``maxsize=1000, overflow="drop_oldest"``
  subscription; RSS growth and drop count.

W1, W10 and RPC run on asyncio's own event loop and again on uvloop (``pip install
axonbus[uvloop]``), every implementation on the same loop within a table; ``--loop`` picks one.

Anchors: raw asyncio (bounded ``asyncio.Queue``, the practical limit), blinker ``send_async``,
pyee ``AsyncIOEventEmitter``, bubus ``EventBus``, autogen-core ``SingleThreadedAgentRuntime``,
and the seed's own gather-based MessageBus. An anchor that is not installed is skipped with a
note. Slow anchors run fewer events (the N column says how many).

Noise: the machine is shared, and a trial that overlaps another process's burst runs several
times slower. So every throughput trial is short, trials are interleaved round-robin across
implementations, and each row gets 3 to 12 trials, until its two best *quiet* trials (this
process had the CPU for >= 90% of the timed part) agree within 20%, or the workload's time budget
runs out (``*`` in the table). The rate reported is the best trial; the median is shown too.
Every ratio compares numbers from this same run. In the runtime workloads every agent is
created, and has handled one message, before the timed part.
"""

# No ``from __future__ import annotations`` here: autogen-core resolves the type hints of the
# ``@message_handler`` methods defined inside a function below, which needs real objects.

import argparse
import asyncio
import gc
import itertools
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache, partial
from time import perf_counter, perf_counter_ns
from typing import Any

from ._harness import (
    AXONBUS,
    Countdown,
    Entry,
    Lap,
    Printer,
    Rounds,
    Row,
    Target,
    at_least,
    begin,
    check_reply,
    cli,
    conclude,
    environment,
    failure,
    find,
    fmt_rate,
    fmt_ratio,
    measure,
    percentile,
    ratio,
    report,
    require,
    rss_bytes,
    run_fresh,
    scaled,
    stopwatch,
)

TOPIC = "bench.tick"
RPC_TOPIC = "bench.rpc"
LATENCY_TOPIC = "bench.latency"
MAILBOX = 10_000  # every bounded queue in the benchmark, axonbus's default maxsize
BUBUS_WINDOW = 32  # bubus refuses >= 100 pending (queued ones count twice): keep 32 in flight

log = logging.getLogger("benchmarks.core")


@dataclass(frozen=True)
class Config:
    """Sizes of one run. Throughput trials are kept short on purpose (about 0.05-0.5 s for the
    fast implementations): on a shared 2-core machine a short trial has a fair chance to land in
    a quiet moment, and the best of several is what the code can do. RPC trials are the shortest:
    every round trip crosses the event loop twice, and each crossing is a chance to lose the CPU.
    ``--scale 4`` gives W1 N = 200,000 for a quiet machine."""

    w1_n: int = 50_000
    w10_n: int = 5_000  # events; x10 deliveries
    rpc_n: int = 5_000
    rt_publish_n: int = 50_000
    rt_send_n: int = 5_000
    latency_seconds: float = 2.0
    latency_rate: int = 10_000
    latency_runs: int = 3
    memory_n: int = 1_000_000
    rounds: Rounds = field(default_factory=lambda: Rounds(min=3, max=12, budget=35.0))
    timeout: float = 120.0
    loops: tuple[str, ...] = ("asyncio", "uvloop")  # W1, W10 and RPC run on each


FULL = Config()
QUICK = Config(
    w1_n=10_000,
    w10_n=1_000,
    rpc_n=2_000,
    rt_publish_n=10_000,
    rt_send_n=2_000,
    latency_seconds=0.5,
    latency_runs=1,
    memory_n=100_000,
    rounds=Rounds(min=2, max=3, budget=4.0),
    timeout=30.0,
)


async def _cancel(tasks: Sequence["asyncio.Task[Any]"]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- the seed's design --------------------------------------------------------------------------


class SeedMessageBus:
    """The seed's MessageBus (seed 000): per publish, gather every handler behind _safe_call."""

    def __init__(self) -> None:
        self._handlers: dict[str, set[Callable[[Any], Awaitable[Any]]]] = {}
        self._global_handlers: set[Callable[[Any], Awaitable[Any]]] = set()

    def subscribe(self, topic: str, handler: Callable[[Any], Awaitable[Any]]) -> None:
        self._handlers.setdefault(topic, set()).add(handler)

    async def publish(self, topic: str, message: Any) -> None:
        specific = list(self._handlers.get(topic, set()))
        glob = list(self._global_handlers)
        await asyncio.gather(*[self._safe_call(h, message) for h in specific + glob])

    async def _safe_call(self, handler: Callable[[Any], Awaitable[Any]], message: Any) -> None:
        try:
            await handler(message)
        except Exception as exc:
            log.error("Handler %r failed: %s", handler, exc, exc_info=True)


# -- event types (created lazily: their libraries may be missing) -------------------------------


@cache
def _axonbus_types() -> tuple[Any, Any]:
    event: Any = require("axonbus").Event

    class Tick(event, topic=TOPIC):  # type: ignore[misc,call-arg]
        n: int = 0

    class Stamp(event, topic=LATENCY_TOPIC):  # type: ignore[misc,call-arg]
        t: int = 0

    return Tick, Stamp


@cache
def _bubus_types() -> tuple[Any, Any]:
    base: Any = require("bubus").BaseEvent

    class BenchTick(base):  # type: ignore[misc]
        n: int = 0

    class BenchRequest(base[int]):  # type: ignore[misc]
        n: int = 0

    return BenchTick, BenchRequest


@cache
def _autogen_types() -> tuple[Any, Any, Any]:
    ac: Any = require("autogen_core")

    @dataclass
    class AgTick:
        n: int

    @dataclass
    class AgRequest:
        n: int

    class Sink(ac.RoutedAgent):  # type: ignore[misc]
        def __init__(self, hit: Callable[[], None]) -> None:
            super().__init__("benchmark sink")
            self._hit = hit

        @ac.message_handler  # type: ignore[untyped-decorator]
        async def on_tick(self, message: AgTick, ctx: Any) -> None:
            self._hit()

        @ac.message_handler  # type: ignore[untyped-decorator]
        async def on_request(self, message: AgRequest, ctx: Any) -> int:
            return message.n

    return AgTick, AgRequest, Sink


@cache
def _runtime_types() -> tuple[Any, Any, Any]:
    """axonbus.runtime's counterpart of :func:`_autogen_types`: the same agent, handler
    signatures and dataclass messages."""
    rt: Any = require("axonbus.runtime")

    @dataclass
    class RtTick:
        n: int

    @dataclass
    class RtRequest:
        n: int

    class Sink(rt.RoutedAgent):  # type: ignore[misc]
        def __init__(self, hit: Callable[[], None]) -> None:
            super().__init__("benchmark sink")
            self._hit = hit

        @rt.handler  # type: ignore[untyped-decorator]
        async def on_tick(self, message: RtTick, ctx: Any) -> None:
            self._hit()

        @rt.handler  # type: ignore[untyped-decorator]
        async def on_request(self, message: RtRequest, ctx: Any) -> int:
            return message.n

    return RtTick, RtRequest, Sink


_bus_names = itertools.count()


# -- W1 / W10: (n events, fanout subscribers) -> Lap until every delivery was handled ------------


async def pubsub_raw(n: int, fanout: int) -> Lap:
    """Bounded asyncio.Queue per subscriber, one consumer task each: the practical limit."""
    cd = Countdown(n * fanout)
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(maxsize=MAILBOX) for _ in range(fanout)]

    async def consume(
        queue: "asyncio.Queue[Any]", handler: Callable[[Any], Awaitable[None]]
    ) -> None:
        while True:
            await handler(await queue.get())

    workers = [asyncio.create_task(consume(q, cd.handler(i))) for i, q in enumerate(queues)]
    events = list(range(n))
    try:
        t0 = stopwatch()
        for ev in events:
            for q in queues:
                await q.put(ev)
        await cd.done
        return t0.stop()
    finally:
        await _cancel(workers)


async def pubsub_axonbus(
    n: int,
    fanout: int,
    typed: bool = False,
    middleware: Callable[[], list[Any]] | None = None,
) -> Lap:
    """``await bus.publish(...)`` for every event, then ``await bus.drain()``."""
    ax = require("axonbus")
    cd = Countdown(n * fanout)
    events: list[Any] = list(range(n))
    if typed:
        tick, _ = _axonbus_types()
        events = [tick(n=i) for i in events]
    async with ax.Bus(middleware=middleware() if middleware else ()) as bus:
        for i in range(fanout):
            bus.subscribe(TOPIC, cd.handler(i), maxsize=MAILBOX, overflow="block")
        publish = bus.publish
        t0 = stopwatch()
        if typed:
            for ev in events:
                await publish(ev)
        else:
            for ev in events:
                await publish(TOPIC, ev)
        await bus.drain()
        lap = t0.stop()
    cd.check()
    return lap


async def pubsub_blinker(n: int, fanout: int) -> Lap:
    """blinker ``await signal.send_async(event)``: receivers awaited inline, no queue."""
    blinker = require("blinker")
    cd = Countdown(n * fanout)
    signal = blinker.Signal()
    for i in range(fanout):
        signal.connect(cd.handler(i), weak=False)
    events = list(range(n))
    send = signal.send_async
    t0 = stopwatch()
    for ev in events:
        await send(ev)
    await cd.done
    return t0.stop()


async def pubsub_pyee(n: int, fanout: int) -> Lap:
    """pyee ``emit`` schedules one task per coroutine handler; wait until all ran."""
    pyee_asyncio = require("pyee.asyncio")
    cd = Countdown(n * fanout)
    emitter = pyee_asyncio.AsyncIOEventEmitter()
    for i in range(fanout):
        emitter.add_listener("tick", cd.handler(i))
    events = list(range(n))
    emit = emitter.emit
    t0 = stopwatch()
    for ev in events:
        emit("tick", ev)
    await cd.done
    return t0.stop()


async def pubsub_seed(n: int, fanout: int) -> Lap:
    """The seed's MessageBus: ``await bus.publish(...)`` gathers every handler."""
    cd = Countdown(n * fanout)
    bus = SeedMessageBus()
    for i in range(fanout):
        bus.subscribe(TOPIC, cd.handler(i))
    events = list(range(n))
    publish = bus.publish
    t0 = stopwatch()
    for ev in events:
        await publish(TOPIC, ev)
    await cd.done
    return t0.stop()


async def pubsub_bubus(n: int, fanout: int) -> Lap:
    """bubus ``bus.dispatch(event)``, at most BUBUS_WINDOW events in flight (its cap is 100)."""
    bubus = require("bubus")
    tick, _ = _bubus_types()
    cd = Countdown(n * fanout)
    bus = bubus.EventBus(name=f"bench{next(_bus_names)}")
    for i in range(fanout):
        bus.on(tick, cd.handler(i))
    events = [tick(n=i) for i in range(n)]
    window: deque[Any] = deque()
    try:
        t0 = stopwatch()
        for ev in events:
            if len(window) >= BUBUS_WINDOW:
                await window.popleft()
            window.append(bus.dispatch(ev))
        await cd.done
        return t0.stop()
    finally:
        await bus.stop(clear=True)


async def pubsub_autogen(n: int, fanout: int) -> Lap:
    """autogen-core ``publish_message`` to ``fanout`` RoutedAgent types on one topic."""
    ac = require("autogen_core")
    ag_tick, _, sink = _autogen_types()
    cd = Countdown(n * fanout)
    runtime = ac.SingleThreadedAgentRuntime()
    for i in range(fanout):
        await sink.register(runtime, f"sink{i}", lambda: sink(cd.hit))
        await runtime.add_subscription(
            ac.TypeSubscription(topic_type="bench", agent_type=f"sink{i}")
        )
    events = [ag_tick(i) for i in range(n)]
    topic = ac.TopicId("bench", "default")
    runtime.start()
    try:
        t0 = stopwatch()
        for ev in events:
            await runtime.publish_message(ev, topic)
        await cd.done
        return t0.stop()
    finally:
        await runtime.stop_when_idle()


# -- RPC: n sequential round trips -> Lap; every reply is checked --------------------------------


async def rpc_raw(n: int) -> Lap:
    """A server task reads (payload, future) from a bounded queue; the caller awaits the future."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] = asyncio.Queue(maxsize=MAILBOX)

    async def responder(payload: Any) -> Any:
        return payload

    async def serve() -> None:
        while True:
            payload, reply = await queue.get()
            result = await responder(payload)
            if not reply.done():
                reply.set_result(result)

    server = asyncio.create_task(serve())
    try:
        t0 = stopwatch()
        for i in range(1, n + 1):
            reply = loop.create_future()
            await queue.put((i, reply))
            check_reply(i, await reply)
        return t0.stop()
    finally:
        await _cancel([server])


async def rpc_axonbus(n: int, timeout: float | None = 2.0) -> Lap:
    """``bus.respond`` + sequential ``await bus.request(..., timeout=timeout)``."""
    ax = require("axonbus")

    async def responder(payload: Any) -> Any:
        return payload

    async with ax.Bus() as bus:
        bus.respond(RPC_TOPIC, responder)
        request = bus.request
        t0 = stopwatch()
        for i in range(1, n + 1):
            check_reply(i, await request(RPC_TOPIC, i, timeout=timeout))
        return t0.stop()


async def rpc_blinker(n: int) -> Lap:
    """blinker ``send_async`` returns the receiver's value: a direct await, no queue hop."""
    blinker = require("blinker")

    async def responder(payload: Any) -> Any:
        return payload

    signal = blinker.Signal()
    signal.connect(responder, weak=False)
    send = signal.send_async
    t0 = stopwatch()
    for i in range(1, n + 1):
        check_reply(i, (await send(i))[0][1])
    return t0.stop()


async def rpc_bubus(n: int) -> Lap:
    """bubus ``await bus.dispatch(Request(n=i)).event_result()``."""
    bubus = require("bubus")
    _, req_type = _bubus_types()

    async def responder(event: Any) -> int:
        return int(event.n)

    bus = bubus.EventBus(name=f"bench{next(_bus_names)}")
    bus.on(req_type, responder)
    requests = [req_type(n=i) for i in range(1, n + 1)]
    try:
        t0 = stopwatch()
        for i, req in enumerate(requests, 1):
            check_reply(i, await bus.dispatch(req).event_result())
        return t0.stop()
    finally:
        await bus.stop(clear=True)


async def rpc_autogen(n: int) -> Lap:
    """autogen-core ``await runtime.send_message(Request(i), AgentId("sink", "default"))``."""
    ac = require("autogen_core")
    _, ag_request, sink = _autogen_types()
    runtime = ac.SingleThreadedAgentRuntime()
    await sink.register(runtime, "sink", lambda: sink(lambda: None))
    requests = [ag_request(i) for i in range(1, n + 1)]
    recipient = ac.AgentId("sink", "default")
    runtime.start()
    try:
        t0 = stopwatch()
        for i, req in enumerate(requests, 1):
            check_reply(i, await runtime.send_message(req, recipient))
        return t0.stop()
    finally:
        await runtime.stop_when_idle()


# -- the actor runtimes: one RoutedAgent, created and warmed up before the timed part -----------


async def rt_publish_axonbus(n: int) -> Lap:
    """axonbus.runtime ``publish_message`` to a ``TypeSubscription`` of one agent type."""
    rt = require("axonbus.runtime")
    tick, _, sink = _runtime_types()
    cd = Countdown(n + 1)
    async with rt.AgentRuntime() as runtime:
        await sink.register(runtime, "sink", lambda: sink(cd.hit))
        await runtime.add_subscription(rt.TypeSubscription("bench", "sink"))
        await runtime.get("sink", lazy=False)
        topic = rt.TopicId("bench", "default")
        await runtime.publish_message(tick(-1), topic)  # resolves and caches the topic's route
        while cd.left > n:
            await asyncio.sleep(0)
        events = [tick(i) for i in range(n)]
        publish = runtime.publish_message
        t0 = stopwatch()
        for ev in events:
            await publish(ev, topic)
        await cd.done
        lap = t0.stop()
    cd.check()
    return lap


async def rt_publish_autogen(n: int) -> Lap:
    """autogen-core ``publish_message`` to a ``TypeSubscription`` of one agent type."""
    ac = require("autogen_core")
    ag_tick, _, sink = _autogen_types()
    cd = Countdown(n + 1)
    runtime = ac.SingleThreadedAgentRuntime()
    await sink.register(runtime, "sink", lambda: sink(cd.hit))
    await runtime.add_subscription(ac.TypeSubscription(topic_type="bench", agent_type="sink"))
    await runtime.get("sink", lazy=False)
    topic = ac.TopicId("bench", "default")
    runtime.start()
    try:
        await runtime.publish_message(ag_tick(-1), topic)
        while cd.left > n:
            await asyncio.sleep(0)
        events = [ag_tick(i) for i in range(n)]
        publish = runtime.publish_message
        t0 = stopwatch()
        for ev in events:
            await publish(ev, topic)
        await cd.done
        lap = t0.stop()
    finally:
        await runtime.stop_when_idle()
    cd.check()
    return lap


async def rt_send_axonbus(n: int) -> Lap:
    """axonbus.runtime: sequential ``await runtime.send_message(Request(i), sink)``."""
    rt = require("axonbus.runtime")
    _, request, sink = _runtime_types()
    async with rt.AgentRuntime() as runtime:
        await sink.register(runtime, "sink", lambda: sink(lambda: None))
        recipient = await runtime.get("sink", lazy=False)
        send = runtime.send_message
        check_reply(0, await send(request(0), recipient))
        requests = [request(i) for i in range(1, n + 1)]
        t0 = stopwatch()
        for i, req in enumerate(requests, 1):
            check_reply(i, await send(req, recipient))
        return t0.stop()


async def rt_send_autogen(n: int) -> Lap:
    """autogen-core: sequential ``await runtime.send_message(Request(i), sink)``."""
    ac = require("autogen_core")
    _, ag_request, sink = _autogen_types()
    runtime = ac.SingleThreadedAgentRuntime()
    await sink.register(runtime, "sink", lambda: sink(lambda: None))
    recipient = await runtime.get("sink", lazy=False)
    runtime.start()
    try:
        send = runtime.send_message
        check_reply(0, await send(ag_request(0), recipient))
        requests = [ag_request(i) for i in range(1, n + 1)]
        t0 = stopwatch()
        for i, req in enumerate(requests, 1):
            check_reply(i, await send(req, recipient))
        return t0.stop()
    finally:
        await runtime.stop_when_idle()


# -- latency: paced publisher, handler records perf_counter_ns() - stamp -------------------------


@dataclass
class LatencyResult:
    name: str
    events: int = 0
    achieved_rate: float = 0.0
    skipped: int = 0  # slots skipped after stalls longer than STALL
    p50_us: float = float("nan")
    p99_us: float = float("nan")
    p999_us: float = float("nan")
    max_us: float = float("nan")
    p99_runs_us: list[float] = field(default_factory=list)
    note: str = ""


Publish = Callable[[int], Awaitable[Any]]


STALL = 0.05  # the publisher fell this far behind (machine noise): skip slots, do not catch up


async def _paced(publish: Publish, seconds: float, rate: int) -> tuple[float, int]:
    """Publish ``seconds * rate`` ``perf_counter_ns()`` stamps at ``rate``/s.

    Returns (achieved rate, skipped slots). The loop sleeps with about 1 ms resolution, so each
    wake-up sends the events that came due since, one at a time with a yield after each: the
    handler runs before the next publish, so every event is measured on its own, not behind a
    batch. After a stall longer than STALL (the process was descheduled) the missed slots are
    skipped rather than sent as a long catch-up run at many times the target rate.
    """
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    total = int(seconds * rate)
    start = due = loop.time()
    deadline = start + 2 * seconds  # stalls do not eat into the sample count, up to a point
    sent = skipped = 0
    while sent < total:
        now = loop.time()
        if now > deadline:
            break
        if due > now:
            await asyncio.sleep(due - now)
            continue
        if now - due > STALL:
            missed = int((now - due) / interval)
            skipped += missed
            due += missed * interval
        await publish(perf_counter_ns())
        sent += 1
        due += interval
        await asyncio.sleep(0)
    return sent / (loop.time() - start), skipped


def _summarize(name: str, samples: list[int], paced: tuple[float, int]) -> LatencyResult:
    warm = sorted(samples[len(samples) // 10 :])  # drop the first 10%: warm-up
    us = [s / 1000 for s in warm]
    return LatencyResult(
        name,
        events=len(samples),
        achieved_rate=paced[0],
        skipped=paced[1],
        p50_us=percentile(us, 50),
        p99_us=percentile(us, 99),
        p999_us=percentile(us, 99.9),
        max_us=us[-1] if us else float("nan"),
    )


async def latency_raw(seconds: float, rate: int) -> LatencyResult:
    samples: list[int] = []
    record = samples.append
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=MAILBOX)

    async def handler(stamp: int) -> None:
        record(perf_counter_ns() - stamp)

    async def consume() -> None:
        while True:
            await handler(await queue.get())

    worker = asyncio.create_task(consume())
    try:
        paced = await _paced(queue.put, seconds, rate)
        while queue.qsize():
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.001)
    finally:
        await _cancel([worker])
    return _summarize("raw asyncio.Queue", samples, paced)


async def latency_axonbus(seconds: float, rate: int, typed: bool = False) -> LatencyResult:
    ax = require("axonbus")
    _, stamp_type = _axonbus_types()
    samples: list[int] = []
    record = samples.append

    async def on_int(stamp: int) -> None:
        record(perf_counter_ns() - stamp)

    async def on_event(event: Any) -> None:
        record(perf_counter_ns() - event.t)

    async with ax.Bus() as bus:
        bus.subscribe(LATENCY_TOPIC, on_event if typed else on_int, maxsize=MAILBOX)
        publish: Publish
        if typed:

            def publish(stamp: int) -> Any:
                return bus.publish(stamp_type(t=stamp))
        else:
            publish = partial(bus.publish, LATENCY_TOPIC)
        paced = await _paced(publish, seconds, rate)
        await bus.drain()
    name = "axonbus (Event)" if typed else "axonbus (int payload)"
    return _summarize(name, samples, paced)


LatencyTrial = Callable[[float, int], Awaitable[LatencyResult]]

LATENCY: list[tuple[str, LatencyTrial]] = [
    ("raw asyncio.Queue", latency_raw),
    ("axonbus (int payload)", latency_axonbus),
    ("axonbus (Event)", partial(latency_axonbus, typed=True)),
]


def measure_latency(cfg: Config, progress: Callable[[str], None]) -> list[LatencyResult]:
    """Each implementation ``latency_runs`` times, interleaved; keep the run with the best p99."""
    best: dict[str, LatencyResult] = {name: LatencyResult(name) for name, _ in LATENCY}
    runs: dict[str, list[float]] = {name: [] for name, _ in LATENCY}
    for _ in range(cfg.latency_runs):
        for name, trial in LATENCY:
            if best[name].note:
                continue
            progress(f"latency: {name}")
            try:
                res = run_fresh(
                    partial(trial, cfg.latency_seconds, cfg.latency_rate),
                    cfg.latency_seconds * 3 + 10,
                )
            except Exception as exc:
                best[name].note = failure(exc)
                continue
            runs[name].append(res.p99_us)
            if not runs[name][:-1] or res.p99_us < best[name].p99_us:
                best[name] = res
    for name, result in best.items():
        result.p99_runs_us = runs[name]
    return list(best.values())


# -- memory: a stalled drop_oldest subscription under 1M events ----------------------------------


@dataclass
class MemoryResult:
    name: str
    events: int = 0
    publish_rate: float = 0.0
    rss_before_mb: float = 0.0
    growth_mb: float = float("nan")  # peak RSS while publishing minus RSS before
    dropped: int = 0
    queued: int = 0
    note: str = ""


async def memory_axonbus(n: int) -> MemoryResult:
    ax = require("axonbus")
    tick, _ = _axonbus_types()
    gate = asyncio.Event()

    async def stalled(event: Any) -> None:
        await gate.wait()

    async with ax.Bus() as bus:
        bus.subscribe(TOPIC, stalled, name="stalled", maxsize=1000, overflow="drop_oldest")
        await bus.publish(tick(n=-1))
        await asyncio.sleep(0.01)  # the worker is now parked inside the handler
        gc.collect()
        before = peak = rss_bytes()
        publish = bus.publish_nowait
        t0 = perf_counter()
        for i in range(n):
            publish(tick(n=i))
            if i % 1000 == 999:  # a busy producer still yields to the loop now and then
                await asyncio.sleep(0)
                if i % 50_000 == 49_999:
                    peak = max(peak, rss_bytes())
        elapsed = perf_counter() - t0
        peak = max(peak, rss_bytes())
        stats = next(s for s in bus.stats() if s.name == "stalled")
        dropped, queued = int(stats.dropped), int(stats.queued)
        gate.set()
    mb = 1024 * 1024
    return MemoryResult(
        "axonbus publish_nowait(Event)",
        events=n,
        publish_rate=n / elapsed,
        rss_before_mb=before / mb,
        growth_mb=(peak - before) / mb,
        dropped=dropped,
        queued=queued,
    )


def measure_memory(cfg: Config, progress: Callable[[str], None]) -> MemoryResult:
    progress(f"memory: axonbus (n={cfg.memory_n})")
    try:
        return run_fresh(partial(memory_axonbus, cfg.memory_n), cfg.timeout)
    except Exception as exc:
        return MemoryResult("axonbus publish_nowait(Event)", note=failure(exc))


def _tracing_off() -> list[Any]:
    """OpenTelemetryMiddleware on the global provider, which nobody set: the API's no-op."""
    require("opentelemetry.trace")
    obs = require("axonbus.observability")
    return [obs.OpenTelemetryMiddleware()]


def _tracing_sdk() -> list[Any]:
    """OpenTelemetryMiddleware on an SDK provider exporting every span to memory."""
    sdk = require("opentelemetry.sdk.trace")
    export = require("opentelemetry.sdk.trace.export")
    memory = require("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    obs = require("axonbus.observability")
    provider = sdk.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(memory.InMemorySpanExporter()))
    return [obs.OpenTelemetryMiddleware(provider)]


# -- the tables of entries ------------------------------------------------------------------------

RAW = "raw asyncio.Queue"
AUTOGEN = "autogen-core"
SLOW = "fewer events (slow)"


def pubsub_entries(fanout: int) -> list[Entry]:
    few_tasks = "one task per handler call, no backpressure"
    return [
        Entry(RAW, partial(pubsub_raw, fanout=fanout)),
        Entry(AXONBUS, partial(pubsub_axonbus, fanout=fanout), note="int payloads, explicit topic"),
        Entry(
            "axonbus (Event)",
            partial(pubsub_axonbus, fanout=fanout, typed=True),
            note="pre-built pydantic Event instances",
        ),
        Entry("blinker send_async", partial(pubsub_blinker, fanout=fanout), note="inline await"),
        Entry("pyee AsyncIOEventEmitter", partial(pubsub_pyee, fanout=fanout), 0.25, few_tasks),
        Entry("seed gather design", partial(pubsub_seed, fanout=fanout), 0.25),
        Entry(AUTOGEN, partial(pubsub_autogen, fanout=fanout), 0.025, SLOW),
        Entry("bubus", partial(pubsub_bubus, fanout=fanout), 0.005, SLOW),
    ]


TRACING_OFF = "axonbus + tracing, no SDK"

W1_OTEL_ENTRIES = [
    Entry(AXONBUS, partial(pubsub_axonbus, fanout=1), note="no middleware"),
    Entry(
        TRACING_OFF,
        partial(pubsub_axonbus, fanout=1, middleware=_tracing_off),
        note="OpenTelemetryMiddleware(), no tracer provider set (the API's no-op)",
    ),
    Entry(
        "axonbus + tracing, SDK",
        partial(pubsub_axonbus, fanout=1, middleware=_tracing_sdk),
        0.1,
        "SDK TracerProvider, SimpleSpanProcessor, in-memory exporter (context)",
    ),
]

RPC_ENTRIES = [
    Entry(RAW, rpc_raw, note="queue + future"),
    Entry(AXONBUS, rpc_axonbus, note="respond / request(timeout=2.0)"),
    Entry("axonbus (no timeout)", partial(rpc_axonbus, timeout=None), note="request(timeout=None)"),
    Entry("blinker send_async", rpc_blinker, note="direct await, no queue hop"),
    Entry(AUTOGEN, rpc_autogen, 0.2, SLOW),
    Entry("bubus", rpc_bubus, 0.04, SLOW),
]


RT_PUBLISH_ENTRIES = [
    Entry(RAW, partial(pubsub_raw, fanout=1), note="queue + consumer task, for scale"),
    Entry(AXONBUS, rt_publish_axonbus, note="AgentRuntime.publish_message"),
    Entry(AUTOGEN, rt_publish_autogen, 0.025, SLOW),
]

RT_SEND_ENTRIES = [
    Entry(RAW, rpc_raw, note="queue + future, for scale"),
    Entry(AXONBUS, rt_send_axonbus, note="AgentRuntime.send_message"),
    Entry(AUTOGEN, rt_send_autogen, 0.2, SLOW),
]


# -- report ---------------------------------------------------------------------------------------


def rate_table(printer: Printer, title: str, rows: list[Row]) -> None:
    """Best rates and ratios; trials = quiet/all, ``*`` when no two quiet trials agreed."""
    raw = find(rows, RAW)
    ax = find(rows, AXONBUS)
    body = []
    for r in rows:
        x_raw = fmt_ratio(ratio(r.rate, raw.rate if raw else None))
        ax_over = fmt_ratio(ratio(ax.rate if ax else None, r.rate))
        trials = f"{sum(r.quiet)}/{len(r.rates)}{'' if r.settled else '*'}"
        median = fmt_rate(r.median)
        body.append([r.name, f"{r.n:,}", fmt_rate(r.rate), x_raw, ax_over, trials, median, r.note])
    unit = rows[0].unit if rows else "rate"
    columns = ["implementation", "N", f"best {unit}", "x raw", "axonbus/this", "trials", "median"]
    printer.table(title, [*columns, "notes"], body)


def memory_table(printer: Printer, mem: MemoryResult) -> None:
    printer.table(
        "memory: stalled subscription, maxsize=1000, overflow=drop_oldest",
        ["implementation", "events", "publish/s", "RSS before", "growth", "dropped", "queued",
         "notes"],
        [[mem.name, f"{mem.events:,}", fmt_rate(mem.publish_rate), f"{mem.rss_before_mb:.1f} MB",
          f"{mem.growth_mb:.1f} MB", f"{mem.dropped:,}", f"{mem.queued:,}", mem.note]],
    )  # fmt: skip


def latency_table(printer: Printer, cfg: Config, lat: list[LatencyResult]) -> None:
    printer.table(
        f"latency: publish-to-handler at {cfg.latency_rate:,} events/s, "
        f"{cfg.latency_seconds:g} s per run, best p99 of {cfg.latency_runs} runs "
        "(first 10% of each run dropped as warm-up)",
        ["implementation", "events", "achieved/s", "skipped", "p50 us", "p99 us", "p99.9 us",
         "max us", "p99 of each run", "notes"],
        [[r.name, f"{r.events:,}", fmt_rate(r.achieved_rate), f"{r.skipped:,}", f"{r.p50_us:.1f}",
          f"{r.p99_us:.1f}", f"{r.p999_us:.1f}", f"{r.max_us:.0f}",
          " ".join(f"{x:.0f}" for x in r.p99_runs_us), r.note] for r in lat],
    )  # fmt: skip


ASYNCIO, UVLOOP = "asyncio", "uvloop"


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | str | None:
    """The event loop factory for ``loop`` (None: asyncio's default), or why it cannot run."""
    if loop == ASYNCIO:
        return None
    try:
        import uvloop
    except ImportError:
        return "skipped: uvloop is not installed (pip install axonbus[uvloop])"
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def loop_targets(w1: list[Row], w10: list[Row], rpc: list[Row], loop: str) -> list[Target]:
    """The throughput targets, each a ratio of two rows of one table (so of one event loop)."""

    def rate(rows: Sequence[Row], name: str) -> float | None:
        row = find(rows, name)
        return row.rate if row else None

    def over(rows: Sequence[Row], name: str, anchor: str) -> float | None:
        return ratio(rate(rows, name), rate(rows, anchor))

    on = f" ({loop})"
    return [
        at_least(f"W1 axonbus / raw queue{on}", over(w1, AXONBUS, RAW), 0.8),
        at_least(f"W1 axonbus / blinker{on}", over(w1, AXONBUS, "blinker send_async"), 1.0),
        at_least(f"W1 Event / int payloads{on}", over(w1, "axonbus (Event)", AXONBUS), 0.9),
        at_least(f"W10 axonbus / raw (ten queues){on}", over(w10, AXONBUS, RAW), 1.5),
        at_least(f"RPC axonbus / raw queue+future{on}", over(rpc, AXONBUS, RAW), 0.9),
    ]


def targets(
    w1: list[Row],
    w10: list[Row],
    rpc: list[Row],
    lat: list[LatencyResult],
    mem: MemoryResult,
    rt_publish: Sequence[Row] = (),
    rt_send: Sequence[Row] = (),
    w1_otel: Sequence[Row] = (),
) -> list[Target]:
    def rate(rows: Sequence[Row], name: str) -> float | None:
        row = find(rows, name)
        return row.rate if row else None

    out = [
        *loop_targets(w1, w10, rpc, ASYNCIO),
        at_least("W1 axonbus / autogen-core", ratio(rate(w1, AXONBUS), rate(w1, AUTOGEN)), 30),
        at_least("RPC axonbus / autogen-core", ratio(rate(rpc, AXONBUS), rate(rpc, AUTOGEN)), 10),
        at_least(
            "runtime publish_message / autogen-core",
            ratio(rate(rt_publish, AXONBUS), rate(rt_publish, AUTOGEN)),
            20,
        ),
        at_least(
            "runtime send_message / autogen-core",
            ratio(rate(rt_send, AXONBUS), rate(rt_send, AUTOGEN)),
            10,
        ),
        at_least(
            "W1 with tracing installed, no SDK / without",
            ratio(rate(w1_otel, TRACING_OFF), rate(w1_otel, AXONBUS)),
            0.8,
        ),
    ]
    ax_lat = next((r for r in lat if r.name == "axonbus (int payload)" and not r.note), None)
    p99 = ax_lat.p99_us if ax_lat else None
    out.append(
        Target(
            "p99 latency at 10k events/s",
            "-" if p99 is None else f"{p99:.0f} us",
            "< 100 us",
            None if p99 is None else p99 < 100,
        )
    )
    grew = None if mem.note else mem.growth_mb
    out.append(
        Target(
            f"RSS growth, {mem.events:,} events into stalled drop_oldest",
            "-" if grew is None else f"{grew:.1f} MB",
            "< 50 MB",
            None if grew is None else grew < 50,
        )
    )
    return out


def run(cfg: Config, printer: Printer, only: set[str] | None = None) -> dict[str, Any]:
    def wanted(name: str) -> bool:
        return only is None or name in only

    env = environment(VERSIONS)
    started = begin(printer, "axonbus benchmarks", env, preload=ANCHOR_MODULES)
    progress = printer.progress

    # Memory first: RSS is cleanest before anything else has grown the heap.
    mem = measure_memory(cfg, progress) if wanted("memory") else MemoryResult("-", note="not run")
    if wanted("memory"):
        memory_table(printer, mem)

    def rates(
        key: str, title: str, entries: list[Entry], n: int, loop: str = ASYNCIO, **kw: Any
    ) -> list[Row]:
        if not wanted(key) or loop not in cfg.loops:
            return []
        factory = loop_factory(loop)
        if isinstance(factory, str):
            printer.table(f"{title} on {loop}", ["note"], [[factory]])
            return []
        rows = measure(
            key.upper() if loop == ASYNCIO else f"{key.upper()}@{loop}",
            entries,
            n,
            rounds=cfg.rounds,
            timeout=cfg.timeout,
            progress=progress,
            loop_factory=factory,
            **kw,
        )
        on = "" if loop == ASYNCIO else f" on {loop}"
        rate_table(printer, f"{title}{on}  (trials: quiet/all; * = best not confirmed)", rows)
        return rows

    w1_title = "W1: one publisher, one async no-op subscriber"
    w1 = rates("w1", w1_title, pubsub_entries(1), cfg.w1_n)
    w1_otel = rates(
        "w1-otel",
        "w1-otel: W1 with OpenTelemetryMiddleware installed",
        W1_OTEL_ENTRIES,
        cfg.w1_n,
    )
    w10 = rates(
        "w10",
        "W10: one publisher, ten subscribers (N = events; rate = deliveries/s)",
        pubsub_entries(10),
        cfg.w10_n,
        per_event=10,
        unit="deliveries/s",
    )
    rpc = rates(
        "rpc", "RPC: sequential request/reply", RPC_ENTRIES, cfg.rpc_n, unit="round trips/s"
    )
    # the same three on uvloop (each implementation on it: the ratios compare like with like)
    w1_uv = rates("w1", w1_title, pubsub_entries(1), cfg.w1_n, UVLOOP)
    w10_uv = rates(
        "w10",
        "W10: one publisher, ten subscribers (N = events; rate = deliveries/s)",
        pubsub_entries(10),
        cfg.w10_n,
        UVLOOP,
        per_event=10,
        unit="deliveries/s",
    )
    rpc_uv = rates(
        "rpc",
        "RPC: sequential request/reply",
        RPC_ENTRIES,
        cfg.rpc_n,
        UVLOOP,
        unit="round trips/s",
    )

    rt_publish = rates(
        "rt-publish",
        "rt-publish: AgentRuntime.publish_message to one subscribed RoutedAgent",
        RT_PUBLISH_ENTRIES,
        cfg.rt_publish_n,
        unit="messages/s",
    )
    rt_send = rates(
        "rt-send",
        "rt-send: sequential AgentRuntime.send_message to one RoutedAgent",
        RT_SEND_ENTRIES,
        cfg.rt_send_n,
        unit="round trips/s",
    )

    lat: list[LatencyResult] = []
    if wanted("latency"):
        lat = measure_latency(cfg, progress)
        latency_table(printer, cfg, lat)

    goals = targets(w1, w10, rpc, lat, mem, rt_publish, rt_send, w1_otel)
    if w1_uv or w10_uv or rpc_uv:
        goals[5:5] = loop_targets(w1_uv, w10_uv, rpc_uv, UVLOOP)  # after the asyncio ones
    elapsed = conclude(printer, "targets (ratios within this run)", goals, started)
    return report(
        env,
        cfg,
        elapsed,
        goals,
        rates=[
            {**asdict(r), "rate": r.rate}
            for r in [*w1, *w1_otel, *w10, *rpc, *w1_uv, *w10_uv, *rpc_uv, *rt_publish, *rt_send]
        ],
        latency=[asdict(r) for r in lat],
        memory=asdict(mem),
    )


VERSIONS = ("axonbus", "pydantic", "blinker", "pyee", "bubus", "autogen-core")
ANCHOR_MODULES = ("axonbus", "blinker", "pyee.asyncio", "bubus", "autogen_core")
WORKLOADS = ("memory", "w1", "w1-otel", "w10", "rpc", "rt-publish", "rt-send", "latency")
# what --scale multiplies (not the memory test's N)
THROUGHPUT_N = ("w1_n", "w10_n", "rpc_n", "rt_publish_n", "rt_send_n")


def loop_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop", "both"),
        default="both",
        help="event loop(s) for W1, W10 and RPC (default: both)",
    )


def configure(args: argparse.Namespace) -> Config:
    cfg = QUICK if args.quick else FULL
    if args.loop != "both":
        cfg = replace(cfg, loops=(args.loop,))
    if args.repeats:
        rounds = replace(cfg.rounds, min=args.repeats, max=args.repeats)
        cfg = replace(cfg, rounds=rounds, latency_runs=min(args.repeats, 3))
    return scaled(cfg, args.scale, THROUGHPUT_N)


def main(argv: Sequence[str] | None = None) -> int:
    return cli(
        argv,
        prog="python -m benchmarks.core",
        description=__doc__,
        workloads=WORKLOADS,
        configure=configure,
        run=run,
        quick_help="small N, 2-3 trials (smoke test)",
        repeats=("--repeats", "exactly K trials each (default: 3 to 12, adaptive)"),
        scale_help="multiply the throughput N",
        extra=loop_option,
    )


if __name__ == "__main__":
    sys.exit(main())
