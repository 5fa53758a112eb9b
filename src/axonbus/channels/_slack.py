"""SlackChannel: a Slack app over the Events API (webhook in) and chat.postMessage (out)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._exceptions import LifecycleError, MessageTooLarge
from .._retry import Retry
from ._base import check_channel_type
from ._errors import ChannelApiError
from ._http import (
    HttpApiChannel,
    call_with_retry,
    check_base_url,
    import_httpx,
    redact,
    retry_after,
)

if TYPE_CHECKING:
    import httpx
    from starlette.applications import Starlette

    from .._engine.bus import Bus
    from ._messages import ChannelReply

__all__ = ["SlackChannel", "slack_signature"]

logger = logging.getLogger("axonbus.channels")

#: Slack Web API errors (``{"ok": false, "error": ...}``) worth trying again
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
#: message subtypes that are still a person's message (others: edits, joins, bots...)
_PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """Slack's ``X-Slack-Signature``: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


class SlackChannel(HttpApiChannel):
    """A Slack app: message events become :class:`ChannelMessage`\\ s on ``channel.slack.in``;
    replies on ``channel.slack.out`` are posted with ``chat.postMessage``.

    >>> slack = SlackChannel(bus, os.environ["SLACK_BOT_TOKEN"],
    ...                      os.environ["SLACK_SIGNING_SECRET"])
    >>> await manager.attach(slack)
    >>> app = create_app(bus, channels=manager)   # Request URL: POST /v1/channels/slack/events

    Inbound: Slack POSTs Events API requests to the gateway's ``/v1/channels/{type}/events``
    (or to :meth:`asgi_app` mounted anywhere). Every request must carry a valid
    ``X-Slack-Signature`` made with the signing secret over ``v0:{timestamp}:{body}``, with an
    ``X-Slack-Request-Timestamp`` no more than ``tolerance`` seconds (5 minutes) away, else it
    is answered 401. ``url_verification`` is answered with its challenge. An
    ``event_callback`` with a ``message`` event from a person (no ``bot_id``, no subtype other
    than ``file_share`` / ``thread_broadcast``) becomes ``receive(user_id=<conversation id>,
    text, channel=, user=, ts=, thread_ts=, team=, event_id=, conversation_type=)``: the
    message's ``user_id`` is the conversation, so a reply goes back where it was said. Slack
    retries an event it thinks was not received (``X-Slack-Retry-Num``); the last
    ``dedupe`` event ids are remembered and a repeat is acknowledged without publishing. While
    the channel is not running events are answered 503, and Slack retries them later.

    Outbound: ``chat.postMessage`` with the bot token as bearer, to
    ``reply.metadata["channel"]`` (else ``reply.user_id``), in the thread of the message it
    replies to (or ``reply.metadata["thread_ts"]``). A 429 waits the ``Retry-After`` Slack
    asks for; 5xx, network errors and ``ok: false`` errors such as ``ratelimited`` /
    ``internal_error`` are retried with backoff (``retry``); other ``ok: false`` errors
    (``invalid_auth``, ``channel_not_found``...) raise :class:`ChannelApiError` at once.
    Neither secret appears in a repr, an error or a log line.
    """

    def __init__(
        self,
        bus: Bus,
        bot_token: str,
        signing_secret: str,
        *,
        base_url: str = "https://slack.com/api",
        channel_type: str = "slack",
        retry: Retry | None = None,
        timeout: float = 10.0,
        tolerance: float = 300.0,
        dedupe: int = 10_000,
    ) -> None:
        super().__init__(bus)
        if not isinstance(bot_token, str) or not bot_token.strip():
            raise ValueError("bot_token must be the app's non-empty bot token (xoxb-...)")
        if not isinstance(signing_secret, str) or not signing_secret.strip():
            raise ValueError("signing_secret must be the app's non-empty signing secret")
        if timeout <= 0 or tolerance <= 0 or dedupe < 1:
            raise ValueError("timeout and tolerance must be > 0, dedupe >= 1")
        self._channel_type = check_channel_type(channel_type)
        self._token = bot_token
        self._secret = signing_secret
        self.base_url = check_base_url(base_url)
        self.retry = retry if retry is not None else Retry(attempts=5, backoff=0.5, max_backoff=30)
        self.timeout = timeout
        self.tolerance = tolerance
        self.dedupe = dedupe
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._threads: OrderedDict[str, str] = OrderedDict()  # message id -> thread ts
        self._client: httpx.AsyncClient | None = None
        self.received = 0
        self.duplicates = 0
        self.sent = 0

    def _client_options(self) -> dict[str, Any]:
        return {
            "base_url": f"{self.base_url}/",
            "headers": {"authorization": f"Bearer {self._token}"},
        }

    # -- inbound -------------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> bool:
        """True when ``headers`` carry a valid Slack signature of ``body`` made no more than
        ``tolerance`` seconds ago (compared in constant time)."""
        h = _lower(headers)
        timestamp = h.get("x-slack-request-timestamp", "")
        signature = h.get("x-slack-signature", "")
        if not timestamp or not signature:
            return False
        try:
            sent = float(timestamp)
        except ValueError:
            return False
        if abs((time.time() if now is None else now) - sent) > self.tolerance:
            return False
        return hmac.compare_digest(slack_signature(self._secret, timestamp, body), signature)

    async def handle_request(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Answer one Events API request: ``(HTTP status, JSON body)``.

        401 for a missing, wrong or stale signature; 400 for a body that is not JSON; 200 with
        ``{"challenge"}`` for ``url_verification``; 503 while the channel is not running (Slack
        retries); else 200 (events that are not a person's message are acknowledged and
        ignored, repeats of an event id too).
        """
        if not self.verify(headers, body):
            return 401, _error("bad_signature", "missing, stale or wrong X-Slack-Signature")
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, _error("invalid_json", "the body is not JSON")
        if not isinstance(payload, dict):
            return 400, _error("invalid_event", "the body is not a JSON object")
        kind = payload.get("type")
        if kind == "url_verification":
            return 200, {"challenge": str(payload.get("challenge", ""))}
        if kind != "event_callback":
            return 200, {"ok": True, "ignored": str(kind)}
        event_id = payload.get("event_id")
        if isinstance(event_id, str) and event_id in self._seen:
            self.duplicates += 1
            retry = _lower(headers).get("x-slack-retry-num")
            logger.info(
                "channel %r: event %s already handled (retry %s); ignored",
                self.channel_type, event_id, retry,
            )  # fmt: skip
            return 200, {"ok": True, "duplicate": True}
        event = payload.get("event")
        if not _is_person_message(event):
            return 200, {"ok": True, "ignored": "not a message from a person"}
        assert isinstance(event, dict)
        if isinstance(event_id, str):  # before publishing: a retry may arrive meanwhile
            self._remember(self._seen, event_id, None)
        try:
            await self._publish(payload, event)
        except BaseException as exc:
            if isinstance(event_id, str):
                self._seen.pop(event_id, None)  # not handled: let Slack's retry through
            if isinstance(exc, LifecycleError):
                return 503, _error("unavailable", "the channel is not running; retry later")
            raise
        return 200, {"ok": True}

    async def _publish(self, payload: dict[str, Any], event: dict[str, Any]) -> None:
        conversation = str(event["channel"])
        metadata = {
            "channel": conversation,
            "user": event.get("user"),
            "ts": event.get("ts"),
            "thread_ts": event.get("thread_ts"),
            "team": payload.get("team_id", event.get("team")),
            "event_id": payload.get("event_id"),
            "conversation_type": event.get("channel_type"),
        }
        try:
            message = await self.receive(conversation, str(event.get("text") or ""), **metadata)
        except MessageTooLarge as exc:
            logger.warning("channel %r: event skipped: %s", self.channel_type, exc)
            return
        thread = event.get("thread_ts")
        if isinstance(thread, str):
            self._remember(self._threads, message.id, thread)
        self.received += 1

    def _remember(self, cache: OrderedDict[str, Any], key: str, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.dedupe:
            cache.popitem(last=False)

    def asgi_app(self, path: str = "/slack/events", *, max_body: int = 1_048_576) -> Starlette:
        """A Starlette app answering Slack's Events API requests at ``POST path``, for a
        process without the gateway (the gateway already routes
        ``/v1/channels/{type}/events``).

        >>> uvicorn.run(slack.asgi_app(), port=3000)   # Request URL: https://host/slack/events
        """
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        async def events(request: Request) -> Response:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body:
                    return JSONResponse(_error("too_large", "body too large"), status_code=413)
            status, answer = await self.handle_request(request.headers, bytes(body))
            return JSONResponse(answer, status_code=status)

        return Starlette(routes=[Route(path, events, methods=["POST"])])

    # -- outbound ------------------------------------------------------------------------------

    async def send(self, reply: ChannelReply) -> None:
        meta = reply.metadata
        payload: dict[str, Any] = {"channel": str(meta.get("channel", reply.user_id))}
        payload["text"] = reply.content
        thread = meta.get("thread_ts")
        if thread is None and reply.reply_to is not None:
            thread = self._threads.get(reply.reply_to)
        if thread is not None:
            payload["thread_ts"] = thread
        for key in ("blocks", "mrkdwn", "unfurl_links", "reply_broadcast"):
            if key in meta:
                payload[key] = meta[key]

        async def once() -> Any:
            return await self._post("chat.postMessage", payload)

        await call_with_retry(once, self.retry, describe=f"{self.channel_type} chat.postMessage")
        self.sent += 1

    async def _post(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        httpx = import_httpx(self.channel_type)
        client = self._client
        if client is None:
            raise ChannelApiError(self.channel_type, method, "the channel is not started")
        try:
            response = await client.post(method, json=payload)
        except httpx.HTTPError as exc:
            raise ChannelApiError(
                self.channel_type, method, self._hide(f"{type(exc).__name__}: {exc}"),
                retryable=True,
            ) from None  # fmt: skip
        status = response.status_code
        if status == 429:
            wait = retry_after(response.headers.get("retry-after"))
            raise ChannelApiError(
                self.channel_type, method, "ratelimited", status=status, retryable=True,
                retry_after=wait if wait is not None else 1.0,
            )  # fmt: skip
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            error = "the answer is not the Web API's" if status < 400 else "no Web API answer"
            raise ChannelApiError(
                self.channel_type, method, error, status=status, retryable=status >= 500
            )
        if body["ok"]:
            return body
        error = str(body.get("error") or "unknown_error")
        raise ChannelApiError(
            self.channel_type,
            method,
            self._hide(error),
            status=status,
            retryable=status >= 500 or error in RETRYABLE_ERRORS,
            retry_after=retry_after(response.headers.get("retry-after")),
        )

    def _hide(self, text: str) -> str:
        return redact(text, self._token, self._secret)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _is_person_message(event: Any) -> bool:
    return (
        isinstance(event, dict)
        and event.get("type") == "message"
        and not event.get("bot_id")
        and event.get("subtype") in _PERSON_SUBTYPES
        and isinstance(event.get("channel"), str)
        and isinstance(event.get("text"), str)
    )


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}
