"""``POST /v1/agui/{agent}``: AG-UI runs over the gateway (httpx against a live uvicorn server:
some streams are read only in part)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("ag_ui")

from axonbus import Bus
from axonbus.agent import Cancel, DemoAgent, StateManager
from axonbus.agent.agui import AgUiAgent
from axonbus.gateway import TokenSet, create_app
from tests.gateway.helpers import SECRET_ADMIN, SECRET_SLOW, SECRET_UI, auth, running_server
from tests.interop.agui_agent import interop_loop

DEMO_SEQUENCE = [
    "RUN_STARTED", "STATE_SNAPSHOT", "STATE_DELTA",
    "REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT",
    "REASONING_MESSAGE_END", "REASONING_END",
    "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "STATE_DELTA",
    "TOOL_CALL_RESULT", "STATE_DELTA",
    "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "STATE_DELTA",
    "RUN_FINISHED",
]  # fmt: skip


def run_input(thread: str, run: str, text: str | None = None, **more: Any) -> dict[str, Any]:
    messages = [{"id": f"{run}-u", "role": "user", "content": text}] if text else []
    return {"threadId": thread, "runId": run, "messages": messages, **more}


def squeeze(types: list[str]) -> list[str]:
    out: list[str] = []
    for t in types:
        if not out or out[-1] != t:
            out.append(t)
    return out


class Events:
    """Reads the AG-UI events of a streaming response, in as many calls as needed."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def until(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The events up to and including the first of type ``kind`` (all with None)."""
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            async for line in self.lines:
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1]["type"] == kind:
                        break
        return events


async def read_events(response: httpx.Response) -> list[dict[str, Any]]:
    return await Events(response).until()


@contextlib.asynccontextmanager
async def gateway(
    bus: Bus, *, frozen_clock: bool = False, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    states = StateManager(bus)
    app = create_app(bus, state_manager=states, **options)
    if frozen_clock:
        app.state.gateway.limiter.clock = lambda: 1000.0  # no refill, however slow the machine
    demo = DemoAgent(bus, token_delay=0, tool_delay=0)
    async with (
        AgUiAgent(bus, "demo", demo),
        AgUiAgent(bus, "interop", interop_loop(bus)),
        running_server(app) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as client,
    ):
        yield client


async def post_run(
    client: httpx.AsyncClient, agent: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, list[dict[str, Any]], Any]:
    async with client.stream("POST", f"/v1/agui/{agent}", json=body, headers=headers) as r:
        if r.status_code != 200:
            return r.status_code, [], json.loads(await r.aread())
        assert r.headers["content-type"].startswith("text/event-stream")
        return 200, await read_events(r), None


async def test_demo_agent_run_is_the_documented_sequence(bus: Bus) -> None:
    async with gateway(bus) as client:
        status, events, _ = await post_run(
            client, "demo", run_input("s1", "r1", "what is 12 * (3 + 4)?", state={"theme": "dark"})
        )
    assert status == 200
    assert squeeze([e["type"] for e in events]) == DEMO_SEQUENCE
    assert events[0] == {
        "type": "RUN_STARTED",
        "threadId": "s1",
        "runId": "r1",
        "protocolVersion": "1.0",
    }
    assert events[1]["snapshot"]["theme"] == "dark"  # the client's state is kept beside ours
    assert events[1]["snapshot"]["axonbus"]["status"] == "idle"
    call = next(e for e in events if e["type"] == "TOOL_CALL_START")
    assert call["toolCallName"] == "calculator"
    args = next(e for e in events if e["type"] == "TOOL_CALL_ARGS")
    assert json.loads(args["delta"]) == {"expression": "12 * (3 + 4)"}
    result = next(e for e in events if e["type"] == "TOOL_CALL_RESULT")
    assert result["toolCallId"] == call["toolCallId"]
    assert result["content"] == "84"
    text = "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")
    assert text.startswith("12 * (3 + 4) = 84.")
    assert events[-1]["result"] == text
    final = [e for e in events if e["type"] == "STATE_DELTA"][-1]["delta"]
    assert {"op": "replace", "path": "/axonbus/status", "value": "done"} in final


async def test_agent_error_becomes_run_error(bus: Bus) -> None:
    async with gateway(bus) as client:
        status, events, _ = await post_run(client, "interop", run_input("e1", "r1", "break"))
    assert status == 200
    assert events[-1]["type"] == "RUN_ERROR"
    assert events[-1]["code"] == "ValueError"
    assert events[-1]["message"] == "no weather for Atlantis"
    assert "RUN_FINISHED" not in [e["type"] for e in events]


