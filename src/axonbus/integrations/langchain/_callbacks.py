"""LangChain callback handlers that publish the agent toolkit's events."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk, LLMResult

from ...agent import AgentEvent, Interrupt
from ...sync import Bus as SyncBus
from ._outbox import Outbox
from ._translate import Translator

if TYPE_CHECKING:
    from ..._engine.bus import Bus

__all__ = ["AxonbusCallbackHandler", "AxonbusSyncCallbackHandler"]

_Translate = Callable[[bool], list[AgentEvent]]  # on_loop -> events


class _Publishing:
    """What both handlers share: the translator, the outbox, and a lock around both (LangChain
    calls a handler from several threads at once when tools run in parallel)."""

    def __init__(
        self, bus: Bus | SyncBus, session_id: str, *, run_id: str | None = None, agent: str = ""
    ) -> None:
        _ = Interrupt(session_id=session_id).topic  # InvalidTopic for a bad session id
        if isinstance(bus, SyncBus):
            bus = bus.async_bus  # its async Bus, running on the sync Bus's loop thread
        self.bus = bus
        self.session_id = session_id
        self._translator = Translator(session_id, run_id=run_id, agent=agent)
        self._outbox = Outbox(bus)
        self._lock = threading.Lock()

    async def flush(self) -> None:
        """Wait until every event reported so far is published. Only needed after a run on
        another thread that did not wait for the bus (see the class docstring); call it on
        the bus's loop."""
        await self._outbox.flush()

    # each callback, as a function of "called on the bus's loop thread" to its events

    def _chain_start(
        self, serialized: dict[str, Any] | None, inputs: Any, run_id: UUID,
        parent_run_id: UUID | None, kwargs: dict[str, Any],
    ) -> _Translate:  # fmt: skip
        name = _name(serialized, kwargs)
        if inputs == {"input": ""}:
            inputs = None  # a streamed run's input is not known yet (as LangChain's tracers do)
        return lambda here: self._translator.start(
            str(run_id), _str(parent_run_id), name=name, input=inputs, on_loop=here
        )

    def _model_start(
        self, serialized: dict[str, Any] | None, input: Any, run_id: UUID,
        parent_run_id: UUID | None, tags: list[str] | None, kwargs: dict[str, Any],
    ) -> _Translate:  # fmt: skip
        name = _name(serialized, kwargs)
        return lambda here: self._translator.model_start(
            str(run_id), _str(parent_run_id), name=name, input=input, tags=tags, on_loop=here
        )

    def _tool_start(
        self, serialized: dict[str, Any] | None, input_str: str, inputs: dict[str, Any] | None,
        run_id: UUID, parent_run_id: UUID | None, kwargs: dict[str, Any],
    ) -> _Translate:  # fmt: skip
        name = _name(serialized, kwargs)
        call_id = kwargs.get("tool_call_id")
        return lambda here: self._translator.tool_start(
            str(run_id),
            _str(parent_run_id),
            name=name,
            args=inputs if inputs is not None else input_str,
            call_id=str(call_id) if call_id else None,
            on_loop=here,
        )

    def _token(
        self, token: str | list[str | dict[str, Any]],
        chunk: GenerationChunk | ChatGenerationChunk | None, run_id: UUID,
    ) -> _Translate:  # fmt: skip
        if isinstance(chunk, ChatGenerationChunk):
            message = chunk.message
            return lambda _: self._translator.token(
                str(run_id), message.content, message.additional_kwargs
            )
        return lambda _: self._translator.token(str(run_id), token)


class AxonbusCallbackHandler(_Publishing, AsyncCallbackHandler):
    """Publishes a LangChain run's progress as agent toolkit events on
    ``agent.{session_id}.*``: for ``ainvoke`` / ``astream`` / ``astream_events`` of any
    runnable (a chain, a chat model, a tool, a LangGraph graph).

    >>> handler = AxonbusCallbackHandler(bus, "s1")
    >>> answer = await chain.ainvoke({"q": "2 + 3?"}, config={"callbacks": [handler]})

    ========================================  ===========================================
    LangChain                                 published
    ========================================  ===========================================
    top-level run starts                      ``AgentStarted`` (``input`` summarized)
    chat model / LLM starts                   ``Thinking`` (a new step)
    ``on_llm_new_token``                      ``Token`` (reasoning blocks: ``Thinking``)
    model ends without having streamed        its reply as one ``Token``
    ``on_tool_start``                         ``ToolCall`` (``call_id``: the tool call id)
    ``on_tool_end``                           ``ToolResult``
    ``on_tool_error``, error ``ToolMessage``  ``ToolResult(error=...)``
    top-level run returns                     ``Done`` (the final text), ``AgentCompleted``
    top-level run raises                      ``Error``, ``AgentFailed`` (a cancelled run:
                                              ``AgentFailed`` only, like ``lifecycle``)
    ========================================  ===========================================

    The top-level run is the run with no parent (or whose parent this handler never saw);
    it is one toolkit run, its ``run_id`` ``run_id`` if given, else ``run-<LangChain run id
    hex>``. Nested runs are not runs of their own: each model call is a step, and an error
    inside is reported only if it reaches the top-level run (fallbacks and retries catch
    some). Tokens are published when the model streams: ``astream``, ``astream_events``,
    LangGraph's ``stream_mode="messages"``, or a model made with ``streaming=True``;
    otherwise each reply is one token.

    Publishing waits for the bus (backpressure) on the bus's loop. For a sync ``invoke`` use
    :class:`AxonbusSyncCallbackHandler`: LangChain runs an async handler's callbacks on a
    private loop there, so this one only queues the events (they keep their order; ``await
    handler.flush()`` waits until they are published).
    """

    def __init__(
        self, bus: Bus, session_id: str, *, run_id: str | None = None, agent: str = ""
    ) -> None:
        super().__init__(bus, session_id, run_id=run_id, agent=agent)

    async def _emit(self, translate: _Translate) -> None:
        here = self._outbox.on_loop()
        with self._lock:
            events = translate(here)
        await self._outbox.publish(events)

    async def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        await self._emit(self._chain_start(serialized, inputs, run_id, parent_run_id, kwargs))

    async def on_chain_end(self, outputs: dict[str, Any], *, run_id: UUID, **kwargs: Any) -> None:
        await self._emit(lambda _: self._translator.end(str(run_id), outputs))

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        await self._emit(lambda _: self._translator.error(str(run_id), error))

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        given = {"messages": messages[0]} if messages else None
        await self._emit(self._model_start(serialized, given, run_id, parent_run_id, tags, kwargs))

    async def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        given = prompts[0] if prompts else None
        await self._emit(self._model_start(serialized, given, run_id, parent_run_id, tags, kwargs))

    async def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        await self._emit(self._token(token, chunk, run_id))

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        await self._emit(lambda _: self._translator.model_end(str(run_id), response))

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        await self._emit(lambda _: self._translator.error(str(run_id), error))

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        await self._emit(
            self._tool_start(serialized, input_str, inputs, run_id, parent_run_id, kwargs)
        )

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        await self._emit(lambda _: self._translator.tool_end(str(run_id), output))

    async def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        await self._emit(lambda _: self._translator.tool_error(str(run_id), error))


