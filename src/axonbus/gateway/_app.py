"""The Starlette app: routes, error answers, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from .._events import Event
from ..transports.base import redact_url
from ._agui import agui_run
from ._auth import AccessToken, TokenSet, load_tokens
from ._channels import WebhookChannel, inbound_message
from ._cloudevents import is_cloudevent, read_cloudevent, sse_encoder
from ._core import Gateway, default_event_types, event_headers
from ._docs_routes import asyncapi_json, openapi_json
from ._errors import ApiError
from ._guard import LOOPBACK_HOSTS, Guard
from ._logs import install_log_filters
from ._metrics import AccessLog
from ._openapi import ANY_JSON, Param, describe
from ._payload import dumps, jsonable
from ._schemas import (
    ChannelList,
    Health,
    InboundMessage,
    PublishResult,
    RequestResult,
    SessionList,
    Stats,
    WebhookAccepted,
)
from ._sse import HANDOFF, STREAM, EventSourceResponse, open_event_source
from ._ws import WebSocketSession

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from .._engine.bus import Bus
    from ..channels import ChannelManager

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
MAX_REQUEST_TIMEOUT = 300.0


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)


class GatewayApp(Starlette):
    """The gateway's Starlette app: an SSE stream's head and a WebSocket's handshake go through
    the middleware stack as any request does; the stream's events and the WebSocket's frames
    then go from here, with the server's own ``receive`` / ``send``, once the stack returned
    (see :class:`EventSourceResponse` and :meth:`WebSocketSession.rebind`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await super().__call__(scope, receive, send)
            return
        scope[HANDOFF] = True
        await super().__call__(scope, receive, send)
        stream = scope.pop(STREAM, None)
        if isinstance(stream, EventSourceResponse):
            await stream.run(receive, send)
        elif isinstance(stream, WebSocketSession):
            stream.rebind(receive, send)
            await stream.serve()


def _gateway(request: Request | WebSocket) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _require_json(request: Request, body: bytes | bytearray) -> None:
    """415 for a non-empty body that is not declared JSON: a page on another site can send a
    ``text/plain`` or form POST without asking first, never an ``application/json`` one."""
    if body.strip() and not _is_json(request.headers.get("content-type", "")):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as JSON (Content-Type: application/json)",
        )


async def _read_body(gw: Gateway, request: Request) -> bytes:
    """The body, within ``max_body`` bytes and ``body_timeout`` seconds (408 when slower)."""
    length = request.headers.get("content-length")
    if length is not None and length.isascii() and length.isdigit():
        gw.check_size(int(length))
    body = bytearray()
    try:
        async with asyncio.timeout(gw.body_timeout):
            async for chunk in request.stream():
                body += chunk
                gw.check_size(len(body))
    except TimeoutError:
        gw.metrics.rejected.labels("slow_body").inc()
        raise ApiError(
            408, "body_timeout", f"the body did not arrive within {gw.body_timeout:g}s"
        ) from None
    return bytes(body)


async def _read_json(gw: Gateway, request: Request) -> Any:
    body = await _read_body(gw, request)
    _require_json(request, body)
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson refuses documents nested over 1,024 levels with the same error
        raise ApiError(400, "invalid_json", f"the body is not JSON: {exc}") from None


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes", "on")


# -- routes ------------------------------------------------------------------------------------
# each endpoint carries its OpenAPI description (`describe`): GET /openapi.json is built from it

_TYPE = Param(
    "type",
    description="validate the body as this event class (its registered name)",
    schema={"type": "string", "minLength": 1},
)
_EVENT_HEADERS = (
    Param("traceparent", "header"),
    Param("idempotency-key", "header", "scoped to the token and the topic"),
)
_BOOL = {"type": "string", "description": "true, 1, yes or on"}
_SESSION = {"type": "object", "additionalProperties": True}
_SLACK = {"type": "object", "additionalProperties": True}


# binary-mode CloudEvents: the attributes as headers (the data is the body)
_CE_HEADERS = tuple(
    Param(f"ce-{name}", "header", description=f"CloudEvents {name} (binary mode)")
    for name in ("specversion", "id", "source", "type", "subject", "time")
)


