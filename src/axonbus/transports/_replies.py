"""Reply frames shared by transports that carry request/reply themselves (redis, the logs).

A reply is ``b"ok\\n" + envelope`` or ``b"err\\n" + b"TypeName\\nmessage"``; the requester turns
an error back into :class:`RemoteError` with the type name and message kept.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .._codec import Codec
from .._events import Envelope
from .._exceptions import DecodeError, RemoteError

__all__ = ["encode_reply", "settle_reply"]


def encode_reply(codec: Codec, request: Envelope, fut: asyncio.Future[Any]) -> bytes:
    """The frame for a finished reply future (a value, an error or a cancellation)."""
    if fut.cancelled():
        return b"err\nCancelledError\nthe request was cancelled"
    exc = fut.exception()
    if exc is not None:
        if isinstance(exc, RemoteError):
            kind, text = exc.remote_type, exc.remote_message
        else:
            kind, text = type(exc).__name__, str(exc)
        # an error message may hold what the wire cannot (a lone surrogate): escape it
        return b"err\n" + f"{kind}\n{text}".encode(errors="backslashreplace")
    try:
        return b"ok\n" + codec.encode(Envelope(request.topic, fut.result()))
    except (TypeError, ValueError) as err:
        return b"err\n" + f"TypeError\ncannot encode the reply: {err}".encode(
            errors="backslashreplace"
        )


def settle_reply(codec: Codec, fut: asyncio.Future[Any], frame: bytes) -> None:
    """Complete the requester's future from a reply frame (unless it gave up already)."""
    if fut.done():
        return
    status, _, body = frame.partition(b"\n")
    if status == b"ok":
        try:
            fut.set_result(codec.decode(body).event)
        except DecodeError as exc:
            fut.set_exception(exc)
    else:
        kind, _, text = body.decode(errors="replace").partition("\n")
        fut.set_exception(RemoteError(kind, text))
