"""The gateway's state and the checks every route shares: auth, rate limits, publishing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from .._events import Envelope, Event
from .._exceptions import (
    BusClosed,
    BusNotStarted,
    ConnectionLost,
    InvalidTopic,
    MessageTooLarge,
    NoResponders,
    QueueFull,
    RemoteError,
    RequestTimeout,
)
from .._topics import split_pattern, split_topic
from ..channels import ChannelNotStarted
from ._auth import OPEN_ACCESS, AccessToken, RateLimiter, TokenSet
from ._feeds import Feed, has_log
from ._metrics import GatewayMetrics
from ._payload import EventTypes, InvalidEvent

if TYPE_CHECKING:
    from .._bus import Bus
    from ..channels import ChannelManager

__all__ = ["ApiError", "Gateway", "default_event_types"]

logger = logging.getLogger("axonbus.gateway")

#: headers copied from an HTTP request onto the published event (lower-case names)
PASSED_HEADERS = ("traceparent", "tracestate", "idempotency-key")
HEADER_PREFIX = "x-axonbus-header-"


class ApiError(Exception):
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


def default_event_types() -> list[type[Event]]:
    """The typed events a gateway recognises by topic: the agent vocabulary and channel
    messages."""
    from ..agent import AGENT_EVENTS
    from ..channels import ChannelMessage, ChannelReply

    return [*AGENT_EVENTS.values(), ChannelMessage, ChannelReply]


def _bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    # browsers cannot set headers on EventSource or WebSocket: accept ?token= there
    return conn.query_params.get("token") or conn.query_params.get("access_token")


class Gateway:
    """Everything one app shares: the bus, tokens, rate limits, metrics and open client feeds."""

    def __init__(
        self,
        bus: Bus,
        *,
        tokens: TokenSet | None,
        state_manager: Any,
        channels: ChannelManager | None,
        max_body: int,
        event_types: Iterable[type[Event]],
        queue_size: int,
        keepalive: float,
    ) -> None:
        self.bus = bus
        self.tokens = tokens
        self.state_manager = state_manager
        self.channels = channels
        self.max_body = max_body
        self.types = EventTypes(event_types)
        self.queue_size = queue_size
        self.keepalive = keepalive
        self.limiter = RateLimiter()
        self.metrics = GatewayMetrics(bus)
        self.feeds: dict[int, tuple[str, Feed]] = {}  # id -> (client kind, feed)
        self.closing = asyncio.Event()

    def __repr__(self) -> str:
        auth = f"{len(self.tokens)} tokens" if self.tokens else "open access"
        return f"<Gateway {self.bus!r} {auth}>"

    @property
    def has_log(self) -> bool:
        return has_log(self.bus)

    # -- auth ----------------------------------------------------------------------------------

    def authenticate(self, conn: HTTPConnection, *, spend: bool = True) -> AccessToken:
        """The caller's token: 401 when missing or unknown, 429 when over its rate."""
        if self.tokens is None:
            return OPEN_ACCESS
        secret = _bearer(conn)
        if not secret:
            self.metrics.rejected.labels("unauthorized").inc()
            raise ApiError(
                401,
                "unauthorized",
                "a bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="axonbus"'},
            )
        token = self.tokens.authenticate(secret)
        if token is None:
            self.metrics.rejected.labels("unauthorized").inc()
            raise ApiError(
                401,
                "unauthorized",
                "unknown token",
                headers={"WWW-Authenticate": 'Bearer realm="axonbus", error="invalid_token"'},
            )
        if spend:
            self.spend(token)
        return token

    def spend(self, token: AccessToken) -> None:
        """Count one request against the token's rate; 429 with ``Retry-After`` when over it."""
        wait = self.limiter.take(token)
        if wait > 0:
            self.metrics.rejected.labels("rate_limited").inc()
            retry_after = RateLimiter.retry_after(wait)
            raise ApiError(
                429,
                "rate_limited",
                f"token {token.name!r} is over its rate of {token.rate:g}/s",
                headers={"Retry-After": retry_after},
                retry_after=float(retry_after),
            )

    def check_publish(self, token: AccessToken, topic: str) -> None:
        try:
            split_topic(topic)
        except InvalidTopic as exc:
            raise ApiError(400, "invalid_topic", str(exc)) from None
        if not token.can_publish(topic):
            self.metrics.rejected.labels("forbidden").inc()
            raise ApiError(403, "forbidden", f"token {token.name!r} may not publish on {topic!r}")

    def check_subscribe(self, token: AccessToken, pattern: str) -> None:
        try:
            split_pattern(pattern)
        except InvalidTopic as exc:
            raise ApiError(400, "invalid_pattern", str(exc)) from None
        if not token.can_subscribe(pattern):
            self.metrics.rejected.labels("forbidden").inc()
            raise ApiError(
                403, "forbidden", f"token {token.name!r} may not subscribe to {pattern!r}"
            )

    def check_size(self, size: int) -> None:
        if size > self.max_body:
            self.metrics.rejected.labels("too_large").inc()
            raise ApiError(
                413,
                "payload_too_large",
                f"body of {size} bytes exceeds the limit of {self.max_body} bytes",
                limit=self.max_body,
            )

    # -- bus calls -----------------------------------------------------------------------------

    def build(self, topic: str, payload: Any, type_name: str | None) -> Any:
        try:
            return self.types.build(topic, payload, type_name)
        except InvalidEvent as exc:
            raise ApiError(422, "invalid_event", str(exc), details=exc.errors) from None

    async def publish(
        self,
        token: AccessToken,
        topic: str,
        payload: Any,
        *,
        type_name: str | None = None,
        headers: dict[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> Envelope:
        """Check, build and publish one event; bus errors become :class:`ApiError`."""
        self.check_publish(token, topic)
        event = self.build(topic, payload, type_name)
        try:
            env = await self.bus.publish(
                topic, event, headers=headers or None, correlation_id=correlation_id
            )
        except Exception as exc:
            raise self.bus_error(exc) from exc
        self.metrics.published.inc()
        return env

    async def request(
        self,
        token: AccessToken,
        topic: str,
        payload: Any,
        *,
        timeout: float,
        type_name: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Check, build and send one request; its errors become 503 / 504 / 502."""
        self.check_publish(token, topic)
        event = self.build(topic, payload, type_name)
        try:
            reply = await self.bus.request(topic, event, timeout=timeout, headers=headers or None)
        except Exception as exc:
            error = self.bus_error(exc)
            self.metrics.requests.labels(error.code).inc()
            raise error from exc
        self.metrics.requests.labels("ok").inc()
        return reply

    def bus_error(self, exc: Exception) -> ApiError:
        """The HTTP answer for an exception from the bus (unexpected ones are re-raised)."""
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, RequestTimeout):
            return ApiError(504, "request_timeout", str(exc), timeout=exc.timeout)
        if isinstance(exc, NoResponders):
            return ApiError(503, "no_responders", str(exc), topic=exc.topic)
        if isinstance(exc, RemoteError):
            return ApiError(
                502, "remote_error", exc.remote_message, type=exc.remote_type, topic=exc.topic
            )
        if isinstance(exc, MessageTooLarge):
            return ApiError(413, "payload_too_large", str(exc), limit=exc.limit)
        if isinstance(exc, InvalidTopic):
            return ApiError(400, "invalid_topic", str(exc))
        if isinstance(exc, QueueFull):
            return ApiError(503, "queue_full", str(exc), headers={"Retry-After": "1"})
        if isinstance(exc, BusNotStarted | BusClosed | ConnectionLost):
            return ApiError(503, "bus_unavailable", str(exc))
        if isinstance(exc, ChannelNotStarted):
            return ApiError(503, "channel_not_started", str(exc))
        raise exc

    # -- client feeds --------------------------------------------------------------------------

    def track(self, kind: str, feed: Feed) -> None:
        self.feeds[id(feed)] = (kind, feed)

    def untrack(self, feed: Feed) -> None:
        self.feeds.pop(id(feed), None)

    def close_feeds(self) -> None:
        """End every SSE stream and WebSocket subscription (server shutdown)."""
        self.closing.set()
        for _, feed in list(self.feeds.values()):
            feed.close()

    def feed_stats(self) -> list[dict[str, Any]]:
        return [
            {"client": kind, "pattern": feed.pattern, "pending": feed.pending,
             "dropped": feed.dropped, "resumable": feed.resumable}
            for kind, feed in self.feeds.values()
        ]  # fmt: skip


def event_headers(conn: HTTPConnection) -> dict[str, str]:
    """Headers of the HTTP request that travel with the event: ``traceparent``, ``tracestate``,
    ``Idempotency-Key`` (as ``idempotency_key``) and every ``X-Axonbus-Header-<name>``."""
    found: dict[str, str] = {}
    for name, value in conn.headers.items():
        lname = name.lower()
        if lname in PASSED_HEADERS:
            found[lname.replace("-", "_")] = value
        elif lname.startswith(HEADER_PREFIX) and len(lname) > len(HEADER_PREFIX):
            found[lname[len(HEADER_PREFIX) :]] = value
    return found
