from __future__ import annotations

import pytest

from axonbus import Event, InvalidTopic
from axonbus._events import event_class


class ToolCall(Event, topic="agent.{session_id}.tool_call"):
    session_id: str
    tool: str
    args: dict[str, object] = {}


class Plain(Event):
    x: int = 0


def test_topic_template_is_filled() -> None:
    assert ToolCall(session_id="s1", tool="search").topic == "agent.s1.tool_call"


def test_topic_pattern_replaces_placeholders() -> None:
    assert ToolCall.topic_pattern() == "agent.*.tool_call"


def test_field_that_cannot_fill_a_token_is_rejected() -> None:
    with pytest.raises(InvalidTopic, match="session_id"):
        _ = ToolCall(session_id="a.b", tool="x").topic


def test_event_without_topic() -> None:
    with pytest.raises(InvalidTopic, match="no topic"):
        _ = Plain().topic


def test_bad_template_fails_at_class_creation() -> None:
    with pytest.raises(InvalidTopic, match="Broken"):

        class Broken(Event, topic="a..{x}"):
            x: str


def test_registry_by_qualified_name() -> None:
    assert event_class(ToolCall.__event_name__) is ToolCall
    assert ToolCall.__event_name__.endswith("test_events.ToolCall")


def test_explicit_event_name() -> None:
    class Named(Event, topic="n.x", name="my.Named"):
        pass

    assert event_class("my.Named") is Named
