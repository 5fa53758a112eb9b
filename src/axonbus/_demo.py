"""``axonbus demo``: an offline tour of the in-process bus, in well under a second.

1. channels on a bus: channels attached and detached at run time, a scripted
   agent answering through the channels, a logger on every topic, a buggy analytics handler
   contained by the bulkhead, a flaky channel restarted by the manager;
2. backpressure: a slow subscriber with a small ``drop_oldest`` mailbox, and one with
   ``"block"`` that makes the publisher wait;
3. request / reply, including the failures a requester has to handle.

:func:`run_demo` takes the rich console to print to, so tests can capture the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._engine.bus import Bus
from ._engine.subscription import Subscription
from ._exceptions import AxonbusError, NoResponders, RemoteError
from ._system_events import HandlerFailed
from ._version import __version__
from .channels import (
    ChannelManager,
    ChannelMessage,
    ChannelNotStarted,
    ChannelReply,
    MemoryChannel,
    RestartPolicy,
)

__all__ = ["run_demo"]

Part = str | tuple[str, str]

SCRIPT = {
    "time": "It is 09:00 (demo clock).",
    "weather": "Tomorrow: sunny, 22°C (scripted forecast).",
    "thanks": "You're welcome!",
}


def _say(console: Console, *parts: Part) -> None:
    # Text, not markup: message contents may contain "[...]"
    console.print(Text.assemble("  ", *parts), soft_wrap=True, highlight=False)


def _scripted_answer(content: str) -> str:
    lowered = content.lower()
    for keyword, answer in SCRIPT.items():
        if keyword in lowered:
            return answer
    return f"I heard {content!r}."


class _LogTally(logging.Handler):
    """Keeps the records the ``axonbus`` loggers emit during the demo."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> int:
        return sum(1 for r in self.records if r.levelno >= logging.ERROR)


@contextlib.contextmanager
def _captured_logs(verbose: bool) -> Iterator[_LogTally]:
    """Count axonbus log records; unless verbose, keep them (and their tracebacks) off screen."""
    log = logging.getLogger("axonbus")
    tally = _LogTally()
    log.addHandler(tally)
    propagate, level = log.propagate, log.level
    log.propagate = verbose
    log.setLevel(min(log.getEffectiveLevel(), logging.WARNING))  # the tally needs warnings
    try:
        yield tally
    finally:
        log.removeHandler(tally)
        log.propagate = propagate
        log.setLevel(level)


class AuthenticationError(AxonbusError):
    """What the flaky demo channel raises while its token is 'expired'."""


class _FlakyChannel(MemoryChannel):
    """A channel whose ``start()`` fails a few times before it connects."""

    def __init__(self, bus: Bus, channel_type: str, failures: int, **kwargs: Any) -> None:
        super().__init__(bus, channel_type, **kwargs)
        self.failures_left = failures
        self.up = asyncio.Event()

    async def start(self) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise AuthenticationError("token expired")
        await super().start()
        self.up.set()


async def run_demo(console: Console, *, verbose: bool = False) -> None:
    """Run the three demo parts on a fresh in-process bus, printing to ``console``."""
    began = time.perf_counter()
    console.print(
        Text.assemble(
            ("axonbus ", "bold"),
            (__version__, "bold cyan"),
            " demo · in-process bus ",
            ("memory://", "cyan"),
            " · offline",
        )
    )
    contained: list[HandlerFailed] = []

    async def bulkhead_monitor(failure: HandlerFailed) -> None:
        contained.append(failure)
        _say(
            console,
            ("[Bulkhead]  ", "red"),
            f"{failure.handler.rsplit('.', 1)[-1]} failed on {failure.original_topic}: "
            f"{failure.error_type}: {failure.error_message}",
            (" → contained", "dim"),
        )

    with _captured_logs(verbose) as tally:
        async with Bus() as bus:
            bus.subscribe(HandlerFailed, bulkhead_monitor, name="bulkhead_monitor")
            await _channels_on_a_bus(console, bus)
            await _backpressure(console, bus, tally)
            await _request_reply(console, bus)
    console.print()
    console.rule(style="dim")
    _say(
        console,
        f"{len(contained)} handler failures were contained; their tracebacks went to the "
        f"'axonbus' logger ({tally.errors()} error records",
        ", shown above)" if verbose else ", hidden here: run 'axonbus demo --verbose' to see them)",
    )
    _say(console, ("done", "bold green"), f" in {time.perf_counter() - began:.2f} s")


# -- part 1 ------------------------------------------------------------------------------------


