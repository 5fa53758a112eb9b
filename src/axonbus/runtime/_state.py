"""Saving and restoring a runtime: every agent's state and the subscriptions.

The saved form is JSON-native::

    {"agents": {"checker/default": {...}, ...},
     "subscriptions": [{"kind": "type", "id": "...", "topic": "default", "agent_type": "checker"}]}

``load`` also accepts autogen-core's flat form (``{"checker/default": {...}}``). Subscriptions
are merged: one equal to an existing subscription is skipped. Agents of types not registered
here are skipped with a warning, as in autogen-core.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._exceptions import AgentNotFound
from ._ids import AgentId
from ._subscriptions import subscription_from_data, subscription_to_data

if TYPE_CHECKING:
    from ._runtime import AgentRuntime

__all__ = ["load_runtime_state", "save_runtime_state"]

logger = logging.getLogger("axonbus.runtime")


async def save_runtime_state(runtime: AgentRuntime) -> dict[str, Any]:
    agents: dict[str, Any] = {}
    for agent_id, host in list(runtime._hosts.by_id.items()):
        agents[str(agent_id)] = dict(await host.agent.save_state())
    subscriptions = []
    for sub in runtime._subscriptions:
        data = subscription_to_data(sub)
        if data is None:
            logger.debug("save_state: %r is not a built-in subscription; not saved", sub)
        else:
            subscriptions.append(data)
    return {"agents": agents, "subscriptions": subscriptions}


async def load_runtime_state(runtime: AgentRuntime, state: Mapping[str, Any]) -> None:
    if isinstance(state.get("agents"), Mapping) and all("/" not in key for key in state):
        agents: Mapping[str, Any] = state["agents"]
        subscriptions = state.get("subscriptions", ())
    else:  # autogen-core's form: agent ids at the top level
        agents, subscriptions = state, ()
    for data in subscriptions:
        sub = subscription_from_data(data)
        if not runtime._subscriptions.contains(sub):
            await runtime.add_subscription(sub)
    for key, agent_state in agents.items():
        agent_id = AgentId.from_str(key)
        try:
            host = await runtime._host(agent_id)
        except AgentNotFound as exc:
            logger.warning("load_state: skipping %s: %s", key, exc)
            continue
        await host.agent.load_state(agent_state)