@describe(
    "Publish one event",
    description="The JSON body is the payload; a JSON object sent to the topic of a known "
    "event class becomes that class when it validates. A CloudEvent is taken too: structured "
    "(Content-Type application/cloudevents+json) or binary (ce- headers, the data as the body); "
    "without a topic in the path, only a CloudEvent (its subject is the topic).",
    grant="publish",
    body=ANY_JSON,
    body_media=("application/json", "application/cloudevents+json"),
    ok={200: ("published", PublishResult)},
    errors=(400, 408, 413, 415, 422, 503),
    params=(
        _TYPE,
        Param("flush", description="wait until stored; answer its log offset", schema=_BOOL),
        Param("x-correlation-id", "header"),
        *_EVENT_HEADERS,
        *_CE_HEADERS,
    ),
    tags=("events",),
)
async def publish(request: Request) -> Response:
    gw = _gateway(request)
    token = gw.authenticate(request, spend=True)
    topic: str | None = request.path_params.get("topic")
    # structured or binary mode (see _cloudevents); either needs what a page on another site
    # cannot send without a CORS preflight (a ce- header, or that content type), so a binary
    # event's body may have any type
    if is_cloudevent(request.headers):
        if topic is not None:
            gw.check_publish(token, topic)
        body = await _read_body(gw, request)
        ce = read_cloudevent(request.headers, body, topic, request.app.state.cloudevents)
        env = await gw.publish(
            token,
            ce.topic,
            ce.event,
            headers={**event_headers(request), **ce.headers},
            correlation_id=ce.correlation_id or request.headers.get("x-correlation-id"),
        )
    elif topic is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            "POST /v1/publish takes a CloudEvent (Content-Type: application/cloudevents+json, "
            "or ce- headers); other bodies go to /v1/publish/{topic}",
        )
    else:
        gw.check_publish(token, topic)  # before reading a body we would refuse anyway
        payload = await _read_json(gw, request)
        env = await gw.publish(
            token,
            topic,
            payload,
            type_name=request.query_params.get("type"),
            headers=event_headers(request),
            correlation_id=request.headers.get("x-correlation-id"),
        )
    offset = env.offset
    if _flag(request, "flush"):
        offset = await _committed_offset(gw, env.id)
    return _JSON({"id": env.id, "topic": env.topic, "offset": offset})


async def _committed_offset(gw: Gateway, event_id: str) -> int | None:
    """Wait for the transport to have the event; its log offset when the bus keeps a log."""
    try:
        await gw.bus.flush()
    except Exception as exc:
        raise gw.bus_error(exc) from exc
    log = gw.bus.event_log
    if log is None:
        return None
    with contextlib.suppress(LookupError):
        after, _ = await log.resolve_since(event_id)
        return after
    return None


@describe(
    "Send a request and wait for its reply",
    grant="publish",
    body=ANY_JSON,
    ok={200: ("the reply", RequestResult)},
    errors=(408, 413, 415, 422, 502, 503, 504),
    params=(
        _TYPE,
        Param(
            "timeout",
            description="seconds to wait for the reply; default 30",
            schema={"type": "number", "exclusiveMinimum": 0, "maximum": MAX_REQUEST_TIMEOUT},
        ),
        *_EVENT_HEADERS,
    ),
    tags=("events",),
)
async def request_reply(request: Request) -> Response:
    gw = _gateway(request)
    token = gw.authenticate(request, spend=True)
    topic: str = request.path_params["topic"]
    gw.check_publish(token, topic)
    raw = request.query_params.get("timeout", "30")
    try:
        timeout = float(raw)
    except ValueError:
        timeout = math.nan
    if not 0 < timeout <= MAX_REQUEST_TIMEOUT:
        raise ApiError(400, "invalid_timeout", f"timeout must be in (0, {MAX_REQUEST_TIMEOUT}]")
    payload = await _read_json(gw, request)
    reply = await gw.request(
        token,
        topic,
        payload,
        timeout=timeout,
        type_name=request.query_params.get("type"),
        headers=event_headers(request),
    )
    return _JSON({"topic": topic, "reply": jsonable(reply)})


@describe(
    "Stream events as Server-Sent Events",
    description="Each event: 'id:' the log offset (else the event id), 'event:' the topic, "
    "'data:' {topic, id, timestamp, event, offset?, type?}. Runs until the client leaves.",
    grant="subscribe",
    ok={200: ("the event stream", {"type": "string"})},
    media="text/event-stream",
    errors=(400, 503),
    params=(
        Param("pattern", description="topic pattern, default '>'"),
        Param(
            "format",
            description="cloudevents: each data: line is a structured CloudEvent",
            schema={"type": "string", "enum": ["cloudevents"]},
        ),
        Param("last_event_id", description="resume after this offset (or Last-Event-ID)"),
        Param("Last-Event-ID", "header"),
    ),
    tags=("events",),
)
async def stream_events(request: Request) -> Any:
    return await open_event_source(_gateway(request), request)


