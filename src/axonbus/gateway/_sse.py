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
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from .._cloudevents import CloudEvents
from ._auth import AccessToken
from ._cloudevents import encode_for_sse
from ._errors import ApiError
from ._feeds import Feed
from ._payload import dumps

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send

    from ._core import Gateway

__all__ = ["EventSourceResponse", "open_event_source"]


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
    feed ends (the bus closed) or the gateway shuts down; the feed is closed in every case."""

    def __init__(
        self, gateway: Gateway, feed: Feed, token: AccessToken, wire: CloudEvents | None = None
    ) -> None:
        self.gateway = gateway
        self.feed = feed
        self.token = token
        self.wire = wire  # ?format=cloudevents: each event as a structured CloudEvent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gateway
        gw.track("sse", self.token, self.feed)
        gw.metrics.sse_clients.inc()
        writer = asyncio.get_running_loop().create_task(self._write(send))
        gw.writers.add(writer)
        writer.add_done_callback(gw.writers.discard)
        receiving: asyncio.Future[Message] | None = None
        try:
            while not writer.done():
                receiving = asyncio.ensure_future(receive())
                await asyncio.wait({writer, receiving}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    break
                if receiving.result()["type"] == "http.disconnect":
                    break
        finally:
            if receiving is not None:
                receiving.cancel()
            writer.cancel()
            self.feed.close()
            gw.untrack(self.feed)
            gw.metrics.sse_clients.dec()
            await asyncio.wait({writer})  # see WebSocketSession._cleanup for why not `await`
        error = None if writer.cancelled() else writer.exception()
        if error is not None and not isinstance(error, OSError):  # OSError: the client left
            raise error

    async def _write(self, send: Send) -> None:
        gw = self.gateway
        feed = self.feed
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        mode = "log" if feed.resumable else "live"
        hello = f"retry: 2000\n: axonbus {mode} stream of {feed.pattern}\n"
        if feed.notice:
            hello += f": {feed.notice}\n"
        await send(
            {"type": "http.response.body", "body": hello.encode() + b"\n", "more_body": True}
        )
        reported = 0
        skipped = 0
        while True:
            try:
                item = await feed.next(gw.keepalive)
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
                ident = str(env.offset if env.offset is not None else env.id)
                record, error = item.record, item.error
                if self.wire is not None and record is not None:
                    record, error = encode_for_sse(self.wire, env)
                if record is None:
                    skipped += 1
                    gw.metrics.stream_skipped.inc()
                    info = dumps(
                        {"id": env.id, "topic": env.topic, "reason": error, "total": skipped}
                    )
                    parts.append(f"id: {ident}\nevent: skipped\ndata: ".encode() + info + b"\n\n")
                else:
                    parts.append(
                        f"id: {ident}\nevent: {env.topic}\ndata: ".encode() + record + b"\n\n"
                    )
                    gw.metrics.streamed.inc()
                chunk = b"".join(parts)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
