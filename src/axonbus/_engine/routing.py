"""Who is subscribed to what: the topic indexes, shared mailboxes, subscriptions and streams.

This lives apart from the Bus so the rules for which mailbox a subscription, group, durable
name, responder or stream reads from, and when a mailbox leaves the indexes, sit in one place.
The Bus keeps lifecycle, publishing and requests; it holds ``index`` directly so the publish
hot path reads the route cache without an extra hop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .._events import Event
from .._exceptions import InvalidTopic
from .._topics import TopicIndex, split_pattern
from .mailbox import Mailbox

if TYPE_CHECKING:
    from .subscription import Subscription

__all__ = ["Detached", "RoutingTable", "resolve_target"]

# what detaching left behind: other members still consume the mailbox ("shared"), a durable
# keeps its queue for when the name comes back ("parked"), or the mailbox is gone ("closed")
Detached = Literal["shared", "parked", "closed"]


def resolve_target(target: str | type[Any]) -> tuple[str, type | None]:
    """A pattern, or an Event class as its topic pattern plus the class to filter payloads by."""
    if isinstance(target, str):
        split_pattern(target)
        return target, None
    if isinstance(target, type) and issubclass(target, Event):
        return target.topic_pattern(), target
    raise InvalidTopic(repr(target), "expected a topic pattern (str) or an Event subclass")


class RoutingTable:
    """The bus's registry of mailboxes by pattern, and of the subscriptions reading them."""

    def __init__(self, *, remote: bool = False) -> None:
        # remote: a broker feeds group and durable mailboxes, so publish must not reach them
        self.remote = remote
        self.index: TopicIndex[Mailbox] = TopicIndex()
        # kept out of ``index`` so a publish never reaches a responder, nor a request a subscriber
        self.responders: TopicIndex[Mailbox] = TopicIndex()
        self.shared: dict[tuple[str, ...], Mailbox] = {}
        self.subs: list[Subscription] = []
        self.streams: set[Mailbox] = set()
        # plain subscriptions' and streams' mailboxes by their exact pattern, for events a
        # broker hands in (it delivers once per watched pattern)
        self.broadcast: dict[str, list[Mailbox]] = {}
        self.strict = 0  # mailboxes with overflow="error": publish checks them all first
        self.version = 0  # bumped whenever a subscription comes or goes (for caches elsewhere)

    def subscriber_mailbox(
        self,
        pattern: str,
        *,
        name: str,
        group: str | None,
        durable: str | None,
        maxsize: int,
        overflow: str,
    ) -> Mailbox:
        key: tuple[str, ...] | None = None
        if durable is not None:
            key = ("durable", durable)
        elif group is not None:
            key = ("group", pattern, group)
        return self._mailbox_for(self.index, key, name, pattern, maxsize, overflow)

    def responder_mailbox(self, pattern: str, *, maxsize: int) -> Mailbox:
        return self._mailbox_for(
            self.responders, ("respond", pattern), f"respond:{pattern}", pattern, maxsize, "block"
        )

    def _mailbox_for(
        self,
        index: TopicIndex[Mailbox],
        key: tuple[str, ...] | None,
        name: str,
        pattern: str,
        maxsize: int,
        overflow: str,
    ) -> Mailbox:
        if key is not None:
            existing = self.shared.get(key)
            if existing is not None:
                if existing.pattern != pattern:
                    raise ValueError(
                        f"{key[0]} {key[-1]!r} is bound to {existing.pattern!r}, not {pattern!r}"
                    )
                return existing
        mb = Mailbox(name, pattern, maxsize=maxsize, overflow=overflow, counted=True, key=key)
        if self._indexed(mb):
            index.add(pattern, mb)
        if key is None:
            self.broadcast.setdefault(pattern, []).append(mb)
        else:
            self.shared[key] = mb
        if overflow == "error":
            self.strict += 1
        return mb

    def attach(self, sub: Subscription) -> int:
        """Register ``sub``; returns how many queued envelopes drain() must now also wait for."""
        mb = sub.mailbox
        backlog = 0
        if not mb.counted:
            mb.counted = True  # a parked durable comes back with its backlog
            backlog = len(mb.queue)
        mb.members.append(sub)
        self.subs.append(sub)
        self.version += 1
        return backlog

    def detach(self, sub: Subscription) -> Detached | None:
        """Unregister ``sub``; None when it was not attached. The caller stops it."""
        if not sub.active or sub not in self.subs:
            return None
        self.subs.remove(sub)
        self.version += 1
        mb = sub.mailbox
        mb.members.remove(sub)
        if mb.members:
            return "shared"
        if sub.durable is not None:
            # the queue waits for the durable name to come back, so drain() stops awaiting it
            mb.counted = False
            return "parked"
        index = self.responders if mb.key and mb.key[0] == "respond" else self.index
        if self._indexed(mb):
            index.remove(mb.pattern, mb)
        if mb.key is not None:
            self.shared.pop(mb.key, None)
        else:
            self._unlist(mb)
        if mb.overflow == "error":
            self.strict -= 1
        mb.closed = True
        return "closed"

    def _indexed(self, mb: Mailbox) -> bool:
        """Whether publishes reach ``mb`` directly (not through a broker)."""
        return not (self.remote and mb.key is not None and mb.key[0] != "respond")

    def _unlist(self, mb: Mailbox) -> None:
        same = self.broadcast.get(mb.pattern)
        if same is not None and mb in same:
            same.remove(mb)
            if not same:
                del self.broadcast[mb.pattern]

    def add_stream(self, mb: Mailbox) -> None:
        self.index.add(mb.pattern, mb)
        self.streams.add(mb)
        self.broadcast.setdefault(mb.pattern, []).append(mb)
        if mb.overflow == "error":
            self.strict += 1

    def close_stream(self, mb: Mailbox) -> bool:
        """Unregister a stream's mailbox; True if it was registered."""
        registered = mb in self.streams
        if registered:
            self.streams.discard(mb)
            self.index.remove(mb.pattern, mb)
            self._unlist(mb)
            if mb.overflow == "error":
                self.strict -= 1
        mb.closed = True
        mb.wake_all()
        return registered

    def mailboxes(self) -> list[Mailbox]:
        """Every registered mailbox, once (streams are in both ``index`` and ``streams``)."""
        seen: dict[int, Mailbox] = {}
        for mb in (*self.index.items(), *self.responders.items(), *self.streams):
            seen[id(mb)] = mb
        return list(seen.values())
