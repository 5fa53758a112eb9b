"""Names on the broker: routing keys, binding keys, exchanges and queues of one bus.

axonbus topics are AMQP routing keys as they are; a pattern becomes a binding key with ``*``
for ``*`` and ``*.#`` for ``>`` (one or more tokens, exactly as in axonbus). A token AMQP
cannot route is refused with :class:`~axonbus.InvalidTopic`: ``#`` alone (a binding would read
it as a wildcard) and a topic over 255 bytes (the longest routing key).

>>> binding_key("orders.*.>")
'orders.*.*.#'
"""

from __future__ import annotations

import hashlib

from ..._exceptions import InvalidTopic

__all__ = ["Names", "binding_key", "check_routable"]

MAX_KEY = 255  # bytes in a routing key, and in a queue or exchange name


def check_routable(topic: str) -> None:
    """Raise :class:`InvalidTopic` for a topic or pattern AMQP cannot route exactly."""
    if "#" in topic and "#" in topic.split("."):
        raise InvalidTopic(topic, "token '#' is a wildcard in AMQP and cannot be routed")
    if len(topic) > MAX_KEY // 4 and len(topic.encode()) > MAX_KEY:
        raise InvalidTopic(topic, f"longer than {MAX_KEY} bytes, the longest AMQP routing key")


def binding_key(pattern: str) -> str:
    """The AMQP binding key that matches exactly the topics ``pattern`` matches."""
    check_routable(pattern)
    return ".".join("*.#" if tok == ">" else tok for tok in pattern.split("."))


def _bounded(name: str) -> str:
    """``name``, or a prefix of it with a digest when it is too long for a queue name."""
    if len(name.encode()) <= MAX_KEY:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:16]
    return name.encode()[: MAX_KEY - 17].decode(errors="ignore") + "~" + digest


class Names:
    """Every exchange and queue name of the bus ``bus``, under ``axonbus.{bus}``."""

    def __init__(self, bus: str) -> None:
        self.root = f"axonbus.{bus}"
        self.events = self.root  # topic exchange: every event, keyed by its topic
        self.rpc = f"{self.root}.rpc"  # topic exchange: requests, to responder queues
        self.retry = f"{self.root}.retry"  # headers exchange: to the delay queues
        self.dead_letters = f"{self.root}.dead_letters"  # keeps $bus.dead_letter events

    def durable(self, name: str) -> str:
        return _bounded(f"{self.root}.durable.{name}")

    def group(self, group: str, pattern: str) -> str:
        return _bounded(f"{self.root}.group.{group}.{pattern}")

    def responder(self, pattern: str) -> str:
        return _bounded(f"{self.root}.respond.{pattern}")

    def delay(self, ms: int) -> str:
        return f"{self.root}.delay.{ms}"

    def attempts(self, queue: str, message_id: str) -> str:
        return _bounded(f"{queue}.attempts.{message_id}")
