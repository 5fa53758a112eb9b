"""``pipe_events``: a LangGraph graph's ``astream_events(..., version="v2")`` onto the bus,
stopped by the toolkit's Interrupt and Cancel events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk

from ...agent import AgentEvent, Cancel, Done, Interrupt
from ._translate import RunInfo, Translator

if TYPE_CHECKING:
    from ..._engine.bus import Bus
    from ..._engine.subscription import Subscription

__all__ = ["PipeResult", "pipe_events"]


@dataclass(frozen=True)
class PipeResult:
    """What :func:`pipe_events` returns.

    ``output`` is the top-level run's output (a LangGraph graph's final state), None when the
    run was stopped; ``text`` the final answer (``Done.result``: with ``cancelled``, the text
    streamed before the stop); ``steps`` the number of model calls.
    """

    run_id: str
    output: Any = None
    text: str = ""
    cancelled: bool = False
    steps: int = 0


async def pipe_events(
    events: AsyncIterable[Mapping[str, Any]],
    bus: Bus,
    *,
    session_id: str,
    run_id: str | None = None,
    agent: str = "",
) -> PipeResult:
    """Consume a LangChain / LangGraph event stream and publish it as agent toolkit events on
    ``agent.{session_id}.*``, until it ends or an :class:`~axonbus.agent.Interrupt` or
    :class:`~axonbus.agent.Cancel` for the session arrives.

    >>> result = await pipe_events(
    ...     graph.astream_events({"messages": [("user", "2 + 3?")]}, version="v2"),
    ...     bus, session_id="s1",
    ... )
    >>> result.output["messages"][-1].content
    'It is 5.'

    ``events`` is what ``astream_events(..., version="v2")`` returns, for a compiled graph or
    any runnable. The stream's first event is the top-level run: ``AgentStarted`` (``agent``
    defaults to its name), then per model call ``Thinking`` and its ``Token``\\ s, per tool
    call ``ToolCall`` and ``ToolResult``, and at the end ``Done`` and ``AgentCompleted``
    (the mapping is :class:`AxonbusCallbackHandler`'s). ``run_id`` defaults to
    ``run-<hex of the top-level LangChain run id>``.

    While it runs it listens on ``agent.{session_id}.interrupt`` and ``.cancel`` (events
    with no ``run_id`` or this run's). Either one stops the graph at once, in the middle of a
    model stream or a tool call (a LangGraph stream cannot pause from outside, so an
    Interrupt stops it like a Cancel; resume from a checkpointer with a new run): the stream
    is closed, which cancels the graph's task; unfinished tool calls get a ``ToolResult``
    with an error, then ``Done(cancelled=True)`` with the text streamed so far and
    ``AgentCompleted(cancelled=True)``, and the result has ``cancelled=True``.

    If the graph raises: ``Error`` and ``AgentFailed``, and the exception propagates. If the
    task running ``pipe_events`` is cancelled: ``AgentFailed`` (``CancelledError``) and the
    cancellation propagates.
    """
    _ = Interrupt(session_id=session_id).topic  # InvalidTopic for a bad session id
    return await _Pipe(bus, session_id, run_id, agent).run(events)


class _Pipe:
    def __init__(self, bus: Bus, session_id: str, run_id: str | None, agent: str) -> None:
        self.bus = bus
        self.session_id = session_id
        self.given_run_id = run_id
        self.agent = agent
        self.translator = Translator(session_id, run_id=run_id, agent=agent)
        self.root: str | None = None  # the top-level LangChain run id
        self.info: RunInfo | None = None
        self.output: Any = None
        self.text = ""
        self.stop: Interrupt | Cancel | None = None
        self._task: asyncio.Task[None] | None = None

    def on_control(self, event: object) -> None:
        if not isinstance(event, (Interrupt, Cancel)) or self.stop is not None:
            return
        mine = self.info.run_id if self.info is not None else self.given_run_id
        if event.run_id and event.run_id != mine:
            return
        self.stop = event
        if self._task is not None:
            self._task.cancel()

    async def run(self, events: AsyncIterable[Mapping[str, Any]]) -> PipeResult:
        subs: list[Subscription] = []
        try:
            for kind in ("interrupt", "cancel"):  # before anything is published
                subs.append(
                    self.bus.subscribe(
                        f"agent.{self.session_id}.{kind}",
                        self.on_control,
                        name=f"langchain-pipe:{self.session_id}:{kind}",
                    )
                )
            task = self._task = asyncio.create_task(
                self._consume(events), name=f"axonbus-pipe:{self.session_id}"
            )
            try:
                await task
            except asyncio.CancelledError as exc:
                me = asyncio.current_task()
                if self.stop is not None and task.cancelled() and not (me and me.cancelling()):
                    await self._publish(self.translator.stopped(await self._ensure_root()))
                    return self._result(cancelled=True)
                await self._publish(self.translator.fail(await self._ensure_root(), exc))
                raise
            except Exception as exc:
                await self._publish(self.translator.fail(await self._ensure_root(), exc))
                raise
            if self.info is None or not self.info.finished:  # a stream without the root's end
                await self._publish(self.translator.end(await self._ensure_root(), self.output))
            return self._result(cancelled=False)
        finally:
            for sub in subs:
                self.bus.unsubscribe(sub)

    async def _consume(self, events: AsyncIterable[Mapping[str, Any]]) -> None:
        iterator = aiter(events)
        try:
            async for event in iterator:
                await self._publish(self._translate(event))
        finally:
            # closing astream_events' generator cancels the graph's task and waits for it
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _publish(self, events: list[AgentEvent]) -> None:
        for event in events:
            if isinstance(event, Done):
                self.text = event.result
            await self.bus.publish(event)

    async def _ensure_root(self) -> str:
        """The top-level run's id; for a stream that stopped or failed before its first
        event, a run started now (every call is one run)."""
        if self.root is None:
            self.root = str(uuid.uuid4())
            started = self.translator.start(self.root, None, name="", input=None)
            self.info = self.translator.roots.get(self.root)
            await self._publish(started)
        return self.root

    def _translate(self, raw: Mapping[str, Any]) -> list[AgentEvent]:
        kind = str(raw.get("event", ""))
        lc_id = str(raw.get("run_id", ""))
        name = str(raw.get("name", ""))
        data: Mapping[str, Any] = raw.get("data") or {}
        tags = raw.get("tags")
        tr = self.translator
        events: list[AgentEvent] = []
        if self.root is None:  # the first event is the top-level run's start
            self.root = lc_id
            if not kind.endswith("_start"):  # not a LangChain stream's: start the run here
                events += tr.start(lc_id, None, name=name, input=data.get("input"))
        parent = None if lc_id == self.root else self.root
        if parent is None and kind.endswith("_end"):
            self.output = data.get("output")
        if kind in ("on_chat_model_start", "on_llm_start"):
            events += tr.model_start(lc_id, parent, name=name, input=data.get("input"), tags=tags)
        elif kind in ("on_chat_model_stream", "on_llm_stream"):
            content, extra = _chunk(data.get("chunk"))
            events += tr.token(lc_id, content, extra)
        elif kind in ("on_chat_model_end", "on_llm_end"):
            events += tr.model_end(lc_id, data.get("output"))
        elif kind == "on_tool_start":
            events += tr.tool_start(lc_id, parent, name=name, args=data.get("input"))
        elif kind == "on_tool_end":
            events += tr.tool_end(lc_id, data.get("output"))
        elif kind == "on_tool_error":
            error = data.get("error")
            if not isinstance(error, BaseException):
                error = RuntimeError(str(error))
            events += tr.tool_error(lc_id, error)
        elif kind.endswith("_start"):
            events += tr.start(lc_id, parent, name=name, input=data.get("input"))
        elif kind.endswith("_end"):
            events += tr.end(lc_id, data.get("output"))
        if self.info is None:
            self.info = tr.roots.get(self.root)
        return events

    def _result(self, *, cancelled: bool) -> PipeResult:
        run = self.info
        return PipeResult(
            run_id=run.run_id if run is not None else (self.given_run_id or ""),
            output=None if cancelled else self.output,
            text=self.text,
            cancelled=cancelled,
            steps=run.step if run is not None else 0,
        )


def _chunk(chunk: Any) -> tuple[Any, Mapping[str, Any] | None]:
    """(content, additional_kwargs) of a streamed chunk."""
    if isinstance(chunk, BaseMessage):
        return chunk.content, chunk.additional_kwargs
    if isinstance(chunk, ChatGenerationChunk):
        return chunk.message.content, chunk.message.additional_kwargs
    if isinstance(chunk, GenerationChunk):
        return chunk.text, None
    return chunk, None
