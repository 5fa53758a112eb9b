"""The membership protocol of a distributed runtime: who takes part, what each can host, and
the pins, kept in step on ``$rt.{name}.members`` (plain pub/sub).

- ``hello`` when a member starts: its state (the agent types it can create, the
  subscriptions it added, its pins, the members it knows, a version number). Everyone answers
  with its own ``state``, which is also sent whenever that changes.
- ``pins`` deltas (``base`` -> ``v`` versions), a ``beat`` every ``heartbeat`` seconds (the
  version only) and ``bye`` on a clean stop.
- A member that misses ``EXPIRY_BEATS`` heartbeats is dead (the table is swept at each beat).
  Any message from a member is a sign of life.
- A beat from a member we do not know, or a version (or delta base) that differs from the
  state we hold, makes us fetch its state by request on ``$rt.{name}.w.{worker}``; states carry
  at most ``PAGE`` pins, the rest is fetched page by page. Lost messages heal at the next beat.
- ``start`` returns once every member named in the answers to its hello has sent its state
  (bounded by ``max(2 * heartbeat, 1)`` seconds; after ``min(heartbeat, 0.25)`` when nobody
  answers at all: it is alone). Until then ``locate`` answers ``PENDING`` and sends wait.

Pins: each member pins its instantiated agents whose rendezvous-hash winner is another member
(recomputed for the agent types whose hash order changed, and for each new agent), so the
others route those ids to it instead. See ``_membership_table`` for the table and the hashing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .._exceptions import AxonbusError, NoResponders, Undeliverable
from ._ids import AgentId
from ._membership_table import Member, Membership
from ._subscriptions import subscription_from_data, subscription_to_data

if TYPE_CHECKING:
    from .._engine.bus import Bus
    from ._runtime import AgentRuntime

__all__ = ["EXPIRY_BEATS", "PAGE", "PENDING", "Members"]

logger = logging.getLogger("axonbus.runtime")

EXPIRY_BEATS = 3  # heartbeats a member may miss before it counts as dead
PAGE = 2000  # pins per message
PENDING = ""  # locate() before the membership is known: send / publish wait for it
_MISSING: Any = object()


class Members:
    """The membership half of :class:`~._distributed.DistributedPlacement`."""

    def __init__(self, runtime: AgentRuntime, heartbeat: float) -> None:
        self.runtime = runtime
        self.bus: Bus = runtime.bus
        self.heartbeat = heartbeat
        self.me = secrets.token_hex(6)
        self._members_topic = f"$rt.{runtime.name}.members"
        self._rpc = f"$rt.{runtime.name}.w."
        self._mine = Member(self.me)
        self._mine.version = 0
        self._mine.synced = True
        self.view = Membership(self._mine)
        self._where: dict[AgentId, str | None] = {}  # locate()'s answers until the view changes
        self._ready: asyncio.Future[None] | None = None
        self._news = asyncio.Event()  # a member's state arrived (start waits for answers)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._syncing: set[str] = set()
        self._pins_out: tuple[set[AgentId], set[AgentId]] | None = None  # (add, drop) unsent
        self._pin_list: tuple[int, list[str]] = (-1, [])
        self._announcing = False
        runtime._hosts.added = self._added

    def _left(self, worker: str, why: str) -> None:
        """Hook: ``worker`` has left or died (the delivery half fails what waits on it)."""

    def _tick(self, now: float) -> None:
        """Hook: called at every heartbeat."""

    # -- where agents live ---------------------------------------------------------------------

    def locate(self, agent_id: AgentId) -> str | None:
        if agent_id in self.runtime._hosts.by_id:
            return None  # an agent this process has is always used here
        ready = self._ready
        if ready is None or not ready.done():
            return PENDING
        where = self._where
        found = where.get(agent_id, _MISSING)
        if found is _MISSING:
            owner = self.view.owner(agent_id)
            found = None if owner is None or owner == self.me else owner
            if len(where) >= 100_000:
                where.clear()
            where[agent_id] = found
        return found  # type: ignore[no-any-return]

    def _view_changed(self, types: set[str] | None = None, subs: bool = False) -> None:
        self._where.clear()
        self.runtime._targets.clear()
        if subs:
            self.runtime._subscriptions.set_remote(self.view.remote_subscriptions())
        if types is None or types:
            self._repin(types)

    # -- joining and leaving -------------------------------------------------------------------

    async def _join(self) -> None:
        """Announce ourselves and learn the membership (called with our subscriptions on)."""
        loop = asyncio.get_running_loop()
        ready = self._ready
        await self.bus.flush()  # our subscriptions are on the broker before anyone answers
        await self.bus.publish(self._members_topic, {"op": "hello", **self._state(0)})
        await self.bus.flush()
        await self._await_members(loop)
        if ready is None or ready.done() or ready is not self._ready:
            return  # stopped meanwhile
        ready.set_result(None)
        self._view_changed(set())
        self._spawn(self._beat())

    async def _await_members(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until every member we heard of sent its state (bounded; see the module docstring)."""
        t0 = loop.time()
        alone_after = t0 + min(self.heartbeat, 0.25)
        give_up = t0 + max(2 * self.heartbeat, 1.0)
        while True:
            others = self.view.others()
            expected = {m.id for m in others}.union(*(m.knows for m in others)) - {self.me}
            waiting = [w for w in expected if not getattr(self.view.get(w), "synced", False)]
            now = loop.time()
            if others and not waiting:
                return
            until = give_up if others else min(alone_after, give_up)
            if now >= until:
                if waiting:
                    logger.info("runtime %s: no state from %s yet", self.me, waiting)
                return
            self._news.clear()
            try:
                await asyncio.wait_for(self._news.wait(), until - now)
            except TimeoutError:
                pass

    async def _wait_ready(self) -> None:
        boot = self.runtime._boot
        if self._ready is None and boot is not None and self.runtime.state == "started":
            await asyncio.shield(boot)  # started without await: start() is still running
        ready = self._ready
        if ready is None:
            raise Undeliverable(f"worker {self.me} is stopped")
        await asyncio.shield(ready)

    async def _leave(self) -> None:
        """Stop the heartbeats, say goodbye, forget the others."""
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.set_exception(Undeliverable("the runtime stopped"))
            ready.exception()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        if self.bus.state == "started":
            try:
                await self.bus.publish(self._members_topic, {"op": "bye", "w": self.me})
                await asyncio.wait_for(self.bus.flush(), 2.0)
            except (AxonbusError, TimeoutError) as exc:
                logger.info("runtime %s: goodbye not sent: %s", self.me, exc)
        for member in self.view.others():
            self.view.remove(member.id)
        self._view_changed(set(), subs=True)

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.heartbeat)
            self._own_state()
            beat = {"op": "beat", "w": self.me, "v": self._mine.version, "hb": self.heartbeat}
            self._publish_nowait(self._members_topic, beat)
            now = loop.time()
            for member in self.view.others():
                if member.expires < now:
                    self._gone(member.id, "stopped answering (missed heartbeats)")
            self._tick(now)

    async def _on_member(self, data: Any) -> None:
        worker = data.get("w") if isinstance(data, dict) else None
        if not isinstance(worker, str) or worker == self.me or self._ready is None:
            return
        op = data.get("op")
        if op == "bye":
            self._gone(worker, "has left")
            return
        member = self.view.get(worker)
        if member is not None:
            self._alive(member, data)
        if op in ("hello", "state"):
            if data.get("pages", 1) > 1:
                self._sync(worker)
            else:
                self._apply_state(data, data.get("pins", ()))
            if op == "hello":
                self._publish_nowait(self._members_topic, {"op": "state", **self._state(0)})
        elif op == "beat":
            if member is None or member.version != data.get("v"):
                self._sync(worker)
        elif op == "pins":
            if member is None or not member.synced or member.version != data.get("base"):
                self._sync(worker)
                return
            self.view.add_pins(member, map(AgentId.from_str, data["add"]))
            self.view.drop_pins(member, map(AgentId.from_str, data["drop"]))
            member.version = data["v"]
            self._view_changed(set())

    def _apply_state(self, data: dict[str, Any], pins: Any) -> None:
        worker = data["w"]
        member = self.view.get(worker)
        if member is not None and member.synced and data["v"] < member.version:
            return  # older than what we hold
        if member is None:
            member = self.view.add(worker)
        self._alive(member, data)
        member.knows = tuple(data.get("members", ()))
        subs = []
        for item in data.get("subs", ()):
            try:
                subs.append(subscription_from_data(item))
            except (ValueError, KeyError):
                logger.warning("runtime: member %s sent a subscription we cannot read", worker)
        subs_changed = tuple(subs) != member.subs
        member.subs = tuple(subs)
        changed = self.view.set_types(member, data.get("types", ()))
        self.view.set_pins(member, map(AgentId.from_str, pins))
        member.version = data["v"]
        member.synced = True
        self._view_changed(changed, subs=subs_changed)
        self._news.set()

    @staticmethod
    def _alive(member: Member, data: dict[str, Any]) -> None:
        """A sign of life from ``member``."""
        beat = data.get("hb")
        if isinstance(beat, int | float) and beat > 0:
            member.heartbeat = float(beat)
        member.expires = asyncio.get_running_loop().time() + EXPIRY_BEATS * member.heartbeat

    def _sync(self, worker: str) -> None:
        if worker not in self._syncing:
            self._syncing.add(worker)
            self._spawn(self._fetch_state(worker))

    async def _fetch_state(self, worker: str) -> None:
        """Fetch a member's full state (every page of its pins) by request."""
        timeout = max(2 * self.heartbeat, 2.0)
        try:
            for _ in range(3):  # its state may change between pages: start again
                state = await self.bus.request(self._rpc + worker, {"op": "state"}, timeout=timeout)
                pins = list(state["pins"])
                for page in range(1, state["pages"]):
                    more = await self.bus.request(
                        self._rpc + worker, {"op": "state", "page": page}, timeout=timeout
                    )
                    if more["v"] != state["v"]:
                        break
                    pins += more["pins"]
                else:
                    self._apply_state(state, pins)
                    return
        except NoResponders:
            self._gone(worker, "is gone (no responder)")
        except (AxonbusError, TimeoutError, KeyError, TypeError) as exc:
            logger.info("runtime: no state from member %s: %r", worker, exc)
        finally:
            self._syncing.discard(worker)

    def _gone(self, worker: str, why: str) -> None:
        member, changed = self.view.remove(worker)
        if member is None:
            return
        logger.info("runtime %s: member %s %s", self.me, worker, why)
        self._left(worker, why)
        self._view_changed(changed, subs=bool(member.subs))

    # -- this process's own state ----------------------------------------------------------------

    def changed(self) -> None:
        """This process's agent types or subscriptions changed: tell the others (once for
        everything changed in this loop turn, e.g. by ``Agent.register``)."""
        if self._ready is not None and not self._announcing:
            self._announcing = True
            asyncio.get_running_loop().call_soon(self._announce)

    def _announce(self) -> None:
        self._announcing = False
        if self._ready is not None and self._own_state():
            self._publish_nowait(self._members_topic, {"op": "state", **self._state(0)})

    def _own_state(self) -> bool:
        """Refresh what we announce from the runtime; True when it changed."""
        runtime = self.runtime
        types = {name for name, reg in runtime._registrations.items() if reg.factory is not None}
        subs = []
        for sub in runtime._subscriptions:
            if subscription_to_data(sub) is not None:
                subs.append(sub)
        mine = self._mine
        if types == mine.types and tuple(subs) == mine.subs:
            return False
        mine.subs = tuple(subs)
        changed = self.view.set_types(mine, types)
        mine.version += 1
        self._view_changed(changed)
        return True

    def _state(self, page: int) -> dict[str, Any]:
        mine = self._mine
        version, pins = self._pin_list
        if version != mine.version:
            pins = sorted(str(p) for p in mine.pins)
            self._pin_list = (mine.version, pins)
        return {
            "w": self.me,
            "v": mine.version,
            "hb": self.heartbeat,
            "types": sorted(mine.types),
            "subs": [subscription_to_data(s) for s in mine.subs],
            "members": [m.id for m in self.view.others()],
            "pins": pins[page * PAGE : (page + 1) * PAGE],
            "pages": max(1, math.ceil(len(pins) / PAGE)),
        }

    def _repin(self, types: set[str] | None) -> None:
        """Pin what we host and the hash would place elsewhere; unpin what it places here."""
        mine = self._mine.pins
        hrw = self.view.hrw
        for agent_id in list(self.runtime._hosts.by_id):
            if types is not None and agent_id.type not in types:
                continue
            if hrw(agent_id) != self.me:
                if agent_id not in mine:
                    self._pin(agent_id, True)
            elif agent_id in mine:
                self._pin(agent_id, False)

    def _added(self, agent_id: AgentId) -> None:
        if self._ready is not None and self.view.hrw(agent_id) != self.me:
            self._pin(agent_id, True)

    def _pin(self, agent_id: AgentId, pinned: bool) -> None:
        self._pin_list = (-1, [])
        if pinned:
            self._mine.pins.add(agent_id)
        else:
            self._mine.pins.discard(agent_id)
        if self._pins_out is None:
            self._pins_out = (set(), set())
            asyncio.get_running_loop().call_soon(self._send_pins)
        add, drop = self._pins_out
        (add if pinned else drop).add(agent_id)
        (drop if pinned else add).discard(agent_id)

    def _send_pins(self) -> None:
        if self._pins_out is None:
            return
        add, drop = (sorted(str(p) for p in ids) for ids in self._pins_out)
        self._pins_out = None
        mine = self._mine
        for i in range(0, max(len(add), len(drop)), PAGE):
            base = mine.version
            mine.version += 1
            delta = {"op": "pins", "w": self.me, "base": base, "v": mine.version}
            delta.update(add=add[i : i + PAGE], drop=drop[i : i + PAGE])
            if self._ready is not None:
                self._publish_nowait(self._members_topic, delta)

    # -- helpers -------------------------------------------------------------------------------

    def _publish_nowait(self, topic: str, payload: dict[str, Any]) -> None:
        if self.bus.state != "started":
            return
        try:
            self.bus.publish_nowait(topic, payload)
        except AxonbusError as exc:  # the broker is away: heartbeats and versions catch up
            logger.info("runtime %s: not sent on %s: %s", self.me, topic, exc)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro, name="axonbus-runtime")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
