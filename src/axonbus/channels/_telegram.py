"""TelegramChannel: a Telegram bot over the Bot API (long polling in, sendMessage out)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._exceptions import MessageTooLarge
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

    from .._engine.bus import Bus
    from ._messages import ChannelReply

__all__ = ["FileOffsetStore", "OffsetStore", "TelegramChannel"]

logger = logging.getLogger("axonbus.channels")

#: the Bot API's limit on one message's text; longer replies go out as several messages
MAX_TEXT = 4096
#: sendMessage options a reply may carry in its metadata
_SEND_OPTIONS = ("parse_mode", "disable_notification", "message_thread_id", "reply_markup")


@runtime_checkable
class OffsetStore(Protocol):
    """Where a :class:`TelegramChannel` keeps its ``getUpdates`` offset across processes.

    ``load`` returns the saved offset (``None`` when there is none); ``save`` is called after
    each update is handled, so a restarted process does not handle it again.
    """

    async def load(self) -> int | None: ...

    async def save(self, offset: int) -> None: ...


class FileOffsetStore:
    """The offset in a small text file, replaced atomically on every save.

    >>> TelegramChannel(bus, token, offset_store=FileOffsetStore("telegram.offset"))
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileOffsetStore({str(self.path)!r})"

    async def load(self) -> int | None:
        return await asyncio.to_thread(self._read)

    async def save(self, offset: int) -> None:
        await asyncio.to_thread(self._write, offset)

    def _read(self) -> int | None:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            msg = f"{self.path}: expected a Telegram update offset, got {text!r}"
            raise ValueError(msg) from None

    def _write(self, offset: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{offset}\n", encoding="utf-8")
        os.replace(tmp, self.path)


class TelegramChannel(HttpApiChannel):
    """A Telegram bot: messages to it become :class:`ChannelMessage`\\ s on
    ``channel.telegram.in``; replies on ``channel.telegram.out`` go out with ``sendMessage``.

    >>> telegram = TelegramChannel(bus, os.environ["TELEGRAM_BOT_TOKEN"],
    ...                            offset_store="telegram.offset")
    >>> await manager.attach(telegram)       # the manager runs the long-poll loop

    Inbound: :meth:`run` long-polls ``getUpdates`` (``poll_timeout`` seconds per call; the Bot
    API wants whole seconds). Each text message becomes ``receive(user_id=str(chat.id), text,
    chat_id=, message_id=, update_id=, from_id=, username=, chat_type=)``, so a reply to the
    message's ``user_id`` goes back to the same chat. Other updates are skipped. After each
    update the offset (last ``update_id`` + 1) is kept in memory and, with ``offset_store`` (an
    :class:`OffsetStore` or a file path), saved: the next ``getUpdates`` confirms the update to
    Telegram, and neither a restart by the :class:`ChannelManager` nor a new process handles it
    twice.

    Outbound: ``sendMessage`` to ``reply.metadata["chat_id"]`` (else ``reply.user_id``), split
    into 4096-character messages; ``reply_to_message_id``, ``parse_mode``,
    ``disable_notification``, ``message_thread_id`` and ``reply_markup`` in the reply's
    metadata are passed on.

    Errors: a 429 waits the ``parameters.retry_after`` Telegram asks for; 5xx answers, timeouts
    and connection errors are retried with exponential backoff and jitter (``retry``, default
    8 attempts, 0.5 s doubling up to 30 s). Then, or at once for other errors (401 bad token,
    400, 403 blocked by the user, an answer that is not the Bot API), a
    :class:`ChannelApiError` is raised: from :meth:`run` the manager restarts the channel, from
    :meth:`send` the bus reports a handler failure.

    The token is part of every request's path; it never appears in a repr, an error or a log
    line (records of the ``httpx`` / ``httpcore`` loggers are redacted while the channel runs).
    """

    def __init__(
        self,
        bus: Bus,
        token: str,
        *,
        base_url: str = "https://api.telegram.org",
        channel_type: str = "telegram",
        poll_timeout: float = 30.0,
        limit: int = 100,
        offset_store: OffsetStore | str | os.PathLike[str] | None = None,
        retry: Retry | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(bus)
        if not isinstance(token, str) or not token.strip():
            raise ValueError("token must be the bot's non-empty token string")
        if poll_timeout < 0 or timeout <= 0:
            raise ValueError("poll_timeout must be >= 0 and timeout > 0")
        if not 1 <= limit <= 100:
            raise ValueError(f"limit must be in 1..100 (the Bot API's range), got {limit}")
        self._channel_type = check_channel_type(channel_type)
        self._token = token
        self.base_url = check_base_url(base_url)
        self.poll_timeout = poll_timeout
        self.limit = limit
        if isinstance(offset_store, str | os.PathLike):
            offset_store = FileOffsetStore(offset_store)
        self.offset_store: OffsetStore | None = offset_store
        self.retry = retry if retry is not None else Retry(attempts=8, backoff=0.5, max_backoff=30)
        self.timeout = timeout
        #: the next ``getUpdates`` offset: last handled ``update_id`` + 1
        self.offset: int | None = None
        self._offset_loaded = False
        self._client: httpx.AsyncClient | None = None
        self.received = 0
        self.sent = 0

    def _client_options(self) -> dict[str, Any]:
        return {"base_url": f"{self.base_url}/bot{self._token}/"}  # the token is in the path

    # -- inbound -------------------------------------------------------------------------------

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            # a stop that cancelled the loop during a save must not leave an older offset behind
            if self.offset_store is not None and self.offset is not None:
                await self.offset_store.save(self.offset)

    async def run(self) -> None:
        """Long-poll ``getUpdates`` and publish every text message, until cancelled."""
        if not self._offset_loaded:
            if self.offset_store is not None:
                saved = await self.offset_store.load()
                if saved is not None and (self.offset is None or saved > self.offset):
                    self.offset = saved
            self._offset_loaded = True
        while True:
            payload: dict[str, Any] = {
                "timeout": _whole(self.poll_timeout),
                "limit": self.limit,
                "allowed_updates": ["message"],
            }
            if self.offset is not None:
                payload["offset"] = self.offset
            updates = await self._call("getUpdates", payload, long_poll=True)
            if not isinstance(updates, list):
                raise ChannelApiError(
                    self.channel_type, "getUpdates", "the result is not a list of updates"
                )
            for update in updates:
                update_id = update.get("update_id") if isinstance(update, dict) else None
                if not isinstance(update_id, int) or isinstance(update_id, bool):
                    raise ChannelApiError(
                        self.channel_type, "getUpdates", "an update without an int update_id"
                    )
                if self.offset is not None and update_id < self.offset:
                    continue  # already handled: the server had not seen our confirmation
                await self._handle(update)
                self.offset = update_id + 1
                if self.offset_store is not None:
                    await self.offset_store.save(self.offset)

    async def _handle(self, update: dict[str, Any]) -> None:
        message = update.get("message")
        if not isinstance(message, dict):
            logger.debug("channel %r: skipping update %s", self.channel_type, update["update_id"])
            return
        text = message.get("text")
        if not isinstance(text, str):
            text = message.get("caption")
        chat = _table(message.get("chat"))
        sender = _table(message.get("from"))
        chat_id = chat.get("id", sender.get("id"))
        if not isinstance(text, str) or chat_id is None:
            logger.debug("channel %r: skipping a message without text", self.channel_type)
            return
        metadata = {
            "chat_id": chat_id,
            "message_id": message.get("message_id"),
            "update_id": update["update_id"],
            "from_id": sender.get("id"),
            "username": sender.get("username"),
            "chat_type": chat.get("type"),
        }
        try:
            await self.receive(str(chat_id), text, **metadata)
        except MessageTooLarge as exc:
            # the update will never fit: skip it rather than crash on it forever
            logger.warning(
                "channel %r: update %s skipped: %s", self.channel_type, update["update_id"], exc
            )
            return
        self.received += 1

    # -- outbound ------------------------------------------------------------------------------

    async def send(self, reply: ChannelReply) -> None:
        chunks = _chunks(reply.content, MAX_TEXT)
        if not chunks:
            logger.warning("channel %r: empty reply not sent", self.channel_type)
            return
        meta = reply.metadata
        chat_id = _chat_id(meta.get("chat_id", reply.user_id))
        for i, chunk in enumerate(chunks):
            payload: dict[str, Any] = {"chat_id": chat_id, "text": chunk}
            payload.update((k, meta[k]) for k in _SEND_OPTIONS if k in meta)
            if i == 0 and meta.get("reply_to_message_id") is not None:
                payload["reply_parameters"] = {
                    "message_id": meta["reply_to_message_id"],
                    "allow_sending_without_reply": True,
                }
            await self._call("sendMessage", payload)
        self.sent += 1

    # -- the Bot API ---------------------------------------------------------------------------

    async def _call(self, method: str, payload: dict[str, Any], *, long_poll: bool = False) -> Any:
        """One Bot API method with retries; its ``result``."""

        async def once() -> Any:
            return await self._call_once(method, payload, long_poll)

        return await call_with_retry(once, self.retry, describe=f"{self.channel_type} {method}")

    async def _call_once(self, method: str, payload: dict[str, Any], long_poll: bool) -> Any:
        httpx = import_httpx(self.channel_type)
        client = self._client
        if client is None:
            raise ChannelApiError(self.channel_type, method, "the channel is not started")
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if long_poll:
            timeout = httpx.Timeout(self.timeout, read=self.poll_timeout + self.timeout)
        try:
            response = await client.post(method, json=payload, timeout=timeout)
        except httpx.HTTPError as exc:
            # no `from exc`: httpx's error holds the request, whose URL holds the token
            raise ChannelApiError(
                self.channel_type, method, self._hide(f"{type(exc).__name__}: {exc}"),
                retryable=True,
            ) from None  # fmt: skip
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            raise ChannelApiError(
                self.channel_type,
                method,
                "the answer is not the Bot API's: " + self._hide(_snippet(response.text)),
                status=status,
                retryable=status >= 500,
            )
        if body["ok"]:
            return body.get("result")
        code = body.get("error_code")
        code = code if isinstance(code, int) else status
        parameters = body.get("parameters")
        wait = retry_after(parameters.get("retry_after")) if isinstance(parameters, dict) else None
        if wait is None and code == 429:
            wait = retry_after(response.headers.get("retry-after"))
        raise ChannelApiError(
            self.channel_type,
            method,
            self._hide(str(body.get("description") or "no description")),
            status=status,
            retryable=code == 429 or code >= 500,
            retry_after=wait,
        )

    def _hide(self, text: str) -> str:
        return redact(text, self._token)


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _whole(seconds: float) -> float | int:
    return int(seconds) if float(seconds).is_integer() else seconds


def _chat_id(value: Any) -> Any:
    """An int for a numeric chat id (the Bot API takes both; ints compare predictably)."""
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _snippet(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")
