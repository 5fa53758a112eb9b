"""The import table: where each autogen-core module and name lives in axonbus.

Only ``from autogen_core… import`` / ``import autogen_core…`` statements are rewritten with it;
test bodies run untouched. A module missing here fails the rewrite (it never passes silently).
"""

from __future__ import annotations

#: autogen-core module -> the axonbus module that provides its names
MODULES: dict[str, str] = {
    "autogen_core": "axonbus.runtime",
    "autogen_core.exceptions": "axonbus.runtime",
    "autogen_core._default_subscription": "axonbus.runtime",
    "autogen_core._routed_agent": "axonbus.runtime",
    # private helpers some tests import directly
    "autogen_core._serialization": "axonbus.runtime._serializers",
    "autogen_core._type_helpers": "axonbus.runtime._types",
}

#: autogen-core name -> axonbus name, where they differ (imported ``as`` the autogen name)
NAMES: dict[str, str] = {
    "SingleThreadedAgentRuntime": "AgentRuntime",
    "CantHandleException": "CantHandle",
    "MessageDroppedException": "MessageDropped",
}