async def test_cancel_extension_ends_the_run_cancelled(bus: Bus) -> None:
    async with (
        gateway(bus) as client,
        client.stream("POST", "/v1/agui/interop", json=run_input("c1", "r1", "slow task")) as first,
    ):
        stream = Events(first)
        await stream.until("TOOL_CALL_START")  # the slow tool is running
        body = run_input("c1", "r2", forwardedProps={"axonbus": {"cancel": "stop it"}})
        status, control, _ = await post_run(client, "interop", body)
        rest = await stream.until()
    assert status == 200
    for events in (control, rest):
        assert events[-1]["type"] == "RUN_FINISHED"
        assert events[-1]["outcome"] == {"type": "cancelled"}


async def test_detached_client_takes_the_rest_on_its_next_run(bus: Bus) -> None:
    async with gateway(bus) as client:
        body = run_input(
            "d1", "r1", "slow task", forwardedProps={"axonbus": {"on_disconnect": "detach"}}
        )
        async with client.stream("POST", "/v1/agui/interop", json=body) as first:
            await Events(first).until("TOOL_CALL_START")
        # the run goes on; the next run of the thread (nothing new in it) attaches to it
        status, events, _ = await post_run(client, "interop", run_input("d1", "r2"))
    assert status == 200
    types = squeeze([e["type"] for e in events])
    assert types[0] == "RUN_STARTED"
    assert "TOOL_CALL_RESULT" in types  # published while no client was connected
    assert events[-1]["type"] == "RUN_FINISHED"
    assert events[-1]["result"] == "Done: waited."


async def test_new_message_while_running_is_409(bus: Bus) -> None:
    async with (
        gateway(bus) as client,
        client.stream("POST", "/v1/agui/interop", json=run_input("b1", "r1", "slow task")) as first,
    ):
        await Events(first).until("TOOL_CALL_START")
        status, _, error = await post_run(client, "interop", run_input("b1", "r2", "hello"))
        assert status == 409
        assert error["error"]["code"] == "run_in_progress"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"threadId": "s1"}, 422, "invalid_input"),
        (run_input("a.b", "r1", "hi"), 400, "invalid_name"),
        (run_input("s1", "r1", forwardedProps={"axonbus": {"bogus": 1}}), 400, "invalid_input"),
        (run_input("s1", "r1"), 400, "nothing_to_run"),
    ],
)
async def test_bad_requests(bus: Bus, body: Any, status: int, code: str) -> None:
    async with gateway(bus) as client:
        got, _, error = await post_run(client, "demo", body)
    assert (got, error["error"]["code"]) == (status, code)


async def test_unknown_agent_is_404(bus: Bus) -> None:
    async with gateway(bus) as client:
        status, _, error = await post_run(client, "nobody", run_input("s1", "r1", "hi"))
    assert status == 404
    assert error["error"]["code"] == "unknown_agent"


async def test_body_must_be_json(bus: Bus) -> None:
    async with gateway(bus) as client:
        r = await client.post(
            "/v1/agui/demo", content=b"{}", headers={"content-type": "text/plain"}
        )
    assert r.status_code == 415


async def test_body_limit(bus: Bus) -> None:
    async with gateway(bus, max_body=200) as client:
        body = run_input("s1", "r1", "x" * 500)
        status, _, error = await post_run(client, "demo", body)
    assert status == 413
    assert error["error"]["code"] == "payload_too_large"


async def test_auth_and_patterns(bus: Bus, tokens: TokenSet) -> None:
    async with gateway(bus, tokens=tokens) as client:
        body = run_input("s1", "r1", "hi")
        assert (await post_run(client, "demo", body))[0] == 401
        assert (await post_run(client, "demo", body, auth("wrong-" + SECRET_UI)))[0] == 401
        r = await client.post(f"/v1/agui/demo?token={SECRET_UI}", json=body)
        assert r.status_code == 400  # never a secret in a POST's URL
        # "ui" may not subscribe to agent.secret.> (denied)
        status, _, error = await post_run(
            client, "demo", run_input("secret", "r1", "hi"), auth(SECRET_UI)
        )
        assert (status, error["error"]["code"]) == (403, "forbidden")
        # nor publish agent.*.cancel, which the cancel extension needs
        ext = run_input("s1", "r1", "hi", forwardedProps={"axonbus": {"cancel": True}})
        status, _, error = await post_run(client, "demo", ext, auth(SECRET_UI))
        assert (status, error["error"]["code"]) == (403, "forbidden")
        status, events, _ = await post_run(client, "demo", body, auth(SECRET_ADMIN))
        assert status == 200
        assert events[-1]["type"] == "RUN_FINISHED"


