"""AG-UI (Agent-User Interaction protocol) for agents built on the agent toolkit.

Needs the ``agui`` extra (``pip install 'axonbus[agui]'``: the official ``ag-ui-protocol``
package). Two pieces:

- :class:`AgUiAgent` runs beside the agent, in any process of the bus: it answers AG-UI run
  requests on ``agui.{name}.run`` by starting (or continuing) a run of an :class:`AgentLoop` or
  the :class:`DemoAgent`, with the tools the client offered as tools the model may call.
- :class:`AgUiTranslator` turns the session's ``agent.{session}.*`` events into AG-UI events;
  the gateway's ``POST /v1/agui/{agent}`` streams them (see ``docs/agui.md``).

>>> AgUiAgent(bus, "demo", DemoAgent(bus)).start()
>>> AgUiAgent(bus, "math", lambda session: AgentLoop(bus, model, [add], session_id=session))
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ag_ui.core import RunAgentInput

from .._exceptions import AxonbusError, BusClosed
from .._topics import split_topic
from ._agui_map import STATE_KEY, AgUiTranslator, json_patch, projection, tool_call_id
from ._demo import DemoAgent
from ._events import ToolCall
from ._loop import AgentLoop
from ._models import Message, Tool

if TYPE_CHECKING:
    from .._engine.bus import Bus
    from .._engine.subscription import Subscription

__all__ = [
    "STATE_KEY",
    "AgUiAgent",
    "AgUiTranslator",
    "NothingToRun",
    "RunInProgress",
    "json_patch",
    "message_text",
    "projection",
    "run_topic",
    "tool_call_id",
]

logger = logging.getLogger("axonbus.agent")


class RunInProgress(AxonbusError):
    """A new user message for a session whose run has not ended (one run at a time)."""


class NothingToRun(AxonbusError):
    """A run request whose last message is not a user message, with no run to continue."""


def run_topic(agent: str) -> str:
    """The request topic an :class:`AgUiAgent` named ``agent`` answers."""
    return f"agui.{agent}.run"


def message_text(content: Any) -> str:
    """The text of an AG-UI message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(getattr(p, "text", "") or "") for p in content)
    return "" if content is None else str(content)


@dataclass
class _Session:
    loop: AgentLoop
    run_id: str = ""
    task: asyncio.Task[None] | None = None
    client_tools: frozenset[str] = frozenset()
    answers: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    seen: dict[str, deque[str]] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    user_ids: set[str] = field(default_factory=set)

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()

    def on_tool_call(self, event: ToolCall) -> None:
        if event.run_id == self.run_id and event.tool in self.client_tools:
            self.seen.setdefault(event.tool, deque()).append(
                tool_call_id(event.run_id, event.call_id)
            )
            self.wake.set()

    async def claim(self, tool: str) -> str:
        """The AG-UI id of the oldest unclaimed call of ``tool`` (its ToolCall published
        just before the loop called the proxy)."""
        while not self.seen.get(tool):
            self.wake.clear()
            await self.wake.wait()
        return self.seen[tool].popleft()

    def answer(self, tcid: str) -> asyncio.Future[str]:
        fut = self.answers.get(tcid)
        if fut is None:
            fut = self.answers[tcid] = asyncio.get_running_loop().create_future()
        return fut


