"""What the HTTP API channels (Telegram, Slack) share: retries, secrets kept out of logs.

httpx is imported by the channels only when they start, so ``axonbus.channels`` stays usable
without it (it comes with the ``gateway`` extra).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._retry import Retry
from ._base import Channel
from ._errors import ChannelApiError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "REDACTED",
    "HttpApiChannel",
    "call_with_retry",
    "hide_secret",
    "import_httpx",
    "redact",
    "retry_after",
]

logger = logging.getLogger("axonbus.channels")

T = TypeVar("T")

REDACTED = "***"

#: the loggers of the HTTP stack; httpx logs every request's URL at INFO (Telegram's bot token
#: is part of that URL)
HTTP_LOGGERS = ("httpx", "httpcore")


def import_httpx(channel_type: str) -> ModuleType:
    """``httpx``, or an ``ImportError`` that says how to install it."""
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - httpx is installed with the gateway extra
        raise ImportError(
            f"the {channel_type!r} channel needs httpx: pip install 'axonbus[gateway]'"
        ) from exc
    return httpx


def check_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash; ``ValueError`` unless it is an http(s) URL."""
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
    return base_url.rstrip("/")


def redact(text: str, *secrets: str) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class _RedactSecrets(logging.Filter):
    """Rewrites log records that contain a registered secret (attached to the HTTP loggers)."""

    def __init__(self) -> None:
        super().__init__("axonbus.redact")
        self.secrets: dict[str, int] = {}  # secret -> number of channels using it

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's business, not ours
            return True
        hidden = redact(message, *self.secrets)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


_filter = _RedactSecrets()


def hide_secret(secret: str, hide: bool = True) -> None:
    """Start (or, with ``hide=False``, stop) redacting ``secret`` from the HTTP loggers.

    Calls are counted, so two channels with the same token each add and remove it once.
    """
    if not secret:
        return
    if hide:
        if not _filter.secrets:
            for name in HTTP_LOGGERS:
                logging.getLogger(name).addFilter(_filter)
        _filter.secrets[secret] = _filter.secrets.get(secret, 0) + 1
        return
    left = _filter.secrets.get(secret, 0) - 1
    if left > 0:
        _filter.secrets[secret] = left
        return
    _filter.secrets.pop(secret, None)
    if not _filter.secrets:
        for name in HTTP_LOGGERS:
            logging.getLogger(name).removeFilter(_filter)


def retry_after(value: Any) -> float | None:
    """Seconds from a ``Retry-After`` header or a ``retry_after`` field; ``None`` if absent or
    not a number (an HTTP date is not worth parsing for a bounded wait)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


async def call_with_retry(once: Callable[[], Awaitable[T]], retry: Retry, *, describe: str) -> T:
    """Run ``once()`` until it succeeds, retrying a retryable :class:`ChannelApiError`.

    The wait before a retry is the error's ``retry_after`` (the server said so: honoured as
    given) or else ``retry.delay(n)``, exponential with jitter. After ``retry.attempts`` tries,
    or on an error that is not retryable, the last error is raised with its attempt count.
    """
    attempt = 1
    while True:
        try:
            return await once()
        except ChannelApiError as exc:
            if not exc.retryable or attempt >= retry.attempts:
                if attempt > 1:
                    raise exc.with_attempts(attempt) from None
                raise
            wait = exc.retry_after if exc.retry_after is not None else retry.delay(attempt + 1)
            logger.warning(
                "%s: %s; retrying in %.2fs (attempt %d of %d)",
                describe, exc.error, wait, attempt + 1, retry.attempts,
            )  # fmt: skip
        attempt += 1
        await asyncio.sleep(wait)


class HttpApiChannel(Channel):
    """A channel that talks to an HTTP API through one httpx client, open while it runs, with
    its secret (``_token``) kept out of the HTTP stack's logs meanwhile. Subclasses set
    ``_channel_type``, ``base_url``, ``timeout`` and ``_token``, and say how the client is made
    (:meth:`_client_options`)."""

    _channel_type: str
    base_url: str
    timeout: float
    _token: str
    _client: Any  # httpx.AsyncClient while running

    @property
    def channel_type(self) -> str:
        return self._channel_type

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.channel_type!r} {self.base_url} {state}>"

    def _client_options(self) -> dict[str, Any]:
        """Keyword arguments of the httpx client besides its timeout."""
        return {"base_url": f"{self.base_url}/"}

    async def start(self) -> None:
        if self.running:
            return
        httpx = import_httpx(self.channel_type)
        await super().start()
        hide_secret(self._token)
        self._client = httpx.AsyncClient(timeout=self.timeout, **self._client_options())

    async def stop(self) -> None:
        was_open = self._client is not None
        try:
            await super().stop()
        finally:
            client, self._client = self._client, None
            if client is not None:
                await client.aclose()
            if was_open:
                hide_secret(self._token, hide=False)
