"""``AgentProxy``: one agent's id and runtime, to talk to it without repeating them.

>>> clerk = AgentProxy(AgentId("clerk", "default"), runtime)
>>> receipt = await clerk.send_message(Order(id=1))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._agent import AgentMetadata
from ._context import CancellationToken
from ._ids import AgentId

if TYPE_CHECKING:
    from ._runtime import AgentRuntime

__all__ = ["AgentProxy"]


class AgentProxy:
    """An agent as seen from outside: ``send_message``, its metadata and state."""

    def __init__(self, agent: AgentId, runtime: AgentRuntime) -> None:
        self._agent = agent
        self._runtime = runtime

    @property
    def id(self) -> AgentId:
        return self._agent

    @property
    async def metadata(self) -> AgentMetadata:
        """The agent's metadata (awaited, as in autogen-core: ``await proxy.metadata``)."""
        return await self._runtime.agent_metadata(self._agent)

    async def send_message(
        self,
        message: Any,
        *,
        sender: AgentId,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
    ) -> Any:
        """``runtime.send_message`` to this agent."""
        return await self._runtime.send_message(
            message,
            self._agent,
            sender=sender,
            cancellation_token=cancellation_token,
            message_id=message_id,
        )

    async def save_state(self) -> Mapping[str, Any]:
        return await self._runtime.agent_save_state(self._agent)

    async def load_state(self, state: Mapping[str, Any]) -> None:
        await self._runtime.agent_load_state(self._agent, state)

    def __repr__(self) -> str:
        return f"AgentProxy({self._agent!r})"
