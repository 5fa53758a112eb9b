"""The gateway's state and the checks every route shares: auth, rate limits, publishing."""

from __future__ import annotations

import asyncio
import logging
import time
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
from ._errors import ApiError, InvalidEvent
from ._feeds import Feed, Hubs, has_log
from ._metrics import GatewayMetrics
from ._payload import MAX_DEPTH, EventTypes, depth_exceeds

if TYPE_CHECKING:
    from .._engine.bus import Bus
    from ..channels import ChannelManager
    from ._sse import EventSourceResponse
    from ._ws import WebSocketSession

__all__ = ["Gateway", "default_event_types"]

logger = logging.getLogger("axonbus.gateway")

#: headers copied from an HTTP request onto the published event (lower-case names)
PASSED_HEADERS = ("traceparent", "tracestate", "idempotency-key")
HEADER_PREFIX = "x-axonbus-header-"


def default_event_types() -> list[type[Event]]:
    """The typed events a gateway recognises by topic: the agent vocabulary and channel
    messages."""
    from ..agent import AGENT_EVENTS
    from ..channels import ChannelMessage, ChannelReply

    return [*AGENT_EVENTS.values(), ChannelMessage, ChannelReply]


#: failed authentications a client address may make at once, and then per second
AUTH_FAILURE_BURST = 10.0
AUTH_FAILURE_RATE = 1.0


def _query_token(conn: HTTPConnection) -> str | None:
    return conn.query_params.get("token") or conn.query_params.get("access_token")


def _bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    # browsers cannot set headers on EventSource or WebSocket: accept ?token= there only
    if conn.scope["type"] == "websocket" or conn.scope.get("method") in ("GET", "HEAD"):
        return _query_token(conn)
    return None


def _bad_topic_char(name: str) -> str | None:
    """The first character no topic may hold (any Unicode space, control or separator)."""
    for ch in name:
        if ch.isspace() or not ch.isprintable():
            return ch
    return None


