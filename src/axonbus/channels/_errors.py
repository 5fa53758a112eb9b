"""Errors raised by channels and the channel manager.

They live here, not in ``axonbus._exceptions``, because only the channels layer raises them;
both still derive from :class:`axonbus.AxonbusError` so one ``except`` catches everything.
"""

from __future__ import annotations

from .._exceptions import AxonbusError, LifecycleError

__all__ = ["ChannelAlreadyAttached", "ChannelApiError", "ChannelNotStarted"]


class ChannelNotStarted(LifecycleError, RuntimeError):
    """``channel.receive(...)`` was called before ``start()`` (or after ``stop()``).

    Attach the channel first: ``await manager.attach(channel)`` starts it.
    """

    def __init__(self, channel_type: str) -> None:
        super().__init__(
            f"channel {channel_type!r} is not started: attach it with "
            "'await manager.attach(channel)' or call 'await channel.start()' before receive()"
        )
        self.channel_type = channel_type


class ChannelAlreadyAttached(AxonbusError, ValueError):
    """``manager.attach(channel)`` for a channel type that is already attached.

    Detach the old one first: ``await manager.detach(channel_type)``.
    """

    def __init__(self, channel_type: str) -> None:
        super().__init__(
            f"a {channel_type!r} channel is already attached; "
            f"'await manager.detach({channel_type!r})' first"
        )
        self.channel_type = channel_type


class ChannelApiError(AxonbusError):
    """A messaging platform's HTTP API (Telegram Bot API, Slack Web API) refused a call, answered
    with something that is not its API, or stayed unreachable through every retry.

    Raised by a channel's receive loop it makes the :class:`ChannelManager` restart the channel;
    raised by ``send()`` it is a handler failure (``HandlerFailed`` on ``$bus.handler_failed``).
    ``status`` is the HTTP status (``None`` without a response), ``error`` the API's own error
    (Telegram's ``description``, Slack's ``error``), ``retryable`` whether trying again later
    may succeed, ``retry_after`` the wait the server asked for (429). The message never holds
    a bot token.
    """

    def __init__(
        self,
        channel_type: str,
        method: str,
        error: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        where = f"HTTP {status}: " if status is not None else ""
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{channel_type} {method} failed{tries}: {where}{error}")
        self.channel_type = channel_type
        self.method = method
        self.error = error
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = attempts

    def with_attempts(self, attempts: int) -> ChannelApiError:
        """The same error, saying how many attempts were made."""
        return ChannelApiError(
            self.channel_type,
            self.method,
            self.error,
            status=self.status,
            retryable=self.retryable,
            retry_after=self.retry_after,
            attempts=attempts,
        )
