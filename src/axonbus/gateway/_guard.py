"""What a browser must not be able to do to the gateway, and the headers that tell it so.

:class:`Guard` is ASGI middleware in front of every route:

- ``Host``: with ``allowed_hosts``, a request for any other host name is refused (400
  ``bad_host``). The default without a tokens file is loopback names only (``localhost``,
  ``127.0.0.1``, ``::1``): a page on another site that rebinds its DNS name to 127.0.0.1 then
  still cannot reach an open gateway.
- ``Origin``: a request that carries one (every WebSocket handshake, every cross-site or
  same-site ``fetch`` / form POST) must come from the gateway's own origin or one listed in
  ``allowed_origins`` (``"*"`` allows any); else 403 ``bad_origin`` (a WebSocket handshake is
  refused with HTTP 403). Requests without ``Origin`` (curl, SDKs, servers) are not browsers
  and pass.
- ``POST /v1/channels/{type}/events`` (Slack's Events API) is exempt from both: every request
  there must carry the sender's signature, and Slack reaches a development gateway through a
  tunnel under the tunnel's own host name.
- Every HTTP answer carries ``Content-Security-Policy`` (own scripts only, ``frame-ancestors
  'none'``), ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff`` and
  ``Referrer-Policy: no-referrer`` (a ``?token=`` never leaves in a ``Referer``).

>>> app = Guard(app, allowed_hosts=("gateway.example.com",), allowed_origins=())
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._payload import dumps

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from ._metrics import GatewayMetrics

__all__ = ["LOOPBACK_HOSTS", "SECURITY_HEADERS", "Guard", "host_allowed"]

#: the host names an open (token-less) gateway answers by default
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


#: routes authenticated by a signature of their own, which any host may forward
_SIGNED = re.compile(r"/v1/channels/[^/]+/events")


def _hostname(host: str) -> str:
    """``host`` without its port, brackets or trailing dot, lower case."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8765
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """True when the ``Host`` header value names one of ``allowed`` (``"*"``: any,
    ``"*.example.com"``: any subdomain).

    >>> host_allowed("127.0.0.1:8765", ["127.0.0.1"]), host_allowed("evil.example", ["localhost"])
    (True, False)
    """
    name = _hostname(host)
    for pattern in allowed:
        p = pattern.strip().lower()
        if p == "*" or p == name:
            return True
        if p.startswith("*.") and name.endswith(p[1:]):
            return True
    return False


class Guard:
    """Host / Origin checks and security headers (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: tuple[str, ...] | None,
        allowed_origins: tuple[str, ...],
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.allowed_origins = tuple(o.rstrip("/").lower() for o in allowed_origins)
        self.metrics = metrics

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        if scope["type"] == "http" and _SIGNED.fullmatch(scope.get("path", "")):
            return None
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        host = headers.get(b"host", b"").decode("latin-1")
        if self.allowed_hosts is not None and not host_allowed(host, self.allowed_hosts):
            return 400, "bad_host", "this gateway does not answer for that Host"
        raw_origin = headers.get(b"origin")
        if raw_origin is None:
            return None
        origin = raw_origin.decode("latin-1").strip().rstrip("/").lower()
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return None
        parts = urlsplit(origin)
        if parts.scheme in ("http", "https") and parts.netloc and parts.netloc == host.lower():
            return None  # same origin
        return 403, "bad_origin", "requests from this Origin are not allowed"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, code, message = refusal
            if self.metrics is not None:
                self.metrics.rejected.labels(code).inc()
            if scope["type"] == "websocket":
                # closing before accepting makes the server answer the handshake with 403
                await send({"type": "websocket.close", "code": 4000 + status})
                return
            body = dumps({"error": {"code": code, "message": message}})
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *SECURITY_HEADERS,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", ())}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
