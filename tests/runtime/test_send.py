"""send_message: replies, typed errors, timeouts, cancellation reaching the handler,
one message at a time per agent (concurrency= to opt out), deadlock detection."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from axonbus import RequestError
from axonbus.runtime import (
    AgentId,
    AgentRuntime,
    CancellationToken,
    CantHandle,
    DeadlockDetected,
    MessageContext,
    RemoteError,
    RequestTimeout,
    RoutedAgent,
    handler,
    rpc,
)


@dataclass
class Work:
    seconds: float = 0.0
    label: str = ""


@dataclass
class Boom:
    text: str


class Worker(RoutedAgent):
    """Records when each message starts and ends, and what its handler observed."""

    log: list[tuple[str, str, str]] = []

    @rpc
    async def work(self, w: Work, ctx: MessageContext) -> str:
        Worker.log.append(("start", self.id.key, w.label))
        try:
            await asyncio.sleep(w.seconds)
        except asyncio.CancelledError:
            state = "token-cancelled" if ctx.cancellation_token.is_cancelled() else "cancelled"
            Worker.log.append((state, self.id.key, w.label))
            raise
        Worker.log.append(("end", self.id.key, w.label))
        return w.label

    @rpc
    async def boom(self, b: Boom) -> None:
        raise ValueError(b.text)


class Pair(Worker):
    concurrency = 2


@pytest.fixture(autouse=True)
def _reset_log() -> None:
    Worker.log = []


async def started(n: int = 1) -> None:
    """Let queued sends reach their handlers."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_reply_is_the_return_value(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker)
    assert await runtime.send_message(Work(label="x"), AgentId("w", "1")) == "x"


async def test_handler_error_arrives_as_remote_error(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker)
    with pytest.raises(RemoteError) as info:
        await runtime.send_message(Boom("bad input"), AgentId("w", "1"))
    err = info.value
    assert (err.remote_type, err.remote_message) == ("ValueError", "bad input")
    assert err.topic == "w/1"
    assert isinstance(err, RequestError)
    assert isinstance(err.__cause__, ValueError)  # in-process, the original is kept as cause
    # the agent is fine afterwards
    assert await runtime.send_message(Work(label="ok"), AgentId("w", "1")) == "ok"


async def test_cant_handle_is_not_wrapped(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker)
    with pytest.raises(CantHandle):
        await runtime.send_message(42, AgentId("w", "1"))