async def _channels_on_a_bus(console: Console, bus: Bus) -> None:
    console.print()
    console.rule(Text.assemble(("1 · channels on a bus", "bold")))

    async def agent(msg: ChannelMessage) -> None:
        _say(
            console,
            ("[AgentLoop] ", "green"),
            f"from={msg.channel_type} user={msg.user_id} {msg.content!r}",
        )
        # published from inside a handler: causation and correlation are set automatically
        await bus.publish(msg.reply(_scripted_answer(msg.content)))

    async def logger(event: Any, ctx: Any) -> None:
        arrow = "←" if ctx.topic.endswith(".out") else "→"
        _say(
            console,
            ("[Logger]    ", "blue"),
            f"{ctx.topic:<22} {event.user_id} {arrow} {event.content[:50]!r}",
        )

    async def buggy_analytics(event: Any) -> None:
        raise RuntimeError("Analytics service down")

    def sent_by(reply: ChannelReply) -> None:
        _say(
            console,
            (f"[{reply.channel_type} ⇢]", "magenta"),
            f" to {reply.user_id}: {reply.content!r}",
        )

    subs = [
        bus.subscribe("channel.*.in", agent, name="agent"),
        bus.subscribe_all(logger, name="logger"),
        bus.subscribe_all(buggy_analytics, name="buggy_analytics"),
    ]
    for pattern, name, what in (
        ("channel.*.in", "agent", "scripted agent; replies on channel.{type}.out"),
        (">", "logger", "global: every application event"),
        (">", "buggy_analytics", "global: raises on every event"),
        ("$bus.handler_failed", "bulkhead_monitor", "prints what the bulkhead contained"),
    ):
        _say(console, "subscribe ", (f"{pattern:<20}", "cyan"), f" {name:<17} ", (what, "dim"))

    manager = ChannelManager(bus)
    telegram = MemoryChannel(bus, "telegram", on_send=sent_by)
    await manager.attach(telegram)
    _say(console, "attach telegram → channels ", repr(manager.list_channels()))

    async def scene(title: str, channel: MemoryChannel, user: str, text: str) -> None:
        console.print()
        console.print(Text(title, style="bold"), soft_wrap=True)
        await channel.receive(user, text)
        await bus.drain()

    await scene(
        "[scene 1] telegram message (analytics crashes; agent and logger keep working)",
        telegram,
        "user_001",
        "what time is it?",
    )

    console.print()
    console.print(Text("[hot plug] attach discord and a flaky slack while running", style="bold"))
    discord = MemoryChannel(bus, "discord", on_send=sent_by)
    await manager.attach(discord)
    _say(console, "attach discord → channels ", repr(manager.list_channels()))
    policy = RestartPolicy(backoff=0.02, jitter=False)
    slack = _FlakyChannel(bus, "slack", failures=2, on_send=sent_by)
    status = await manager.attach(slack, restart=policy)
    _say(
        console,
        "attach slack   → start() raised ",
        (f"{status.last_error}", "red"),
        "; attach returned normally, status ",
        (status.state, "yellow"),
    )
    async with asyncio.timeout(5):
        await slack.up.wait()
    status = manager.status()["slack"]
    backoffs = ", ".join(f"{policy.delay(n) * 1000:.0f} ms" for n in range(1, status.restarts + 1))
    _say(
        console,
        "slack          → restarted ",
        str(status.restarts),
        " times with backoff ",
        backoffs,
        ", status ",
        (status.state, "green"),
    )

    await scene("[scene 2] discord message", discord, "user_002", "what's the weather tomorrow?")

    console.print()
    console.print(Text("[hot plug] detach telegram", style="bold"))
    await manager.detach("telegram")
    _say(console, "detach telegram → channels ", repr(manager.list_channels()))
    try:
        await telegram.receive("user_001", "anyone there?")
    except ChannelNotStarted:
        _say(
            console,
            "telegram.receive(...) now raises ",
            ("ChannelNotStarted", "yellow"),
            " (handled)",
        )

    await scene(
        "[scene 3] discord message (telegram is gone, discord unaffected)",
        discord,
        "user_003",
        "ok, thanks",
    )

    console.print()
    table = Table(title="bus.stats() after part 1", title_justify="left", show_edge=False)
    for column in ("subscription", "pattern", "delivered", "failed"):
        table.add_column(column, justify="right" if column in ("delivered", "failed") else "left")
    for st in bus.stats():
        table.add_row(
            st.name,
            st.pattern,
            str(st.delivered),
            Text(str(st.failed), style="red" if st.failed else ""),
        )
    console.print(table)
    console.print()
    table = Table(title="manager.status()", title_justify="left", show_edge=False)
    for column in ("channel", "state", "restarts", "last error"):
        table.add_column(column)
    for ct, cs in manager.status().items():
        table.add_row(ct, cs.state, str(cs.restarts), cs.last_error or "")
    console.print(table)
    console.print()
    _say(
        console,
        ("final handler count: ", "bold"),
        (str(bus.handler_count()), "bold cyan"),
        (
            "  (the 4 subscribers above + the send() subscriptions of discord and slack; "
            "telegram's was removed by detach)",
            "dim",
        ),
    )
    await manager.close()
    _unsubscribe(bus, *subs)  # part 1's handlers only understand channel events


