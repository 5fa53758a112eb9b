"""The gateway as channels: WebSocket clients and webhooks as :class:`Channel`\\ s.

Attach them to a :class:`~axonbus.channels.ChannelManager` like any channel, and give the
manager to :func:`create_app`::

    manager = ChannelManager(bus)
    await manager.attach(WebSocketChannel(bus, "web"))
    await manager.attach(WebhookChannel(bus, "https://example.com/hook", secret="…"))
    app = create_app(bus, channels=manager)

- :class:`WebSocketChannel`: a WebSocket client's ``{"op": "message", "channel": "web", ...}``
  frame becomes a :class:`ChannelMessage` on ``channel.web.in``; each :class:`ChannelReply` on
  ``channel.web.out`` goes back, as an ``{"op": "message", ...}`` frame, to the connections of
  that ``user_id``.
- :class:`WebhookChannel`: ``POST /v1/channels/{type}/in`` with ``{"user_id", "content",
  "metadata"}`` becomes a :class:`ChannelMessage`; each reply is POSTed as JSON to ``url``,
  retried with exponential backoff on network errors, 408 / 425 / 429 and 5xx. With a
  ``secret``, both directions are signed: ``X-Axonbus-Timestamp`` (unix seconds) and
  ``X-Axonbus-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body>``. An inbound
  request is refused when its timestamp is not a finite number within ``tolerance`` seconds
  of now, and when the same signature was already accepted within that window (a replay).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from .._exceptions import AxonbusError
from .._retry import Retry
from ..channels import Channel, ChannelReply
from ..channels._base import check_channel_type
from ..transports.base import redact_url
from ._payload import dumps

if TYPE_CHECKING:
    from .._engine.bus import Bus
    from ..channels import ChannelManager

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ChannelClient",
    "ReplayGuard",
    "WebSocketChannel",
    "WebhookChannel",
    "WebhookDeliveryFailed",
    "inbound_message",
    "sign",
    "verify",
]

logger = logging.getLogger("axonbus.gateway")

SIGNATURE_HEADER = "X-Axonbus-Signature"
TIMESTAMP_HEADER = "X-Axonbus-Timestamp"
RETRYABLE = frozenset({408, 425, 429})


class WebhookDeliveryFailed(AxonbusError):
    """A :class:`WebhookChannel` could not deliver a reply: the endpoint refused it (a 4xx other
    than 408 / 425 / 429) or every attempt failed. The bus contains it like any handler failure
    (``HandlerFailed`` on ``$bus.handler_failed``)."""

    def __init__(self, url: str, reason: str, attempts: int) -> None:
        shown = redact_url(url)  # the endpoint's own token stays out of logs and tracebacks
        super().__init__(f"webhook {shown} failed after {attempts} attempt(s): {reason}")
        self.url = url
        self.reason = reason
        self.attempts = attempts


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: float = 300.0
) -> bool:
    """True when ``headers`` carry a valid, recent signature of ``body`` (constant-time)."""
    timestamp = headers.get(TIMESTAMP_HEADER) or headers.get(TIMESTAMP_HEADER.lower())
    signature = headers.get(SIGNATURE_HEADER) or headers.get(SIGNATURE_HEADER.lower())
    if not timestamp or not signature:
        return False
    try:
        when = float(timestamp)
    except ValueError:
        return False
    if not math.isfinite(when) or abs(time.time() - when) > tolerance:
        return False  # nan would pass any comparison: it must not mean "never expires"
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class ReplayGuard:
    """The signatures accepted in the last ``window`` seconds: a request seen before is a
    replay. Bounded: past ``max_entries`` the oldest are forgotten (they expire anyway)."""

    def __init__(self, window: float = 300.0, max_entries: int = 100_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._seen: dict[str, float] = {}  # signature -> when it expires (insertion ordered)

    def first_time(self, signature: str) -> bool:
        """Remember ``signature``; False when it was already seen within the window."""
        now = time.monotonic()
        while self._seen:
            oldest = next(iter(self._seen))
            if self._seen[oldest] > now and len(self._seen) < self.max_entries:
                break
            del self._seen[oldest]
        if signature in self._seen:
            return False
        self._seen[signature] = now + 2 * self.window  # the timestamp may be ahead of us
        return True


class ChannelClient(Protocol):
    """What a :class:`WebSocketChannel` sends replies to: one WebSocket connection."""

    def send_frame(self, frame: dict[str, Any]) -> Awaitable[None]: ...

    def may_receive(self, topic: str) -> bool:
        """May this connection receive events on ``topic`` (its token's subscribe check)?"""


class WebSocketChannel(Channel):
    """Users talking over the gateway's WebSocket (``GET /v1/ws``), as a channel.

    A connection that sent a ``message`` frame receives its user's replies until it closes;
    the user id is the connection's token name (never one the client names). A reply goes only
    to connections whose token may subscribe to ``channel.<type>.out``; a reply for a user with
    no such connection is logged and dropped.
    """

    def __init__(self, bus: Bus, channel_type: str = "websocket") -> None:
        super().__init__(bus)
        self._channel_type = check_channel_type(channel_type)
        self._clients: dict[str, set[ChannelClient]] = {}

    @property
    def channel_type(self) -> str:
        return self._channel_type

    @staticmethod
    def find(
        manager: ChannelManager | None, channel_type: str | None = None
    ) -> WebSocketChannel | None:
        """The attached WebSocketChannel of that type (the first one when ``None``)."""
        if manager is None:
            return None
        if channel_type is not None:
            channel = manager.get(channel_type)
            return channel if isinstance(channel, WebSocketChannel) else None
        for ct in manager.list_channels():
            channel = manager.get(ct)
            if isinstance(channel, WebSocketChannel):
                return channel
        return None

    def connect(self, user_id: str, client: ChannelClient) -> None:
        """Route ``user_id``'s replies to ``client`` (as well as to its other connections)."""
        self._clients.setdefault(user_id, set()).add(client)

    def disconnect(self, client: ChannelClient) -> None:
        """Forget ``client`` for every user (its connection closed)."""
        for user_id in list(self._clients):
            clients = self._clients[user_id]
            clients.discard(client)
            if not clients:
                del self._clients[user_id]

    def users(self) -> list[str]:
        """The users with at least one open connection."""
        return sorted(self._clients)

    async def send(self, reply: ChannelReply) -> None:
        clients = [
            c for c in self._clients.get(reply.user_id, ()) if c.may_receive(self.outbound_topic)
        ]
        if not clients:
            logger.warning(
                "channel %r: no open connection for user %r; reply dropped",
                self.channel_type,
                reply.user_id,
            )
            return
        frame = {
            "op": "message",
            "channel": self.channel_type,
            "user_id": reply.user_id,
            "content": reply.content,
            "reply_to": reply.reply_to,
            "metadata": reply.metadata,
        }
        for client in clients:
            try:
                await client.send_frame(frame)
            except Exception as exc:  # one dead connection must not starve the others
                logger.info("channel %r: a connection failed: %s", self.channel_type, exc)
                self.disconnect(client)


class WebhookChannel(Channel):
    """Replies POSTed to a URL; inbound messages from ``POST /v1/channels/{type}/in``.

    >>> hook = WebhookChannel(bus, "https://example.com/hook", channel_type="crm", secret="k")
    >>> await manager.attach(hook)

    ``retry`` (default 5 attempts, 0.5 s doubling up to 30 s) paces redeliveries; a
    ``Retry-After`` from the endpoint is honoured up to ``retry.max_backoff``. ``client`` lets
    tests inject an :class:`httpx.AsyncClient` (with a mock transport); otherwise the channel
    opens its own on start and closes it on stop. The secret never shows in a repr.
    """

    def __init__(
        self,
        bus: Bus,
        url: str,
        *,
        channel_type: str = "webhook",
        secret: str | None = None,
        retry: Retry | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(bus)
        self._channel_type = check_channel_type(channel_type)
        self.url = url
        self._secret = secret
        self.retry = retry if retry is not None else Retry(attempts=5, backoff=0.5, max_backoff=30)
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._given_client = client
        self._client: httpx.AsyncClient | None = client
        self.delivered = 0
        self.failed = 0
        self._replays = ReplayGuard()

    @property
    def channel_type(self) -> str:
        return self._channel_type

    @property
    def signed(self) -> bool:
        """True when the channel has a secret: replies are signed, inbound must be."""
        return self._secret is not None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        shown = redact_url(self.url)
        return f"<WebhookChannel {self.channel_type!r} {shown} signed={self.signed} {state}>"

    async def start(self) -> None:
        await super().start()
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)

    async def stop(self) -> None:
        await super().stop()
        client, self._client = self._client, self._given_client
        if client is not None and client is not self._given_client:
            await client.aclose()

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """True when an inbound request is correctly signed, recent and not a replay of one
        already accepted (always True without a secret)."""
        if self._secret is None:
            return True
        if not verify(self._secret, headers, body):
            return False
        signature = headers.get(SIGNATURE_HEADER) or headers.get(SIGNATURE_HEADER.lower()) or ""
        return self._replays.first_time(signature)

    async def send(self, reply: ChannelReply) -> None:
        client = self._client
        if client is None:
            raise WebhookDeliveryFailed(self.url, "the channel is not started", 0)
        body = dumps(reply.model_dump(mode="json"))
        reason = ""
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            headers = {"content-type": "application/json", **self.headers}
            if self._secret is not None:
                ts = str(int(time.time()))
                headers[TIMESTAMP_HEADER] = ts
                headers[SIGNATURE_HEADER] = sign(self._secret, ts, body)
            wait: float | None = None
            try:
                response = await client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    self.delivered += 1
                    return
                reason = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code not in RETRYABLE:
                    self.failed += 1
                    raise WebhookDeliveryFailed(self.url, reason, attempt)
                wait = _retry_after(response.headers.get("retry-after"))
            if attempt < attempts:
                delay = self.retry.delay(attempt + 1)
                if wait is not None:
                    delay = min(self.retry.max_backoff, max(delay, wait))
                logger.info(
                    "webhook %s: %s; retrying in %.2gs (attempt %d of %d)",
                    redact_url(self.url), reason, delay, attempt + 1, attempts,
                )  # fmt: skip
                await asyncio.sleep(delay)
        self.failed += 1
        raise WebhookDeliveryFailed(self.url, reason, attempts)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: not worth parsing for a bounded wait


def inbound_message(payload: Any) -> tuple[str, str, dict[str, Any]]:
    """``(user_id, content, metadata)`` from an inbound webhook body; ``ValueError`` if bad."""
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object with user_id and content")
    user_id = payload.get("user_id")
    content = payload.get("content")
    metadata = payload.get("metadata") or {}
    if not isinstance(user_id, str) or not user_id or not isinstance(content, str):
        raise ValueError("the body needs 'user_id' (non-empty string) and 'content' (string)")
    if not isinstance(metadata, dict):
        raise ValueError("'metadata' must be an object")
    return user_id, content, metadata
