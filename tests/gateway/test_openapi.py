"""``GET /openapi.json`` and ``GET /asyncapi.json``: generated from the routes, guarded like the
rest of the API. (tests/gateway/test_openapi_fuzz.py fuzzes the routes against the document.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.routing import Route

from axonbus import Bus
from axonbus.gateway import TokenSet, openapi_document
from axonbus.gateway._openapi import route_doc
from tests.gateway.helpers import SECRET_ADMIN, SECRET_UI, asgi_client, auth

#: the routes the document must describe (the HTTP API's public surface)
EXPECTED = {
    ("post", "/v1/publish"),
    ("post", "/v1/publish/{topic}"),
    ("post", "/v1/agui/{agent}"),
    ("post", "/v1/request/{topic}"),
    ("get", "/v1/events"),
    ("get", "/v1/stats"),
    ("get", "/v1/channels"),
    ("post", "/v1/channels/{channel_type}/in"),
    ("post", "/v1/channels/{channel_type}/events"),
    ("get", "/v1/sessions"),
    ("get", "/v1/sessions/{session_id}"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/asyncapi.json"),
    ("get", "/"),
}


def test_every_http_route_carries_its_description(make_app: Callable[..., Any]) -> None:
    app = make_app()
    undescribed = [r.path for r in app.routes if isinstance(r, Route) and route_doc(r) is None]
    assert undescribed == [], f"describe() these routes next to their endpoint: {undescribed}"
    doc = openapi_document(app.routes)
    found = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert found >= EXPECTED
    assert not any("x-undescribed" in op for item in doc["paths"].values() for op in item.values())


def test_a_route_without_a_description_is_flagged(make_app: Callable[..., Any]) -> None:
    async def extra(request: Any) -> Any: ...

    app = make_app()
    app.router.routes.append(Route("/extra", extra, methods=["GET"]))
    op = openapi_document(app.routes)["paths"]["/extra"]["get"]
    assert op["x-undescribed"] is True


def test_error_body_and_bearer_scheme_are_described(make_app: Callable[..., Any]) -> None:
    doc = openapi_document(make_app().routes)
    components = doc["components"]
    assert components["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": components["securitySchemes"]["bearer"]["description"],
    }
    error = components["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    detail = components["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message"}
    publish = doc["paths"]["/v1/publish/{topic}"]["post"]
    assert publish["security"] == [{"bearer": []}]
    assert publish["responses"]["403"] == {"$ref": "#/components/responses/E403"}
    assert components["responses"]["E429"]["headers"]["Retry-After"]
    assert doc["paths"]["/healthz"]["get"]["security"] == []


def test_open_access_gateway_lists_no_security_requirement(make_app: Callable[..., Any]) -> None:
    doc = openapi_document(make_app().routes, authenticated=False)
    ops = [op for item in doc["paths"].values() for op in item.values()]
    assert all(op["security"] == [] for op in ops)


async def test_openapi_json_needs_a_token_and_matches_the_generator(
    make_app: Callable[..., Any], tokens: TokenSet
) -> None:
    app = make_app(tokens=tokens)
    async with asgi_client(app) as client:
        assert (await client.get("/openapi.json")).status_code == 401
        assert (await client.get("/asyncapi.json")).status_code == 401
        r = await client.get("/openapi.json", headers=auth(SECRET_UI))
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
    assert r.json() == openapi_document(app.routes)


async def test_asyncapi_json_shows_what_the_token_may_see(
    bus: Bus, make_app: Callable[..., Any], tokens: TokenSet
) -> None:
    bus.subscribe("agent.*.custom", lambda e: None)
    bus.subscribe("billing.>", lambda e: None)
    app = make_app(tokens=tokens)
    async with asgi_client(app) as client:
        admin = (await client.get("/asyncapi.json", headers=auth(SECRET_ADMIN))).json()
        ui = (await client.get("/asyncapi.json", headers=auth(SECRET_UI))).json()
    assert admin["asyncapi"] == "3.0.0"
    assert admin["servers"]["bus"]["protocol"] == "memory"
    assert "servers" not in ui  # the bus's address only for a token that sees everything
    addresses = {c["address"] for c in admin["channels"].values()}
    assert {"agent.{session_id}.user_input", "agent.*.custom", "billing.>"} <= addresses
    ui_addresses = {c["address"] for c in ui["channels"].values()}
    assert "agent.*.custom" in ui_addresses
    assert "billing.>" not in ui_addresses  # the ui token may not subscribe there
