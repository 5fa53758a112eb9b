"""Errors raised by the agent toolkit.

They live here, not in ``axonbus._exceptions``, because only this layer raises them; all derive
from :class:`axonbus.AxonbusError` so one ``except`` catches everything::

    AxonbusError
    ├── ModelError               a model call failed
    │   ├── ModelHTTPError       the server answered 4xx / 5xx
    │   ├── ModelResponseError   a chunk of the stream could not be understood
    │   ├── ModelConnectionError the server could not be reached, or the connection broke
    │   └── ScriptExhausted      a ScriptedModel was asked for more turns than it has
    └── MaxStepsExceeded         an AgentLoop run used up max_steps without a final answer
"""

from __future__ import annotations

from .._exceptions import AxonbusError

__all__ = [
    "MaxStepsExceeded",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelResponseError",
    "ScriptExhausted",
]


class ModelError(AxonbusError):
    """A chat model call failed. The agent loop publishes it as an ``Error`` event first."""


class ModelHTTPError(ModelError):
    """The model server answered with an HTTP error status (4xx or 5xx).

    ``status_code`` is the status; ``body`` the start of the response body (at most 2,000
    characters), which OpenAI-compatible servers use for an error object.
    """

    def __init__(self, status_code: int, body: str, url: str) -> None:
        super().__init__(f"model server answered HTTP {status_code} for {url}: {body[:500]}")
        self.status_code = status_code
        self.body = body
        self.url = url


class ModelResponseError(ModelError):
    """A streamed chunk was not what the protocol allows: not JSON, no ``choices``, an
    ``error`` object inside the stream, or tool-call arguments that are not a JSON object."""


class ModelConnectionError(ModelError):
    """The model server could not be reached, or the connection broke mid-stream."""


class ScriptExhausted(ModelError):
    """A :class:`ScriptedModel` built from a list of turns was called once more than it has."""


class MaxStepsExceeded(AxonbusError):
    """An :class:`AgentLoop` run made ``max_steps`` model calls without a final answer."""

    def __init__(self, max_steps: int) -> None:
        super().__init__(f"the agent made {max_steps} model calls without a final answer")
        self.max_steps = max_steps
