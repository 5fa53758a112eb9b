"""``POST /v1/agui/{agent}``: an AG-UI run, answered with AG-UI events over Server-Sent Events.

The gateway only bridges: it opens a feed of ``agent.{threadId}.>``, asks the
:class:`~axonbus.agent.agui.AgUiAgent` named ``agent`` (in any process of the bus) to start or
continue the session's run with a request on ``agui.{agent}.run``, publishes the control
events the input asks for, and streams the session's events translated by
:class:`~axonbus.agent.agui.AgUiTranslator`, encoded by the official ``ag-ui-protocol``
encoder. See ``docs/agui.md`` for the mapping, the extensions and the security rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from .._exceptions import InvalidTopic, RemoteError
from .._topics import split_topic
from ..agent import Cancel, Interrupt, Resume
from ._auth import AccessToken
from ._errors import ApiError
from ._feeds import Feed
from ._openapi import ANY_JSON, describe

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send

    from ..agent.agui import AgUiTranslator
    from ._core import Gateway

__all__ = ["agui_run"]

logger = logging.getLogger("axonbus.gateway")

#: seconds the agent has to accept a run request
ACCEPT_TIMEOUT = 10.0
#: seconds a stream that ended with the agent's run still going (an interrupt, a client tool
#: call, a detached client) keeps its place for the next AG-UI run of the thread
PARK_TIMEOUT = 120.0
ON_DISCONNECT = ("cancel", "detach")


def _agui() -> Any:
    """The AG-UI pieces: the official package's input type and encoder, and the agent
    toolkit's translator (501 without the ``agui`` extra)."""
    try:
        from ag_ui.core import RunAgentInput
        from ag_ui.encoder import EventEncoder

        from ..agent.agui import AgUiTranslator, run_topic
    except ImportError as exc:  # the extra is missing
        raise ApiError(
            501,
            "agui_unavailable",
            "AG-UI needs the agui extra: pip install 'axonbus[agui]'",
        ) from exc
    return SimpleNamespace(
        RunAgentInput=RunAgentInput,
        EventEncoder=EventEncoder,
        AgUiTranslator=AgUiTranslator,
        run_topic=run_topic,
    )


@dataclass
class _Parked:
    feed: Feed
    translator: AgUiTranslator
    timer: asyncio.TimerHandle


class Parking:
    """Streams whose agent run goes on, by (token name, thread id), until the next AG-UI run
    of the thread takes them over (nothing the session published in between is lost) or
    ``PARK_TIMEOUT`` passes."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.parked: dict[tuple[str, str], _Parked] = {}

    def park(self, token: AccessToken, feed: Feed, translator: AgUiTranslator) -> None:
        key = (token.name, translator.thread_id)
        self.drop(key)
        timer = asyncio.get_running_loop().call_later(PARK_TIMEOUT, self.drop, key)
        self.parked[key] = _Parked(feed, translator, timer)

    def take(self, token: AccessToken, thread_id: str) -> _Parked | None:
        found = self.parked.pop((token.name, thread_id), None)
        if found is not None:
            found.timer.cancel()
        return found

    def drop(self, key: tuple[str, str]) -> None:
        found = self.parked.pop(key, None)
        if found is not None:
            found.timer.cancel()
            found.feed.close()
            self.gateway.untrack(found.feed)


def _parking(request: Request, gw: Gateway) -> Parking:
    parking: Parking | None = getattr(request.app.state, "agui_parking", None)
    if parking is None:
        parking = request.app.state.agui_parking = Parking(gw)
    return parking


def _extension(inp: Any) -> dict[str, Any]:
    """The ``forwardedProps.axonbus`` object: axonbus's extensions of a run request."""
    props = inp.forwarded_props
    ext = props.get("axonbus") if isinstance(props, dict) else None
    if ext is None:
        return {}
    if not isinstance(ext, dict):
        raise ApiError(400, "invalid_input", "forwardedProps.axonbus must be an object")
    unknown = set(ext) - {"interrupt", "cancel", "on_disconnect"}
    if unknown:
        raise ApiError(
            400, "invalid_input", f"unknown forwardedProps.axonbus keys: {sorted(unknown)}"
        )
    if ext.get("on_disconnect", "cancel") not in ON_DISCONNECT:
        raise ApiError(
            400, "invalid_input", "forwardedProps.axonbus.on_disconnect: cancel or detach"
        )
    return ext


