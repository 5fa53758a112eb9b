"""``GET /v1/events``: Server-Sent Events.

Each event is::

    id: 42                      (the log offset on sqlite:// / postgresql://, else the event id)
    event: agent.s1.token       (the topic)
    data: {"topic": ..., "id": ..., "timestamp": ..., "event": ..., "offset": 42}

A comment (``: keep-alive``) goes out every ``keepalive`` seconds of silence. When a slow client
lost events (live feeds only), an ``event: dropped`` with ``{"dropped": n, "total": t}`` says how
many, before the next event. An event that cannot be encoded as JSON is skipped for this
client and reported as ``event: skipped`` with ``{"id", "topic", "reason", "total"}``; the stream
goes on. A ``Last-Event-ID`` past the newest event is clamped to it, and a ``: …`` comment right
after the opening one says so. ``HEAD /v1/events`` checks the request and answers the headers
only, without opening a feed.

``?format=cloudevents``: each ``data:`` is the event as a structured CloudEvent (JSON, the
mapping of ``wire="cloudevents"``; the gateway's process is its ``source``), ``id:`` and
``event:`` as above.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from .._cloudevents import CloudEvents
from ._auth import AccessToken
from ._cloudevents import encode_for_sse
from ._errors import ApiError
from ._feeds import Feed
from ._payload import dumps

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from ._core import Gateway

__all__ = ["HANDOFF", "STREAM", "EventSourceResponse", "open_event_source"]

#: scope key: the app running the middleware stack will run the stream after it (GatewayApp)
HANDOFF = "axonbus.handoff"
#: scope key: the SSE stream or WebSocket session to run, left there by its route
STREAM = "axonbus.stream"


HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
]


async def open_event_source(gateway: Gateway, request: Request) -> EventSourceResponse | Response:
    """Check the request, open its feed, and return the streaming response."""
    token = gateway.authenticate(request)
    pattern = request.query_params.get("pattern") or ">"
    gateway.check_subscribe(token, pattern)
    form = request.query_params.get("format") or "axonbus"
    if form not in ("axonbus", "cloudevents"):
        raise ApiError(400, "invalid_format", "format must be 'axonbus' or 'cloudevents'")
    wire = request.app.state.cloudevents if form == "cloudevents" else None
    if request.method == "HEAD":
        return Response(headers={k.decode(): v.decode() for k, v in HEADERS})
    gateway.check_feeds(token)
    last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    feed = await gateway.hubs.open(pattern, last_event_id=last)
    return EventSourceResponse(gateway, feed, token, wire)


class EventSourceResponse:
    """A streaming ASGI response that writes a feed as SSE until the client goes away, the
    feed ends (the bus closed) or the gateway shuts down; the feed is closed in every case.

    The stream is written by the request's own task; a second task waits for the client's
    disconnect and stops it. Keep-alives come from one sweep per gateway (:func:`keep_alive`)
    rather than a timer per client: an idle client costs two parked tasks and no timer.
    """

    def __init__(
        self, gateway: Gateway, feed: Feed, token: AccessToken, wire: CloudEvents | None = None
    ) -> None:
        self.gateway = gateway
        self.feed = feed
        self.token = token
        self.wire = wire  # ?format=cloudevents: each event as a structured CloudEvent
        self.sent_at = 0.0  # loop time of the last chunk sent
        self._task: asyncio.Task[Any] | None = None
        self._stopping = False  # cancel() was called: the task's cancellation is ours
        self._finished = False

    def cancel(self) -> None:
        """Stop writing (the client left, or the gateway shuts down)."""
        task = self._task
        if task is not None and not self._finished and not self._stopping:
            self._stopping = True
            task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get(HANDOFF):
            # The app that called the middleware stack runs the stream once the stack has
            # returned (see GatewayApp): the response head still goes through every middleware
            # (security headers, access log), the events do not, and an idle client does not
            # hold a dozen middleware frames.
            try:
                await self._start(send)
            except BaseException:
                self.feed.close()
                raise
            scope[STREAM] = self
            return
        await self._start(send)
        await self.run(receive, send)

    async def _start(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})

    async def run(self, receive: Receive, send: Send) -> None:
        """Write the stream (after its head) until the client leaves or the feed ends."""
        gw = self.gateway
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        gw.track("sse", self.token, self.feed)
        gw.metrics.sse_clients.inc()
        gw.writers.add(self)
        keep_alive(gw, loop)
        watcher = loop.create_task(self._watch(receive))
        try:
            await self._write(send)
        except asyncio.CancelledError:
            task = self._task
            if not self._stopping or task is None or task.uncancel() > 0:
                raise  # not (only) ours: a real cancellation
        except OSError:
            pass  # the client left
        finally:
            self._finished = True
            watcher.cancel()
            gw.writers.discard(self)
            self.feed.close()
            gw.untrack(self.feed)
            gw.metrics.sse_clients.dec()

    async def _watch(self, receive: Receive) -> None:
        """Wait for the client to go away, then stop the writer."""
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except asyncio.CancelledError:
            return  # the response ended first
        except Exception:
            pass  # the connection failed: stop writing all the same
        self.cancel()

    async def _write(self, send: Send) -> None:
        gw = self.gateway
        feed = self.feed
        mode = "log" if feed.resumable else "live"
        hello = f"retry: 2000\n: axonbus {mode} stream of {feed.pattern}\n"
        if feed.notice:
            hello += f": {feed.notice}\n"
        await send(
            {"type": "http.response.body", "body": hello.encode() + b"\n", "more_body": True}
        )
        reported = 0
        skipped = 0
        loop = asyncio.get_running_loop()
        self.sent_at = loop.time()
        while True:
            try:
                item = await feed.next(None)  # keep_alive() interrupts it when one is due
            except TimeoutError:
                chunk = b": keep-alive\n\n"
            else:
                if item is None:
                    break
                env = item.env
                if not self.token.sees(env.topic):
                    continue
                parts = []
                dropped = feed.dropped
                if dropped > reported:
                    gw.metrics.stream_dropped.inc(dropped - reported)
                    info = dumps({"dropped": dropped - reported, "total": dropped})
                    parts.append(b"event: dropped\ndata: " + info + b"\n\n")
                    reported = dropped
                record, error = item.record, item.error
                if self.wire is not None and record is not None:
                    record, error = encode_for_sse(self.wire, env)
                if record is None:
                    ident = str(env.offset if env.offset is not None else env.id)
                    skipped += 1
                    gw.metrics.stream_skipped.inc()
                    info = dumps(
                        {"id": env.id, "topic": env.topic, "reason": error, "total": skipped}
                    )
                    parts.append(f"id: {ident}\nevent: skipped\ndata: ".encode() + info + b"\n\n")
                else:
                    if self.wire is None:
                        parts.append(item.sse)  # made once for every client of the pattern
                    else:
                        ident = str(env.offset if env.offset is not None else env.id)
                        parts.append(
                            f"id: {ident}\nevent: {env.topic}\ndata: ".encode() + record + b"\n\n"
                        )
                    gw.metrics.streamed.inc()
                chunk = b"".join(parts)
            self.sent_at = loop.time()
            item = None  # not held while the client is idle: the event may leave the ring
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def keep_alive(gateway: Gateway, loop: asyncio.AbstractEventLoop) -> None:
    """Start the gateway's keep-alive sweep if it is not running: every ``keepalive / 4``
    seconds, each SSE stream silent for ``keepalive`` seconds or more is interrupted to send a
    comment. One timer for every client instead of one per client and event."""
    if gateway.keepalive_timer is not None:
        return
    tick = gateway.keepalive / 4

    def sweep() -> None:
        gateway.keepalive_timer = None
        if not gateway.writers or loop.is_closed():
            return
        due = loop.time() - gateway.keepalive
        for response in gateway.writers:
            if response.sent_at <= due:
                response.sent_at = loop.time()  # once per silence: not again next sweep
                response.feed.interrupt()
        gateway.keepalive_timer = loop.call_later(tick, sweep)

    gateway.keepalive_timer = loop.call_later(tick, sweep)
