"""LangChain and LangGraph on the bus: any runnable's progress published as the
agent toolkit's events (:mod:`axonbus.agent`), and a LangGraph run stopped by the toolkit's
Interrupt and Cancel.

Needs the ``langchain`` extra: ``pip install 'axonbus[langchain]'``.

>>> from axonbus.integrations.langchain import AxonbusCallbackHandler, pipe_events
>>> handler = AxonbusCallbackHandler(bus, "s1")                 # callbacks: any runnable
>>> await chain.ainvoke(question, config={"callbacks": [handler]})
>>> result = await pipe_events(                                 # a graph's event stream
...     graph.astream_events({"messages": [("user", "hi")]}, version="v2"),
...     bus, session_id="s1",
... )                                                           # agent.s1.interrupt stops it
"""

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "axonbus.integrations.langchain needs langchain-core: pip install 'axonbus[langchain]'"
    ) from exc

from ._callbacks import AxonbusCallbackHandler, AxonbusSyncCallbackHandler
from ._pipe import PipeResult, pipe_events

__all__ = ["AxonbusCallbackHandler", "AxonbusSyncCallbackHandler", "PipeResult", "pipe_events"]
