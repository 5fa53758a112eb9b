"""``GET /v1/ws``: one WebSocket, JSON text frames both ways.

Client frames (``id`` is optional and comes back as ``ref`` in the answer)::

    {"op": "subscribe", "pattern": "agent.s1.>", "last_event_id": "41", "id": 1}
    {"op": "unsubscribe", "pattern": "agent.s1.>", "id": 2}
    {"op": "publish", "topic": "agent.s1.user_input", "event": {"text": "hi"}, "type": null,
     "headers": {}, "id": 3}
    {"op": "request", "topic": "math.add", "event": {"a": 1, "b": 2}, "timeout": 5, "id": 4}
    {"op": "message", "channel": "web", "content": "hi", "metadata": {}, "id": 5}
    {"op": "ping", "id": 6}

Server frames::

    {"op": "ready", "token": "ui", "log": false, "max_frame": 1048576}
    {"op": "subscribed", "ref": 1, "pattern": "agent.s1.>", "resumable": false,
     "notice": null}                                   (notice: a clamped last_event_id)
    {"op": "event", "pattern": "agent.s1.>", "topic": ..., "id": ..., "timestamp": ...,
     "event": ..., "offset": 42, "type": "axonbus.agent.Token"}
    {"op": "dropped", "pattern": "agent.s1.>", "dropped": 3, "total": 10}
    {"op": "skipped", "pattern": "agent.s1.>", "id": ..., "topic": ..., "reason": ...,
     "total": 1}                                       (an event that cannot be encoded)
    {"op": "unsubscribed", "ref": 2, "pattern": "agent.s1.>"}
    {"op": "published", "ref": 3, "id": ..., "topic": ...}
    {"op": "reply", "ref": 4, "reply": 3}
    {"op": "sent", "ref": 5, "id": "<ChannelMessage.id>", "topic": "channel.web.in",
     "user_id": "ui", "replies": true}
    {"op": "message", "channel": "web", "user_id": "u1", "content": ..., "reply_to": ...,
     "metadata": {}}                                   (a reply through a WebSocketChannel)
    {"op": "pong", "ref": 6}
    {"op": "error", "ref": 3, "status": 403, "code": "forbidden", "message": ...}

Errors use the HTTP status codes of the REST routes. A connection without a valid token (when
tokens are configured) gets an ``error`` frame, then is closed with code 4401.

The ``user_id`` of a ``message`` is the token's name (with a tokens file), else one made for
the connection; a frame cannot choose it (a different ``user_id`` in the frame is refused with
403). Replies come back only to connections whose token may subscribe to the channel's
outbound topic (``"replies": false`` in ``sent`` otherwise). ``publish``, ``request`` and
``message`` frames spend the token's ``rate``; every other frame (``ping``, ``subscribe``,
``unsubscribe``, malformed ones) counts against a per-connection rate (``frame_rate`` per
second, ``frame_burst`` at once): over it a frame is answered 429 unhandled, and a connection
that keeps going for a whole burst is closed with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING, Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ._auth import RateLimiter
from ._errors import ApiError
from ._feeds import Feed
from ._payload import dumps, jsonable

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Send

    from ._auth import AccessToken
    from ._core import Gateway

__all__ = ["WebSocketSession"]

logger = logging.getLogger("axonbus.gateway")

MAX_REQUEST_TIMEOUT = 300.0
MAX_SUBSCRIPTIONS = 64
#: frames that spend the token's ``rate``; every other frame counts against the connection's
TOKEN_RATED = frozenset({"publish", "request", "message"})


class WebSocketSession:
    """One connected WebSocket client: its token, subscriptions and in-flight requests."""

    def __init__(self, gateway: Gateway, websocket: WebSocket) -> None:
        self.gateway = gateway
        self.ws = websocket
        self.token: AccessToken | None = None
        self.subscriptions: dict[str, tuple[Feed, asyncio.Task[None]]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self._send_lock = asyncio.Lock()
        self.channels: set[Any] = set()  # WebSocketChannels this client talks through
        self.over_rate = 0  # frames refused in a row for the connection's frame rate
        self._user_id: str | None = None
        self._task: asyncio.Task[Any] | None = None
        self._waiting = False  # the receive loop waits for a frame
        self._interrupted = False  # going_away cancelled that wait

    def __repr__(self) -> str:
        name = self.token.name if self.token else "?"
        return f"<WebSocketSession token={name!r} subscriptions={list(self.subscriptions)}>"

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame (serialised: several tasks write to one socket)."""
        if self.ws.application_state is not WebSocketState.CONNECTED:
            return
        data = dumps(frame).decode()
        async with self._send_lock:
            await self.ws.send_text(data)

    async def run(self) -> None:
        if await self.open():
            await self.serve()

    async def open(self) -> bool:
        """Accept the WebSocket and check its token; False (the socket closed) when refused."""
        await self.ws.accept()
        try:
            self.token = self.gateway.authenticate(self.ws, spend=False)  # frames counted instead
        except ApiError as exc:
            await self.send_frame(_error_frame(exc, None))
            await self.ws.close(code=4000 + exc.status)
            return False
        return True

    def rebind(self, receive: Receive, send: Send) -> None:
        """Go on with the server's own ``receive`` / ``send`` (the app that called the
        middleware stack runs the session once the stack returned, see GatewayApp: an idle
        client then holds no middleware frames)."""
        ws = WebSocket(self.ws.scope, receive, send)
        ws.client_state = ws.application_state = WebSocketState.CONNECTED
        self.ws = ws

    async def serve(self) -> None:
        """The session after :meth:`open`: the ``ready`` frame, then frames until it ends."""
        gw = self.gateway
        assert self.token is not None
        gw.metrics.ws_clients.inc()
        try:
            await self.send_frame(
                {"op": "ready", "token": self.token.name, "log": gw.has_log,
                 "max_frame": gw.max_body}
            )  # fmt: skip
            await self._receive_loop()
        finally:
            gw.metrics.ws_clients.dec()
            await self._cleanup()

    async def _receive_loop(self) -> None:
        # Frames are received in this task itself (a task and an asyncio.wait per frame cost a
        # tenth of a publish round trip). When the gateway closes (server shutdown) while this
        # task waits for a frame, `going_away` interrupts the wait by cancelling this task, and
        # the loop ends with 1001; a frame being handled is answered first.
        gw = self.gateway
        closing = gw.closing
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        gw.sessions.add(self)  # close_feeds() calls going_away (no watcher task per client)
        try:
            while not closing.is_set():
                self._waiting = True
                try:
                    message: Message = await self.ws.receive()
                except asyncio.CancelledError:
                    # ours (and nobody else's: then it goes on) or a real cancellation
                    if self._interrupted and task.uncancel() == 0:
                        break
                    raise
                finally:
                    self._waiting = False
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None and message.get("bytes") is not None:
                    text = message["bytes"].decode("utf-8", errors="replace")
                if not await self._handle(text or ""):
                    break
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.ws.close(code=1001)  # going away: the server shuts down
        finally:
            gw.sessions.discard(self)

    def going_away(self) -> None:
        """The server shuts down: interrupt the wait for a frame (a frame being handled is
        answered first, then the loop sees ``closing``)."""
        task = self._task
        if self._waiting and not self._interrupted and task is not None:
            self._interrupted = True
            task.cancel()

    async def _within_rate(self) -> str:
        """Count one frame against the connection's rate: ``"ok"`` to handle it; over the rate
        ``"refused"`` (answered 429 instead), and ``"close"`` once a whole burst went over."""
        gw = self.gateway
        wait = gw.limiter.take_key(("ws", id(self)), gw.frame_rate, gw.frame_burst)
        if wait <= 0:
            self.over_rate = 0
            return "ok"
        self.over_rate += 1
        gw.metrics.rejected.labels("rate_limited").inc()
        if self.over_rate > gw.frame_burst:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(code=1008, reason="over the frame rate")
            return "close"
        retry_after = RateLimiter.retry_after(wait)
        error = ApiError(
            429,
            "rate_limited",
            f"over this connection's rate of {gw.frame_rate:g} frames/s",
            retry_after=float(retry_after),
        )
        await self.send_frame(_error_frame(error, None))
        return "refused"

    async def _handle(self, text: str) -> bool:
        """Answer one frame; False when the connection must close (a flood of frames)."""
        ref: Any = None
        size = len(text.encode())
        frame: Any = None
        if size <= self.gateway.max_body:
            with contextlib.suppress(orjson.JSONDecodeError):
                frame = orjson.loads(text)
        op = frame.get("op") if isinstance(frame, dict) else None
        if op not in TOKEN_RATED:  # those spend the token's own rate instead
            verdict = await self._within_rate()
            if verdict != "ok":
                return verdict != "close"
        try:
            self.gateway.check_size(size)
            if frame is None:
                try:
                    orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    raise ApiError(400, "invalid_json", f"frame is not JSON: {exc}") from None
            if not isinstance(frame, dict):
                raise ApiError(400, "invalid_frame", "a frame is a JSON object with an 'op'")
            ref = frame.get("id")
            handler = _OPS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise ApiError(400, "unknown_op", f"unknown op {op!r}; expected one of {_OP_NAMES}")
            await handler(self, frame, ref)
        except ApiError as exc:
            await self.send_frame(_error_frame(exc, ref))
        except Exception:  # a bug or an unexpected bus error: answer it, keep the socket
            logger.exception("gateway: WebSocket frame failed")
            await self.send_frame(_error_frame(_internal_error(), ref))
        return True

    def _spend(self) -> AccessToken:
        assert self.token is not None
        self.gateway.spend(self.token)
        return self.token

    # -- ops -----------------------------------------------------------------------------------

    async def _subscribe(self, frame: dict[str, Any], ref: Any) -> None:
        token = self.token
        assert token is not None
        pattern = _field(frame, "pattern", str)
        self.gateway.check_subscribe(token, pattern)
        if pattern not in self.subscriptions:
            if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
                raise ApiError(
                    429, "too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} per connection"
                )
            self.gateway.check_feeds(token)
            last = frame.get("last_event_id")
            opened = await self.gateway.hubs.open(
                pattern, last_event_id=str(last) if last is not None else None
            )
            self.gateway.track("websocket", token, opened)
            task = asyncio.get_running_loop().create_task(self._pump(pattern, opened))
            self.subscriptions[pattern] = (opened, task)
        feed = self.subscriptions[pattern][0]
        await self.send_frame(
            {"op": "subscribed", "ref": ref, "pattern": pattern, "resumable": feed.resumable,
             "notice": feed.notice}
        )  # fmt: skip

    async def _unsubscribe(self, frame: dict[str, Any], ref: Any) -> None:
        pattern = _field(frame, "pattern", str)
        self._drop_subscription(pattern)
        await self.send_frame({"op": "unsubscribed", "ref": ref, "pattern": pattern})

    async def _publish(self, frame: dict[str, Any], ref: Any) -> None:
        token = self._spend()
        topic = _field(frame, "topic", str)
        headers = frame.get("headers") or None
        if headers is not None and not (
            isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
        ):
            raise ApiError(400, "invalid_frame", "'headers' must map names to strings")
        env = await self.gateway.publish(
            token,
            topic,
            frame.get("event"),
            type_name=_optional(frame, "type", str),
            headers=headers,
            correlation_id=_optional(frame, "correlation_id", str),
        )
        await self.send_frame({"op": "published", "ref": ref, "id": env.id, "topic": env.topic})

    async def _request(self, frame: dict[str, Any], ref: Any) -> None:
        token = self._spend()
        topic = _field(frame, "topic", str)
        timeout = frame.get("timeout", 30.0)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= MAX_REQUEST_TIMEOUT
        ):
            raise ApiError(400, "invalid_frame", f"'timeout' must be in (0, {MAX_REQUEST_TIMEOUT}]")
        self.gateway.check_publish(token, topic)

        async def answer() -> None:
            try:
                reply = await self.gateway.request(
                    token, topic, frame.get("event"), timeout=float(timeout),
                    type_name=_optional(frame, "type", str),
                )  # fmt: skip
            except ApiError as exc:
                await self.send_frame(_error_frame(exc, ref))
            except Exception:
                logger.exception("gateway: request on %r failed", topic)
                await self.send_frame(_error_frame(_internal_error(), ref))
            else:
                await self.send_frame({"op": "reply", "ref": ref, "reply": jsonable(reply)})

        # a request may take long: answer it from its own task so other frames go on
        task = asyncio.get_running_loop().create_task(answer())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @property
    def user_id(self) -> str:
        """Who this connection speaks for in a WebSocketChannel: the token's name, or (open
        access, where every client holds the same token) an id made for this connection."""
        if self._user_id is None:
            gw = self.gateway
            assert self.token is not None
            self._user_id = (
                self.token.name if gw.tokens is not None else f"ws-{secrets.token_hex(8)}"
            )
        return self._user_id

    def may_receive(self, topic: str) -> bool:
        """May this connection receive an event on ``topic`` (its token's subscribe check)?"""
        token = self.token
        return token is not None and token.can_subscribe(topic) and token.sees(topic)

    async def _message(self, frame: dict[str, Any], ref: Any) -> None:
        token = self._spend()
        from ._channels import WebSocketChannel

        channel = WebSocketChannel.find(self.gateway.channels, _optional(frame, "channel", str))
        if channel is None:
            raise ApiError(404, "no_channel", "no WebSocketChannel of that type is attached")
        self.gateway.check_publish(token, channel.inbound_topic)
        content = _field(frame, "content", str)
        claimed = _optional(frame, "user_id", str)
        if claimed is not None and claimed != self.user_id:
            raise ApiError(
                403,
                "forbidden",
                "user_id comes from the connection's token; a frame cannot choose another",
            )
        metadata = frame.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ApiError(400, "invalid_frame", "'metadata' must be an object")
        self.gateway.check_depth(metadata)
        replies = self.may_receive(channel.outbound_topic)
        if replies:
            channel.connect(self.user_id, self)
            self.channels.add(channel)
        try:
            message = await channel.receive(self.user_id, content, **metadata)
        except Exception as exc:
            raise self.gateway.bus_error(exc) from exc
        await self.send_frame(
            {"op": "sent", "ref": ref, "id": message.id, "topic": channel.inbound_topic,
             "user_id": self.user_id, "replies": replies}
        )  # fmt: skip

    async def _ping(self, frame: dict[str, Any], ref: Any) -> None:
        await self.send_frame({"op": "pong", "ref": ref})

    # -- subscriptions -------------------------------------------------------------------------

    async def _pump(self, pattern: str, feed: Feed) -> None:
        token = self.token
        assert token is not None
        metrics = self.gateway.metrics
        reported = skipped = 0
        try:
            while True:
                item = await feed.next(None)
                if item is None:
                    break
                env = item.env
                if not token.sees(env.topic):
                    continue
                dropped = feed.dropped
                if dropped > reported:
                    metrics.stream_dropped.inc(dropped - reported)
                    await self.send_frame(
                        {"op": "dropped", "pattern": pattern, "dropped": dropped - reported,
                         "total": dropped}
                    )  # fmt: skip
                    reported = dropped
                if item.record is None:
                    skipped += 1
                    metrics.stream_skipped.inc()
                    await self.send_frame(
                        {"op": "skipped", "pattern": pattern, "id": env.id, "topic": env.topic,
                         "reason": item.error, "total": skipped}
                    )  # fmt: skip
                    continue
                # the frame is made once for every client of the pattern
                text = item.ws_text(pattern)
                item = None  # not held while the client is idle: the event may leave the ring
                await self.send_str(text)
                metrics.streamed.inc()
        except (WebSocketDisconnect, OSError, RuntimeError):
            return  # the client went away; the receive loop cleans up

    async def send_str(self, text: str) -> None:
        if self.ws.application_state is not WebSocketState.CONNECTED:
            return
        async with self._send_lock:
            await self.ws.send_text(text)

    def _drop_subscription(self, pattern: str) -> None:
        entry = self.subscriptions.pop(pattern, None)
        if entry is not None:
            feed, task = entry
            feed.close()
            task.cancel()
            self.gateway.untrack(feed)

    async def _cleanup(self) -> None:
        self.gateway.limiter.forget(("ws", id(self)))  # ids are reused: start the next afresh
        for channel in self.channels:
            channel.disconnect(self)
        pending = [task for _, task in self.subscriptions.values()] + list(self.tasks)
        for pattern in list(self.subscriptions):
            self._drop_subscription(pattern)
        for task in self.tasks:
            task.cancel()
        if pending:
            # asyncio.wait, not gather: if this task is cancelled meanwhile, the CancelledError
            # arrives at once (a gather would keep it waiting for the children, and anyio's
            # cancel scopes, e.g. Starlette's TestClient, would cancel it again and again)
            await asyncio.wait(pending)


