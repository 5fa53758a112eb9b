"""A local Telegram Bot API: the parts TelegramChannel uses, with Telegram's error answers.

- ``/bot{token}/getUpdates`` (GET query or POST JSON / form): ``offset``, ``limit``,
  ``timeout``. Long polling: with nothing to return it waits up to ``timeout`` seconds for
  an update. An offset confirms every update below it (they are never returned again) unless
  ``confirm`` is off, which plays a server that never saw the confirmation (the process died).
- ``/bot{token}/sendMessage``: ``chat_id`` and ``text``; 400 for an empty text, 403 for a
  chat in ``blocked``.
- A wrong token is 401 ``Unauthorized``; an unknown method 404.
- :meth:`FakeTelegram.fail` queues answers for the next calls of a method: a status with
  Telegram's error body (429 with ``parameters.retry_after``), or any raw body (garbage).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.channels.local_server import serve_app


@dataclass
class Call:
    method: str
    at: float  # time.monotonic()
    params: dict[str, Any]
    status: int = 0


@dataclass
class Injected:
    status: int
    body: Any = None  # a str is sent as is (garbage), else JSON
    headers: dict[str, str] = field(default_factory=dict)


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.next_update_id = 100
        self.next_message_id = 1
        self.confirm = True
        self.blocked: set[int] = set()
        self.sent: list[dict[str, Any]] = []
        self.calls: list[Call] = []
        self._injected: dict[str, deque[Injected]] = {}
        self._wake = asyncio.Event()
        self.closing = False
        self.app = Starlette(
            routes=[Route("/bot{token}/{method}", self._dispatch, methods=["GET", "POST"])]
        )

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Run on a free port; yields the base URL for ``TelegramChannel(base_url=...)``."""
        async with serve_app(self.app) as base:
            try:
                yield base
            finally:
                self.closing = True  # long polls in flight return now
                self._wake.set()

    # -- test controls -------------------------------------------------------------------------

    def push(
        self, text: str, *, chat_id: int = 42, from_id: int | None = None, username: str = "ada"
    ) -> int:
        """A user sends ``text`` to the bot; returns the update_id."""
        message = {
            "message_id": self.next_message_id,
            "from": {"id": from_id or chat_id, "is_bot": False, "username": username},
            "chat": {"id": chat_id, "type": "private"},
            "date": int(time.time()),
            "text": text,
        }
        self.next_message_id += 1
        return self.push_update({"message": message})

    def push_update(self, update: dict[str, Any]) -> int:
        update_id = self.next_update_id
        self.next_update_id += 1
        self.updates.append({"update_id": update_id, **update})
        self._wake.set()
        self._wake = asyncio.Event()
        return update_id

    def fail(
        self,
        method: str,
        status: int = 500,
        *,
        retry_after: float | None = None,
        description: str | None = None,
        body: Any = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``method`` answer ``status`` (Telegram's error body
        unless ``body`` is given)."""
        if body is None:
            body = {
                "ok": False,
                "error_code": status,
                "description": description or _DESCRIPTIONS.get(status, "Internal Server Error"),
            }
            if retry_after is not None:
                body["parameters"] = {"retry_after": retry_after}
        queue = self._injected.setdefault(method, deque())
        queue.extend(Injected(status, body) for _ in range(times))

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    # -- the API -------------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        method = request.path_params["method"]
        params: dict[str, Any] = dict(request.query_params)
        try:
            if request.method == "POST":
                if request.headers.get("content-type", "").startswith("application/json"):
                    body = await request.json()
                    if isinstance(body, dict):
                        params.update(body)
                else:
                    params.update(dict(await request.form()))
        except ClientDisconnect:  # the channel stopped while sending
            return Response(status_code=499)
        call = Call(method, time.monotonic(), params)
        self.calls.append(call)
        response = await self._answer(request.path_params["token"], method, params)
        call.status = response.status_code
        return response

    async def _answer(self, token: str, method: str, params: dict[str, Any]) -> Response:
        if token != self.token:
            return _error(401)
        queue = self._injected.get(method)
        if queue:
            injected = queue.popleft()
            if isinstance(injected.body, str):
                return Response(injected.body, status_code=injected.status, media_type="text/html")
            return JSONResponse(injected.body, status_code=injected.status)
        if method == "getUpdates":
            return await self._get_updates(params)
        if method == "sendMessage":
            return self._send_message(params)
        return _error(404, "Not Found: method not found")

    async def _get_updates(self, params: dict[str, Any]) -> Response:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        if offset and self.confirm:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ready = [u for u in self.updates if u["update_id"] >= offset][:limit]
            remaining = deadline - loop.time()
            if ready or remaining <= 0 or self.closing:
                return JSONResponse({"ok": True, "result": ready})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()

    def _send_message(self, params: dict[str, Any]) -> Response:
        chat_id = params.get("chat_id")
        text = params.get("text")
        if chat_id is None:
            return _error(400, "Bad Request: chat_id is empty")
        if not text:
            return _error(400, "Bad Request: message text is empty")
        if chat_id in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        self.sent.append(params)
        message = {
            "message_id": self.next_message_id,
            "chat": {"id": chat_id, "type": "private"},
            "date": int(time.time()),
            "text": text,
        }
        self.next_message_id += 1
        return JSONResponse({"ok": True, "result": message})


_DESCRIPTIONS = {
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests: retry later",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


def _error(status: int, description: str | None = None) -> JSONResponse:
    body = {
        "ok": False,
        "error_code": status,
        "description": description or _DESCRIPTIONS.get(status, "Error"),
    }
    return JSONResponse(body, status_code=status)
