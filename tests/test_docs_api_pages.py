"""The docs' generated "HTTP API" and "Event catalogue" pages (docs/hooks/api_pages.py) cover
every operation of the OpenAPI document and every channel of the AsyncAPI one."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

HOOK = Path(__file__).resolve().parents[1] / "docs" / "hooks" / "api_pages.py"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_pages_hook", HOOK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_http_api_page_lists_every_operation_and_schema() -> None:
    hook = _hook()
    openapi, _ = hook.documents()
    page = hook.http_api_page(openapi)
    for path, item in openapi["paths"].items():
        for method in item:
            assert f"### {method.upper()} `{path}`" in page
    for name in openapi["components"]["schemas"]:
        assert f"### {name}\n" in page
    assert "ErrorBody" in page
    assert "Bearer" in page


def test_event_catalogue_lists_every_event_axonbus_defines() -> None:
    hook = _hook()
    _, asyncapi = hook.documents()
    page = hook.event_catalogue_page(asyncapi)
    for channel in asyncapi["channels"].values():
        assert f"`{channel['address']}`" in page
    for heading in ("## Agent events", "## Bus events", "## Channel messages"):
        assert heading in page
    assert "`agent.{session_id}.user_input` — type `axonbus.agent.UserInput`" in page
    assert ":class:" not in page  # docstrings become plain text
