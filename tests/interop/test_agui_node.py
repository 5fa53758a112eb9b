"""The official AG-UI JavaScript client (@ag-ui/client HttpAgent, pinned in
tests/interop/agui/package.json) against a live gateway: streamed text, a server-side tool
call, a client-side tool call, state updates, an interrupt and its resume, and a cancel.

Skips without node and npm, fails under CI."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ag_ui")

from axonbus import Bus
from axonbus.agent import StateManager
from axonbus.agent.agui import AgUiAgent
from axonbus.gateway import TokenSet, create_app
from tests.gateway.helpers import running_server
from tests.interop.agui_agent import interop_loop
from tests.support.services import skip_or_fail

HERE = Path(__file__).parent / "agui"
SECRET = "agui-secret-0123456789-AbCdEfGhIjKl"
TOKENS = {
    "tokens": [
        {
            "name": "agui",
            "token": SECRET,
            "publish": ["agent.*.user_input", "agent.*.interrupt", "agent.*.resume",
                        "agent.*.cancel"],
            "subscribe": ["agent.>"],
        }
    ]
}  # fmt: skip


@pytest.fixture(scope="session")
def node_client() -> Path:
    """``npm ci`` in tests/interop/agui once per session; the script to run."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        skip_or_fail("node and npm are needed for the AG-UI JavaScript client test")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=HERE, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"npm ci failed: {done.stderr[-2000:]}", pytrace=False)
    return HERE / "run.mjs"


@pytest.mark.timeout(180)
async def test_http_agent_against_live_gateway(node_client: Path) -> None:
    async with Bus("memory://") as bus:
        states = StateManager(bus)
        app = create_app(bus, tokens=TokenSet.from_config(TOKENS), state_manager=states)
        async with AgUiAgent(bus, "interop", interop_loop(bus)), running_server(app) as url:
            proc = await asyncio.create_subprocess_exec(
                "node", str(node_client), url, SECRET, cwd=HERE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                out, err = await asyncio.wait_for(proc.communicate(), 150)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise
    assert proc.returncode == 0, err.decode()[-3000:]
    found: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    check_text(found["text"])
    check_client_tool(found["clientTool"])
    check_interrupt(found["interrupt"])
    check_cancel(found["cancel"])


def squeeze(events: list[str]) -> list[str]:
    """Consecutive repeats once: ``CONTENT`` x 5 is one ``CONTENT``."""
    out: list[str] = []
    for e in events:
        if not out or out[-1] != e:
            out.append(e)
    return out


def check_text(run: dict[str, Any]) -> None:
    assert run["error"] is None
    events = squeeze(run["events"])
    assert events[:2] == ["RUN_STARTED", "STATE_SNAPSHOT"]
    assert events[-1] == "RUN_FINISHED"
    for kind in (
        "REASONING_START",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_END",
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "STATE_DELTA",
    ):
        assert kind in events, kind  # fmt: skip
    order = [events.index(k) for k in ("TOOL_CALL_START", "TOOL_CALL_RESULT", "TEXT_MESSAGE_START")]
    assert order == sorted(order)
    assert run["answer"] == ["Done: sunny in Paris."]
    assert run["toolResults"] == ["sunny in Paris"]
    # the state deltas (JSON Patch) applied by the client end where the run did
    assert run["state"]["axonbus"]["status"] == "done"
    assert run["state"]["axonbus"]["tool_calls"][0]["status"] == "done"


def check_client_tool(found: dict[str, Any]) -> None:
    first, second = found["first"], found["second"]
    assert first["error"] is None
    assert second["error"] is None
    events = squeeze(first["events"])
    # the run stops on the client's tool: nothing but the state's "acting" after its end
    assert events[-5:] == [
        "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "STATE_DELTA", "RUN_FINISHED",
    ]  # fmt: skip
    assert "TOOL_CALL_RESULT" not in events  # the client answers it
    assert found["pending"] == [found["callId"]]
    assert found["args"] == {"question": "Proceed?"}
    events = squeeze(second["events"])
    assert events[0] == "RUN_STARTED"
    assert events[-1] == "RUN_FINISHED"
    assert "TEXT_MESSAGE_CONTENT" in events
    assert "TOOL_CALL_RESULT" not in events
    assert found["answer"] == ["Done: yes, go ahead."]


def check_interrupt(found: dict[str, Any]) -> None:
    first, controller, second = found["first"], found["controller"], found["second"]
    for run in (first, controller, second):
        assert run["error"] is None, run
    assert squeeze(first["events"])[-1] == "RUN_FINISHED"
    assert squeeze(controller["events"])[-1] == "RUN_FINISHED"
    assert len(found["interrupts"]) == 1
    assert found["interrupts"][0]["reason"] == "axonbus.interrupt"
    assert found["interrupts"][0]["message"] == "hold on"
    assert found["pendingBefore"] == [found["interrupts"][0]["id"]]
    assert found["pendingAfter"] == []
    events = squeeze(second["events"])
    assert events[0] == "RUN_STARTED"
    assert events[-1] == "RUN_FINISHED"
    assert "TEXT_MESSAGE_CONTENT" in events
    assert found["answer"] == ["Noted: be brief. Done: waited."]


def check_cancel(found: dict[str, Any]) -> None:
    events = squeeze(found["events"])
    assert events[0] == "RUN_STARTED"
    assert "TOOL_CALL_START" in events
    assert "TEXT_MESSAGE_CONTENT" not in events
    assert found["status"] == "cancelled"
