"""AgentId, TopicId, AgentType, DefaultTopicId: values, strings, validation."""

from __future__ import annotations

import pickle

import pytest

from axonbus.runtime import AgentId, AgentType, DefaultTopicId, TopicId


def test_agent_id_value_semantics() -> None:
    a = AgentId("checker", "default")
    assert a == AgentId("checker", "default")
    assert hash(a) == hash(AgentId("checker", "default"))
    assert a != AgentId("checker", "other")
    assert a != AgentId("modifier", "default")
    assert (a.type, a.key) == ("checker", "default")
    assert str(a) == "checker/default"
    assert repr(a) == "AgentId(type='checker', key='default')"
    assert a != "checker/default"
    assert len({a, AgentId("checker", "default")}) == 1


def test_agent_id_strings_round_trip_with_slashes_in_key() -> None:
    a = AgentId("session", "user/42/chat")
    assert AgentId.from_str(str(a)) == a
    with pytest.raises(ValueError, match="type/key"):
        AgentId.from_str("no-slash")


def test_agent_id_accepts_agent_type() -> None:
    assert AgentId(AgentType("worker"), "k") == AgentId("worker", "k")
    assert str(AgentType("worker")) == "worker"


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "x:y"])
def test_agent_type_is_validated(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid agent type"):
        AgentId(bad, "k")


def test_key_must_be_a_string() -> None:
    with pytest.raises(TypeError):
        AgentId("t", 1)  # type: ignore[arg-type]


def test_topic_id_value_semantics() -> None:
    t = TopicId("orders.created", "customer:7")
    assert t == TopicId(type="orders.created", source="customer:7")
    assert hash(t) == hash(TopicId("orders.created", "customer:7"))
    assert str(t) == "orders.created/customer:7"
    assert TopicId.from_str("a:b=c/src/x") == TopicId("a:b=c", "src/x")
    with pytest.raises(ValueError, match="invalid topic type"):
        TopicId("has space", "s")
    with pytest.raises(ValueError, match="type/source"):
        TopicId.from_str("nosource")


def test_default_topic_id_outside_a_handler() -> None:
    assert DefaultTopicId() == TopicId("default", "default")
    assert DefaultTopicId("news") == TopicId("news", "default")
    assert DefaultTopicId(source="s1") == TopicId("default", "s1")
    assert hash(DefaultTopicId()) == hash(TopicId("default", "default"))


def test_ids_pickle_and_compare_across_subclasses() -> None:
    for value in (AgentId("a", "b"), TopicId("t", "s"), DefaultTopicId()):
        assert pickle.loads(pickle.dumps(value)) == value
