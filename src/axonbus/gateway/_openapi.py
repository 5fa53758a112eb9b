"""The gateway's OpenAPI 3.1 document, generated from the routes of a running app.

Each HTTP endpoint carries its own description, written next to it with :func:`describe`::

    @describe("Publish one event", grant="publish", body=ANY_JSON,
              ok={200: ("published", PublishResult)}, errors=(400, 403, 413, 415, 422, 503))
    async def publish(request): ...

:func:`openapi_document` walks the app's routes and turns those into paths, with the error
body and the bearer security scheme as shared components. A route with no description is
listed with ``x-undescribed: true`` (the test suite fails on one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Route

from .._version import __version__
from ._schemas import ErrorBody

__all__ = ["ANY_JSON", "Param", "RouteDoc", "describe", "openapi_document"]

F = TypeVar("F", bound=Callable[..., Any])
_REF = "#/components/schemas/{model}"

#: a body or answer of any JSON value
ANY_JSON: dict[str, Any] = {}

#: what each status means when a route refuses (the ``code`` values it may carry)
ERRORS: dict[int, str] = {
    400: "bad request: invalid topic, pattern, JSON, timeout, Host, or a body nested too deep",
    401: "missing or unknown bearer token, or a bad webhook signature",
    403: "the token's grants do not cover this topic, or another Origin",
    404: "not found, or not configured on this gateway",
    408: "the body did not arrive in time",
    413: "the body is over the size limit",
    415: "the body is not declared JSON",
    422: "the payload does not validate as its event type",
    429: "over the token's rate, or too many failed authentications (see Retry-After)",
    502: "the responder raised an error",
    503: "the bus is unavailable, overloaded or has no responders (see Retry-After)",
    504: "no reply within the timeout",
}

#: statuses any authenticated route may answer before it runs (token checks, the Host guard)
AUTH_ERRORS = (400, 401, 403, 429)


@dataclass(frozen=True)
class Param:
    """A query or header parameter."""

    name: str
    where: str = "query"  # "query" or "header"
    description: str = ""
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


Answer = tuple[str, type[BaseModel] | dict[str, Any] | None]


@dataclass(frozen=True)
class RouteDoc:
    """What :func:`describe` records on an endpoint."""

    summary: str
    grant: str
    description: str = ""
    body: type[BaseModel] | dict[str, Any] | None = None
    body_required: bool = False
    body_media: tuple[str, ...] = ("application/json",)
    ok: dict[int, Answer] = field(default_factory=dict)
    media: str = "application/json"
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    tags: tuple[str, ...] = ()


def describe(
    summary: str,
    *,
    grant: str,
    ok: dict[int, Answer],
    description: str = "",
    body: type[BaseModel] | dict[str, Any] | None = None,
    body_required: bool = False,
    body_media: Iterable[str] = ("application/json",),
    media: str = "application/json",
    errors: Iterable[int] = (),
    params: Iterable[Param] = (),
    tags: Iterable[str] = (),
) -> Callable[[F], F]:
    """Attach an OpenAPI description to a route's endpoint.

    ``grant``: what the caller needs: ``"none"`` (public), ``"signature"`` (a webhook
    signature), ``"token"`` (any valid token), ``"publish"`` / ``"subscribe"`` (a token whose
    patterns cover the topic), ``"metrics"``. ``ok``: success statuses to ``(description,
    model or JSON Schema or None)``, of media type ``media``; ``body_media``: the media types
    the body may be sent as (the same schema for each). ``errors``: the error statuses
    it may answer besides the authentication ones (which ``grant`` implies).

    >>> @describe("Liveness", grant="none", ok={200: ("up", Health)}, errors=(503,))
    ... async def healthz(request): ...
    """
    doc = RouteDoc(
        summary=summary,
        grant=grant,
        description=description,
        body=body,
        body_required=body_required,
        body_media=tuple(body_media),
        ok=dict(ok),
        media=media,
        errors=tuple(errors),
        params=tuple(params),
        tags=tuple(tags),
    )

    def mark(endpoint: F) -> F:
        endpoint.__openapi__ = doc  # type: ignore[attr-defined]
        return endpoint

    return mark


def route_doc(route: BaseRoute) -> RouteDoc | None:
    """The description attached to an HTTP route's endpoint, if any."""
    return getattr(getattr(route, "endpoint", None), "__openapi__", None)