@describe(
    "Run an agent over AG-UI",
    description="The body is an AG-UI RunAgentInput (threadId = the axonbus session); the "
    "answer streams the run as AG-UI events. See the AG-UI page of the documentation.",
    grant="publish",
    body=ANY_JSON,
    body_required=True,
    ok={200: ("AG-UI events", {"type": "string"})},
    media="text/event-stream",
    errors=(400, 404, 408, 409, 413, 415, 422, 501, 502, 503, 504),
    tags=("agents",),
)
async def agui_run(request: Request) -> Response | AgUiStream:
    """Check the request, ask the agent to run, and return the event stream."""
    from ._app import _read_json  # the app module registers this route: import it late

    agui = _agui()
    gw: Gateway = request.app.state.gateway
    token = gw.authenticate(request, spend=True)
    agent: str = request.path_params["agent"]
    _check_name(agent, "agent name")
    body = await _read_json(gw, request)
    gw.check_depth(body)
    try:
        inp = agui.RunAgentInput.model_validate(body)
    except ValidationError as exc:
        details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()[:20]]
        raise ApiError(
            422, "invalid_input", "the body is not a RunAgentInput", details=details
        ) from None
    sid = inp.thread_id
    _check_name(sid, "threadId")
    gw.check_publish(token, f"agent.{sid}.user_input")
    gw.check_subscribe(token, f"agent.{sid}.>")
    ext = _extension(inp)
    controls = _controls(agui, inp, ext)
    for event in controls:
        gw.check_publish(token, event.topic)
    gw.check_load()
    parking = _parking(request, gw)
    parked = parking.take(token, sid)
    if parked is None:
        gw.check_feeds(token)
        feed: Feed = await gw.hubs.open(f"agent.{sid}.>", last_event_id=None)
        gw.track("agui", token, feed)
    else:
        feed = parked.feed
    try:
        reply = await gw.bus.request(
            agui.run_topic(agent),
            inp.model_dump(mode="json", by_alias=True, exclude_none=True),
            timeout=ACCEPT_TIMEOUT,
        )
    except Exception as exc:
        if parked is not None and _is_remote(exc, "NothingToRun"):
            # the run ended while no client was connected (an interrupt that came too late
            # to pause it, a cancel): what it published since is in the parked feed
            reply = {"action": "attached", "run_id": parked.translator.axon_run}
        else:
            feed.close()
            gw.untrack(feed)
            raise _refusal(gw, exc, agent) from exc
    translator = parked.translator if parked is not None else None
    if translator is None or translator.axon_run != reply["run_id"]:
        # a new run's events are all in the feed; a run joined midway starts from what the
        # gateway's StateManager knows of it
        known = None if reply["action"] == "started" else _run_state(gw, sid, reply["run_id"])
        translator = agui.AgUiTranslator(
            sid, inp.run_id, client_tools=[t.name for t in inp.tools or ()], state=inp.state,
            run_state=known,
        )  # fmt: skip
        translator.follow(reply["run_id"])
    else:
        translator.restart(inp.run_id, state=inp.state)
        translator.client_tools = frozenset(t.name for t in inp.tools or ())
    translator.client_calls.update(m.tool_call_id for m in inp.messages if m.role == "tool")
    run_id = reply["run_id"]
    for event in controls:
        event = event.model_copy(update={"run_id": run_id})
        try:
            await gw.bus.publish(event)
        except Exception as exc:
            feed.close()
            gw.untrack(feed)
            raise gw.bus_error(exc) from exc
        gw.metrics.published.inc()
    on_disconnect = ext.get("on_disconnect", "cancel")
    stream = AgUiStream(gw, parking, token, feed, translator, agui, on_disconnect)
    # a client that joins a run interrupted already learns it at once, to resume it
    stream.paused = (
        reply["action"] == "attached"
        and not controls
        and translator.run_state.status == "interrupted"
    )
    return stream


def _check_name(name: str, what: str) -> None:
    """400 unless ``name`` is one topic token (no dots, no wildcards, nothing unprintable)."""
    try:
        tokens = split_topic(name)
    except InvalidTopic:
        tokens = []
    if len(tokens) != 1 or not name.isprintable() or any(c.isspace() for c in name):
        raise ApiError(400, "invalid_name", f"the {what} must be one topic token: {name[:80]!r}")


def _controls(agui: Any, inp: Any, ext: dict[str, Any]) -> list[Any]:
    """The control events a run request publishes: a ``Resume`` (or ``Cancel``) per answered
    interrupt, and the ``interrupt`` / ``cancel`` extensions."""
    sid = inp.thread_id
    out: list[Any] = []
    for entry in inp.resume or ():
        if entry.status == "cancelled":
            out.append(Cancel(session_id=sid, reason="the interrupt was cancelled"))
        else:
            payload = entry.payload
            if isinstance(payload, dict):
                payload = payload.get("instruction", "")
            out.append(
                Resume(session_id=sid, instruction=payload if isinstance(payload, str) else "")
            )
    if ext.get("interrupt"):
        reason = ext["interrupt"] if isinstance(ext["interrupt"], str) else ""
        out.append(Interrupt(session_id=sid, reason=reason))
    if ext.get("cancel"):
        reason = ext["cancel"] if isinstance(ext["cancel"], str) else ""
        out.append(Cancel(session_id=sid, reason=reason))
    return out


