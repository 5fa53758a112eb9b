"""Bridges between axonbus and other agent frameworks, one subpackage each, each behind its
own extra:

- :mod:`axonbus.integrations.langchain`: LangChain callback handlers and LangGraph's event
  stream, as agent toolkit events (``pip install 'axonbus[langchain]'``).
"""

__all__: list[str] = []