class _Schemas:
    """Collects pydantic models into ``components.schemas`` (one JSON Schema pass at the end)."""

    def __init__(self) -> None:
        self.models: list[type[BaseModel]] = []

    def ref(self, spec: type[BaseModel] | dict[str, Any] | None) -> dict[str, Any] | None:
        if spec is None or isinstance(spec, dict):
            return spec
        if spec not in self.models:
            self.models.append(spec)
        return {"$ref": _REF.format(model=spec.__name__)}

    def components(self) -> dict[str, Any]:
        if not self.models:
            return {}
        # serialization mode: the shape of what the gateway sends
        _, defs = models_json_schema([(m, "serialization") for m in self.models], ref_template=_REF)
        found: dict[str, Any] = defs.get("$defs", {})
        return found


def _path_params(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for n in names
    ]


def _operation(
    doc: RouteDoc, route: Route, method: str, schemas: _Schemas, authenticated: bool
) -> dict[str, Any]:
    path = route.path
    needs_token = authenticated and doc.grant in ("token", "publish", "subscribe", "metrics")
    op: dict[str, Any] = {
        "operationId": route.name if method != "head" else f"{route.name}_head",
        "summary": doc.summary,
    }
    grant = {
        "none": "Public: no token.",
        "signature": "Authenticated by the webhook signature, not a token.",
        "token": "Needs any valid token.",
        "publish": "Needs a token whose publish patterns cover the topic.",
        "subscribe": "Needs a token whose subscribe patterns cover the pattern.",
        "metrics": "Needs a token with metrics: true.",
    }.get(doc.grant, f"Needs {doc.grant}.")
    op["description"] = (doc.description + "\n\n" + grant).strip()
    if doc.tags:
        op["tags"] = list(doc.tags)
    params = _path_params(path) + [
        {
            "name": p.name,
            "in": p.where,
            "required": p.required,
            "description": p.description,
            "schema": p.schema,
        }
        for p in doc.params
    ]
    if params:
        op["parameters"] = params
    if doc.body is not None:
        op["requestBody"] = {
            "required": doc.body_required,
            "content": {media: {"schema": schemas.ref(doc.body)} for media in doc.body_media},
        }
    responses: dict[str, Any] = {}
    for status, (text, spec) in sorted(doc.ok.items()):
        answer: dict[str, Any] = {"description": text}
        schema = schemas.ref(spec)
        if schema is not None:
            answer["content"] = {doc.media: {"schema": schema}}
        responses[str(status)] = answer
    errors = set(doc.errors) | {400}  # the Host guard answers 400 on every route
    if needs_token:
        errors |= set(AUTH_ERRORS)
    if doc.grant == "signature":
        errors |= {401}
    for status in sorted(errors):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/E{status}"})
    op["responses"] = responses
    op["security"] = [{"bearer": []}] if needs_token else []
    return op


def openapi_document(
    routes: Iterable[BaseRoute], *, authenticated: bool = True, title: str = "axonbus gateway"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a JSON-able dict) for ``routes`` (``app.routes``).

    ``authenticated``: the gateway requires tokens (without, no operation lists a security
    requirement: it is open access).

    >>> openapi_document(app.routes)["paths"]["/healthz"]["get"]["summary"]
    'Liveness and the bus state'
    """
    schemas = _Schemas()
    error_ref = schemas.ref(ErrorBody)
    paths: dict[str, Any] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue  # WebSocket routes and mounted static files are not operations
        doc = route_doc(route)
        item = paths.setdefault(route.path, {})
        for method in sorted((route.methods or set()) - {"HEAD"}):
            m = method.lower()
            if doc is None:
                item[m] = {
                    "summary": route.name,
                    "x-undescribed": True,
                    "responses": {"default": {"description": "undescribed"}},
                }
            else:
                item[m] = _operation(doc, route, m, schemas, authenticated)
    used = sorted(
        {
            int(s)
            for item in paths.values()
            for op in item.values()
            for s, r in op["responses"].items()
            if "$ref" in r
        }
    )
    responses = {
        f"E{status}": {
            "description": ERRORS.get(status, "error"),
            "content": {"application/json": {"schema": error_ref}},
        }
        for status in used
    }
    for status in (401, 429, 503):
        if status in used:
            headers: dict[str, Any] = {}
            if status == 401:
                headers["WWW-Authenticate"] = {"schema": {"type": "string"}}
            else:
                headers["Retry-After"] = {"schema": {"type": "string"}}
            responses[f"E{status}"]["headers"] = headers
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "description": "The axonbus web gateway: publish, request and stream events over "
            'HTTP. Errors are JSON {"error": {"code", "message", ...}}.',
        },
        "paths": paths,
        "components": {
            "schemas": schemas.components(),
            "responses": responses,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from the gateway's tokens file "
                    "(GET routes also accept ?token= for EventSource)",
                }
            },
        },
    }
