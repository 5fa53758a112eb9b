"""schemathesis fuzzes every operation of the gateway's OpenAPI document against the app in
process, each generated request sent with an all-access token, a restricted one, an unknown
one and none: no undocumented 5xx, every answer matches its documented status and schema, and
no request hangs (an event stream is read for a moment, then cut short by the client)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from axonbus import Bus
from axonbus.gateway import TokenSet, create_app
from axonbus.gateway._openapi import openapi_document
from tests.gateway.helpers import SECRET_ADMIN, SECRET_UI, TOKENS_CONFIG, auth

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

#: generated requests per operation (each sent four times): bounded, so CI runs it in ~1 min
EXAMPLES = 10

CREDENTIALS: dict[str, dict[str, str]] = {
    "admin": auth(SECRET_ADMIN),
    "restricted": auth(SECRET_UI),
    "unknown": auth("not-a-token-0123456789-abcdefghijklmn"),
    "none": {},
}


def _app() -> Any:
    bus = Bus(history=100)
    # a responder on every topic: a request answered 503 (no responders) would hide a real 5xx
    bus.respond(">", lambda req: req)
    # own_bus: schemathesis runs the app's lifespan (starting the bus) on its own loop thread;
    # shed_lag: a loaded test machine must not make the gateway shed load (503)
    return create_app(bus, tokens=TokenSet.from_config(TOKENS_CONFIG), own_bus=True, shed_lag=60.0)


class FreshGateway:
    """A new gateway and bus on each lifespan (schemathesis starts and stops the lifespan
    around each operation's test, and a closed bus does not start again), and each request
    from its own client address: the throttle on failed authentications per address (tested
    in test_auth.py) would otherwise answer the auth checks' requests 429 instead of 401."""

    def __init__(self) -> None:
        self.app = _app()
        self.clients = itertools.count(1)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            self.app = _app()
        elif scope["type"] == "http":
            n = next(self.clients)
            scope = {**scope, "client": (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 50000)}
        await self.app(scope, receive, send)


APP = FreshGateway()
DOCUMENT = openapi_document(APP.app.routes)
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.app = APP
#: operations answering an event stream, which never ends by itself
STREAMS = {
    (method.upper(), path)
    for path, item in DOCUMENT["paths"].items()
    for method, op in item.items()
    if "text/event-stream" in op["responses"].get("200", {}).get("content", {})
}


# generous: one operation's examples take ~10 s on a loaded 2-core machine (event streams)
@pytest.mark.timeout(120)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_operation_keeps_its_contract(case: Any) -> None:
    assert {("GET", "/v1/events")} <= STREAMS
    # an event stream never ends by itself: read it briefly (the client cuts it short)
    timeout = 0.5 if (case.method.upper(), case.path) in STREAMS else 20
    for who, headers in CREDENTIALS.items():
        try:
            # every check but two that judge the requests rather than the answers: a
            # schema-valid body may still not be a valid event (422 is right), and unknown
            # query parameters are ignored, as HTTP servers do, rather than refused
            case.call_and_validate(
                headers=headers or None,
                timeout=timeout,
                excluded_checks=[checks.positive_data_acceptance, checks.negative_data_rejection],
            )
        except Exception as exc:
            exc.add_note(f"sent with the {who!r} credentials")
            raise