async def websocket(ws: WebSocket) -> None:
    session = WebSocketSession(_gateway(ws), ws)
    if not await session.open():
        return
    if ws.scope.get(HANDOFF):
        ws.scope[STREAM] = session  # GatewayApp runs it once the middleware stack returned
        return
    await session.serve()


@describe(
    "Liveness and the bus state",
    grant="none",
    ok={200: ("the bus is started", Health), 503: ("the bus is not started", Health)},
    tags=("meta",),
)
async def healthz(request: Request) -> Response:
    gw = _gateway(request)
    bus = gw.bus
    started = bus.state == "started"
    body = {
        "status": "ok" if started else "unavailable",
        "bus": bus.state,
        "transport": bus.transport.scheme,
        "log": gw.has_log,
        "auth": gw.tokens is not None,
    }
    return _JSON(body, status_code=200 if started else 503)


@describe(
    "Prometheus metrics",
    grant="metrics",
    ok={200: ("Prometheus text exposition", {"type": "string"})},
    media="text/plain",
    tags=("meta",),
)
async def get_metrics(request: Request) -> Response:
    gw = _gateway(request)
    token = gw.authenticate(request)  # scrapers are not rate limited
    if not (token.allow_all or token.metrics):
        gw.metrics.rejected.labels("forbidden").inc()
        raise ApiError(
            403, "forbidden", f"token {token.name!r} may not read /metrics (needs metrics: true)"
        )
    return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _sees_everything(token: AccessToken) -> bool:
    return token.allow_all or (token.can_subscribe(">") and not token.deny)


@describe(
    "Bus, subscription and client statistics",
    grant="token",
    ok={200: ("statistics the token may see", Stats)},
    tags=("meta",),
)
async def get_stats(request: Request) -> Response:
    """Bus info and subscriptions the token could itself subscribe to, and its own feeds; the
    bus URL (redacted) only for a token that may read everything."""
    gw = _gateway(request)
    token = gw.authenticate(request)
    bus = gw.bus
    subscriptions = [dataclasses.asdict(s) for s in bus.stats() if token.can_subscribe(s.pattern)]
    everything = _sees_everything(token)
    return _JSON(
        {
            "bus": {
                "name": bus.name,
                "url": redact_url(bus.url) if everything else None,
                "state": bus.state,
                "transport": bus.transport.scheme,
                "log": gw.has_log,
            },
            "subscriptions": subscriptions,
            "clients": gw.feed_stats(token),
            "hubs": gw.hubs.stats() if everything else [],
        }
    )


@describe(
    "The ChannelManager's channels",
    grant="token",
    ok={200: ("the channels", ChannelList)},
    errors=(404,),
    tags=("channels",),
)
async def list_channels(request: Request) -> Response:
    gw = _gateway(request)
    gw.authenticate(request)
    manager = gw.channels
    if manager is None:
        raise ApiError(404, "not_configured", "this gateway has no ChannelManager")
    listed = []
    for ct, status in manager.status().items():
        channel = manager.get(ct)
        listed.append(
            {
                "channel_type": ct,
                "kind": type(channel).__name__,
                "state": status.state,
                "restarts": status.restarts,
                "last_error": status.last_error,
            }
        )
    return _JSON({"channels": listed})


def _visible_sessions(gw: Gateway, token: AccessToken) -> dict[str, Any]:
    manager = gw.state_manager
    if manager is None:
        raise ApiError(404, "not_configured", "this gateway has no StateManager")
    snapshot: dict[str, Any] = manager.snapshot()
    return {sid: s for sid, s in snapshot.items() if token.can_subscribe(f"agent.{sid}.>")}


def _session_json(state: Any) -> Any:
    record = jsonable(state)
    if isinstance(record, dict):
        record["active"] = bool(getattr(state, "active", False))
    return record


@describe(
    "The agent sessions the token may see",
    grant="token",
    ok={200: ("run state per session", SessionList)},
    errors=(404,),
    tags=("sessions",),
)
async def list_sessions(request: Request) -> Response:
    gw = _gateway(request)
    token = gw.authenticate(request)
    visible = _visible_sessions(gw, token)
    return _JSON({"sessions": [_session_json(s) for s in visible.values()]})


@describe(
    "One agent session's run state",
    grant="token",
    ok={200: ("the session", _SESSION)},
    errors=(404,),
    tags=("sessions",),
)
async def get_session(request: Request) -> Response:
    gw = _gateway(request)
    token = gw.authenticate(request)
    sid: str = request.path_params["session_id"]
    visible = _visible_sessions(gw, token)
    if sid not in visible:
        raise ApiError(404, "unknown_session", f"no session {sid!r}")
    return _JSON(_session_json(visible[sid]))


