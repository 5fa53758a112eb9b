"""Who takes part in a distributed runtime, and which of them hosts an agent.

Every process keeps a :class:`Membership`: the members it has heard from on
``$rt.{name}.members`` (see ``_distributed``), each with the agent types it can create, the
subscriptions it added and its *pins*. Ownership of ``AgentId(type, key)``:

1. a pin, if a live member has one for the id: that member hosts it already (it was created
   there before a newcomer took its place in the hash order, or registered there by hand);
2. otherwise rendezvous hashing (highest random weight) over the live members that can create
   ``type``: each member scores ``mix(hash(id) ^ hash(member))`` and the highest score wins.
   Every process computes the same winner from the same table without talking to the others,
   and when a member comes or goes only the ids it wins (or won) change hands.

A member's pins are exactly its instantiated agents whose hash winner is someone else; each
member computes its own (``_distributed``) and the others keep a copy here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from ._ids import AgentId
from ._subscriptions import Subscription

__all__ = ["Member", "Membership"]

_MASK = (1 << 64) - 1


def hash64(text: str) -> int:
    """A stable 64-bit hash (``hash()`` of a str differs between processes)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _score(key: int, seed: int) -> int:
    # splitmix64's finalizer: a well-mixed score from the key and the member, in pure int math
    z = key ^ seed
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class Member:
    """One process of the runtime, as this process knows it."""

    __slots__ = (
        "expires",
        "heartbeat",
        "id",
        "knows",
        "pins",
        "seed",
        "subs",
        "synced",
        "types",
        "version",
    )

    def __init__(self, worker: str) -> None:
        self.id = worker
        self.seed = hash64(worker)
        self.types: frozenset[str] = frozenset()  # agent types it has a factory for
        self.subs: tuple[Subscription, ...] = ()  # the subscriptions it added
        self.pins: set[AgentId] = set()
        self.version = -1  # of its state (types, subscriptions, pins) as last applied here
        self.synced = False  # its full state is here (not just a heartbeat)
        self.heartbeat = 1.0  # seconds between its heartbeats, as it says
        self.expires = math.inf  # loop time after which it counts as dead
        self.knows: tuple[str, ...] = ()  # the members it knew when it last sent its state

    def __repr__(self) -> str:
        return f"<Member {self.id} types={sorted(self.types)} pins={len(self.pins)}>"


class Membership:
    """The live members, the hash order per agent type, and every member's pins."""

    def __init__(self, me: Member) -> None:
        self.me = me
        self.members: dict[str, Member] = {me.id: me}
        self._hosts_of: dict[str, tuple[Member, ...]] = {}  # agent type -> its live members
        self.pins: dict[AgentId, str] = {}  # another member's pinned ids -> that member

    def __contains__(self, worker: str) -> bool:
        return worker in self.members

    def get(self, worker: str) -> Member | None:
        return self.members.get(worker)

    def others(self) -> list[Member]:
        return [m for m in self.members.values() if m is not self.me]

    # -- ownership -----------------------------------------------------------------------------

    def owner(self, agent_id: AgentId) -> str | None:
        """Who hosts ``agent_id``: its pin, else the hash winner; None if no member can."""
        pinned = self.pins.get(agent_id)
        if pinned is not None:
            return pinned
        return self.hrw(agent_id)

    def hrw(self, agent_id: AgentId) -> str | None:
        """The rendezvous-hash winner among the live members that can create the id's type."""
        hosts = self._hosts_of.get(agent_id.type)
        if not hosts:
            return None
        if len(hosts) == 1:
            return hosts[0].id
        key = hash64(str(agent_id))
        best = hosts[0]
        best_score = _score(key, best.seed)
        for member in hosts[1:]:
            score = _score(key, member.seed)
            if score > best_score or (score == best_score and member.id > best.id):
                best, best_score = member, score
        return best.id

    # -- changes (each returns the agent types whose hash order changed) -------------------------

    def add(self, worker: str) -> Member:
        member = self.members.get(worker)
        if member is None:
            member = self.members[worker] = Member(worker)
        return member

    def set_types(self, member: Member, types: Iterable[str]) -> set[str]:
        new = frozenset(types)
        changed = set(new ^ member.types)
        member.types = new
        self._reindex(changed)
        return changed

    def set_pins(self, member: Member, pins: Iterable[AgentId]) -> None:
        self.drop_pins(member, list(member.pins))
        self.add_pins(member, pins)

    def add_pins(self, member: Member, pins: Iterable[AgentId]) -> None:
        for agent_id in pins:
            member.pins.add(agent_id)
            if member is not self.me:
                self.pins[agent_id] = member.id

    def drop_pins(self, member: Member, pins: Iterable[AgentId]) -> None:
        for agent_id in pins:
            member.pins.discard(agent_id)
            if self.pins.get(agent_id) == member.id:
                del self.pins[agent_id]

    def remove(self, worker: str) -> tuple[Member | None, set[str]]:
        member = self.members.get(worker)
        if member is None or member is self.me:
            return None, set()
        del self.members[worker]
        self.drop_pins(member, list(member.pins))
        changed = set(member.types)
        self._reindex(changed)
        return member, changed

    def _reindex(self, types: Iterable[str]) -> None:
        for agent_type in types:
            hosts = tuple(m for m in self.members.values() if agent_type in m.types)
            if hosts:
                self._hosts_of[agent_type] = hosts
            else:
                self._hosts_of.pop(agent_type, None)

    def remote_subscriptions(self) -> list[Subscription]:
        return [sub for m in self.members.values() if m is not self.me for sub in m.subs]
