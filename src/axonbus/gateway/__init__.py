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
  ``Idempotency-Key`` and ``X-Axonbus-Header-<name>`` travel as event headers;
  ``X-Correlation-ID`` sets the correlation id.
- ``POST /v1/request/{topic}?timeout=30``: ``bus.request``; answers ``{"topic", "reply"}``;
  504 ``request_timeout``, 503 ``no_responders``, 502 ``remote_error`` (with ``type`` and
  ``message`` of the responder's exception).
- ``GET /v1/events?pattern=agent.>``: Server-Sent Events. ``id:`` is the log offset when the
  bus keeps a log (sqlite://, postgresql://), else the event id; ``event:`` the topic;
  ``data:`` ``{"topic", "id", "timestamp", "event", "offset"?, "type"?}``. With a log,
  ``Last-Event-ID`` (header, or ``?last_event_id=``) resumes right after that offset, with no
  gap and no duplicate; without one the stream is live only, through a bounded
  ``drop_oldest`` queue per client (``queue_size``) so a slow client never slows the bus:
  losses are reported as ``event: dropped`` ``{"dropped", "total"}``. A ``: keep-alive``
  comment every ``keepalive`` seconds.
- ``GET /v1/ws``: WebSocket with JSON frames (``subscribe``, ``unsubscribe``, ``publish``,
  ``request``, ``message``, ``ping``); see :mod:`axonbus.gateway._ws` for every frame.
- ``GET /v1/stats``: bus info, ``bus.stats()`` per subscription, and the gateway's client
  feeds (pending, dropped). ``GET /v1/channels``: the ChannelManager's channels (404 without
  one). ``GET /v1/sessions`` and ``/v1/sessions/{id}``: the StateManager's ``RunState`` per
  session (404 without one). ``POST /v1/channels/{type}/in``: inbound for a
  :class:`WebhookChannel`. ``POST /v1/channels/{type}/events``: Slack's Events API for a
  :class:`~axonbus.channels.SlackChannel` (authenticated by the Slack signature).
- ``GET /metrics``: Prometheus text (per-app registry): ``axonbus_subscription_*`` from
  ``bus.stats()`` (delivered, failed, dropped, retried, timed_out, dead_lettered totals;
  queued, in_flight, maxsize gauges), ``axonbus_gateway_http_requests_total{method,route,
  status}``, request durations, published / streamed / stream_dropped / rejected counters,
  SSE and WebSocket client gauges.
- ``GET /healthz``: ``{"status", "bus", "transport", "log", "auth"}``; 503 unless the bus is
  started. ``GET /``: the dashboard; ``/static/*`` its files.

Errors are JSON ``{"error": {"code", "message", ...}}``: 400 bad topic / JSON, 401 missing or
unknown token, 403 pattern not allowed, 404, 413 body over ``max_body``, 422 invalid typed
event, 429 over the token's rate (``Retry-After``), 502 / 503 / 504 as above.

Security
--------
Bearer tokens come from a tokens file (:func:`load_tokens`, JSON or TOML)::

    {"tokens": [{"name": "ui", "token": "…", "publish": ["agent.*.user_input"],
                 "subscribe": ["agent.>"], "deny": ["$bus.>"], "rate": 50}]}

``Authorization: Bearer <token>``, or ``?token=`` where a browser cannot set headers
(EventSource, WebSocket). Publishing (and requests) need a ``publish`` pattern matching the
topic; subscribing needs a ``subscribe`` pattern covering the requested pattern; ``deny``
always wins, and events on denied topics are filtered out of wider subscriptions. ``rate``
is HTTP requests plus WebSocket subscribe / publish / request / message frames per second,
a token bucket of ``burst`` (default ``rate``); ``/metrics`` and ``/healthz`` are not
counted. Secrets are compared with :func:`hmac.compare_digest` and never logged or shown in
a repr; :func:`serve` turns uvicorn's access log off and logs requests on
``axonbus.gateway.access`` with ``token=`` redacted.

**Without a tokens file the gateway is open to anyone who can reach it.** :func:`serve` and
``axonbus serve`` therefore bind 127.0.0.1 by default and refuse a host beyond loopback
without tokens unless ``insecure=True`` (``--insecure``).

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
from ._server import GatewayServer, InsecureBind, is_loopback, serve

__all__ = [
    "AccessToken",
    "GatewayServer",
    "InsecureBind",
    "RateLimiter",
    "TokenSet",
    "WebSocketChannel",
    "WebhookChannel",
    "WebhookDeliveryFailed",
    "create_app",
    "is_loopback",
    "load_tokens",
    "serve",
    "sign",
    "verify",
]