# -- part 2 ------------------------------------------------------------------------------------


async def _backpressure(console: Console, bus: Bus, tally: _LogTally) -> None:
    console.print()
    console.rule(Text("2 · backpressure: bounded mailboxes", style="bold"))
    seen: list[int] = []

    async def slow_dashboard(event: dict[str, int]) -> None:
        await asyncio.sleep(0.002)
        seen.append(event["n"])

    async def archive(event: dict[str, int]) -> None:
        # slower than the publisher, which never yields while there is room; no real sleep
        # here, so the demo stays fast on a loaded machine (timer slack adds up per sleep)
        await asyncio.sleep(0)

    dashboard = bus.subscribe(
        "metrics.tick", slow_dashboard, name="slow_dashboard", maxsize=5, overflow="drop_oldest"
    )
    mark = len(tally.records)
    began = time.perf_counter()
    for n in range(1, 51):
        await bus.publish("metrics.tick", {"n": n})
    elapsed = (time.perf_counter() - began) * 1000
    await bus.drain()
    st = dashboard.stats()
    _say(
        console,
        "burst of 50 on metrics.tick → ",
        ("slow_dashboard", "cyan"),
        f" (maxsize={st.maxsize}, overflow={st.overflow!r})",
    )
    _say(console, f"publisher never waited: 50 publishes took {elapsed:.1f} ms")
    _say(
        console,
        "delivered ",
        (str(st.delivered), "green"),
        ", dropped ",
        (str(st.dropped), "red"),
        f", kept the newest: #{seen[0]}…#{seen[-1]}",
    )
    for record in tally.records[mark:]:
        _say(console, (f"log {record.levelname}: ", "dim yellow"), (record.getMessage(), "dim"))

    console.print()
    archiver = bus.subscribe("audit.record", archive, name="archive", maxsize=5, overflow="block")
    waits = 0
    for n in range(1, 31):
        if archiver.stats().queued >= archiver.stats().maxsize:
            waits += 1  # this publish suspends until the archive worker makes room
        await bus.publish("audit.record", {"n": n})
    await bus.drain()
    st = archiver.stats()
    _say(
        console,
        "burst of 30 on audit.record → ",
        ("archive", "cyan"),
        f" (maxsize={st.maxsize}, overflow={st.overflow!r})",
    )
    _say(
        console,
        "publisher waited for room ",
        (str(waits), "yellow"),
        " times; delivered ",
        (f"{st.delivered}/30", "green"),
        ", dropped ",
        str(st.dropped),
        " (nothing lost)",
    )

    console.print()
    table = Table(title="bus.stats() for part 2", title_justify="left", show_edge=False)
    for column in ("subscription", "maxsize", "overflow", "delivered", "dropped"):
        table.add_column(column)
    for sub in (dashboard, archiver):
        s = sub.stats()
        table.add_row(s.name, str(s.maxsize), s.overflow, str(s.delivered), str(s.dropped))
    console.print(table)
    _unsubscribe(bus, dashboard, archiver)


def _unsubscribe(bus: Bus, *subs: Subscription) -> None:
    for sub in subs:
        bus.unsubscribe(sub)


# -- part 3 ------------------------------------------------------------------------------------


async def _request_reply(console: Console, bus: Bus) -> None:
    console.print()
    console.rule(Text("3 · request / reply", style="bold"))

    def add(request: dict[str, int]) -> int:
        return request["a"] + request["b"]

    def divide(request: dict[str, int]) -> float:
        return request["a"] / request["b"]

    bus.respond("math.add", add)
    bus.respond("math.div", divide)
    _say(console, "respond ", ("math.add", "cyan"), ", ", ("math.div", "cyan"))

    result = await bus.request("math.add", {"a": 2, "b": 3}, timeout=2.0)
    _say(console, "request math.add {a: 2, b: 3} → ", (repr(result), "bold green"))
    try:
        await bus.request("math.div", {"a": 1, "b": 0}, timeout=2.0)
    except RemoteError as exc:
        _say(
            console,
            "request math.div {a: 1, b: 0} → ",
            ("RemoteError", "yellow"),
            f" handled: {exc}",
        )
    await bus.drain()
    try:
        await bus.request("weather.lookup", {"city": "Paris"}, timeout=2.0)
    except NoResponders as exc:
        _say(console, "request weather.lookup → ", ("NoResponders", "yellow"), f" handled: {exc}")
