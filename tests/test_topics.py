from __future__ import annotations

import pytest

from axonbus import InvalidTopic, match
from axonbus._topics import TopicIndex, split_pattern, split_topic


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a.b.c", "a.b.c", True),
        ("a.b.c", "a.b", False),
        ("a.*.c", "a.x.c", True),
        ("a.*.c", "a.x.y.c", False),
        ("a.>", "a.b", True),
        ("a.>", "a.b.c.d", True),
        ("a.>", "a", False),
        (">", "anything.at.all", True),
        ("*", "one", True),
        ("*", "one.two", False),
        (">", "$bus.dead_letter", False),
        ("*.dead_letter", "$bus.dead_letter", False),
        ("$bus.>", "$bus.dead_letter", True),
        ("$bus.*", "$bus.handler_failed", True),
        ("a.*.>", "a.b.c", True),
        ("a.*.>", "a.b", False),
    ],
)
def test_match(pattern: str, topic: str, expected: bool) -> None:
    assert match(pattern, topic) is expected


@pytest.mark.parametrize(
    ("topic", "needle"),
    [
        ("", "empty topic"),
        ("a..b", "position 1"),
        ("a.b c", "'b c'"),
        ("a.*", "'*'"),
        ("a.>", "'>'"),
        ("a.b*", "'b*'"),
    ],
)
def test_invalid_topics_name_the_token(topic: str, needle: str) -> None:
    with pytest.raises(InvalidTopic) as info:
        split_topic(topic)
    assert needle in str(info.value)


@pytest.mark.parametrize("pattern", ["a.>.b", "a.b>", "a.*x", "", "a..>"])
def test_invalid_patterns(pattern: str) -> None:
    with pytest.raises(InvalidTopic):
        split_pattern(pattern)


def test_invalid_topic_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid topic"):
        split_topic("a..b")


def test_index_lookup_matches_brute_force() -> None:
    patterns = ["a.b.c", "a.*.c", "a.>", ">", "*.b.*", "x.y", "$sys.>", "a.b.*", "*"]
    topics = ["a.b.c", "a.x.c", "a", "x.y", "q.b.r", "$sys.one", "a.b.d", "z"]
    idx: TopicIndex[str] = TopicIndex()
    for p in patterns:
        idx.add(p, p)
    for t in topics:
        assert list(idx.lookup(t)) == [p for p in patterns if match(p, t)], t


def test_index_remove_and_cache_invalidation() -> None:
    idx: TopicIndex[object] = TopicIndex()
    a, b = object(), object()
    idx.add("a.*", a)
    assert idx.lookup("a.x") == (a,)
    idx.add("a.x", b)
    assert idx.lookup("a.x") == (a, b)  # cache cleared on add
    assert idx.remove("a.*", a)
    assert idx.lookup("a.x") == (b,)
    assert not idx.remove("a.*", a)
    assert idx.remove("a.x", b)
    assert idx.lookup("a.x") == ()
    assert len(idx) == 0
    assert idx._root.children == {}  # empty branches pruned


def test_same_item_twice_is_returned_once() -> None:
    idx: TopicIndex[object] = TopicIndex()
    it = object()
    idx.add("a.*", it)
    idx.add("a.>", it)
    assert idx.lookup("a.b") == (it,)
