"""The gateway's errors, all under :class:`~axonbus.AxonbusError`.

>>> raise ApiError(404, "not_found", "no such topic")   # answered as JSON with status 404
"""

from __future__ import annotations

from typing import Any

from .._exceptions import AxonbusError

__all__ = ["ApiError", "BindError", "InsecureBind", "InvalidEvent", "TopicMismatch"]


class ApiError(AxonbusError):
    """An error answer: HTTP status, a short machine-readable code, a message, extra fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class InvalidEvent(AxonbusError, ValueError):
    """A JSON payload does not validate as the event type it was sent as (HTTP 422)."""

    def __init__(self, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class TopicMismatch(InvalidEvent):
    """A payload field (``session_id``...) disagrees with the value the topic gives it."""


class InsecureBind(AxonbusError, ValueError):
    """:func:`serve` was asked to listen beyond loopback with no tokens file (open access)."""


class BindError(AxonbusError, OSError):
    """:func:`serve` cannot listen on its host and port: the port is in use, needs privileges,
    or the host is not an address of this machine.

    >>> asyncio.run(serve(port=8765))  # while another server holds 8765
    BindError: cannot listen on 127.0.0.1:8765: address already in use
    """
