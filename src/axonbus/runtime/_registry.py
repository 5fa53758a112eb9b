"""Agent types and their instances: factories, instances registered by hand, lazy creation.

An agent is created on its first message (or ``get(..., lazy=False)``) by calling its type's
factory inside :class:`AgentInstantiationContext`, so ``__init__`` already knows its id; then it
gets a :class:`~._hosting.Host` (mailbox and workers). Concurrent first messages to an agent
whose factory is async share one creation.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .._exceptions import AgentNotFound, RuntimeClosed
from ._agent import Agent, AgentInstantiationContext, AgentMetadata
from ._hosting import Host, Hosts
from ._ids import AgentId, AgentType
from ._serialization import MessageTypes

if TYPE_CHECKING:
    from ._ids import TopicId
    from ._runtime import AgentRuntime

__all__ = ["Registry"]

logger = logging.getLogger("axonbus.runtime")

T = TypeVar("T", bound=Agent)


class _Registration:
    __slots__ = ("concurrency", "expected", "factory")

    def __init__(
        self,
        factory: Callable[[], Any] | None,
        expected: type[Any] | None,
        concurrency: int | None,
    ) -> None:
        self.factory = factory  # None: the type only has instances registered by hand
        self.expected = expected  # for instances: their class, which every instance must have
        self.concurrency = concurrency


def _check_concurrency(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"concurrency must be an int >= 1, got {value!r}")
    return value


class Registry:
    """The registration half of :class:`AgentRuntime`."""

    _hosts: Hosts
    _targets: dict[TopicId, tuple[Host, ...]]
    state: str

    def __init__(self) -> None:
        self._registrations: dict[str, _Registration] = {}
        self._creating: dict[AgentId, asyncio.Future[Host]] = {}
        #: message classes by name, for crossing processes (collected from handlers)
        self.message_types = MessageTypes()
        super().__init__()

    # -- registering -----------------------------------------------------------------------------

    async def register_factory(
        self,
        type: str | AgentType,
        agent_factory: Callable[[], T | Awaitable[T]],
        *,
        expected_class: type[T] | None = None,
        concurrency: int | None = None,
    ) -> AgentType:
        """Create agents of ``type`` on their first message with ``agent_factory()`` (sync or
        async, no arguments; ``AgentInstantiationContext`` tells it the id).

        ``concurrency`` overrides the class attribute of the same name.
        """
        self._check_open()
        name = type.type if isinstance(type, AgentType) else type
        AgentId(name, "")
        if name in self._registrations:
            raise ValueError(f"agent type {name!r} is already registered")
        if not callable(agent_factory):
            raise TypeError(f"agent_factory must be callable, got {agent_factory!r}")
        if concurrency is not None:
            _check_concurrency(concurrency)
        self._registrations[name] = _Registration(agent_factory, expected_class, concurrency)
        if expected_class is not None and issubclass(expected_class, Agent):
            for message_type in expected_class._handled_types():
                self.message_types.register(message_type)
        self._registrations_changed()
        return AgentType(name)

    async def register_agent_instance(
        self, agent_instance: Agent, agent_id: AgentId, *, concurrency: int | None = None
    ) -> AgentId:
        """Host an agent you created yourself as ``agent_id`` (other keys of that type then
        raise :class:`AgentNotFound`: there is no factory to make them)."""
        self._check_open()
        reg = self._registrations.get(agent_id.type)
        if reg is not None and reg.factory is not None:
            raise ValueError(f"agent type {agent_id.type!r} has a factory; instances cannot join")
        if agent_id in self._hosts.by_id:
            raise ValueError(f"agent {agent_id} already exists")
        cls = type(agent_instance)
        if reg is not None and reg.expected is not cls:
            assert reg.expected is not None
            raise ValueError(
                f"Agent instances must be the same object type: {agent_id.type!r} has "
                f"{reg.expected.__qualname__} instances, not {cls.__qualname__}"
            )
        if reg is None:
            self._registrations[agent_id.type] = _Registration(None, cls, None)
        await agent_instance.bind_id_and_runtime(agent_id, self._as_runtime())
        for message_type in type(agent_instance)._handled_types():
            self.message_types.register(message_type)
        self._hosts.add(agent_instance, agent_id, self._concurrency_of(agent_instance, concurrency))
        self._registrations_changed()
        return agent_id

    @staticmethod
    def _concurrency_of(agent: Any, override: int | None) -> int:
        if override is not None:
            return override
        return _check_concurrency(getattr(agent, "concurrency", 1))

    async def get(
        self, id_or_type: AgentId | AgentType | str, /, key: str = "default", *, lazy: bool = True
    ) -> AgentId:
        """The id of agent ``(type, key)``; created now rather than on its first message when
        ``lazy=False`` (which raises :class:`AgentNotFound` for an unknown type)."""
        agent_id = id_or_type if isinstance(id_or_type, AgentId) else AgentId(id_or_type, key)
        if not lazy:
            await self._host(agent_id)
        return agent_id

    async def try_get_underlying_agent_instance(self, id: AgentId, type: type[T] = Agent) -> T:  # type: ignore[assignment]
        """The local agent object behind ``id`` (created if needed); TypeError if it is not a
        ``type``."""
        agent = (await self._host(id)).agent
        if not isinstance(agent, type):
            raise TypeError(f"{id} is a {agent.__class__.__name__}, not a {type.__name__}")
        return agent

    async def _host(self, agent_id: AgentId) -> Host:
        """The local host of ``agent_id``, creating the agent on first use."""
        host = self._hosts.by_id.get(agent_id)
        if host is not None:
            return host
        if not isinstance(agent_id, AgentId):
            raise TypeError(f"expected an AgentId, got {agent_id!r}")
        creating = self._creating.get(agent_id)
        if creating is not None:  # an async factory is already making it
            return await asyncio.shield(creating)
        reg = self._registrations.get(agent_id.type)
        if reg is None:
            raise AgentNotFound(str(agent_id), f"no agent type {agent_id.type!r} is registered")
        if reg.factory is None:
            raise AgentNotFound(
                str(agent_id), f"type {agent_id.type!r} has only instances registered by hand"
            )
        creating = asyncio.get_running_loop().create_future()
        self._creating[agent_id] = creating
        try:
            try:
                agent = await self._instantiate(reg, agent_id)
            except Exception:
                logger.error("Error constructing agent %s", agent_id, exc_info=True)
                raise
            host = self._hosts.add(agent, agent_id, self._concurrency_of(agent, reg.concurrency))
        except BaseException as exc:
            creating.set_exception(exc)
            creating.exception()  # whoever else waits gets it; nobody need be
            raise
        finally:
            del self._creating[agent_id]
        creating.set_result(host)
        return host

    async def _instantiate(self, reg: _Registration, agent_id: AgentId) -> Agent:
        assert reg.factory is not None
        with AgentInstantiationContext.populate_context((self._as_runtime(), agent_id)):
            agent = reg.factory()
            if inspect.isawaitable(agent):
                agent = await agent
        if reg.expected is not None and not isinstance(agent, reg.expected):
            raise TypeError(
                f"the factory of {agent_id.type!r} made a {type(agent).__name__}, "
                f"expected a {reg.expected.__name__}"
            )
        if not isinstance(agent, Agent):
            raise TypeError(f"the factory of {agent_id.type!r} made {agent!r}, not an Agent")
        await agent.bind_id_and_runtime(agent_id, self._as_runtime())
        return agent

    async def agent_metadata(self, agent: AgentId) -> AgentMetadata:
        return (await self._host(agent)).agent.metadata

    async def agent_save_state(self, agent: AgentId) -> Mapping[str, Any]:
        """One agent's ``save_state()`` (created first if needed)."""
        return await (await self._host(agent)).agent.save_state()

    async def agent_load_state(self, agent: AgentId, state: Mapping[str, Any]) -> None:
        await (await self._host(agent)).agent.load_state(state)

    def _registrations_changed(self) -> None:
        self._targets.clear()

    def _check_open(self) -> None:
        if self.state == "closed":
            raise RuntimeClosed("the agent runtime is closed; create a new one")

    def _as_runtime(self) -> AgentRuntime:
        return self  # type: ignore[return-value]  # a Registry is always an AgentRuntime