def _run_state(gw: Gateway, sid: str, run_id: str) -> Any:
    """The session's state from the gateway's StateManager, when it has this run's."""
    manager = gw.state_manager
    state = manager.get(sid) if manager is not None else None
    return state if state is not None and state.run_id == run_id else None


def _is_remote(exc: Exception, type_name: str) -> bool:
    return isinstance(exc, RemoteError) and exc.remote_type == type_name


def _refusal(gw: Gateway, exc: Exception, agent: str) -> ApiError:
    if isinstance(exc, RemoteError):
        if exc.remote_type == "RunInProgress":
            return ApiError(409, "run_in_progress", exc.remote_message)
        if exc.remote_type == "NothingToRun":
            return ApiError(400, "nothing_to_run", exc.remote_message)
        if exc.remote_type == "ValidationError":
            return ApiError(422, "invalid_input", exc.remote_message)
    error = gw.bus_error(exc)
    if error.code == "no_responders":
        return ApiError(404, "unknown_agent", f"no AG-UI agent {agent!r} is running on the bus")
    return error


class AgUiStream:
    """The streaming answer: AG-UI events until the run ends for the client, the client goes
    away (the agent's run is cancelled, or detached with ``on_disconnect: "detach"``), or the
    gateway shuts down."""

    def __init__(
        self,
        gateway: Gateway,
        parking: Parking,
        token: AccessToken,
        feed: Feed,
        translator: AgUiTranslator,
        agui: Any,
        on_disconnect: str,
    ) -> None:
        self.gateway = gateway
        self.parking = parking
        self.token = token
        self.feed = feed
        self.translator = translator
        self.encoder = agui.EventEncoder()
        self.on_disconnect = on_disconnect
        self.paused = False
        self.reported = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gateway
        gw.metrics.sse_clients.inc()
        writer = asyncio.get_running_loop().create_task(self._write(send))
        gw.run_writers.add(writer)
        writer.add_done_callback(gw.run_writers.discard)
        receiving: asyncio.Future[Message] | None = None
        try:
            while not writer.done():
                receiving = asyncio.ensure_future(receive())
                await asyncio.wait({writer, receiving}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    break
                if receiving.result()["type"] == "http.disconnect":
                    break
        finally:
            if receiving is not None:
                receiving.cancel()
            writer.cancel()
            await asyncio.wait({writer})
            gw.metrics.sse_clients.dec()
            await self._settle()
        error = None if writer.cancelled() else writer.exception()
        if error is not None and not isinstance(error, OSError):
            raise error

    async def _settle(self) -> None:
        """Keep the feed for the next run of the thread, or close it; cancel a run whose
        client left."""
        tr = self.translator
        left = not tr.finished and not self.gateway.closing.is_set()
        if (tr.finished and tr.parked) or (left and self.on_disconnect == "detach"):
            self.parking.park(self.token, self.feed, tr)
            return
        self.feed.close()
        self.gateway.untrack(self.feed)
        if left and tr.axon_run:
            cancel = Cancel(session_id=tr.thread_id, run_id=tr.axon_run, reason="the client left")
            with contextlib.suppress(Exception):
                await self.gateway.bus.publish(cancel)

    async def _send(self, send: Send, events: list[Any]) -> None:
        if events:
            body = "".join(self.encoder.encode(e) for e in events).encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _write(self, send: Send) -> None:
        gw = self.gateway
        tr = self.translator
        headers = [
            (b"content-type", self.encoder.get_content_type().encode()),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await self._send(send, tr.begin())
        self.reported = self.feed.dropped
        if self.paused:
            # what the feed holds already (a parked stream's backlog) comes first: the run
            # may have been resumed meanwhile
            while self.feed.pending and not tr.finished:
                if not await self._next(send, 0.5):
                    break
            if tr.run_state.status == "interrupted":
                await self._send(send, tr.pause())
        while not tr.finished:
            if not await self._next(send, gw.keepalive):
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _next(self, send: Send, timeout: float) -> bool:
        """Stream the feed's next event (or a keep-alive after ``timeout``); False once the
        feed ended."""
        gw = self.gateway
        tr = self.translator
        try:
            item = await self.feed.next(timeout)
        except TimeoutError:
            keep_alive = b": keep-alive\n\n"
            await send({"type": "http.response.body", "body": keep_alive, "more_body": True})
            return True
        if item is None:  # the bus closed or the gateway shuts down
            await self._send(send, tr.fail("the event stream ended", "stream_closed"))
            return False
        events: list[Any] = []
        if self.feed.dropped > self.reported:
            lost = self.feed.dropped - self.reported
            self.reported = self.feed.dropped
            gw.metrics.stream_dropped.inc(lost)
            events += tr.custom("axonbus.dropped", {"dropped": lost, "total": self.reported})
        if self.token.sees(item.env.topic):
            events += tr.feed(item.env.event)
        await self._send(send, events)
        gw.metrics.streamed.inc()
        return True