async def test_rate_limit(bus: Bus, tokens: TokenSet) -> None:
    async with gateway(bus, tokens=tokens, frozen_clock=True) as client:
        codes = []
        for n in range(3):  # "slow" has a rate of 2/s: a burst of 2
            body = run_input(f"rate{n}", f"r{n}", "hi")
            codes.append((await post_run(client, "demo", body, auth(SECRET_SLOW)))[0])
    assert codes == [200, 200, 429]


async def test_interrupt_resume_and_a_run_that_ended_while_away(bus: Bus) -> None:
    async with gateway(bus) as client:
        async with client.stream(
            "POST", "/v1/agui/interop", json=run_input("i1", "r1", "slow task")
        ) as first:
            stream = Events(first)
            await stream.until("TOOL_CALL_START")
            body = run_input("i1", "r2", forwardedProps={"axonbus": {"interrupt": "wait"}})
            status, control, _ = await post_run(client, "interop", body)
            paused = await stream.until()
        assert status == 200
        for events in (control, paused):
            assert events[-1]["type"] == "RUN_FINISHED"
            assert events[-1]["outcome"]["type"] == "interrupt"
        interrupt = paused[-1]["outcome"]["interrupts"][0]
        assert interrupt["message"] == "wait"
        # someone else cancels the paused run while no AG-UI client is connected ...
        await bus.publish(Cancel(session_id="i1", reason="elsewhere"))
        # ... and the client's resume gets the rest of it: the run ended cancelled
        messages = [{"id": "a1", "role": "assistant", "content": "..."}]
        resume = [{"interruptId": interrupt["id"], "status": "resolved"}]
        body = {"threadId": "i1", "runId": "r3", "messages": messages, "resume": resume}
        status, rest, _ = await post_run(client, "interop", body)
    assert status == 200
    assert rest[0]["type"] == "RUN_STARTED"
    assert rest[-1]["type"] == "RUN_FINISHED"
    assert rest[-1]["outcome"] == {"type": "cancelled"}


async def test_resume_cancelled_cancels_the_run(bus: Bus) -> None:
    async with gateway(bus) as client:
        async with client.stream(
            "POST", "/v1/agui/interop", json=run_input("k1", "r1", "slow task")
        ) as first:
            stream = Events(first)
            await stream.until("TOOL_CALL_START")
            body = run_input("k1", "r2", forwardedProps={"axonbus": {"interrupt": "wait"}})
            await post_run(client, "interop", body)
            paused = await stream.until()
        interrupt = paused[-1]["outcome"]["interrupts"][0]
        resume = [{"interruptId": interrupt["id"], "status": "cancelled"}]
        body = {"threadId": "k1", "runId": "r3", "messages": [], "resume": resume}
        status, rest, _ = await post_run(client, "interop", body)
    assert status == 200
    assert rest[-1]["outcome"] == {"type": "cancelled"}


async def test_on_a_bus_with_a_log(tmp_path: Path) -> None:
    # the feed follows the event log there: same events, same order
    async with Bus(f"sqlite:///{tmp_path / 'events.db'}") as bus, gateway(bus) as client:
        status, events, _ = await post_run(client, "demo", run_input("s1", "r1", "what is 1 + 1?"))
    assert status == 200
    assert squeeze([e["type"] for e in events]) == DEMO_SEQUENCE


async def test_joining_an_interrupted_run_says_so_at_once(bus: Bus, tokens: TokenSet) -> None:
    admin, ui = auth(SECRET_ADMIN), auth(SECRET_UI)
    async with gateway(bus, tokens=tokens) as client:
        async with client.stream(
            "POST", "/v1/agui/interop", json=run_input("p1", "r1", "slow task"), headers=admin
        ) as first:
            stream = Events(first)
            await stream.until("TOOL_CALL_START")
            body = run_input("p1", "r2", forwardedProps={"axonbus": {"interrupt": "wait"}})
            await post_run(client, "interop", body, admin)
            await stream.until()
        # another token (no parked stream: the StateManager's state) and the same one (its
        # parked stream) both see the run paused and can resume it
        for headers in (ui, admin):
            status, events, _ = await post_run(client, "interop", run_input("p1", "r3"), headers)
            assert status == 200
            assert events[0]["type"] == "RUN_STARTED"
            assert events[-1]["type"] == "RUN_FINISHED"
            assert events[-1]["outcome"]["type"] == "interrupt"
            assert events[-1]["outcome"]["interrupts"][0]["message"] == "wait"
