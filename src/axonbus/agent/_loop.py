"""The interruptible agent loop: model call, tool calls, repeat; with interrupt,
resume and cancel checked at every step boundary."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._exceptions import AxonbusError
from ._errors import MaxStepsExceeded
from ._events import (
    AgentEvent,
    Cancel,
    Done,
    Error,
    Interrupt,
    Resume,
    Thinking,
    Token,
    ToolCall,
    ToolResult,
    new_run_id,
)
from ._lifecycle import lifecycle
from ._models import ChatModel, Message, TextDelta, ThinkingDelta, Tool, ToolRequest, as_tools

if TYPE_CHECKING:
    from .._engine.bus import Bus
    from .._engine.subscription import Subscription

__all__ = ["AgentLoop", "RunResult", "cancel", "interrupt", "resume"]

logger = logging.getLogger("axonbus.agent")

T = TypeVar("T")


async def interrupt(bus: Bus, session_id: str, reason: str = "", *, run_id: str = "") -> None:
    """Ask the session's running loop to pause at its next step boundary."""
    await bus.publish(Interrupt(session_id=session_id, run_id=run_id, reason=reason))


async def resume(bus: Bus, session_id: str, instruction: str = "", *, run_id: str = "") -> None:
    """Let an interrupted run go on; ``instruction`` joins the conversation before the next
    model call."""
    await bus.publish(Resume(session_id=session_id, run_id=run_id, instruction=instruction))


async def cancel(bus: Bus, session_id: str, reason: str = "", *, run_id: str = "") -> None:
    """Stop the session's running loop now (its model stream or tool call is cancelled)."""
    await bus.publish(Cancel(session_id=session_id, run_id=run_id, reason=reason))


@dataclass(frozen=True)
class RunResult:
    """What :meth:`AgentLoop.run` returns: the final answer, or with ``cancelled`` the text
    streamed before the cancel."""

    run_id: str
    text: str
    cancelled: bool = False
    steps: int = 0


class _Cancelled(AxonbusError):
    """Internal: a Cancel event reached the run."""


class _Control:
    """The interrupt / resume / cancel requests seen by one run, and its in-flight work."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.paused = False
        self.cancelled = False
        self.instructions: list[str] = []
        self._wake = asyncio.Event()
        self._inflight: asyncio.Task[Any] | None = None

    def on_event(self, event: Any) -> None:
        if not isinstance(event, (Interrupt, Resume, Cancel)):
            return
        if event.run_id and event.run_id != self.run_id:
            return
        if isinstance(event, Interrupt):
            self.paused = True
        elif isinstance(event, Resume):
            if self.paused:  # a resume without an interrupt means nothing (as in the reducer)
                self.paused = False
                if event.instruction:
                    self.instructions.append(event.instruction)
                self._wake.set()
        else:
            self.cancelled = True
            self._wake.set()
            if self._inflight is not None:
                self._inflight.cancel()

    async def boundary(self) -> None:
        """A step boundary: raise if cancelled, wait here while interrupted."""
        await asyncio.sleep(0)  # control events published just now reach on_event first
        while self.paused and not self.cancelled:
            self._wake.clear()
            await self._wake.wait()
        if self.cancelled:
            raise _Cancelled

    async def inflight(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` in a task that a Cancel event cancels."""
        if self.cancelled:
            work.close()
            raise _Cancelled
        task = asyncio.create_task(work)
        self._inflight = task
        try:
            return await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if self.cancelled and task.cancelled() and (me is None or not me.cancelling()):
                raise _Cancelled from None
            raise  # the run itself is being cancelled
        finally:
            self._inflight = None


