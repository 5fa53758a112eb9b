"""A deterministic demo agent, for the gateway's dashboard, examples and tests."""

from __future__ import annotations

import ast
import asyncio
import logging
import operator
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import BusClosed
from ._events import UserInput
from ._loop import AgentLoop
from ._models import Message, Tool
from ._scripted import ScriptedModel, Turn

if TYPE_CHECKING:
    from .._engine.bus import Bus
    from .._engine.subscription import Subscription

__all__ = ["DemoAgent", "calculate", "find_expression"]

logger = logging.getLogger("axonbus.agent")

THINKING = "Let me work out what you are asking."

_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_CANDIDATE = re.compile(r"[\d.(][\d\s.+\-*/()]*")


def calculate(expression: str) -> int | float:
    """Evaluate ``+ - * /`` and parentheses over numbers (no names, no calls, no powers).

    Raises ``ValueError`` for anything else and ``ZeroDivisionError`` as Python does.
    """

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.operand))
        raise ValueError(f"not arithmetic: {expression!r}")

    if len(expression) > 200:
        raise ValueError("expression too long")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not arithmetic: {expression!r}") from None
    value = walk(tree.body)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value  # type: ignore[no-any-return]


def find_expression(text: str) -> str | None:
    """The longest arithmetic expression in ``text`` with at least one operator, if any."""
    best: str | None = None
    for match in _CANDIDATE.finditer(text):
        candidate = match.group().strip().rstrip(".")
        if not re.search(r"\d\s*[-+*/]\s*[-+(\d]", candidate):
            continue
        try:
            calculate(candidate)
        except ValueError:
            continue
        except ZeroDivisionError:
            pass  # still an expression: the calculator will say why it has no value
        if best is None or len(candidate) > len(best):
            best = candidate
    return best


class DemoAgent:
    """Answers every :class:`UserInput` on ``agent.*.user_input`` with a scripted
    :class:`AgentLoop` run, paced so a person can watch it and press interrupt.

    >>> agent = DemoAgent(bus).start()        # or: async with DemoAgent(bus): ...
    >>> await bus.publish(UserInput(session_id="s1", text="what is 12 * (3 + 4)?"))

    Exactly what a run does, for ``UserInput(session_id=S, text=T)``:

    1. Runs on the session's loop (agent name ``"demo"``, conversation kept per session); a
       session's runs go one after another, sessions run in parallel.
    2. Step 1: streams the thinking ``"Let me work out what you are asking."`` as
       ``Thinking`` events, then calls one tool: ``calculator(expression=E)`` when T holds an
       arithmetic expression E (numbers with ``+ - * /`` and parentheses; the longest one),
       else ``word_count(text=T)``. The tool takes ``tool_delay`` seconds.
    3. Step 2: streams the reply word by word (``Token`` events):
       with the calculator, ``"{E} = {value}. I worked that out with the calculator tool,
       one step at a time."`` (or ``"I could not calculate {E}: {error}."``); otherwise
       ``"Your message has {n} words. Ask me to calculate something, like 12 * (3 + 4), and
       I will use the calculator tool."``. Resume instructions given during the run come
       first, as ``"Noted: {instruction}. "``.
    4. Publishes ``Done`` with the reply, then ``AgentCompleted``.

    Every streamed token and thinking word waits ``token_delay`` seconds (30 ms: a default
    run lasts about a second). Interrupt, resume and cancel work as for any
    :class:`AgentLoop`.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        token_delay: float = 0.03,
        tool_delay: float = 0.3,
        name: str = "demo",
    ) -> None:
        self.bus = bus
        self.token_delay = token_delay
        self.tool_delay = tool_delay
        self.name = name
        self.loops: dict[str, AgentLoop] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Subscription | None = None

    def start(self) -> DemoAgent:
        """Subscribe to ``agent.*.user_input``; returns the agent."""
        if self._sub is None:
            self._sub = self.bus.subscribe(UserInput, self._on_input, name=f"{self.name}-agent")
        return self

    async def stop(self) -> None:
        """Unsubscribe and cancel the runs in progress."""
        if self._sub is not None:
            self.bus.unsubscribe(self._sub)
            self._sub = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> DemoAgent:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def tools(self) -> list[Tool]:
        delay = self.tool_delay

        async def calculator(expression: str) -> int | float:
            """Evaluate an arithmetic expression (+ - * / and parentheses)."""
            await asyncio.sleep(delay)
            return calculate(expression)

        async def word_count(text: str) -> int:
            """Count the words of a text."""
            await asyncio.sleep(delay)
            return len(text.split())

        return [Tool.from_function(calculator), Tool.from_function(word_count)]

    def loop_for(self, session_id: str, text: str) -> AgentLoop:
        """The session's loop (made on first use, conversation kept), scripted to answer
        ``text``: what a run for ``UserInput(session_id, text)`` runs, for adapters that start
        runs themselves (:class:`axonbus.agent.agui.AgUiAgent`)."""
        loop = self.loops.get(session_id)
        if loop is None:
            loop = self.loops[session_id] = AgentLoop(
                self.bus, ScriptedModel([]), self.tools(), session_id=session_id, name=self.name
            )
        loop.model = ScriptedModel(self._script(text), token_delay=self.token_delay)
        return loop

    def _on_input(self, event: UserInput) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, event: UserInput) -> None:
        sid = event.session_id
        lock = self._locks.setdefault(sid, asyncio.Lock())
        async with lock:
            loop = self.loop_for(sid, event.text)
            try:
                await loop.run(event.text)
            except BusClosed:
                pass  # the bus closed under the run: nothing left to tell anyone
            except Exception:
                logger.exception("demo agent run for session %r failed", sid)

    @staticmethod
    def _script(text: str) -> Callable[[Sequence[Message]], Turn]:
        expression = find_expression(text)
        calls = 0

        def script(messages: Sequence[Message]) -> Turn:
            nonlocal calls
            calls += 1
            if calls == 1:
                tool = ("calculator", {"expression": expression}) if expression else None
                return Turn(
                    thinking=THINKING,
                    tool_calls=[tool or ("word_count", {"text": text})],
                )
            start = max(i for i, m in enumerate(messages) if m.role == "user" and m.content == text)
            notes = "".join(
                f"Noted: {m.content.rstrip('.')}. "
                for m in messages[start + 1 :]
                if m.role == "user"
            )
            answer = next(m.content for m in reversed(messages) if m.role == "tool")
            if expression is None:
                reply = (
                    f"Your message has {answer} words. Ask me to calculate something, like "
                    "12 * (3 + 4), and I will use the calculator tool."
                )
            elif answer.startswith("error: "):
                reason = answer.removeprefix("error: ").split(": ", 1)[-1]
                reply = f"I could not calculate {expression}: {reason}."
            else:
                reply = (
                    f"{expression} = {answer}. I worked that out with the calculator tool, "
                    "one step at a time."
                )
            return Turn(text=notes + reply)

        return script