class AxonbusSyncCallbackHandler(_Publishing, BaseCallbackHandler):
    """:class:`AxonbusCallbackHandler` for sync runs (``invoke``, ``stream``, ``batch``):
    the same events, published from whatever thread LangChain calls it on.

    >>> with axonbus.sync.Bus() as bus:                 # or an axonbus.Bus on a loop
    ...     handler = AxonbusSyncCallbackHandler(bus, "s1")
    ...     answer = chain.invoke({"q": "2 + 3?"}, config={"callbacks": [handler]})

    - On the bus's loop thread (a sync ``invoke`` called from a coroutine, or an async run:
      the handler is ``run_inline``) events are published at once with ``publish_nowait``;
      one that finds a full mailbox is queued and published, in order, as soon as the loop
      is free (``await handler.flush()`` waits for that).
    - On another thread the call waits until the bus accepted the events (backpressure
      reaches the model), so when ``invoke`` returns everything was published.
      Except for a run that started on the loop thread: the loop is blocked running it, so
      its worker threads (LangGraph's parallel tools, ``RunnableParallel``) queue their
      events instead of waiting for it.
    """

    run_inline = True  # in async runs, call it on the loop: publish_nowait, no thread hop

    def __init__(
        self, bus: Bus | SyncBus, session_id: str, *, run_id: str | None = None, agent: str = ""
    ) -> None:
        super().__init__(bus, session_id, run_id=run_id, agent=agent)

    def _emit(self, run_id: UUID, translate: _Translate) -> None:
        here = self._outbox.on_loop()
        with self._lock:
            ended = self._translator.run_of(str(run_id))  # an end forgets the run: look first
            events = translate(here)
            run = ended or self._translator.run_of(str(run_id))
            wait = not here and run is not None and not run.on_loop
            accepted = self._outbox.put(events, wait=wait)
        if accepted is not None:
            accepted.result()

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._emit(run_id, self._chain_start(serialized, inputs, run_id, parent_run_id, kwargs))

    def on_chain_end(self, outputs: dict[str, Any], *, run_id: UUID, **kwargs: Any) -> None:
        self._emit(run_id, lambda _: self._translator.end(str(run_id), outputs))

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._emit(run_id, lambda _: self._translator.error(str(run_id), error))

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        given = {"messages": messages[0]} if messages else None
        self._emit(
            run_id, self._model_start(serialized, given, run_id, parent_run_id, tags, kwargs)
        )

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        given = prompts[0] if prompts else None
        self._emit(
            run_id, self._model_start(serialized, given, run_id, parent_run_id, tags, kwargs)
        )

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        self._emit(run_id, self._token(token, chunk, run_id))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._emit(run_id, lambda _: self._translator.model_end(str(run_id), response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._emit(run_id, lambda _: self._translator.error(str(run_id), error))

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._emit(
            run_id, self._tool_start(serialized, input_str, inputs, run_id, parent_run_id, kwargs)
        )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._emit(run_id, lambda _: self._translator.tool_end(str(run_id), output))

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._emit(run_id, lambda _: self._translator.tool_error(str(run_id), error))


def _str(value: UUID | None) -> str | None:
    return str(value) if value is not None else None


def _name(serialized: dict[str, Any] | None, kwargs: dict[str, Any]) -> str:
    """A run's name as LangChain's tracers find it: the ``name`` keyword, else the
    serialized name, else the last part of the serialized id."""
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if serialized:
        found = serialized.get("name")
        if isinstance(found, str) and found:
            return found
        ident = serialized.get("id")
        if isinstance(ident, list) and ident:
            return str(ident[-1])
    return ""