class AgentLoop:
    """An agent that calls its model, runs the tools it asks for, and repeats until the model
    answers without tool calls, publishing every step as events on ``agent.{session_id}.*``.

    >>> loop = AgentLoop(bus, model, [add], session_id="s1")
    >>> result = await loop.run("what is 2 + 3?")
    >>> result.text
    'It is 5.'

    Each :meth:`run` publishes ``started``, then per step ``thinking``, ``token``\\ s,
    ``tool_call`` / ``tool_result`` pairs, and finally ``done`` (or ``error``) and
    ``completed`` (or ``failed``). While it runs it listens for this session's
    :class:`Interrupt`, :class:`Resume` and :class:`Cancel` (with no ``run_id`` or its own)
    and checks them at every step boundary: before each model call and before and after each
    tool call. An interrupt pauses there until a resume (whose instruction becomes a user
    message before the next model call) or a cancel. A cancel also cancels the model stream or
    tool call in flight; the run then returns with ``cancelled=True``.

    The conversation (``messages``) carries over from run to run. Tools are :class:`Tool`
    objects, plain functions or a ``{name: function}`` mapping; a tool that raises, or an
    unknown tool, is answered with an error the model can read, not raised.
    """

    def __init__(
        self,
        bus: Bus,
        model: ChatModel,
        tools: Iterable[Tool | Callable[..., Any]] | Mapping[str, Callable[..., Any]] = (),
        *,
        session_id: str,
        system: str | None = None,
        max_steps: int = 10,
        name: str = "agent",
    ) -> None:
        _ = Interrupt(session_id=session_id).topic  # InvalidTopic for a bad session id
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps!r}")
        self.bus = bus
        self.model = model
        self.tools: dict[str, Tool] = as_tools(tools)
        self.session_id = session_id
        self.max_steps = max_steps
        self.name = name
        self.messages: list[Message] = [Message(role="system", content=system)] if system else []
        self._control: _Control | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "idle"
        return f"<AgentLoop {self.name!r} session={self.session_id!r} {state}>"

    @property
    def running(self) -> bool:
        return self._control is not None

    @property
    def run_id(self) -> str | None:
        """The id of the run in progress."""
        return self._control.run_id if self._control is not None else None

    async def interrupt(self, reason: str = "") -> None:
        await interrupt(self.bus, self.session_id, reason)

    async def resume(self, instruction: str = "") -> None:
        await resume(self.bus, self.session_id, instruction)

    async def cancel(self, reason: str = "") -> None:
        await cancel(self.bus, self.session_id, reason)

    async def run(self, user_input: str, *, run_id: str | None = None) -> RunResult:
        """Answer ``user_input``. Raises what the model raised (after publishing ``error``)
        and :class:`MaxStepsExceeded`; one run at a time per loop."""
        if self._control is not None:
            raise RuntimeError(f"{self!r} is already running; one run at a time")
        control = self._control = _Control(run_id or new_run_id())
        subs: list[Subscription] = []
        try:
            for kind in ("interrupt", "resume", "cancel"):  # before started: nothing is missed
                subs.append(
                    self.bus.subscribe(
                        f"agent.{self.session_id}.{kind}",
                        control.on_event,
                        name=f"agent-loop:{self.session_id}:{kind}",
                    )
                )
            async with lifecycle(
                self.bus, self.session_id, run_id=control.run_id, agent=self.name, input=user_input
            ) as lc:
                result = await self._run(control, user_input)
                lc.complete(result.text, cancelled=result.cancelled)
                return result
        finally:
            for sub in subs:
                self.bus.unsubscribe(sub)
            self._control = None

    # -- the steps -----------------------------------------------------------------------------

    def _event(self, cls: type[AgentEvent], step: int, **fields: Any) -> Any:
        assert self._control is not None
        return cls(session_id=self.session_id, run_id=self._control.run_id, step=step, **fields)

    async def _run(self, control: _Control, user_input: str) -> RunResult:
        self.messages.append(Message(role="user", content=user_input))
        streamed: list[str] = []
        cut_from: int | None = None
        step = 0
        try:
            while step < self.max_steps:
                await control.boundary()  # before the model call
                step += 1
                for instruction in control.instructions:
                    self.messages.append(Message(role="user", content=instruction))
                control.instructions.clear()
                await self.bus.publish(self._event(Thinking, step))
                cut_from = len(streamed)  # where a cut-off reply starts, while the model streams
                reply = await control.inflight(self._call_model(step, streamed))
                cut_from = None
                self.messages.append(reply)
                if not reply.tool_calls:
                    await self.bus.publish(self._event(Done, step, result=reply.content))
                    return RunResult(control.run_id, reply.content, steps=step)
                for request in reply.tool_calls:
                    await control.boundary()  # before each tool call
                    await self._tool_call(control, step, request)
                    await control.boundary()  # after each tool call
            raise MaxStepsExceeded(self.max_steps)
        except _Cancelled:
            seen = "".join(streamed[cut_from:]) if cut_from is not None else ""
            if seen:  # what the user saw of a cut-off reply stays in the conversation
                self.messages.append(Message(role="assistant", content=seen))
            self._close_open_calls()
            text = "".join(streamed)
            await self.bus.publish(self._event(Done, step, result=text, cancelled=True))
            return RunResult(control.run_id, text, cancelled=True, steps=step)
        except Exception as exc:
            self._close_open_calls()
            error = self._event(Error, step, message=str(exc), type=type(exc).__name__)
            await self.bus.publish(error)
            raise

    async def _call_model(self, step: int, streamed: list[str]) -> Message:
        text: list[str] = []
        requests: list[ToolRequest] = []
        final: Message | None = None
        chunks = self.model.stream(list(self.messages), list(self.tools.values()))
        try:
            async for chunk in chunks:
                if isinstance(chunk, TextDelta):
                    if chunk.text:
                        text.append(chunk.text)
                        streamed.append(chunk.text)
                        await self.bus.publish(self._event(Token, step, text=chunk.text))
                elif isinstance(chunk, ThinkingDelta):
                    await self.bus.publish(self._event(Thinking, step, text=chunk.text))
                elif isinstance(chunk, ToolRequest):
                    requests.append(chunk)
                elif isinstance(chunk, Message):
                    final = chunk
        finally:
            await _aclose(chunks)
        if final is None:  # a model that does not send the final message
            final = Message(role="assistant", content="".join(text), tool_calls=tuple(requests))
        return final

    async def _tool_call(self, control: _Control, step: int, request: ToolRequest) -> None:
        call = self._event(
            ToolCall, step, call_id=request.id, tool=request.name, args=request.arguments
        )
        await self.bus.publish(call)
        value, error = await control.inflight(self._invoke(request))
        await self.bus.publish(
            self._event(
                ToolResult, step, call_id=request.id, tool=request.name, result=value, error=error
            )
        )
        content = f"error: {error}" if error is not None else _as_text(value)
        self.messages.append(
            Message(role="tool", content=content, tool_call_id=request.id, name=request.name)
        )

    async def _invoke(self, request: ToolRequest) -> tuple[Any, str | None]:
        tool = self.tools.get(request.name)
        if tool is None:
            return None, f"unknown tool {request.name!r}; available: {sorted(self.tools)}"
        try:
            value = tool.fn(**request.arguments)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            logger.debug("tool %s failed", request.name, exc_info=True)
            return None, f"{type(exc).__name__}: {exc}"
        return value, None

    def _close_open_calls(self) -> None:
        """Answer tool calls the run will not make, so the conversation stays valid for the
        next run (a tool call without its answer is refused by OpenAI-compatible servers)."""
        for i in range(len(self.messages) - 1, -1, -1):
            m = self.messages[i]
            if m.role == "assistant":
                answered = {x.tool_call_id for x in self.messages[i + 1 :] if x.role == "tool"}
                for call in m.tool_calls:
                    if call.id not in answered:
                        self.messages.append(
                            Message(
                                role="tool", content="error: not run (the run was stopped)",
                                tool_call_id=call.id, name=call.name,
                            )
                        )  # fmt: skip
                return


async def _aclose(chunks: AsyncIterator[Any]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)