async def test_timeout_raises_and_cancels_the_handler(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker)
    with pytest.raises(RequestTimeout) as info:
        await runtime.send_message(Work(5, "slow"), AgentId("w", "1"), timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert info.value.timeout == 0.05
    await started(3)
    assert ("cancelled", "1", "slow") in Worker.log
    # the worker survived its cancelled handler
    assert await runtime.send_message(Work(label="next"), AgentId("w", "1")) == "next"


async def test_token_cancel_reaches_the_running_handler(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker)
    token = CancellationToken()
    call = asyncio.create_task(
        runtime.send_message(Work(5, "long"), AgentId("w", "1"), cancellation_token=token)
    )
    await started(3)
    assert Worker.log == [("start", "1", "long")]
    token.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await started(3)
    assert Worker.log[-1] == ("token-cancelled", "1", "long")
    assert await runtime.send_message(Work(label="after"), AgentId("w", "1")) == "after"


async def test_token_cancel_of_a_queued_send_skips_it(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker)
    wid = AgentId("w", "1")
    token = CancellationToken()
    first = asyncio.create_task(runtime.send_message(Work(0.05, "first"), wid))
    queued = asyncio.create_task(
        runtime.send_message(Work(0, "queued"), wid, cancellation_token=token)
    )
    await started(3)
    token.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert await first == "first"
    assert ("start", "1", "queued") not in Worker.log


async def test_already_cancelled_token_never_runs_the_handler(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker)
    token = CancellationToken()
    token.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runtime.send_message(Work(0, "x"), AgentId("w", "1"), cancellation_token=token)
    await started(3)
    assert Worker.log == []


async def test_cancelling_the_callers_task_cancels_the_handler(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker)
    call = asyncio.create_task(runtime.send_message(Work(5, "c"), AgentId("w", "1")))
    await started(3)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await started(3)
    assert Worker.log[-1] == ("cancelled", "1", "c")


async def test_a_reused_token_keeps_no_finished_sends(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker)
    token = CancellationToken()
    for i in range(20):
        await runtime.send_message(Work(label=str(i)), AgentId("w", "1"), cancellation_token=token)
    assert not token._callbacks


async def test_one_message_at_a_time_per_agent(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker)
    wid = AgentId("w", "1")
    labels = [str(i) for i in range(4)]
    replies = await asyncio.gather(*(runtime.send_message(Work(0.01, x), wid) for x in labels))
    assert replies == labels
    # strictly start, end, start, end... in send order: never two at once
    expected = [(kind, "1", x) for x in labels for kind in ("start", "end")]
    assert Worker.log == expected


async def test_concurrency_two_allows_overlap(runtime: AgentRuntime) -> None:
    await Pair.register(runtime, "pair", Pair)
    wid = AgentId("pair", "1")
    await asyncio.gather(*(runtime.send_message(Work(0.02, x), wid) for x in "ab"))
    assert [kind for kind, _, _ in Worker.log] == ["start", "start", "end", "end"]


async def test_concurrency_from_register_overrides_the_class(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker, concurrency=3)
    wid = AgentId("w", "1")
    await asyncio.gather(*(runtime.send_message(Work(0.02, x), wid) for x in "abc"))
    assert [kind for kind, _, _ in Worker.log][:3] == ["start"] * 3


async def test_bad_concurrency_is_refused(runtime: AgentRuntime) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        await Worker.register(runtime, "w", Worker, concurrency=0)


async def test_different_agents_run_concurrently(runtime: AgentRuntime) -> None:
    await Worker.register(runtime, "w", Worker)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.gather(*(runtime.send_message(Work(0.1, k), AgentId("w", k)) for k in "abcd"))
    assert loop.time() - t0 < 0.35  # four 0.1 s handlers side by side, not one after another
    assert [kind for kind, _, _ in Worker.log][:4] == ["start"] * 4


async def test_agents_call_each_other(runtime: AgentRuntime) -> None:
    class Front(RoutedAgent):
        @rpc
        async def ask(self, w: Work, ctx: MessageContext) -> str:
            inner = await self.send_message(w, AgentId("w", "back"))
            return f"front({inner}) sender={ctx.sender}"

    await Worker.register(runtime, "w", Worker)
    await Front.register(runtime, "front", Front)
    reply = await runtime.send_message(Work(label="q"), AgentId("front", "f"))
    assert reply == "front(q) sender=None"


async def test_sending_to_itself_is_a_deadlock_error(runtime: AgentRuntime) -> None:
    class Selfish(RoutedAgent):
        @rpc
        async def ask(self, n: int) -> int:
            if n == 0:
                return 0
            return await self.send_message(n - 1, self.id)

    await Selfish.register(runtime, "selfish", Selfish)
    with pytest.raises(RemoteError, match="sent a message to itself") as info:
        await asyncio.wait_for(runtime.send_message(1, AgentId("selfish", "x")), 5)
    assert info.value.remote_type == "DeadlockDetected"
    # with room for a second message at a time it works
    await Selfish.register(runtime, "roomy", Selfish, concurrency=2)
    assert await runtime.send_message(1, AgentId("roomy", "x")) == 0


async def test_a_cycle_of_sends_is_a_deadlock_error(runtime: AgentRuntime) -> None:
    caught: list[DeadlockDetected] = []

    class Ping(RoutedAgent):
        @rpc
        async def ping(self, hops: int) -> str:
            if hops == 0:
                return "end"
            other = AgentId("pong" if self.id.type == "ping" else "ping", "x")
            try:
                return await self.send_message(hops - 1, other)
            except DeadlockDetected as exc:
                caught.append(exc)
                raise

    await Ping.register(runtime, "ping", Ping)
    await Ping.register(runtime, "pong", Ping)
    with pytest.raises(RemoteError):
        await asyncio.wait_for(runtime.send_message(3, AgentId("ping", "x")), 5)
    assert len(caught) == 1
    # ping(3) -> pong(2) -> ping(1): pong finds ping busy waiting for pong
    assert "pong/x -> ping/x -> pong/x" in str(caught[0])


async def test_token_is_passed_on_to_nested_sends(runtime: AgentRuntime) -> None:
    class Relay(RoutedAgent):
        @handler
        async def relay(self, w: Work, ctx: MessageContext) -> str:
            return await self.send_message(
                w, AgentId("w", "inner"), cancellation_token=ctx.cancellation_token
            )

    await Worker.register(runtime, "w", Worker)
    await Relay.register(runtime, "relay", Relay)
    token = CancellationToken()
    call = asyncio.create_task(
        runtime.send_message(Work(5, "deep"), AgentId("relay", "r"), cancellation_token=token)
    )
    await started(5)
    token.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await started(5)
    assert ("token-cancelled", "inner", "deep") in Worker.log


async def test_self_recursion_deeper_than_the_slots_is_a_deadlock_error(
    runtime: AgentRuntime,
) -> None:
    # concurrency=2 takes one nested send to itself; the second nested one has no slot left
    class Recursive(RoutedAgent):
        @rpc
        async def ask(self, n: int) -> int:
            if n == 0:
                return 0
            return await self.send_message(n - 1, self.id)

    await Recursive.register(runtime, "rec", Recursive, concurrency=2)
    assert await asyncio.wait_for(runtime.send_message(1, AgentId("rec", "x")), 5) == 0
    # the error reaches the caller through each level of the recursion, as RemoteError
    with pytest.raises(RemoteError, match=r"DeadlockDetected: .*every handler slot of rec/y 2/2"):
        await asyncio.wait_for(runtime.send_message(3, AgentId("rec", "y")), 5)
    await Recursive.register(runtime, "rec3", Recursive, concurrency=3)
    assert await asyncio.wait_for(runtime.send_message(2, AgentId("rec3", "x")), 5) == 0


async def test_a_cycle_through_agents_with_two_slots_is_a_deadlock_error(
    runtime: AgentRuntime,
) -> None:
    # a -> b -> a -> b -> a: each of a and b has both slots waiting on the other
    class Hop(RoutedAgent):
        @rpc
        async def hop(self, hops: int) -> str:
            if hops == 0:
                return "end"
            other = AgentId("b" if self.id.type == "a" else "a", "x")
            return await self.send_message(hops - 1, other)

    await Hop.register(runtime, "a", Hop, concurrency=2)
    await Hop.register(runtime, "b", Hop, concurrency=2)
    assert await asyncio.wait_for(runtime.send_message(3, AgentId("a", "x")), 5) == "end"
    with pytest.raises(
        RemoteError, match=r"DeadlockDetected: .*(a/x 2/2, b/x 2/2|b/x 2/2, a/x 2/2)"
    ):
        await asyncio.wait_for(runtime.send_message(4, AgentId("a", "x")), 5)


async def test_a_busy_agent_with_a_working_handler_is_not_a_deadlock(
    runtime: AgentRuntime,
) -> None:
    # both slots of "w" busy, one of them waiting on the caller, the other still working:
    # that one frees a slot, so the caller's send to "w" waits instead of failing
    release = asyncio.Event()
    calling = asyncio.Event()

    class Slow(RoutedAgent):
        @rpc
        async def work(self, what: str) -> str:
            if what == "block":
                await release.wait()
                return "unblocked"
            if what == "call-back":
                return await self.send_message("relay", AgentId("caller", "x"))
            return what

    class Caller(RoutedAgent):
        @rpc
        async def call(self, what: str) -> str:
            calling.set()
            return await self.send_message("plain", AgentId("w", "x"))  # "w" is full

    await Slow.register(runtime, "w", Slow, concurrency=2)
    await Caller.register(runtime, "caller", Caller)
    blocked = asyncio.create_task(runtime.send_message("block", AgentId("w", "x")))
    answer = asyncio.create_task(runtime.send_message("call-back", AgentId("w", "x")))
    await asyncio.wait_for(calling.wait(), 5)
    for _ in range(1000):  # event-loop turns: the send only has to reach the mailbox
        if runtime.unprocessed_messages_count == 1 or answer.done():
            break
        await asyncio.sleep(0)
    assert not answer.done()  # a DeadlockDetected would have ended it
    assert runtime.unprocessed_messages_count == 1  # "plain", waiting for a slot of "w"
    release.set()
    assert await asyncio.wait_for(answer, 5) == "plain"
    assert await asyncio.wait_for(blocked, 5) == "unblocked"
