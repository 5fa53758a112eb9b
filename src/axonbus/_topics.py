"""Topics, NATS-style patterns, and the subscription index.

A topic is dot-separated tokens: ``agent.s1.tool_call``. In a pattern ``*`` matches exactly one
token and ``>`` one or more trailing tokens. Topics whose first token starts with ``$`` are system
topics: a wildcard in the first position never matches them, so ``>`` sees only application events.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Generic, TypeVar

from ._exceptions import InvalidTopic

__all__ = ["TopicIndex", "is_pattern", "is_system", "match", "split_pattern", "split_topic"]

T = TypeVar("T")

_FORBIDDEN = frozenset(string.whitespace) | {"*", ">"}
_MAX_CACHE = 8192


def _check_tokens(topic: str, *, wildcards: bool) -> list[str]:
    if not isinstance(topic, str):
        raise InvalidTopic(repr(topic), f"expected str, got {type(topic).__name__}")
    if not topic:
        raise InvalidTopic(topic, "empty topic")
    tokens = topic.split(".")
    last = len(tokens) - 1
    for i, tok in enumerate(tokens):
        if not tok:
            raise InvalidTopic(topic, f"empty token at position {i}")
        if wildcards and tok == "*":
            continue
        if wildcards and tok == ">":
            if i != last:
                raise InvalidTopic(topic, "'>' is only allowed as the last token")
            continue
        bad = _FORBIDDEN.intersection(tok)
        if bad:
            what = "wildcards must be whole tokens" if bad & {"*", ">"} else "whitespace"
            raise InvalidTopic(topic, f"token {tok!r} contains {''.join(sorted(bad))!r} ({what})")
    return tokens


def split_topic(topic: str) -> list[str]:
    """Validate a concrete topic and return its tokens; raises :class:`InvalidTopic`."""
    return _check_tokens(topic, wildcards=False)


def split_pattern(pattern: str) -> list[str]:
    """Validate a pattern (a topic that may contain ``*`` and ``>``) and return its tokens."""
    return _check_tokens(pattern, wildcards=True)


def is_pattern(pattern: str) -> bool:
    return "*" in pattern or ">" in pattern


def is_system(topic: str) -> bool:
    return topic.startswith("$")


def match(pattern: str, topic: str) -> bool:
    """True when ``topic`` matches ``pattern`` under the rules above.

    >>> match("agent.*.tool_call", "agent.s1.tool_call")
    True
    >>> match(">", "$bus.dead_letter")
    False
    """
    p = pattern.split(".")
    t = topic.split(".")
    if t[0].startswith("$") and p[0] in ("*", ">"):
        return False
    for i, tok in enumerate(p):
        if tok == ">":
            return len(t) > i
        if i >= len(t) or (tok != "*" and tok != t[i]):
            return False
    return len(p) == len(t)


class _Node(Generic[T]):
    __slots__ = ("children", "items", "tail")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.items: list[T] = []  # patterns ending exactly here
        self.tail: list[T] = []  # patterns ending with ">" here


class TopicIndex(Generic[T]):
    """Maps patterns to items; ``lookup(topic)`` returns the items whose pattern matches.

    A token trie answers a lookup without scanning every pattern, and a per-topic cache makes the
    common case (the same topics again and again) one dict lookup. Any change clears the cache.
    Items come back in insertion order, each once.
    """

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        # topic -> matching items; read directly by the bus's publish path, cleared on any change
        self.cache: dict[str, tuple[T, ...]] = {}
        self._seq: dict[int, int] = {}  # id(item) -> insertion order, for a stable result order
        self._counter = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, pattern: str, item: T) -> None:
        node = self._root
        tokens = split_pattern(pattern)
        for tok in tokens[:-1]:
            node = node.children.setdefault(tok, _Node())
        last = tokens[-1]
        if last == ">":
            node.tail.append(item)
        else:
            node.children.setdefault(last, _Node()).items.append(item)
        self._counter += 1
        self._seq[id(item)] = self._counter
        self._size += 1
        self.cache.clear()

    def remove(self, pattern: str, item: T) -> bool:
        """Remove one item; returns False when it was not there."""
        tokens = split_pattern(pattern)
        path: list[tuple[_Node[T], str]] = []
        node = self._root
        for tok in tokens[:-1]:
            child = node.children.get(tok)
            if child is None:
                return False
            path.append((node, tok))
            node = child
        last = tokens[-1]
        if last == ">":
            bucket = node.tail
        else:
            leaf = node.children.get(last)
            if leaf is None:
                return False
            path.append((node, last))
            node = leaf
            bucket = node.items
        for i, existing in enumerate(bucket):
            if existing is item:
                del bucket[i]
                break
        else:
            return False
        self._seq.pop(id(item), None)
        self._size -= 1
        self.cache.clear()
        # prune empty branches so a long-running process with churning topics does not leak nodes
        for parent, tok in reversed(path):
            child = parent.children[tok]
            if child.items or child.tail or child.children:
                break
            del parent.children[tok]
        return True

    def lookup(self, topic: str) -> tuple[T, ...]:
        found = self.cache.get(topic)
        if found is not None:
            return found
        found = self._collect(topic)
        if len(self.cache) >= _MAX_CACHE:
            self.cache.clear()
        self.cache[topic] = found
        return found

    def _collect(self, topic: str) -> tuple[T, ...]:
        tokens = split_topic(topic)  # validated once per distinct topic, then cached
        system = tokens[0].startswith("$")
        out: list[T] = []
        n = len(tokens)
        # iterative walk over (node, depth) pairs; "*" and ">" branches fan out
        stack: list[tuple[_Node[T], int]] = [(self._root, 0)]
        while stack:
            node, depth = stack.pop()
            tok = tokens[depth]
            wild_ok = not (system and depth == 0)
            if wild_ok and node.tail:
                out.extend(node.tail)
            last = depth == n - 1
            for key in (tok, "*") if wild_ok else (tok,):
                child = node.children.get(key)
                if child is None:
                    continue
                if last:
                    out.extend(child.items)
                else:
                    stack.append((child, depth + 1))
        if len(out) > 1:
            seq = self._seq
            out = sorted(_unique(out), key=lambda it: seq.get(id(it), 0))
        return tuple(out)

    def items(self) -> Iterable[T]:
        stack = [self._root]
        while stack:
            node = stack.pop()
            yield from node.items
            yield from node.tail
            stack.extend(node.children.values())


def _unique(items: list[T]) -> list[T]:
    seen: set[int] = set()
    out: list[T] = []
    for it in items:
        if id(it) not in seen:
            seen.add(id(it))
            out.append(it)
    return out