class AgUiAgent:
    """Serves AG-UI runs of one agent on the bus: ``POST /v1/agui/{name}`` on any gateway of
    the bus reaches it, whatever process it runs in.

    ``agent``: a :class:`DemoAgent`, or a function ``session_id -> AgentLoop`` called once per
    session (the loop, and so the conversation, is kept per session). Each request on
    ``agui.{name}.run`` carries the ``RunAgentInput`` and is answered with
    ``{"action", "run_id", "agent"}``:

    - ``started``: a new run of the session's loop on the last (user) message, with
      ``run_id`` the input's ``runId``. The client's tools join the loop's tools for the run
      (a server tool of the same name wins); ``context`` becomes a system message; a fresh
      loop takes the earlier messages as its conversation.
    - ``resumed``: the session's run is waiting and the input answers it: tool messages for
      its pending client tool calls (the proxies return their content), or ``resume`` entries
      (the gateway publishes the matching :class:`Resume` / :class:`Cancel`).
    - ``attached``: the run goes on and the input brings nothing new (a reconnect).

    A new user message while the session's run goes on raises :class:`RunInProgress`; a
    request with no user message and no run to continue raises :class:`NothingToRun` (both
    reach the gateway as a ``RemoteError`` with that type).
    """

    def __init__(
        self,
        bus: Bus,
        name: str,
        agent: DemoAgent | Callable[[str], AgentLoop],
    ) -> None:
        split_topic(run_topic(name))  # InvalidTopic for a bad name
        self.bus = bus
        self.name = name
        self.agent = agent
        self.sessions: dict[str, _Session] = {}
        self._sub: Subscription | None = None
        self._calls: Subscription | None = None

    def __repr__(self) -> str:
        return f"<AgUiAgent {self.name!r} sessions={len(self.sessions)}>"

    def start(self) -> AgUiAgent:
        """Answer ``agui.{name}.run``; returns the adapter."""
        if self._sub is None:
            self._sub = self.bus.respond(
                run_topic(self.name), self.handle, name=f"agui:{self.name}", concurrency=8
            )
            # one subscription for every session's tool calls, to pair client tool calls
            # with their ids
            self._calls = self.bus.subscribe(
                ToolCall, self._on_tool_call, name=f"agui:{self.name}:tool-calls"
            )
        return self

    def _on_tool_call(self, event: ToolCall) -> None:
        session = self.sessions.get(event.session_id)
        if session is not None:
            session.on_tool_call(event)

    async def stop(self) -> None:
        """Stop answering and cancel the runs in progress."""
        for sub in (self._sub, self._calls):
            if sub is not None:
                self.bus.unsubscribe(sub)
        self._sub = self._calls = None
        tasks = [s.task for s in self.sessions.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> AgUiAgent:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- a run request -------------------------------------------------------------------------

    async def handle(self, payload: Any) -> dict[str, Any]:
        """Answer one run request (the ``RunAgentInput`` as JSON)."""
        inp = RunAgentInput.model_validate(payload)
        sid = inp.thread_id
        session = self.sessions.get(sid)
        last = inp.messages[-1] if inp.messages else None
        if session is not None and session.active:
            answered = self._answer(session, inp)
            if answered or inp.resume:
                return self._reply("resumed", session.run_id)
            if last is not None and last.role == "user" and last.id not in session.user_ids:
                raise RunInProgress(f"session {sid!r} has a run in progress ({session.run_id})")
            return self._reply("attached", session.run_id)
        if last is None or last.role != "user":
            raise NothingToRun(
                f"no user message to answer and no run of session {sid!r} to continue"
            )
        text = message_text(last.content)
        loop = self._loop(sid, text)
        if loop.running:
            raise RunInProgress(f"session {sid!r} has a run in progress ({loop.run_id})")
        session = self.sessions.get(sid)
        if session is None or session.loop is not loop:
            session = self._session(sid, loop)
        if not loop.messages:
            loop.messages.extend(_conversation(inp.messages[:-1]))
        if inp.context:
            notes = "\n".join(f"- {c.description}: {c.value}" for c in inp.context)
            loop.messages.append(Message(role="system", content=f"Context:\n{notes}"))
        session.user_ids.add(last.id)
        session.run_id = inp.run_id
        session.client_tools = frozenset(
            t.name for t in inp.tools or () if t.name not in loop.tools
        )
        session.seen.clear()
        session.answers.clear()
        proxies = {
            t.name: self._proxy(session, t)
            for t in inp.tools or ()
            if t.name in session.client_tools
        }
        session.task = asyncio.get_running_loop().create_task(self._run(session, text, proxies))
        return self._reply("started", inp.run_id)

    def _reply(self, action: str, run_id: str) -> dict[str, Any]:
        return {"action": action, "run_id": run_id, "agent": self.name}

    def _loop(self, sid: str, text: str) -> AgentLoop:
        if isinstance(self.agent, DemoAgent):
            existing = self.agent.loops.get(sid)
            if existing is not None and existing.running:
                return existing  # refused by the caller: a UserInput run is going on
            return self.agent.loop_for(sid, text)
        session = self.sessions.get(sid)
        return session.loop if session is not None else self.agent(sid)

    def _session(self, sid: str, loop: AgentLoop) -> _Session:
        session = self.sessions[sid] = _Session(loop)
        return session

    def _answer(self, session: _Session, inp: RunAgentInput) -> bool:
        """Give the client's tool messages to the proxies waiting for them: the answers to
        calls of this run of a tool the client offered (named by the assistant message that
        holds the call)."""
        names = {
            call.id: call.function.name
            for m in inp.messages
            if m.role == "assistant"
            for call in m.tool_calls or ()
        }
        answered = False
        for m in inp.messages:
            if m.role != "tool" or names.get(m.tool_call_id) not in session.client_tools:
                continue
            if not m.tool_call_id.startswith(session.run_id + "."):
                continue
            fut = session.answer(m.tool_call_id)
            if not fut.done():
                fut.set_result(message_text(m.content))
                answered = True
        return answered

    def _proxy(self, session: _Session, spec: Any) -> Tool:
        name = spec.name

        async def ask_client(**arguments: Any) -> str:
            tcid = await session.claim(name)
            return await session.answer(tcid)

        schema = spec.parameters if isinstance(spec.parameters, dict) else None
        return Tool(
            name=name,
            fn=ask_client,
            description=spec.description,
            parameters=schema or {"type": "object", "properties": {}},
        )

    async def _run(self, session: _Session, text: str, proxies: dict[str, Tool]) -> None:
        loop = session.loop
        saved = loop.tools
        loop.tools = {**proxies, **saved}
        try:
            await loop.run(text, run_id=session.run_id)
        except BusClosed:
            pass  # the bus closed under the run: nothing left to tell anyone
        except Exception:
            # the loop published Error and AgentFailed already: the client sees RUN_ERROR
            logger.debug(
                "AG-UI run %s of session %r failed", session.run_id, loop.session_id, exc_info=True
            )
        finally:
            loop.tools = saved
            for fut in session.answers.values():
                fut.cancel()


def _conversation(messages: list[Any]) -> list[Message]:
    """Earlier AG-UI messages as the loop's conversation (activity and reasoning left out)."""
    out: list[Message] = []
    for m in messages:
        if m.role in ("system", "developer"):
            out.append(Message(role="system", content=message_text(m.content)))
        elif m.role == "user":
            out.append(Message(role="user", content=message_text(m.content)))
        elif m.role == "assistant":
            out.append(Message(role="assistant", content=message_text(m.content)))
        elif m.role == "tool":
            out.append(
                Message(role="tool", content=message_text(m.content), tool_call_id=m.tool_call_id)
            )
    return out