def _field(frame: dict[str, Any], name: str, kind: type) -> Any:
    value = frame.get(name)
    if not isinstance(value, kind) or (kind is str and not value):
        raise ApiError(
            400, "invalid_frame", f"{frame.get('op')!r} needs {name!r} ({kind.__name__})"
        )
    return value


def _optional(frame: dict[str, Any], name: str, kind: type) -> Any:
    value = frame.get(name)
    if value is not None and not isinstance(value, kind):
        raise ApiError(400, "invalid_frame", f"{name!r} must be a {kind.__name__}")
    return value


def _internal_error() -> ApiError:
    # the exception's text may hold anything (paths, payloads, secrets): it goes to the log only
    return ApiError(500, "internal_error", "the gateway failed to handle this frame (logged)")


def _error_frame(exc: ApiError, ref: Any) -> dict[str, Any]:
    return {"op": "error", "ref": ref, "status": exc.status, "code": exc.code,
            "message": exc.message, **exc.extra}  # fmt: skip


_OPS = {
    "subscribe": WebSocketSession._subscribe,
    "unsubscribe": WebSocketSession._unsubscribe,
    "publish": WebSocketSession._publish,
    "request": WebSocketSession._request,
    "message": WebSocketSession._message,
    "ping": WebSocketSession._ping,
}
_OP_NAMES = sorted(_OPS)
