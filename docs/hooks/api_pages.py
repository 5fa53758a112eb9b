"""mkdocs hook: the "HTTP API" and "Event catalogue" pages, generated at build time.

``http-api.md`` is rendered from the gateway's OpenAPI document and ``event-catalogue.md`` from
the AsyncAPI document of the events axonbus defines; both JSON documents are published next to
them (``openapi.json``, ``asyncapi.json``). Nothing is committed, so nothing can go stale: the
pages change when the routes or the event models do.
"""

from __future__ import annotations

import json
from typing import Any

from mkdocs.structure.files import File, Files

INTRO_HTTP = """# HTTP API

Generated from the gateway's routes when this site is built; a running gateway serves the same
document at `GET /openapi.json` ([download](openapi.json)). Each route declares its own
description next to its code, and the test suite fuzzes every operation against this document
with schemathesis, so an answer that drifts from its schema fails the build.

**Authentication.** A bearer token (`Authorization: Bearer <token>`) from the gateway's tokens
file; `GET` routes also take `?token=` for EventSource clients. Operations marked *public*
need none. A gateway started without tokens is open access (loopback only, see
[Security](security.md)). `GET /openapi.json` and `GET /asyncapi.json` need a valid token (any)
when the gateway has tokens: the documents name the version and the live subscriptions.

**Errors.** Every error answer is JSON `{"error": {"code", "message", ...}}` (schema
`ErrorBody` below); `401` carries `WWW-Authenticate`, `429` and some `503` carry `Retry-After`.

The WebSocket endpoint `GET /v1/ws` is described in the
[reference](gateway-reference.md#websocket-frames).
"""

INTRO_EVENTS = """# Event catalogue

The events axonbus itself defines: the agent vocabulary (`agent.{session_id}.*`), channel
messages, the heartbeat and the bus's own `$bus` events. Generated from the event classes'
topic templates and pydantic models when this site is built, as an AsyncAPI 3.0 document
([download](asyncapi.json)) that the test suite validates with the official AsyncAPI parser.

Your application's document adds its own event classes, its live subscriptions and its bus as
the server:

```text
axonbus asyncapi --app myapp.main:bus          # a Bus, an AgentRuntime, or a config file
axonbus asyncapi --app myapp.main:runtime --start -o asyncapi.json
```

and a running gateway serves it at `GET /asyncapi.json`. A `{field}` in an address is one
topic token, filled from the event's field of that name.
"""


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return "object" if extra in (True, {}) else f"object of {_type(extra)}"
    return str(kind) if kind else "any"


def _cell(text: Any) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")


def _fields(schema: dict[str, Any]) -> list[str]:
    props = schema.get("properties", {})
    if not props:
        return ["Any JSON object." if schema.get("type") == "object" else "Any JSON value.", ""]
    required = set(schema.get("required", ()))
    lines = ["| Field | Type | Required | Description |", "| --- | --- | --- | --- |"]
    for name, prop in props.items():
        lines.append(
            f"| `{name}` | {_type(prop)} | {'yes' if name in required else ''} "
            f"| {_cell(prop.get('description'))} |"
        )
    if schema.get("additionalProperties") is True:
        lines.append("| *other* | any | | more fields may be added |")
    return [*lines, ""]


def http_api_page(doc: dict[str, Any]) -> str:
    out = [INTRO_HTTP]
    out.append("## Operations\n")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            out.append(f"### {method.upper()} `{path}`\n")
            out.append(f"{op['summary']}. {op.get('description', '')}\n")
            params = op.get("parameters", [])
            if params:
                out += ["| Parameter | In | Type | Description |", "| --- | --- | --- | --- |"]
                for p in params:
                    out.append(
                        f"| `{p['name']}` | {p['in']} | {_type(p['schema'])} "
                        f"| {_cell(p.get('description'))} |"
                    )
                out.append("")
            body = op.get("requestBody")
            if body:
                schema = body["content"]["application/json"]["schema"]
                out.append(f"Body (`application/json`): {_type(schema)}.\n")
            out += ["| Status | Answer |", "| --- | --- |"]
            for status, answer in op["responses"].items():
                if "$ref" in answer:
                    ref = answer["$ref"].rsplit("/", 1)[1]
                    text = doc["components"]["responses"][ref]["description"]
                    out.append(f"| {status} | [ErrorBody](#errorbody): {_cell(text)} |")
                    continue
                media = next(iter(answer.get("content", {}).items()), None)
                shape = f" ({media[0]}: {_type(media[1]['schema'])})" if media else ""
                out.append(f"| {status} | {_cell(answer['description'])}{shape} |")
            out.append("")
    out.append("## Schemas\n")
    for name, schema in sorted(doc["components"]["schemas"].items()):
        out.append(f"### {name}\n")
        if schema.get("description"):
            out.append(_cell(schema["description"]) + "\n")
        out += _fields(schema)
    return "\n".join(out)


def event_catalogue_page(doc: dict[str, Any]) -> str:
    out = [INTRO_EVENTS]
    messages = doc["components"]["messages"]
    schemas = doc["components"]["schemas"]
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for cid, channel in doc["channels"].items():
        first = channel["address"].split(".", 1)[0]
        groups.setdefault(first, []).append((cid, channel))
    titles = {"agent": "Agent events", "$bus": "Bus events", "channel": "Channel messages"}
    for first, channels in groups.items():
        out.append(f"## {titles.get(first, first.capitalize() + ' events')}\n")
        for cid, channel in sorted(channels, key=lambda c: c[1]["address"]):
            message = messages[cid]
            name = message["payload"]["$ref"].rsplit("/", 1)[1]
            out.append(f"### {channel['title']}\n")
            out.append(f"`{channel['address']}` — type `{message['name']}`\n")
            out.append(_cell(message.get("summary")) + "\n")
            out += _fields(schemas[name])
    helpers = sorted(
        set(schemas) - {m["payload"]["$ref"].rsplit("/", 1)[1] for m in messages.values()}
    )
    if helpers:
        out.append("## Shared types\n")
        for name in helpers:
            out.append(f"### {name}\n")
            out += _fields(schemas[name])
    return "\n".join(out)


def documents() -> tuple[dict[str, Any], dict[str, Any]]:
    from axonbus import Bus
    from axonbus.asyncapi import asyncapi_document, system_events
    from axonbus.gateway import create_app, openapi_document

    openapi = openapi_document(create_app(Bus("memory://")).routes)
    asyncapi = asyncapi_document(event_types=system_events(), title="axonbus events")
    return openapi, asyncapi


def on_files(files: Files, config: Any) -> Files:
    openapi, asyncapi = documents()
    generated = {
        "http-api.md": http_api_page(openapi),
        "event-catalogue.md": event_catalogue_page(asyncapi),
        "openapi.json": json.dumps(openapi, indent=2),
        "asyncapi.json": json.dumps(asyncapi, indent=2),
    }
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    return files