def client_address(conn: HTTPConnection) -> str:
    client = conn.scope.get("client")
    return str(client[0]) if client else "-"


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
        feed_bytes: int = 8 * 1024 * 1024,
        max_feeds_per_token: int = 256,
        frame_rate: float = 50.0,
        frame_burst: float = 100.0,
        publish_wait: float = 5.0,
        shed_lag: float = 1.0,
        body_timeout: float = 30.0,
    ) -> None:
        self.bus = bus
        self.tokens = tokens
        self.state_manager = state_manager
        self.channels = channels
        self.max_body = max_body
        self.types = EventTypes(event_types)
        self.queue_size = queue_size
        self.keepalive = keepalive
        self.feed_bytes = feed_bytes
        self.max_feeds_per_token = max_feeds_per_token
        self.frame_rate = frame_rate
        self.frame_burst = frame_burst
        self.publish_wait = publish_wait
        self.shed_lag = shed_lag
        self.body_timeout = body_timeout
        self.hubs = Hubs(bus, max_items=queue_size, max_bytes=feed_bytes)
        self.limiter = RateLimiter()
        self.metrics = GatewayMetrics(bus)
        # id -> (client kind, token name, feed)
        self.feeds: dict[int, tuple[str, str, Feed]] = {}
        #: token name -> its open feeds (counted here: thousands of clients open feeds)
        self.held: dict[str, int] = {}
        #: the SSE writers: cancelled at shutdown, since one blocked on a client that stopped
        #: reading would never see its feed end
        self.writers: set[EventSourceResponse] = set()
        #: the writer tasks of AG-UI streams, cancelled at shutdown for the same reason
        self.run_writers: set[asyncio.Task[None]] = set()
        #: the WebSocket sessions, told at shutdown (WebSocketSession.going_away)
        self.sessions: set[WebSocketSession] = set()
        #: the SSE keep-alive sweep (see axonbus.gateway._sse.keep_alive), while one runs
        self.keepalive_timer: asyncio.TimerHandle | None = None
        self.closing = asyncio.Event()
        #: how late the event loop ran a timer lately, in seconds (see :meth:`watch_lag`)
        self.lag = 0.0

    def __repr__(self) -> str:
        auth = f"{len(self.tokens)} tokens" if self.tokens else "open access"
        return f"<Gateway {self.bus!r} {auth}>"

    @property
    def has_log(self) -> bool:
        return has_log(self.bus)

    # -- auth ----------------------------------------------------------------------------------

    def authenticate(self, conn: HTTPConnection, *, spend: bool = False) -> AccessToken:
        """The caller's token: 401 when missing or unknown, 429 when its address failed too
        often lately; with ``spend`` (publishes and requests) also 429 when over its rate."""
        if self.tokens is None:
            return OPEN_ACCESS
        if (
            conn.scope["type"] == "http"
            and conn.scope.get("method") not in ("GET", "HEAD")
            and _query_token(conn) is not None
        ):
            self.metrics.rejected.labels("unauthorized").inc()
            raise ApiError(
                400,
                "token_in_query",
                "send the token as 'Authorization: Bearer <token>'; ?token= is accepted "
                "only on GET (EventSource) and WebSocket, where a browser cannot set it",
            )
        address = ("auth-failures", client_address(conn))
        wait = self.limiter.peek_key(address, AUTH_FAILURE_RATE, AUTH_FAILURE_BURST)
        if wait > 0:
            self.metrics.rejected.labels("auth_throttled").inc()
            retry_after = RateLimiter.retry_after(wait)
            raise ApiError(
                429,
                "too_many_failures",
                "too many failed authentications from this address; try again later",
                headers={"Retry-After": retry_after},
                retry_after=float(retry_after),
            )
        secret = _bearer(conn)
        token = self.tokens.authenticate(secret) if secret else None
        if token is None:
            self.metrics.rejected.labels("unauthorized").inc()
            self.limiter.take_key(address, AUTH_FAILURE_RATE, AUTH_FAILURE_BURST)
            if not secret:
                raise ApiError(
                    401,
                    "unauthorized",
                    "a bearer token is required (Authorization: Bearer <token>)",
                    headers={"WWW-Authenticate": 'Bearer realm="axonbus"'},
                )
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
        bad = _bad_topic_char(topic)
        if bad is not None:
            raise ApiError(400, "invalid_topic", f"a topic may not hold the character {bad!r}")
        try:
            split_topic(topic)
        except InvalidTopic as exc:
            raise ApiError(400, "invalid_topic", str(exc)) from None
        if not token.can_publish(topic):
            self.metrics.rejected.labels("forbidden").inc()
            raise ApiError(403, "forbidden", f"token {token.name!r} may not publish on {topic!r}")

    def check_subscribe(self, token: AccessToken, pattern: str) -> None:
        bad = _bad_topic_char(pattern)
        if bad is not None:
            raise ApiError(400, "invalid_pattern", f"a pattern may not hold the character {bad!r}")
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

    def check_depth(self, payload: Any) -> None:
        """400 for a payload nested deeper than the wire formats can encode."""
        if depth_exceeds(payload, MAX_DEPTH):
            raise ApiError(
                400,
                "too_deep",
                f"the payload is nested more than {MAX_DEPTH} levels deep",
                limit=MAX_DEPTH,
            )

    def check_load(self) -> None:
        """503 with ``Retry-After`` while the server is overloaded (its event loop runs late)."""
        if self.lag > self.shed_lag:
            self.metrics.shed.inc()
            raise ApiError(
                503,
                "overloaded",
                f"the gateway is overloaded (running {self.lag:.1f}s late); retry later",
                headers={"Retry-After": RateLimiter.retry_after(self.lag)},
            )

    async def watch_lag(self, interval: float = 0.1) -> None:
        """Measure how late the event loop runs a timer, for :meth:`check_load` (runs until
        cancelled). The figure decays as soon as the loop catches up."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            late = max(0.0, loop.time() - due)
            self.lag = late if late > self.lag else self.lag * 0.5 + late * 0.5

    def scoped_headers(
        self, token: AccessToken, topic: str, headers: dict[str, str] | None
    ) -> dict[str, str] | None:
        """``headers`` with an idempotency key scoped to the token and the topic, so that one
        token's key can never suppress another token's event or an event on another topic."""
        if not headers or "idempotency_key" not in headers:
            return headers
        scoped = dict(headers)
        scoped["idempotency_key"] = f"{token.name}/{topic}/{headers['idempotency_key']}"
        return scoped

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
        """Check, build and publish one event; bus errors become :class:`ApiError`. A publish
        that waits longer than ``publish_wait`` for the bus (backpressure) is answered 503."""
        self.check_publish(token, topic)
        self.check_load()
        self.check_depth(payload)
        event = self.build(topic, payload, type_name)
        headers = self.scoped_headers(token, topic, headers)
        began = time.monotonic()
        try:
            env = await self.bus.publish(
                topic, event, headers=headers or None, correlation_id=correlation_id
            )
        except Exception as exc:
            raise self.bus_error(exc) from exc
        if time.monotonic() - began > self.publish_wait:
            # published, but slowly: tell the next publishers to back off
            self.lag = max(self.lag, time.monotonic() - began)
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
        self.check_load()
        self.check_depth(payload)
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
        if isinstance(exc, TypeError | ValueError | RecursionError) and "encode" in str(exc):
            # the codec refused the payload (too deep, an int over 64 bits, ...)
            return ApiError(400, "unencodable", f"the payload cannot be encoded: {exc}")
        raise exc

    # -- client feeds --------------------------------------------------------------------------

    def track(self, kind: str, token: AccessToken, feed: Feed) -> None:
        key = id(feed)
        if key not in self.feeds:
            self.held[token.name] = self.held.get(token.name, 0) + 1
        self.feeds[key] = (kind, token.name, feed)

    def untrack(self, feed: Feed) -> None:
        entry = self.feeds.pop(id(feed), None)
        if entry is not None:
            name = entry[1]
            left = self.held.get(name, 1) - 1
            if left > 0:
                self.held[name] = left
            else:
                self.held.pop(name, None)

    def check_feeds(self, token: AccessToken) -> None:
        """429 when the token already holds ``max_feeds_per_token`` open feeds."""
        if token.allow_all:
            return
        held = self.held.get(token.name, 0)
        if held >= self.max_feeds_per_token:
            self.metrics.rejected.labels("too_many_feeds").inc()
            raise ApiError(
                429,
                "too_many_feeds",
                f"token {token.name!r} already holds {held} open streams "
                f"(at most {self.max_feeds_per_token})",
                headers={"Retry-After": "5"},
            )

    def close_feeds(self) -> None:
        """End every SSE stream and WebSocket subscription (server shutdown)."""
        self.closing.set()
        for _, _, feed in list(self.feeds.values()):
            feed.close()
        for writer in list(self.writers):
            writer.cancel()
        for task in list(self.run_writers):
            task.cancel()
        for session in list(self.sessions):
            session.going_away()

    def feed_stats(self, token: AccessToken) -> list[dict[str, Any]]:
        """The open feeds ``token`` may see: all of them under open access, else its own."""
        return [
            {"client": kind, "pattern": feed.pattern, "pending": feed.pending,
             "dropped": feed.dropped, "resumable": feed.resumable}
            for kind, name, feed in self.feeds.values()
            if token.allow_all or name == token.name
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
