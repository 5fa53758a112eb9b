"""A local Slack: the Web API's ``chat.postMessage`` with Slack's error answers, and helpers
that build signed Events API requests the way Slack sends them.

- ``POST /api/chat.postMessage`` (JSON or form): bearer token in ``Authorization``; Slack
  answers HTTP 200 with ``{"ok": false, "error": "not_authed" | "invalid_auth" |
  "channel_not_found" | "no_text"}`` for refusals, 429 with ``Retry-After`` when rate limited.
- :meth:`FakeSlack.fail` queues answers for the next posts (a status, an ``ok: false`` error).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from axonbus.channels import slack_signature
from tests.channels.local_server import serve_app


@dataclass
class Post:
    at: float  # time.monotonic()
    authorization: str | None
    params: dict[str, Any]
    status: int = 0


class FakeSlack:
    def __init__(self, bot_token: str, conversations: set[str] | None = None) -> None:
        self.bot_token = bot_token
        self.conversations = conversations if conversations is not None else {"C1", "D1"}
        self.posts: list[Post] = []
        self.messages: list[dict[str, Any]] = []  # what was accepted
        self._injected: deque[tuple[int, dict[str, Any], dict[str, str]]] = deque()
        self.app = Starlette(routes=[Route("/api/{method}", self._dispatch, methods=["POST"])])

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Run on a free port; yields the base URL for ``SlackChannel(base_url=...)``."""
        async with serve_app(self.app) as base:
            yield f"{base}/api"

    def fail(
        self,
        status: int = 500,
        *,
        error: str | None = None,
        retry_after: float | None = None,
        times: int = 1,
    ) -> None:
        body = {"ok": False, "error": error or ("ratelimited" if status == 429 else "fatal_error")}
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        for _ in range(times):
            self._injected.append((status, body, headers))

    async def _dispatch(self, request: Request) -> Response:
        if request.path_params["method"] != "chat.postMessage":
            return JSONResponse({"ok": False, "error": "unknown_method"})
        try:
            if request.headers.get("content-type", "").startswith("application/json"):
                params = await request.json()
            else:
                params = dict(await request.form())
        except ClientDisconnect:  # the channel stopped while sending
            return Response(status_code=499)
        post = Post(time.monotonic(), request.headers.get("authorization"), params)
        self.posts.append(post)
        status, body, headers = self._answer(post)
        post.status = status
        return JSONResponse(body, status_code=status, headers=headers)

    def _answer(self, post: Post) -> tuple[int, dict[str, Any], dict[str, str]]:
        if post.authorization is None:
            return 200, {"ok": False, "error": "not_authed"}, {}
        if post.authorization != f"Bearer {self.bot_token}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if self._injected:
            return self._injected.popleft()
        channel = post.params.get("channel")
        if channel not in self.conversations:
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if not post.params.get("text") and not post.params.get("blocks"):
            return 200, {"ok": False, "error": "no_text"}, {}
        ts = f"{time.time():.6f}"
        message = {"type": "message", "text": post.params.get("text"), "ts": ts}
        self.messages.append(post.params)
        return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}, {}


def signed_request(
    signing_secret: str,
    payload: dict[str, Any],
    *,
    timestamp: float | None = None,
    retry_num: int | None = None,
) -> tuple[dict[str, str], bytes]:
    """The headers and body of an Events API request, signed like Slack signs them."""
    body = json.dumps(payload).encode()
    ts = str(int(time.time() if timestamp is None else timestamp))
    headers = {
        "content-type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(signing_secret, ts, body),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return headers, body


def message_event(
    text: str,
    *,
    event_id: str = "Ev001",
    channel: str = "D1",
    user: str = "U1",
    thread_ts: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An ``event_callback`` carrying one ``message`` event."""
    event: dict[str, Any] = {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": f"{time.time():.6f}",
        "channel_type": "im",
        **extra,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return {
        "token": "verification-token-unused",
        "team_id": "T1",
        "api_app_id": "A1",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
    }
