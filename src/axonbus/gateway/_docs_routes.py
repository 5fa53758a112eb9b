"""``GET /openapi.json`` and ``GET /asyncapi.json``: the gateway describing itself.

Both need a valid token when the gateway has tokens (any token, no particular grant): the
documents name the gateway's version and, for AsyncAPI, the live subscriptions, which tell an
attacker what runs here. The AsyncAPI document lists only the subscriptions the token could
itself subscribe to, and the bus server only to a token that may read everything.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..asyncapi import asyncapi_document
from ._openapi import describe, openapi_document
from ._payload import dumps

__all__ = ["asyncapi_json", "openapi_json"]

_OBJECT: dict[str, Any] = {"type": "object"}


def _json(content: Any) -> Response:
    return Response(dumps(content), media_type="application/json")


@describe(
    "This API as an OpenAPI 3.1 document",
    grant="token",
    ok={200: ("the OpenAPI document", _OBJECT)},
    tags=("meta",),
)
async def openapi_json(request: Request) -> Response:
    gw = request.app.state.gateway
    gw.authenticate(request)
    return _json(openapi_document(request.app.routes, authenticated=gw.tokens is not None))


@describe(
    "The bus's events as an AsyncAPI 3.0 document",
    description="Channels from the event types the gateway knows and the live subscriptions "
    "the token may see; the bus server (credentials removed) only for a token that may read "
    "every topic.",
    grant="token",
    ok={200: ("the AsyncAPI document", _OBJECT)},
    tags=("meta",),
)
async def asyncapi_json(request: Request) -> Response:
    gw = request.app.state.gateway
    token = gw.authenticate(request)
    bus = gw.bus
    everything = token.allow_all or (token.can_subscribe(">") and not token.deny)
    patterns = [s.pattern for s in bus.stats() if token.can_subscribe(s.pattern)]
    doc = asyncapi_document(
        bus,
        event_types=gw.types.classes,
        subscriptions=patterns,
        url=bus.url if everything else "",
        # redis:// and nats:// say which wire they speak (``wire=cloudevents`` on the URL)
        cloudevents=getattr(bus.transport, "wire", "compact") == "cloudevents",
    )
    return _json(doc)