@describe(
    "A message for an attached WebhookChannel",
    description="Authenticated by the channel's signature when it has a secret, else by a "
    "token that may publish on the channel's inbound topic.",
    grant="publish",
    body=InboundMessage,
    body_required=True,
    ok={202: ("accepted and published", WebhookAccepted)},
    errors=(404, 408, 413, 415, 503),
    tags=("channels",),
)
async def webhook_in(request: Request) -> Response:
    """``POST /v1/channels/{type}/in``: a message for an attached :class:`WebhookChannel`."""
    gw = _gateway(request)
    ct: str = request.path_params["channel_type"]
    channel = gw.channels.get(ct) if gw.channels is not None else None
    if not isinstance(channel, WebhookChannel):
        raise ApiError(404, "no_channel", f"no WebhookChannel {ct!r} is attached")
    body = await _read_body(gw, request)
    if channel.signed:
        # the signature is the credential: webhook senders rarely hold bearer tokens
        if not channel.verify(request.headers, body):
            gw.metrics.rejected.labels("unauthorized").inc()
            raise ApiError(401, "bad_signature", "missing, stale or wrong webhook signature")
    else:
        token = gw.authenticate(request, spend=True)
        gw.check_publish(token, channel.inbound_topic)
    _require_json(request, body)
    try:
        user_id, content, metadata = inbound_message(orjson.loads(body or b"null"))
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_message", str(exc)) from None
    gw.check_depth(metadata)
    try:
        message = await channel.receive(user_id, content, **metadata)
    except Exception as exc:
        raise gw.bus_error(exc) from exc
    gw.metrics.published.inc()
    return _JSON({"id": message.id, "topic": channel.inbound_topic}, status_code=202)


@describe(
    "Slack's Events API for an attached SlackChannel",
    grant="signature",
    body=_SLACK,
    ok={200: ("handled (or the url_verification challenge)", _SLACK)},
    errors=(404, 408, 413),
    tags=("channels",),
)
async def channel_events(request: Request) -> Response:
    """``POST /v1/channels/{type}/events``: Slack's Events API for an attached SlackChannel.

    The Slack signature is the credential (Slack holds no bearer token): the channel verifies
    it and answers 401 when it is missing, wrong or stale.
    """
    from ..channels import SlackChannel

    gw = _gateway(request)
    ct: str = request.path_params["channel_type"]
    channel = gw.channels.get(ct) if gw.channels is not None else None
    if not isinstance(channel, SlackChannel):
        raise ApiError(404, "no_channel", f"no SlackChannel {ct!r} is attached")
    body = await _read_body(gw, request)
    status, answer = await channel.handle_request(request.headers, body)
    if status == 401:
        gw.metrics.rejected.labels("unauthorized").inc()
    elif status == 200 and answer.get("ok") and answer.keys() == {"ok"}:  # published one
        gw.metrics.published.inc()
    return _JSON(answer, status_code=status)


