"""The web gateway: the bus over HTTP, Server-Sent Events and WebSocket, with a live dashboard.

Needs the ``gateway`` extra (``pip install 'axonbus[gateway]'``: starlette, uvicorn, httpx,
prometheus-client, websockets)::

    axonbus serve                          # demo agent on an in-process bus, 127.0.0.1:8765
    axonbus serve --url sqlite:///events.db --tokens tokens.json --host 0.0.0.0
    axonbus serve --config axonbus.toml    # bus, channels, tokens, observability from a file

    app = create_app(bus, tokens="tokens.json", state_manager=states, channels=manager)
    await serve(bus, port=8765)            # or run `app` on any ASGI server

Routes
------
- ``POST /v1/publish/{topic}``: the JSON body is the payload. Answers
  ``{"id", "topic", "offset"}`` (``offset`` after ``?flush=true`` on a bus with a log, else
  null). ``?type=<event name>`` validates it as that :class:`~axonbus.Event` class (422 if it
  does not); without it a JSON object sent to a topic of a known event class (the agent
  vocabulary, channel messages) becomes that class when it validates, with the topic's fields
  filled in: ``POST /v1/publish/agent.s1.user_input {"text": "hi"}`` publishes
  ``UserInput(session_id="s1", text="hi")``. Headers ``traceparent``, ``tracestate``,
  ``Idempotency-Key`` and ``X-Axonbus-Header-<name>`` travel as event headers (the key
  scoped as ``"<token name>/<topic>/<key>"``, so one token's key never suppresses another
  token's event or one on another topic); ``X-Correlation-ID`` sets the correlation id.
- ``POST /v1/request/{topic}?timeout=30``: ``bus.request``; answers ``{"topic", "reply"}``;
  504 ``request_timeout``, 503 ``no_responders``, 502 ``remote_error`` (with ``type`` and
  ``message`` of the responder's exception).
- ``GET /v1/events?pattern=agent.>``: Server-Sent Events. ``id:`` is the log offset when the
  bus keeps a log (sqlite://, postgresql://), else the event id; ``event:`` the topic;
  ``data:`` ``{"topic", "id", "timestamp", "event", "offset"?, "type"?}``. With a log,
  ``Last-Event-ID`` (header, or ``?last_event_id=``) resumes right after that offset, with no
  gap and no duplicate (an offset past the newest event is clamped to it, and said so);
  without one the stream is live only, and a client that falls behind its pattern's shared,
  bounded ring (``queue_size`` events, ``feed_bytes`` bytes) loses the oldest, reported as
  ``event: dropped`` ``{"dropped", "total"}``, so a slow client never slows the bus. An event
  that cannot be encoded is skipped for that client (``event: skipped``). A ``: keep-alive``
  comment every ``keepalive`` seconds. ``HEAD`` answers the headers only.
- ``GET /v1/ws``: WebSocket with JSON frames (``subscribe``, ``unsubscribe``, ``publish``,
  ``request``, ``message``, ``ping``); see :mod:`axonbus.gateway._ws` for every frame.
- ``GET /v1/stats``: bus info, ``bus.stats()`` per subscription, and the gateway's client
  feeds (pending, dropped). ``GET /v1/channels``: the ChannelManager's channels (404 without
  one). ``GET /v1/sessions`` and ``/v1/sessions/{id}``: the StateManager's ``RunState`` per
  session (404 without one). ``POST /v1/channels/{type}/in``: inbound for a
  :class:`WebhookChannel`. ``POST /v1/channels/{type}/events``: Slack's Events API for a
  :class:`~axonbus.channels.SlackChannel` (authenticated by the Slack signature).
- ``POST /v1/agui/{agent}``: an AG-UI run (the ``agui`` extra): a ``RunAgentInput`` in, AG-UI
  events out as Server-Sent Events, bridged to the :class:`axonbus.agent.agui.AgUiAgent` named
  ``agent`` on the bus (see ``docs/agui.md``).
- ``GET /metrics``: Prometheus text (per-app registry): ``axonbus_subscription_*`` from
  ``bus.stats()`` (delivered, failed, dropped, retried, timed_out, dead_lettered totals;
  queued, in_flight, maxsize gauges), ``axonbus_gateway_http_requests_total{method,route,
  status}``, request durations, published / streamed / stream_dropped / rejected counters,
  SSE and WebSocket client gauges.
- ``GET /healthz``: ``{"status", "bus", "transport", "log", "auth"}``; 503 unless the bus is
  started. ``GET /``: the dashboard; ``/static/*`` its files.

Errors are JSON ``{"error": {"code", "message", ...}}``: 400 bad topic / JSON / Host / a body
nested too deep, 401 missing or unknown token, 403 pattern not allowed or another Origin, 404,
408 a body too slow, 413 body over ``max_body``, 415 a body not declared JSON, 422 invalid
typed event (or a field that disagrees with its topic), 429 over a rate (``Retry-After``), 502 /
503 / 504 as above, 503 ``overloaded`` (``Retry-After``) while the server runs late.

Security
--------
The threat model and every setting are in ``docs/security.md``. Bearer tokens come from a tokens
file (:func:`load_tokens`, JSON or TOML; secrets of at least 128 bits, ``axonbus token new``)::

    {"tokens": [{"name": "ui", "token": "…", "publish": ["agent.*.user_input"],
                 "subscribe": ["agent.>"], "deny": ["$bus.>"], "rate": 50, "metrics": false}]}

``Authorization: Bearer <token>``, or ``?token=`` on GET and the WebSocket handshake only, where a
browser cannot set headers (EventSource, WebSocket); a POST with ``?token=`` is refused.
Publishing (and requests) need a ``publish`` pattern matching the topic; subscribing needs a
``subscribe`` pattern covering the requested pattern; ``deny`` always wins, and events on denied
topics are filtered out of wider subscriptions. ``rate`` counts publishes and requests (HTTP and
WebSocket ``publish`` / ``request`` / ``message`` frames) per second, a token bucket of ``burst``
(default ``rate``); reads are not counted. ``/metrics`` needs ``metrics: true``; ``/v1/stats``
shows a token only what it could subscribe to. Failed authentication is throttled per client
address, WebSocket frames per connection. Secrets are compared with :func:`hmac.compare_digest`
and never logged (uvicorn's own lines included, in any spelling of ``token=``) or shown in a repr.

Requests from another ``Origin`` and for another ``Host`` are refused (``allowed_origins``,
``allowed_hosts``), POST bodies must be JSON, and every answer carries CSP, frame and nosniff
headers. **Without a tokens file the gateway is open to local processes**: it answers loopback
host names only, and :func:`serve` / ``axonbus serve`` bind 127.0.0.1 by default and refuse a
host beyond loopback without tokens unless ``insecure=True`` (``--insecure``).

Dashboard element ids
---------------------
Stable ids (each element also has ``data-testid`` with the same value) for browser tests:

- header: ``bus-info``, ``connection-status`` (``data-state`` = connecting / connected /
  error), ``token-form``, ``token-input``, ``token-save`` (shown when the gateway needs a token;
  the token is kept in localStorage).
- chat: ``session-input`` (default ``s1``), ``run-status`` (``data-status`` = idle /
  thinking / acting / interrupted / done / cancelled / error), ``chat-log``, ``chat-form``,
  ``chat-input``, ``chat-send``, ``interrupt-button``, ``resume-button``, ``cancel-button``,
  ``chat-error``. Messages in ``chat-log`` have ``data-testid="chat-message"``, ``data-role``
  = user / agent / system, agent ones ``data-state`` = streaming / done / cancelled / error
  and ``data-run-id``; their text is in ``[data-testid=chat-text]``, tool calls and results in
  ``[data-testid=tool-line]``, thinking in ``[data-testid=thinking-line]``.
- live events: ``event-count``, ``event-filter-form``, ``event-filter`` (a topic pattern,
  default ``>``), ``event-filter-apply``, ``event-pause`` (``aria-pressed``), ``event-clear``,
  ``event-dropped``, ``event-error`` (why the gateway refused the pattern), ``event-stream``;
  rows ``data-testid="event-row"`` with ``data-topic``, ``data-id`` and ``data-offset``
  (with a log).
- ``subscriptions-body``: rows ``data-testid="subscription-row"``, ``data-name``, cells with
  ``data-field`` = name / pattern / queued / delivered / failed / dropped; ``clients-body``:
  rows ``data-testid="client-row"``.
- ``sessions-body``: rows ``data-testid="session-row"`` with ``data-session`` and
  ``data-status`` (click one to chat in it); ``sessions-note``.
- ``channels-list``: items ``data-testid="channel-row"`` with ``data-channel`` and
  ``data-state``; ``channels-note``.
- ``body[data-ready="true"]`` once the page has wired itself up.

The page publishes ``{"text": …}`` to ``agent.{session}.user_input`` and ``Interrupt`` /
``Resume`` / ``Cancel`` to ``agent.{session}.interrupt|resume|cancel`` with ``POST
/v1/publish``, streams ``agent.{session}.>`` and the filter pattern over ``/v1/events``, and
polls ``/v1/stats``, ``/v1/sessions`` and ``/v1/channels`` every second.
"""

from ._app import create_app
from ._auth import AccessToken, RateLimiter, TokenSet, load_tokens
from ._channels import (
    WebhookChannel,
    WebhookDeliveryFailed,
    WebSocketChannel,
    sign,
    verify,
)
from ._errors import ApiError, BindError, InsecureBind, InvalidEvent, TopicMismatch
from ._openapi import openapi_document
from ._server import GatewayServer, is_loopback, serve

__all__ = [
    "AccessToken",
    "ApiError",
    "BindError",
    "GatewayServer",
    "InsecureBind",
    "InvalidEvent",
    "RateLimiter",
    "TokenSet",
    "TopicMismatch",
    "WebSocketChannel",
    "WebhookChannel",
    "WebhookDeliveryFailed",
    "create_app",
    "is_loopback",
    "load_tokens",
    "openapi_document",
    "serve",
    "sign",
    "verify",
]
