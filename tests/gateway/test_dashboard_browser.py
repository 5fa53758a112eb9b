"""The dashboard in a real browser (Debian's headless Chromium over the DevTools Protocol).

Sends a message and watches the reply stream in token by token, interrupts a run and sees it
pause, resumes it, interrupts and cancels another, and checks the live event stream; each key
moment is saved as a screenshot under ``artifacts/browser/`` (stable paths for CI). Without
Chromium the test skips locally and fails in CI (``scripts/ensure-browser`` installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from axonbus import Bus
from axonbus.agent import DemoAgent, StateManager, Tool
from axonbus.gateway import create_app
from tests.gateway.helpers import running_server
from tests.support.browser import Browser, require_chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
SESSION = "s1"
STEP_TIMEOUT = 10.0  # per step: generous for a loaded 2-core machine
POLL = 0.05

# everything the test reads off the page, in one round trip
SNAPSHOT_JS = """(() => {
  const q = (sel) => document.querySelector(sel);
  const all = (sel) => Array.from(document.querySelectorAll(sel));
  const agents = all('#chat-log [data-testid="chat-message"][data-role="agent"]');
  const last = agents[agents.length - 1];
  const row = q('[data-testid="session-row"][data-session="__SESSION__"]');
  return {
    ready: document.body.dataset.ready === "true",
    connection: q("#connection-status").dataset.state,
    status: q("#run-status").dataset.status,
    chatError: q("#chat-error").textContent,
    agents: agents.length,
    agent: last ? {
      text: last.querySelector('[data-testid="chat-text"]').textContent,
      state: last.dataset.state,
      runId: last.dataset.runId,
      tools: Array.from(last.querySelectorAll('[data-testid="tool-line"]'))
        .map((el) => el.textContent),
    } : null,
    users: all('#chat-log [data-role="user"] [data-testid="chat-text"]').map((e) => e.textContent),
    system: all('#chat-log [data-role="system"] [data-testid="chat-text"]')
      .map((e) => e.textContent),
    session: row ? row.dataset.status : null,
    eventCount: Number(q("#event-count").textContent),
    eventTopics: all('#event-stream [data-testid="event-row"]').map((e) => e.dataset.topic),
  };
})()""".replace("__SESSION__", SESSION)


class GatedDemoAgent(DemoAgent):
    """The demo agent, but its tools first wait for ``gate`` (set = open): the test holds a
    run inside its tool call to press interrupt at a known point, before the reply streams."""

    def __init__(self, bus: Bus, **options: Any) -> None:
        super().__init__(bus, **options)
        self.gate = asyncio.Event()
        self.gate.set()

    def tools(self) -> list[Tool]:
        gate = self.gate

        def gated(tool: Tool) -> Tool:
            async def fn(**arguments: Any) -> Any:
                await gate.wait()
                return await tool.fn(**arguments)

            return dataclasses.replace(tool, fn=fn)

        return [gated(tool) for tool in super().tools()]


class Dashboard:
    """The test's view of the page: snapshots, waits, typing and clicks."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.shots: list[Path] = []

    async def snapshot(self) -> dict[str, Any]:
        value: dict[str, Any] = await self.browser.evaluate(SNAPSHOT_JS)
        return value

    async def until(
        self, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = STEP_TIMEOUT
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            snap = await self.snapshot()
            if check(snap):
                return snap
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"waited {timeout} s for {what}; the page shows:\n{json.dumps(snap, indent=1)}"
                )
            await asyncio.sleep(POLL)

    async def click(self, element_id: str) -> None:
        """A real mouse click (pressed and released) in the middle of the element."""
        box = await self.browser.evaluate(
            f"""(() => {{
              const el = document.getElementById({json.dumps(element_id)});
              el.scrollIntoView({{block: "center"}});
              const r = el.getBoundingClientRect();
              return {{x: r.left + r.width / 2, y: r.top + r.height / 2, disabled: el.disabled}};
            }})()"""
        )
        assert not box["disabled"], f"#{element_id} is disabled"
        for kind in ("mousePressed", "mouseReleased"):
            await self.browser.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1},
            )

    async def type_into(self, element_id: str, text: str) -> None:
        await self.click(element_id)
        assert await self.browser.evaluate(
            f"document.activeElement.id === {json.dumps(element_id)}"
        ), f"#{element_id} did not take the focus"
        await self.browser.send("Input.insertText", {"text": text})

    async def send_message(self, text: str) -> None:
        await self.type_into("chat-input", text)
        await self.click("chat-send")
        await self.until(f"the user message {text!r} in the chat", lambda s: text in s["users"])

    async def screenshot(self, name: str) -> Path:
        path = await self.browser.screenshot(ARTIFACTS / name)
        self.shots.append(path)
        return path

    async def capture_failure(self) -> None:
        """Best effort: a screenshot, the page's HTML and its console, for the CI artifacts."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.browser.screenshot(ARTIFACTS / "dashboard-failure.png")
                html = await self.browser.evaluate("document.documentElement.outerHTML")
                (ARTIFACTS / "dashboard-failure.html").write_text(html)
        console = [f"{kind}: {text}" for kind, text in self.browser.console]
        errors = [f"page error: {e}" for e in self.browser.page_errors]
        lines = console + errors or ["no console messages and no page errors"]
        (ARTIFACTS / "dashboard-failure.log").write_text("\n".join(lines) + "\n")


@pytest.fixture
async def dashboard(bus: Bus) -> AsyncIterator[tuple[Dashboard, GatedDemoAgent]]:
    """The gateway on a free loopback port (demo agent, state manager, in-process bus) and
    Chromium on its dashboard, wired up (``body[data-ready=true]``)."""
    chromium = require_chromium()
    states = StateManager(bus)
    agent = GatedDemoAgent(bus, token_delay=0.05, tool_delay=0.05).start()
    app = create_app(bus, state_manager=states)
    try:
        async with running_server(app) as base, Browser(chromium) as browser:
            await browser.navigate(base + "/")
            await browser.wait_for("document.body.dataset.ready === 'true'", STEP_TIMEOUT)
            try:
                yield Dashboard(browser), agent
            finally:
                agent.gate.set()
    finally:
        await agent.stop()
        states.close()


def _streaming_prefixes(observations: list[tuple[str, str]], final: str) -> list[str]:
    """The distinct texts seen while the message was streaming, each a prefix of ``final``."""
    seen: list[str] = []
    for text, state in observations:
        if state == "streaming" and text and (not seen or text != seen[-1]):
            assert final.startswith(text), (text, final)
            seen.append(text)
    return seen


@pytest.mark.slow
async def test_dashboard_chat_stream_interrupt_resume_cancel(
    dashboard: tuple[Dashboard, GatedDemoAgent], bus: Bus
) -> None:
    page, agent = dashboard
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("dashboard-*"):
        old.unlink()
    try:
        await _flow(page, agent, bus)
    except BaseException:
        await page.capture_failure()
        raise
    assert page.browser.page_errors == [], page.browser.page_errors


async def _flow(page: Dashboard, agent: GatedDemoAgent, bus: Bus) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}

    await page.until("the live feeds to connect", lambda s: s["connection"] == "connected")
    snap = await page.snapshot()
    assert snap["status"] == "idle"
    assert snap["agents"] == 0
    await page.screenshot("dashboard-01-ready.png")

    # -- 1. a message; the reply streams in token by token ------------------------------------
    question = "what is 12 * (3 + 4)?"
    answer = "12 * (3 + 4) = 84. I worked that out with the calculator tool, one step at a time."
    await page.send_message(question)
    observations: list[tuple[str, str]] = []
    shot_taken = False
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        snap = await page.snapshot()
        agent_msg = snap["agent"]
        if agent_msg is not None:
            observations.append((agent_msg["text"], agent_msg["state"]))
            if agent_msg["state"] == "streaming" and agent_msg["text"]:
                assert snap["status"] == "thinking", snap  # streaming the reply
                if not shot_taken and len(_streaming_prefixes(observations, answer)) >= 2:
                    await page.screenshot("dashboard-02-streaming.png")
                    shot_taken = True
            if agent_msg["state"] != "streaming":
                break
        assert time.monotonic() < deadline, f"the reply never finished: {snap}"
        await asyncio.sleep(POLL)
    growing = _streaming_prefixes(observations, answer)
    assert len(growing) >= 2, f"the reply did not stream: {observations}"
    assert all(len(a) < len(b) for a, b in itertools.pairwise(growing)), growing
    snap = await page.until("the first run to finish", lambda s: s["status"] == "done")
    assert snap["agent"]["state"] == "done"
    assert snap["agent"]["text"] == answer
    assert snap["agent"]["tools"][0].startswith("→ calculator(")
    await page.until("the session row to say done", lambda s: s["session"] == "done")
    timings["stream"] = time.monotonic() - started

    # -- 2. interrupt a run in its tool call: it pauses; resume: the reply streams -----------
    agent.gate.clear()
    await page.send_message("how many words are in this sentence?")
    await page.until(
        "the second run to call its tool",
        lambda s: s["status"] == "acting" and s["agents"] == 2 and len(s["agent"]["tools"]) == 1,
    )
    await page.click("interrupt-button")
    snap = await page.until("the run status interrupted", lambda s: s["status"] == "interrupted")
    assert "interrupt requested: from the dashboard" in snap["system"]
    await page.until("the session row interrupted", lambda s: s["session"] == "interrupted")
    await _delivered(bus, f"agent-loop:{SESSION}:interrupt")  # the run itself has seen it
    await page.screenshot("dashboard-03-interrupted.png")
    agent.gate.set()  # the tool answers; the run stops at the step boundary after it
    await page.until("the tool result", lambda s: len(s["agent"]["tools"]) == 2)
    await asyncio.sleep(0.5)  # ten tokens' time: nothing may stream while paused
    snap = await page.snapshot()
    assert snap["status"] == "interrupted", snap
    assert snap["session"] == "interrupted", snap
    assert snap["agent"]["text"] == "", snap
    assert snap["agent"]["state"] == "streaming", snap  # still open, waiting

    await page.click("resume-button")
    snap = await page.until(
        "the resumed run to stream",
        lambda s: s["agent"]["text"] != "" or s["status"] == "done",
    )
    assert "resumed" in snap["system"]
    snap = await page.until("the resumed run to finish", lambda s: s["status"] == "done")
    assert snap["agent"]["state"] == "done"
    assert snap["agent"]["text"].startswith("Your message has 7 words.")
    await page.until("the session row done again", lambda s: s["session"] == "done")
    await page.screenshot("dashboard-04-resumed.png")
    timings["interrupt+resume"] = time.monotonic() - started

    # -- 3. interrupt another run, then cancel it ----------------------------------------------
    agent.gate.clear()
    await page.send_message("what is 6 * 7?")
    await page.until(
        "the third run to call its tool",
        lambda s: s["status"] == "acting" and s["agents"] == 3 and len(s["agent"]["tools"]) == 1,
    )
    await page.click("interrupt-button")
    await page.until("the third run interrupted", lambda s: s["status"] == "interrupted")
    await page.click("cancel-button")
    snap = await page.until(
        "the run cancelled",
        lambda s: s["status"] == "cancelled" and s["agent"]["state"] == "cancelled",
    )
    assert "cancel requested: from the dashboard" in snap["system"]
    assert snap["agent"]["text"] == ""  # cancelled in its tool call: no reply
    await page.until("the session row cancelled", lambda s: s["session"] == "cancelled")
    timings["interrupt+cancel"] = time.monotonic() - started

    # -- 4. the live event stream showed it all ---------------------------------------------
    snap = await page.snapshot()
    topics = set(snap["eventTopics"])
    prefix = f"agent.{SESSION}."
    for kind in ("user_input", "thinking", "token", "tool_call", "tool_result", "interrupt",
                 "resume", "cancel", "done"):  # fmt: skip
        assert prefix + kind in topics, (kind, sorted(topics))
    tokens = snap["eventTopics"].count(prefix + "token")
    assert tokens >= 20, tokens  # two streamed replies, one event per word
    assert snap["eventCount"] >= len(snap["eventTopics"])
    assert snap["chatError"] == ""
    await page.screenshot("dashboard-05-cancelled.png")

    total = time.monotonic() - started
    print(
        f"dashboard flow: {total:.1f} s; "
        + ", ".join(f"{k} at {v:.1f} s" for k, v in timings.items())
    )
    assert [p.name for p in page.shots] == [
        "dashboard-01-ready.png",
        "dashboard-02-streaming.png",
        "dashboard-03-interrupted.png",
        "dashboard-04-resumed.png",
        "dashboard-05-cancelled.png",
    ]
    for path in page.shots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


async def _delivered(bus: Bus, name: str) -> None:
    async with asyncio.timeout(STEP_TIMEOUT):
        while not any(s.name == name and s.delivered >= 1 for s in bus.stats()):
            await asyncio.sleep(POLL)


def test_missing_chromium_skips_locally_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AXONBUS_TEST_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(
        pytest.skip.Exception, match=r"Chromium is not installed at .*ensure-browser"
    ):
        require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_chromium()


@pytest.mark.slow
async def test_dashboard_signs_in_from_a_token_link_and_drops_it_from_the_address(
    bus: Bus, tokens: Any
) -> None:
    chromium = require_chromium()
    from tests.gateway.helpers import SECRET_ADMIN

    app = create_app(bus, tokens=tokens)
    async with running_server(app) as base, Browser(chromium) as browser:
        await browser.navigate(f"{base}/")  # (navigate waits for the exact address)
        # navigate after this evaluation has answered, not under it
        await browser.evaluate(
            f"setTimeout(() => window.location.assign('/?token={SECRET_ADMIN}#events'), 0)"
        )
        await browser.wait_for(
            "localStorage.getItem('axonbus-token') !== null"
            " && document.body.dataset.ready === 'true'",
            STEP_TIMEOUT,
        )
        await browser.wait_for(
            "document.getElementById('connection-status').dataset.state === 'connected'",
            STEP_TIMEOUT,
        )
        stored = await browser.evaluate("localStorage.getItem('axonbus-token')")
        address = await browser.evaluate("window.location.search + window.location.hash")
        form_hidden = await browser.evaluate("document.getElementById('token-form').hidden")
    assert stored == SECRET_ADMIN
    assert address == "#events"  # the token left the address bar (and the history)
    assert form_hidden
