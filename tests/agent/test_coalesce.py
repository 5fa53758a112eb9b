"""Token coalescing under backpressure: a slow reader gets all the text, in fewer events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from axonbus import Bus, Envelope
from axonbus.agent import (
    CoalescingStream,
    Done,
    Token,
    ToolCall,
    coalesce_tokens,
)
from tests.agent.agent_helpers import eventually

N = 2000


def tokens(n: int, session: str = "s1", run: str = "r1", step: int = 1) -> list[Token]:
    return [Token(session_id=session, run_id=run, step=step, text=f"t{i} ") for i in range(n)]


def full_text(n: int) -> str:
    return "".join(f"t{i} " for i in range(n))


async def test_a_slow_consumer_gets_the_whole_text_in_fewer_events(bus: Bus) -> None:
    received: list[Any] = []
    finished = asyncio.Event()

    async def slow(event: Any) -> None:
        received.append(event)
        if isinstance(event, Done):
            finished.set()
        await asyncio.sleep(0.001)  # a browser on a slow link

    coalescer = coalesce_tokens(bus, "agent.>", slow, watermark=16)
    for token in tokens(N):  # the producer never waits for the consumer
        await bus.publish(token)
    await bus.publish(Done(session_id="s1", run_id="r1", result="x"))
    await asyncio.wait_for(finished.wait(), 10)
    merged = [e for e in received if isinstance(e, Token)]
    assert "".join(t.text for t in merged) == full_text(N)  # whole text, in order
    assert len(merged) < N / 4  # far fewer events than tokens
    assert sum(t.tokens for t in merged) == N
    assert isinstance(received[-1], Done)
    stats = coalescer.stats
    assert stats.received == N + 1
    assert stats.delivered == len(received)
    assert stats.merged == N + 1 - len(received)
    assert stats.pending == 0
    assert all(s.dropped == 0 for s in bus.stats())  # nothing was dropped anywhere
    await coalescer.close()


async def test_a_fast_consumer_gets_every_token_as_is(bus: Bus) -> None:
    async with CoalescingStream(bus, "agent.s1.>", watermark=64) as stream:
        for token in tokens(50):
            await bus.publish(token)
            await asyncio.sleep(0)
        got = [await stream.__anext__() for _ in range(50)]
    assert [t.text for t in got] == [f"t{i} " for i in range(50)]
    assert stream.stats.merged == 0


async def test_only_consecutive_tokens_of_one_run_and_step_merge(bus: Bus) -> None:
    stream = CoalescingStream(bus, "agent.>", watermark=1)
    published: list[Any] = [
        *tokens(3, run="r1"),
        *tokens(3, session="s2", run="r2"),
        *tokens(2, run="r1"),  # merge into r1's tokens: nothing else of r1 in between
        ToolCall(session_id="s1", run_id="r1", step=1, call_id="c", tool="t"),
        *tokens(2, run="r1"),
        *tokens(2, run="r1", step=2),  # another step: not merged with step 1
        Token(session_id="s1", text="no run id "),
        Token(session_id="s1", text="never merged "),
    ]
    for event in published:
        await bus.publish(event)
    await eventually(lambda: stream.stats.received == len(published))
    stream.close()
    got = [event async for event in stream]
    summary = [
        (type(e).__name__, getattr(e, "run_id", ""), getattr(e, "step", 0), getattr(e, "text", ""))
        for e in got
    ]
    assert summary == [
        ("Token", "r1", 1, "t0 t1 t2 t0 t1 "),  # r1's later tokens join its first one
        ("Token", "r2", 1, "t0 t1 t2 "),
        ("ToolCall", "r1", 1, ""),
        ("Token", "r1", 1, "t0 t1 "),  # after the tool call: a new token event
        ("Token", "r1", 2, "t0 t1 "),
        ("Token", "", 0, "no run id "),
        ("Token", "", 0, "never merged "),
    ]
    # per run, the text is exactly what was published, in order
    for run in ("r1", "r2"):
        sent = "".join(e.text for e in published if isinstance(e, Token) and e.run_id == run)
        assert "".join(e.text for e in got if isinstance(e, Token) and e.run_id == run) == sent


async def test_merged_envelopes_carry_the_last_id_and_first_timestamp(bus: Bus) -> None:
    stream = CoalescingStream(bus, "agent.>", watermark=2, envelopes=True)
    envs = [await bus.publish(t) for t in tokens(4)]
    await eventually(lambda: stream.stats.received == 4)
    stream.close()
    got: list[Envelope] = [env async for env in stream]
    assert [e.event.text for e in got] == ["t0 ", "t1 t2 t3 "]
    assert got[0] is envs[0]
    assert got[1].id == envs[3].id
    assert got[1].timestamp == envs[1].timestamp
    assert got[1].topic == "agent.s1.token"
    assert got[1].event.tokens == 3


async def test_events_that_cannot_merge_apply_backpressure_without_loss(bus: Bus) -> None:
    stream = CoalescingStream(bus, "agent.>", watermark=2, maxsize=4)
    calls = [ToolCall(session_id="s1", run_id="r1", call_id=f"c{i}", tool="t") for i in range(2000)]

    async def produce() -> None:
        for call in calls:
            await bus.publish(call)

    producer = asyncio.create_task(produce())
    await asyncio.sleep(0.05)
    assert not producer.done()  # blocked: the buffer and the feed are full
    assert stream.stats.pending == 4
    got = []
    async for event in stream:
        got.append(event.call_id)
        if len(got) == len(calls):
            break
    await producer
    assert got == [c.call_id for c in calls]
    stream.close()


async def test_the_stream_ends_when_the_bus_closes() -> None:
    bus = Bus()
    await bus.start()
    stream = CoalescingStream(bus, "agent.>")
    await bus.publish(Token(session_id="s", run_id="r", text="last"))
    await bus.close()
    assert [e.text async for e in stream] == ["last"]


async def test_a_failing_handler_does_not_stop_the_coalescer(bus: Bus) -> None:
    seen: list[str] = []

    def handler(event: Any) -> None:
        seen.append(event.text)
        if event.text == "bad":
            raise RuntimeError("boom")

    async with coalesce_tokens(bus, "agent.>", handler) as coalescer:
        for text in ("ok", "bad", "fine"):
            await bus.publish(Token(session_id="s", run_id="r", text=text))
        await eventually(lambda: len(seen) == 3)
    assert seen == ["ok", "bad", "fine"]
    assert coalescer.stats.delivered == 3


def test_arguments_are_checked() -> None:
    bus = Bus()
    with pytest.raises(ValueError, match="watermark"):
        CoalescingStream(bus, watermark=0)
    with pytest.raises(ValueError, match="maxsize"):
        CoalescingStream(bus, watermark=10, maxsize=5)
