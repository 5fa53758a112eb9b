"""The agent runtime across processes: the same ``AgentRuntime`` on a ``redis://`` or
``nats://`` bus (any bus whose transport leaves the process), with no host process of our own.

>>> runtime = AgentRuntime(Bus("nats://127.0.0.1:4222", name="shop"), name="orders")
>>> await Counter.register(runtime, "counter", Counter)     # in as many processes as you like
>>> await runtime.start()
>>> await runtime.send_message(Increment(), AgentId("counter", "user-42"))

Every process is a *member*, with a random worker id per runtime instance; ``_membership_protocol``
keeps the membership in step (heartbeats every ``heartbeat`` seconds on ``$rt.{name}.members``, a
member missing ``EXPIRY_BEATS`` of them is dead, ``bye`` on a clean stop; ``start`` returns once the
members have answered its hello). Topics (``name`` is the runtime's name, so several runtimes can
share a bus): ``$rt.{name}.members``; ``$rt.{name}.w.{worker}`` (request/reply, one responder: that
worker) for sends and member state; ``$rt.{name}.p.{worker}`` (plain pub/sub) for publishes routed
to that worker, and cancels.

**Placement** (``_membership_table``): the owner of ``AgentId(type, key)`` is a member's pin if one
has it, else the rendezvous-hash winner among the live members that can create ``type``; every
process computes the same owner. A member *pins* each of its instantiated agents whose hash
winner is someone else, and tells everyone (pins travel as deltas; a newcomer gets them all in
the answers to its hello, before its ``start`` returns). So a worker that joins takes only
*new* keys: a key already instantiated stays where its state is. When a member dies its pins go
with it and its keys move to the hash winner among the survivors (their state starts afresh
there). Pins are bounded by the number of agents instantiated away from their hash winner: the
keys that existed when members joined (messages carry at most ``PAGE`` of them; a long list
is fetched in pages).

A receiver checks ownership again: a message for an agent it neither hosts nor owns (the
sender's view was behind) is forwarded once to the owner in its own view; a forwarded message
is delivered where it lands. So views that disagree for a moment still meet in one place.

**send_message** is ``bus.request`` to the owner's responder. The responder takes the reply
future off the request envelope (``ctx.envelope.reply``: the contract between the Bus and its
responders, in-package), queues the message at the agent's host like a local send (what
``AgentRuntime._receive_send`` does, without a coroutine per send) and answers from the reply's
done-callback when the agent has handled it. So one responder task serves every send, in
arrival order (sends from one process to one agent keep their order), and a slow agent holds
up only its own mailbox. The reply is the value in data form
(``_serialization``) or a typed error: :class:`RemoteError` keeps the remote type and message;
``CantHandle``, ``AgentNotFound``, ``Undeliverable`` come back as themselves. A message of a
type the receiving process does not know is :class:`CantHandle` there (nothing is ever
unpickled); a reply of a type the caller does not know is :class:`DecodeError`
(``runtime.message_types.register(cls)``). Classes a process sends are registered on the way
out (pydantic models, dataclasses); handlers' message types at ``Agent.register``.

If the owner dies or leaves while a send waits, the send fails with :class:`Undeliverable` as
soon as this process notices (its ``bye``, ``EXPIRY_BEATS`` missed heartbeats, or no responder
on the broker); ``timeout`` gives :class:`RequestTimeout`. Never a hang: with no timeout a
send to a dead worker still ends when the worker expires. A cancelled token, a timeout or a
cancelled caller also sends a ``cancel`` to the worker, which cancels the handler's task (the
handler sees ``CancelledError``); a cancel that overtakes its send is remembered for a minute.

**publish_message** (the seam's routing, not a broadcast): the publisher computes the recipients
from the subscriptions (its own and every live member's, replicated in the member state) and
sends one message per owning worker, with the recipients there; the sender is excluded. Under a
stable membership each recipient gets it exactly once (at most once: plain pub/sub). While the
membership changes a publish goes where the publisher's view says, a receiver that disagrees
forwards it once, and a publish to a worker that has just died is lost.

**Subscriptions** are per member: ``add_subscription`` in one process adds it to that member's
state, so every process routes by the union over the live members (a member that dies takes its
subscriptions with it, like a client of autogen's host); ``remove_subscription`` removes one of
this process's own. Only the built-in kinds (type, type prefix) cross; others stay local.

Not across processes: ``DeadlockDetected`` (a cycle of sends through several processes waits
until a timeout: give such sends one), and ordering between a publish and a send (they travel
on different topics). ``save_state`` / ``load_state`` cover this process's agents (a loaded
agent is instantiated, and pinned, here). A broker outage looks like every other member dying;
they come back with their next heartbeats.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .._engine.context import Context
from .._exceptions import (
    CantHandle,
    ConnectionLost,
    DecodeError,
    NoResponders,
    RemoteError,
    RequestTimeout,
    Undeliverable,
)
from ._context import CancellationToken, MessageContext
from ._ids import AgentId
from ._membership_protocol import PENDING, Members
from ._runtime import Placement
from ._serialization import context_from_data, context_to_data, error_from_data, error_to_data

if TYPE_CHECKING:
    from .._engine.subscription import Subscription as BusSubscription
    from ._runtime import AgentRuntime

__all__ = ["DistributedPlacement"]

logger = logging.getLogger("axonbus.runtime")

CANCEL_MEMORY = 60.0  # seconds a cancel for a send not (yet) seen here is remembered
_GONE_ERRORS = ("BusClosed", "ConnectionLost", "Undeliverable")


class _Call:
    """A send waiting for a reply from another worker."""

    __slots__ = ("cm", "why")

    def __init__(self, cm: asyncio.Timeout) -> None:
        self.cm = cm
        self.why: str | None = None  # set when we end the wait: the worker left, or cancelled


class DistributedPlacement(Members, Placement):
    """Membership, placement and delivery across processes (see the module docstring)."""

    local_only = False

    def __init__(self, runtime: AgentRuntime, heartbeat: float) -> None:
        super().__init__(runtime, heartbeat)
        self._inbox = f"$rt.{runtime.name}.p."
        self._subs: list[BusSubscription] = []
        self._calls: dict[str, dict[int, _Call]] = {}  # worker -> our sends waiting on it
        self._seq = 0
        self._serving: dict[tuple[str, int], CancellationToken] = {}  # sends handled here
        self._cancelled: dict[tuple[str, int], float] = {}  # cancels that came before the send

    def __repr__(self) -> str:
        return f"<DistributedPlacement {self.me} members={len(self.view.members)}>"

    # -- sending -------------------------------------------------------------------------------

    async def send(
        self,
        worker: str,
        message: Any,
        recipient: AgentId,
        ctx: MessageContext,
        timeout: float | None,
    ) -> Any:
        if worker == PENDING:
            await self._wait_ready()
            where = self.locate(recipient)
            if where is None:
                return await self.runtime._receive_send(message, recipient, ctx, timeout)
            worker = where
        value = await self._request(worker, self._dump(message), recipient, ctx, timeout, 0)
        try:
            return self.runtime.message_types.load(value)
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"the reply of {recipient} cannot be read here: {exc}") from exc

    async def _request(
        self,
        worker: str,
        message: dict[str, Any],
        recipient: AgentId,
        ctx: MessageContext,
        timeout: float | None,
        hop: int,
    ) -> Any:
        """Ask ``worker`` to deliver; the reply in data form, or the mapped error."""
        calls = self._calls.get(worker)
        if calls is None:
            if worker not in self.view:
                raise Undeliverable(f"{recipient}: worker {worker} has left")
            calls = self._calls[worker] = {}
        self._seq += 1
        call = self._seq
        payload = {
            "op": "send",
            "f": self.me,
            "n": call,
            "to": str(recipient),
            "m": message,
            "c": context_to_data(ctx),
            "t": timeout,
            "h": hop,
        }
        token = ctx._token
        if token is not None and token.is_cancelled():
            raise asyncio.CancelledError
        entry: _Call | None = None
        try:
            try:
                async with asyncio.timeout(None) as cm:
                    entry = _Call(cm)
                    calls[call] = entry
                    if token is not None:
                        token._link(entry, partial(self._end_call, entry, "cancelled"))
                    return await self.bus.request(self._rpc + worker, payload, timeout=timeout)
            finally:  # first: nobody may end this wait any more
                calls.pop(call, None)
                if token is not None and entry is not None:
                    token._unlink(entry)
        except TimeoutError:
            if entry is None or entry.why is None:  # the bus's RequestTimeout
                self._cancel_remote(worker, call)
                raise
            if entry.why == "cancelled":
                self._cancel_remote(worker, call)
                raise asyncio.CancelledError from None
            raise Undeliverable(f"{recipient}: worker {worker} {entry.why}") from None
        except asyncio.CancelledError:
            self._cancel_remote(worker, call)
            raise
        except NoResponders:
            self._gone(worker, "is gone (no responder)")
            raise Undeliverable(f"{recipient}: worker {worker} is gone") from None
        except RemoteError as exc:
            raise self._remote_error(exc, recipient, timeout) from None
        except ConnectionLost as exc:
            raise Undeliverable(f"{recipient}: {exc}") from exc

    @staticmethod
    def _remote_error(exc: RemoteError, recipient: AgentId, timeout: float | None) -> Exception:
        kind = exc.remote_type
        if kind == "RequestTimeout":
            return RequestTimeout(str(recipient), timeout or 0.0)
        if kind in _GONE_ERRORS:
            return Undeliverable(f"{recipient}: {exc.remote_message}")
        return error_from_data({"type": kind, "message": exc.remote_message}, recipient)

    def _end_call(self, entry: _Call, why: str) -> None:
        if entry.why is None:
            entry.why = why
            entry.cm.reschedule(asyncio.get_running_loop().time())

    def _cancel_remote(self, worker: str, call: int) -> None:
        self._publish_nowait(self._inbox + worker, {"op": "cancel", "f": self.me, "n": call})

    async def publish(
        self,
        worker: str,
        message: Any,
        recipients: Sequence[AgentId],
        ctx: MessageContext,
        hop: int = 0,
    ) -> None:
        if worker == PENDING:
            await self._wait_ready()
            here: list[AgentId] = []
            there: dict[str, list[AgentId]] = {}
            for agent_id in recipients:
                owner = self.locate(agent_id)
                if owner is None:
                    here.append(agent_id)
                else:
                    there.setdefault(owner, []).append(agent_id)
            for agent_id in here:
                try:
                    await self.runtime._receive_publish(message, [agent_id], ctx)
                except Exception:
                    logger.warning("publish: cannot deliver to %s", agent_id, exc_info=True)
            for owner, ids in there.items():
                await self.publish(owner, message, ids, ctx, hop)
            return
        payload = {
            "op": "pub",
            "to": [str(r) for r in recipients],
            "m": self._dump(message),
            "c": context_to_data(ctx),
            "h": hop,
        }
        await self.bus.publish(self._inbox + worker, payload)

    # -- what other workers hand in ------------------------------------------------------------

    async def _on_request(self, data: Any, ctx: Context) -> Any:
        op = data.get("op") if isinstance(data, dict) else None
        if op == "state":
            return self._state(int(data.get("page", 0)))
        if op != "send":
            raise ValueError(f"unknown runtime request {op!r}")
        env = ctx.envelope
        reply = env.reply
        env.reply = None  # ours now: answered when the agent is done, not when this returns
        if reply is None or reply.done():
            return None
        try:
            ready = self._ready
            if ready is None:
                raise Undeliverable(f"worker {self.me} is stopped")
            if not ready.done():
                await asyncio.shield(ready)
            await self._serve(data, reply)
        except Exception as exc:
            if not reply.done():
                reply.set_exception(_wire_error(exc))
        return None

    async def _serve(self, data: dict[str, Any], reply: asyncio.Future[Any]) -> None:
        key = (data["f"], data["n"])
        recipient = AgentId.from_str(data["to"])
        runtime = self.runtime
        if self._cancelled.pop(key, None) is not None:
            reply.cancel()
            return
        if not runtime._hosts.running:
            raise Undeliverable(f"the runtime of worker {self.me} is stopping")
        message = self._load_message(data["m"], recipient)
        token = CancellationToken()
        ctx = context_from_data(data["c"], token)
        timeout = data.get("t")
        host = runtime._hosts.by_id.get(recipient)
        if host is None:
            owner = self.locate(recipient) if data.get("h", 0) == 0 else None
            if owner:
                self._serving[key] = token
                self._spawn(self._forward(owner, data["m"], recipient, ctx, timeout, reply, key))
                return
            host = await runtime._host(recipient)
            if not runtime._hosts.running:
                raise Undeliverable(f"the runtime of worker {self.me} is stopping")
        loop = asyncio.get_running_loop()
        local: asyncio.Future[Any] = loop.create_future()
        host.post((message, ctx, local))
        timer = None if timeout is None else loop.call_later(timeout, host.expire, local, timeout)
        token._link(local, partial(host.cancel_send, local))
        self._serving[key] = token
        local.add_done_callback(partial(self._answer, reply, key, timer))

    def _answer(
        self,
        reply: asyncio.Future[Any],
        key: tuple[str, int],
        timer: asyncio.TimerHandle | None,
        local: asyncio.Future[Any],
    ) -> None:
        self._serving.pop(key, None)
        if timer is not None:
            timer.cancel()
        if reply.done():
            return
        if local.cancelled():
            reply.cancel()
            return
        exc = local.exception()
        if exc is not None:
            reply.set_exception(_wire_error(exc))
            return
        try:
            reply.set_result(self._dump(local.result()))
        except (TypeError, ValueError) as err:
            error = RemoteError("TypeError", f"the reply cannot cross processes: {err}")
            reply.set_exception(error)

    async def _forward(
        self,
        owner: str,
        message: dict[str, Any],
        recipient: AgentId,
        ctx: MessageContext,
        timeout: float | None,
        reply: asyncio.Future[Any],
        key: tuple[str, int],
    ) -> None:
        try:
            value = await self._request(owner, message, recipient, ctx, timeout, 1)
        except asyncio.CancelledError:
            reply.cancel()
            raise
        except Exception as exc:
            if not reply.done():
                reply.set_exception(_wire_error(exc))
        else:
            if not reply.done():
                reply.set_result(value)
        finally:
            self._serving.pop(key, None)

    async def _on_inbox(self, data: Any) -> None:
        op = data.get("op") if isinstance(data, dict) else None
        if op == "cancel":
            key = (data["f"], data["n"])
            token = self._serving.get(key)
            if token is not None:
                token.cancel()
            else:  # the send has not arrived yet (or is done): refuse it if it comes
                if len(self._cancelled) >= 10_000:
                    del self._cancelled[next(iter(self._cancelled))]
                self._cancelled[key] = asyncio.get_running_loop().time() + CANCEL_MEMORY
        elif op == "pub":
            ready = self._ready
            if ready is None:
                return
            if not ready.done():
                await asyncio.shield(ready)
            await self._deliver(data)

    async def _deliver(self, data: dict[str, Any]) -> None:
        runtime = self.runtime
        if not runtime._hosts.running:
            return
        try:
            message = runtime.message_types.load(data["m"])
        except (TypeError, ValueError) as exc:
            logger.warning("published message dropped: %s", exc)
            return
        ctx = context_from_data(data["c"])
        hop = data.get("h", 0)
        onward: dict[str, list[AgentId]] = {}
        item = (message, ctx, None)
        for text in data["to"]:
            agent_id = AgentId.from_str(text)
            host = runtime._hosts.by_id.get(agent_id)
            if host is None:
                owner = self.locate(agent_id) if hop == 0 else None
                if owner:
                    onward.setdefault(owner, []).append(agent_id)
                    continue
                try:
                    host = await runtime._host(agent_id)
                except Exception:
                    logger.warning("publish: cannot deliver to %s", agent_id, exc_info=True)
                    continue
                if not runtime._hosts.running:
                    return
            host.post(item)
        for owner, ids in onward.items():
            await self.publish(owner, message, ids, ctx, hop=1)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, runtime: AgentRuntime) -> None:
        bus = self.bus
        if bus.state == "new":
            await bus.start()
        self._ready = asyncio.get_running_loop().create_future()
        self._own_state()
        self._repin(None)
        self._pins_out = None  # the hello carries them
        self._subs = [
            bus.subscribe(self._members_topic, self._on_member, name="runtime-members"),
            bus.subscribe(self._inbox + self.me, self._on_inbox, name="runtime-inbox"),
            bus.respond(self._rpc + self.me, self._on_request, name="runtime-worker"),
        ]
        await self._join()

    async def stop(self) -> None:
        for sub in self._subs:  # first: take no more work (a request now: no responder)
            self.bus.unsubscribe(sub)
        self._subs = []
        await self._leave()
        calls, self._calls = self._calls, {}
        for waiting in calls.values():
            for entry in list(waiting.values()):
                self._end_call(entry, "cannot answer: this runtime stopped")
        self._serving.clear()

    def _left(self, worker: str, why: str) -> None:
        """``worker`` is gone: the sends waiting on it fail now."""
        for entry in list(self._calls.pop(worker, {}).values()):
            self._end_call(entry, why)

    def _tick(self, now: float) -> None:
        cancelled = self._cancelled
        while cancelled and next(iter(cancelled.values())) < now:
            del cancelled[next(iter(cancelled))]

    # -- helpers -------------------------------------------------------------------------------

    def _dump(self, value: Any) -> dict[str, Any]:
        types = self.runtime.message_types
        try:
            return types.dump(value)
        except TypeError:
            cls = type(value)
            if not (dataclasses.is_dataclass(cls) or issubclass(cls, BaseModel)):
                raise
            types.register(cls)  # sending a class is safe; only receivers need to know it
            return types.dump(value)

    def _load_message(self, data: dict[str, Any], recipient: AgentId) -> Any:
        try:
            return self.runtime.message_types.load(data)
        except (TypeError, ValueError) as exc:
            raise CantHandle(f"{recipient} cannot take a {data.get('type')!r}: {exc}") from exc


def _wire_error(exc: BaseException) -> RemoteError:
    """How an error travels back to the caller (the bus carries a type name and a message)."""
    data = error_to_data(exc)
    return RemoteError(data["type"], data["message"])