@describe(
    "The dashboard page",
    grant="none",
    ok={200: ("the dashboard", {"type": "string"})},
    media="text/html",
    tags=("meta",),
)
async def dashboard(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


# -- errors ------------------------------------------------------------------------------------


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _JSON(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    body = {"error": {"code": code, "message": str(exc.detail)}}
    return _JSON(body, status_code=exc.status_code, headers=exc.headers)


# -- the factory -------------------------------------------------------------------------------


def create_app(
    bus: Bus,
    *,
    tokens: TokenSet | str | Path | None = None,
    state_manager: Any = None,
    channels: ChannelManager | None = None,
    max_body: int | None = None,
    own_bus: bool = False,
    event_types: Iterable[type[Event]] | None = None,
    queue_size: int = 1000,
    keepalive: float = 15.0,
    allowed_hosts: Iterable[str] | None = None,
    allowed_origins: Iterable[str] = (),
    feed_bytes: int = 8 * 1024 * 1024,
    max_feeds_per_token: int = 256,
    frame_rate: float = 50.0,
    frame_burst: float = 100.0,
    body_timeout: float = 30.0,
    shed_lag: float = 1.0,
) -> Starlette:
    """The gateway as an ASGI app (Starlette) on ``bus``.

    >>> app = create_app(bus, tokens="tokens.json", state_manager=states, channels=manager)
    >>> uvicorn.run(app, host="127.0.0.1", port=8765)

    ``tokens``: a :class:`TokenSet` or the path of a tokens file; ``None`` is open access (bind
    to 127.0.0.1 only). ``state_manager``: an :class:`axonbus.agent.StateManager` for
    ``/v1/sessions``; ``channels``: a :class:`ChannelManager` for ``/v1/channels`` and the
    WebSocket / webhook channels. ``max_body``: the largest accepted body or WebSocket frame
    in bytes (default ``bus.max_message_bytes``). ``own_bus``: start the bus on startup and
    close it on shutdown (by default the caller owns it). ``event_types``: the typed events
    recognised by topic (default: the agent vocabulary and channel messages). ``queue_size``:
    the events each pattern's shared ring keeps (a slower live client loses the oldest).
    ``keepalive``: seconds of silence before an SSE keep-alive comment.

    Hardening (see ``docs/security.md``): ``allowed_hosts``: the ``Host`` names answered
    (default: loopback names without tokens, any with tokens; ``"*"`` any). ``allowed_origins``:
    browser origins allowed besides the gateway's own (``"*"`` any). ``feed_bytes``: the bytes
    of events each pattern's ring holds. ``max_feeds_per_token``: open SSE streams plus
    WebSocket subscriptions per token. ``frame_rate`` / ``frame_burst``: WebSocket frames per
    second per connection. ``body_timeout``: seconds to receive a request body (408 after).
    ``shed_lag``: publishes and requests are answered 503 with ``Retry-After`` while the event
    loop runs more than this many seconds late.
    """
    if isinstance(tokens, str | Path):
        tokens = load_tokens(tokens)
    if max_body is None:
        max_body = bus.max_message_bytes
    if max_body < 1 or queue_size < 1 or keepalive <= 0:
        raise ValueError("max_body and queue_size must be >= 1, keepalive > 0")
    if feed_bytes < 1 or max_feeds_per_token < 1 or frame_rate <= 0 or frame_burst < 1:
        raise ValueError("feed_bytes, max_feeds_per_token, frame_burst >= 1, frame_rate > 0")
    if not body_timeout > 0 or not shed_lag > 0:
        raise ValueError("body_timeout and shed_lag must be > 0")
    if allowed_hosts is None and tokens is None:
        allowed_hosts = LOOPBACK_HOSTS
    if isinstance(allowed_hosts, str) or isinstance(allowed_origins, str):
        raise TypeError("allowed_hosts and allowed_origins take a list of names")
    install_log_filters()
    gateway = Gateway(
        bus,
        tokens=tokens,
        state_manager=state_manager,
        channels=channels,
        max_body=max_body,
        event_types=default_event_types() if event_types is None else event_types,
        queue_size=queue_size,
        keepalive=keepalive,
        feed_bytes=feed_bytes,
        max_feeds_per_token=max_feeds_per_token,
        frame_rate=frame_rate,
        frame_burst=frame_burst,
        shed_lag=shed_lag,
        body_timeout=body_timeout,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway.closing = asyncio.Event()  # this loop's; a restarted app streams again
        if own_bus:
            await bus.start()
        watcher = asyncio.get_running_loop().create_task(gateway.watch_lag())
        try:
            yield
        finally:
            watcher.cancel()
            gateway.close_feeds()
            gateway.hubs.close()
            if own_bus:
                await bus.close()

    routes = [
        Route("/", dashboard, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", get_metrics, methods=["GET"]),
        Route("/v1/publish", publish, methods=["POST"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/asyncapi.json", asyncapi_json, methods=["GET"]),
        Route("/v1/publish/{topic}", publish, methods=["POST"]),
        Route("/v1/request/{topic}", request_reply, methods=["POST"]),
        Route("/v1/events", stream_events, methods=["GET"]),
        Route("/v1/stats", get_stats, methods=["GET"]),
        Route("/v1/channels", list_channels, methods=["GET"]),
        Route("/v1/channels/{channel_type}/in", webhook_in, methods=["POST"]),
        Route("/v1/channels/{channel_type}/events", channel_events, methods=["POST"]),
        Route("/v1/sessions", list_sessions, methods=["GET"]),
        Route("/v1/sessions/{session_id}", get_session, methods=["GET"]),
        Route("/v1/agui/{agent}", agui_run, methods=["POST"]),
        WebSocketRoute("/v1/ws", websocket),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = GatewayApp(
        routes=routes,
        middleware=[
            Middleware(AccessLog, metrics=gateway.metrics),  # outermost: counts refusals too
            Middleware(
                Guard,
                allowed_hosts=None if allowed_hosts is None else tuple(allowed_hosts),
                allowed_origins=tuple(allowed_origins),
                metrics=gateway.metrics,
            ),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.cloudevents = sse_encoder(bus.name)  # decodes POSTed CloudEvents too
    return app
