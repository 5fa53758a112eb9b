"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright).

Sends a message and watches the reply stream in token by token, interrupts a run and sees it
pause, resumes it, interrupts and cancels another, checks the live event stream, and runs the
same agent over AG-UI to see that session in the dashboard and continue it there; each key
moment is saved as a screenshot under ``artifacts/browser/`` (stable paths for CI). Without
Chromium the test skips locally and fails in CI (``scripts/ensure-browser`` installs it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from axonbus import Bus
from axonbus.agent import DemoAgent, StateManager, Tool
from axonbus.agent.agui import AgUiAgent
from axonbus.gateway import create_app
from tests.gateway.helpers import SECRET_ADMIN, eventually, running_server
from tests.support.browser import WatchedPage, open_page, require_chromium
from tests.support.services import skip_or_fail

try:
    from playwright.async_api import Locator, expect
except ImportError:  # pragma: no cover - depends on the environment
    skip_or_fail("Playwright for Python is missing (the dev extra)", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
SESSION = "s1"
STEP_TIMEOUT = 10.0  # per step (each wait, click or expectation): generous for a loaded machine
EVENT_ROW = '#event-stream [data-testid="event-row"]'
PAUSE_WINDOW = 0.5  # ten tokens' time, watched for a token that must not come

# the one error the page logs by design, once: its first ask of /v1/channels answers 404
# where the gateway has no channel manager (the panel then says so, and stops asking)
EXPECTED_CONSOLE_ERROR = re.compile(
    r"error: Failed to load resource: .* 404 .*\(http://[^/]+/v1/channels\)"
)

expect.set_options(timeout=STEP_TIMEOUT * 1000)

# the panels (and the page) whose content is wider than they are, by their headings
OVERFLOWING_PANELS_JS = """() => {
  const wide = [...document.querySelectorAll(".panel")]
    .filter((p) => p.scrollWidth > p.clientWidth + 1)
    .map((p) => p.querySelector("h2").textContent + ": " + p.scrollWidth + " > " + p.clientWidth);
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth) wide.push("page: " + doc.scrollWidth);
  return wide;
}"""

# A MutationObserver on the chat and the sessions table writes down what they show after every
# change, so the test sees each streamed token even when Python is slow to look, and can
# check afterwards what the page showed while a run was paused.
RECORDER_JS = """() => {
  const q = (sel) => document.querySelector(sel);
  const snapshot = () => {
    const agents = document.querySelectorAll(
      '#chat-log [data-testid="chat-message"][data-role="agent"]');
    const last = agents[agents.length - 1];
    const row = q('[data-testid="session-row"][data-session="__SESSION__"]');
    return {
      status: q("#run-status").dataset.status,
      agents: agents.length,
      state: last ? last.dataset.state : null,
      text: last ? last.querySelector('[data-testid="chat-text"]').textContent : null,
      session: row ? row.dataset.status : null,
    };
  };
  window.axonbusSnapshot = snapshot;
  window.axonbusRecord = [snapshot()];
  const observer = new MutationObserver(() => window.axonbusRecord.push(snapshot()));
  for (const id of ["run-status", "chat-log", "sessions-body"]) {
    observer.observe(document.getElementById(id),
                     {subtree: true, childList: true, characterData: true, attributes: true});
  }
}""".replace("__SESSION__", SESSION)

# true once the first reply has shown two different non-empty texts while streaming
STREAMED_TWICE_JS = """() => new Set(window.axonbusRecord
  .filter((r) => r.agents === 1 && r.state === "streaming" && r.text)
  .map((r) => r.text)).size >= 2"""


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
    """The test's view of the page: locators for what it shows, typing, clicks, screenshots
    and the recorder's notes (:data:`RECORDER_JS`)."""

    def __init__(self, watched: WatchedPage, base: str) -> None:
        self.watched = watched
        self.base = base  # the gateway's URL
        self.page = page = watched.page
        self.connection = page.locator("#connection-status")
        self.status = page.locator("#run-status")
        self.chat_error = page.locator("#chat-error")
        self.agents = page.locator('#chat-log [data-testid="chat-message"][data-role="agent"]')
        self.agent = self.agents.last  # locators are lazy: always the newest agent message
        self.agent_text = self.agent.locator('[data-testid="chat-text"]')
        self.tools = self.agent.locator('[data-testid="tool-line"]')
        self.users = page.locator('#chat-log [data-role="user"] [data-testid="chat-text"]')
        self.system = page.locator('#chat-log [data-role="system"] [data-testid="chat-text"]')
        self.session = page.locator(f'[data-testid="session-row"][data-session="{SESSION}"]')
        self.events = page.locator(EVENT_ROW)
        self.shots: list[Path] = []

    def event_rows(self, topic: str) -> Locator:
        """The live event stream's rows of ``topic``."""
        return self.page.locator(f'{EVENT_ROW}[data-topic="{topic}"]')

    async def start_recording(self) -> None:
        await self.page.evaluate(RECORDER_JS)

    async def record(self) -> list[dict[str, Any]]:
        """Everything the recorder wrote down, oldest first."""
        records: list[dict[str, Any]] = await self.page.evaluate("window.axonbusRecord")
        return records

    async def snapshot(self) -> dict[str, Any]:
        """What the page shows right now (the recorder's fields), read once, not waited for."""
        snap: dict[str, Any] = await self.page.evaluate("window.axonbusSnapshot()")
        return snap

    async def send_message(self, text: str) -> None:
        """Click the input, type ``text``, click Send; wait for the message in the chat."""
        box = self.page.locator("#chat-input")
        await box.click()
        await expect(box).to_be_focused()
        await self.page.keyboard.insert_text(text)
        await self.page.locator("#chat-send").click()
        await expect(self.users.last).to_have_text(text)

    async def click(self, element_id: str) -> None:
        """A real mouse click, once the element is visible, enabled and still."""
        await self.page.locator(f"#{element_id}").click()

    async def screenshot(self, name: str) -> Path:
        path = ARTIFACTS / name
        await self.page.screenshot(path=path, full_page=True)
        self.shots.append(path)
        return path


@pytest.fixture
async def dashboard(bus: Bus) -> AsyncIterator[tuple[Dashboard, GatedDemoAgent]]:
    """The gateway on a free loopback port (demo agent, state manager, in-process bus) and
    Chromium on its dashboard, wired up (``body[data-ready=true]``)."""
    chromium = require_chromium()
    states = StateManager(bus)
    agent = GatedDemoAgent(bus, token_delay=0.05, tool_delay=0.05).start()
    agui = AgUiAgent(bus, "demo", agent).start()  # the same agent over AG-UI
    app = create_app(bus, state_manager=states)
    try:
        async with running_server(app) as base, open_page(chromium, timeout=STEP_TIMEOUT) as w:
            await w.page.goto(base + "/")
            await expect(w.page.locator("body")).to_have_attribute("data-ready", "true")
            try:
                yield Dashboard(w, base), agent
            finally:
                agent.gate.set()
    finally:
        await agui.stop()
        await agent.stop()
        states.close()


async def _agui_run(base: str, thread: str, text: str) -> list[str]:
    """POST one AG-UI run to the gateway, as an AG-UI client would; the event types it got."""
    run = {
        "threadId": thread,
        "runId": f"{thread}-r1",
        "messages": [{"id": "m1", "role": "user", "content": text}],
        "tools": [],
        "context": [],
        "state": {},
        "forwardedProps": {},
    }
    types: list[str] = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=STEP_TIMEOUT * 3) as client,
        client.stream("POST", "/v1/agui/demo", json=run) as response,
    ):
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                types.append(json.loads(line[5:])["type"])
    return types


def _streaming_prefixes(records: list[dict[str, Any]], final: str) -> list[str]:
    """The distinct texts recorded while the message was streaming, each a prefix of
    ``final``."""
    seen: list[str] = []
    for r in records:
        text = r["text"]
        if r["state"] == "streaming" and text and (not seen or text != seen[-1]):
            assert final.startswith(text), (text, final)
            seen.append(text)
    return seen


@pytest.mark.slow
@pytest.mark.timeout(120)  # about ten seconds alone; each of its steps may take STEP_TIMEOUT
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
        await page.watched.save_failure(ARTIFACTS, "dashboard-failure")
        raise
    assert page.watched.errors == [], page.watched.errors
    errors = [line for line in page.watched.console if line.startswith("error:")]
    unexpected = [line for line in errors if not EXPECTED_CONSOLE_ERROR.match(line)]
    assert unexpected == [], unexpected
    assert len(errors) <= 1, f"an absent endpoint is asked again: {errors}"


async def _flow(page: Dashboard, agent: GatedDemoAgent, bus: Bus) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}

    await expect(page.connection).to_have_attribute("data-state", "connected")
    await expect(page.status).to_have_attribute("data-status", "idle")
    await expect(page.agents).to_have_count(0)
    await page.screenshot("dashboard-01-ready.png")

    # -- 1. a message; the reply streams in token by token ------------------------------------
    question = "what is 12 * (3 + 4)?"
    answer = "12 * (3 + 4) = 84. I worked that out with the calculator tool, one step at a time."
    await page.start_recording()
    await page.send_message(question)
    await page.page.wait_for_function(STREAMED_TWICE_JS)
    await page.screenshot("dashboard-02-streaming.png")
    await expect(page.status).to_have_attribute("data-status", "done")
    await expect(page.agent).to_have_attribute("data-state", "done")
    await expect(page.agent_text).to_have_text(answer)
    await expect(page.tools.first).to_have_text(re.compile(r"^→ calculator\("))
    await expect(page.session).to_have_attribute("data-status", "done")
    # the sessions table shortens a long reply at a word, with the whole of it in the title
    text_cell = page.session.locator('[data-field="text"]')
    await expect(text_cell).to_have_attribute("title", answer)
    shown = await text_cell.inner_text()
    assert shown.endswith("…"), shown
    assert answer.startswith(shown[:-1]), shown
    assert answer[len(shown) - 1] == " ", f"cut mid-word: {shown!r}"
    first_run = [r for r in await page.record() if r["agents"] == 1]
    growing = _streaming_prefixes(first_run, answer)
    assert len(growing) >= 2, f"the reply did not stream: {first_run}"
    assert all(len(a) < len(b) for a, b in itertools.pairwise(growing)), growing
    streaming = [r for r in first_run if r["state"] == "streaming" and r["text"]]
    assert all(r["status"] == "thinking" for r in streaming), streaming
    timings["stream"] = time.monotonic() - started

    # -- 2. interrupt a run in its tool call: it pauses; resume: the reply streams -----------
    agent.gate.clear()
    await page.send_message("how many words are in this sentence?")
    await expect(page.agents).to_have_count(2)
    await expect(page.tools).to_have_count(1)
    await expect(page.status).to_have_attribute("data-status", "acting")
    await page.click("interrupt-button")
    await expect(page.status).to_have_attribute("data-status", "interrupted")
    await expect(page.system.last).to_have_text("interrupt requested: from the dashboard")
    await expect(page.session).to_have_attribute("data-status", "interrupted")
    name = f"agent-loop:{SESSION}:interrupt"  # the run itself has seen the interrupt
    await eventually(
        lambda: any(s.name == name and s.delivered >= 1 for s in bus.stats()), STEP_TIMEOUT
    )
    await page.screenshot("dashboard-03-interrupted.png")
    agent.gate.set()  # the tool answers; the run stops at the step boundary after it
    await expect(page.tools).to_have_count(2)
    # an observation window, not a wait for something: no token may stream while paused
    await asyncio.sleep(PAUSE_WINDOW)
    snap = await page.snapshot()
    assert snap["status"] == "interrupted", snap
    assert snap["session"] == "interrupted", snap
    assert snap["text"] == "", snap
    assert snap["state"] == "streaming", snap  # still open, waiting
    paused = [r for r in await page.record() if r["agents"] == 2 and r["status"] == "interrupted"]
    assert paused, "the recorder saw no interrupted state"
    assert all(r["text"] == "" for r in paused), paused  # at no moment, not only at the end

    await page.click("resume-button")
    await expect(page.system.last).to_have_text("resumed")
    await expect(page.status).to_have_attribute("data-status", "done")
    await expect(page.agent).to_have_attribute("data-state", "done")
    await expect(page.agent_text).to_have_text(re.compile(r"^Your message has 7 words\."))
    await expect(page.session).to_have_attribute("data-status", "done")
    await page.screenshot("dashboard-04-resumed.png")
    timings["interrupt+resume"] = time.monotonic() - started

    # -- 3. interrupt another run, then cancel it ----------------------------------------------
    agent.gate.clear()
    await page.send_message("what is 6 * 7?")
    await expect(page.agents).to_have_count(3)
    await expect(page.tools).to_have_count(1)
    await expect(page.status).to_have_attribute("data-status", "acting")
    await page.click("interrupt-button")
    await expect(page.status).to_have_attribute("data-status", "interrupted")
    await page.click("cancel-button")
    await expect(page.status).to_have_attribute("data-status", "cancelled")
    await expect(page.agent).to_have_attribute("data-state", "cancelled")
    await expect(page.system.last).to_have_text("cancel requested: from the dashboard")
    await expect(page.agent_text).to_have_text("")  # cancelled in its tool call: no reply
    await expect(page.session).to_have_attribute("data-status", "cancelled")
    timings["interrupt+cancel"] = time.monotonic() - started

    # -- 4. the live event stream showed it all ---------------------------------------------
    prefix = f"agent.{SESSION}."
    for kind in ("user_input", "thinking", "token", "tool_call", "tool_result", "interrupt",
                 "resume", "cancel", "done"):  # fmt: skip
        await expect(page.event_rows(prefix + kind).first).to_be_attached()
    # two streamed replies, one event per word: at least 20 token rows
    await expect(page.event_rows(prefix + "token").nth(19)).to_be_attached()
    rows = await page.events.count()
    count = int(await page.page.locator("#event-count").inner_text())
    assert count >= rows, (count, rows)  # the counter counts every event, shown or not
    await expect(page.chat_error).to_have_text("")
    timings["events"] = time.monotonic() - started

    # -- 5. a run over AG-UI is a session of the dashboard too, and goes on from there ---------
    agent.gate.set()
    question, answer = "what is 2 * 21?", "2 * 21 = 42."
    types = await _agui_run(page.base, "agui1", question)
    assert (types[0], types[-1]) == ("RUN_STARTED", "RUN_FINISHED"), types
    row = page.page.locator('[data-testid="session-row"][data-session="agui1"]')
    await expect(row).to_have_attribute("data-status", "done")
    await expect(row.locator('[data-field="text"]')).to_have_text(re.compile(re.escape(answer)))
    await row.click()  # the dashboard's chat moves to that session and continues it
    await expect(page.page.locator("#session-input")).to_have_value("agui1")
    await page.send_message("how many words are in this sentence?")
    await expect(page.agent_text).to_have_text(re.compile(r"^Your message has 7 words\."))
    await expect(row).to_have_attribute("data-status", "done")
    # at 1280 px every panel holds its tables: no last column pushed out past the panel's edge
    overflowing = await page.page.evaluate(OVERFLOWING_PANELS_JS)
    assert overflowing == [], f"content wider than its panel: {overflowing}"
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


@pytest.mark.slow
@pytest.mark.timeout(90)  # a browser's cold start on a loaded machine
async def test_dashboard_signs_in_from_a_token_link_and_drops_it_from_the_address(
    bus: Bus, tokens: Any
) -> None:
    chromium = require_chromium()
    app = create_app(bus, tokens=tokens)
    async with running_server(app) as base, open_page(chromium, timeout=STEP_TIMEOUT) as w:
        page = w.page
        await page.goto(f"{base}/")
        await expect(page.locator("#token-form")).to_be_visible()  # signed out: it asks
        await page.goto(f"{base}/?token={SECRET_ADMIN}#events")  # as when a link is followed
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        await expect(page.locator("#connection-status")).to_have_attribute(
            "data-state", "connected"
        )
        await expect(page.locator("#token-form")).to_be_hidden()
        await expect(page).to_have_url(f"{base}/#events")  # the token left the address bar
        stored = await page.evaluate("localStorage.getItem('axonbus-token')")
        await page.go_back()  # and the history: the entry before is the plain page
        await expect(page).to_have_url(f"{base}/")
    assert stored == SECRET_ADMIN
    assert w.errors == [], w.errors


@pytest.mark.slow
@pytest.mark.timeout(90)  # a browser's cold start on a loaded machine
async def test_playwright_drives_debian_chromium_without_a_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chromium = require_chromium()
    # where Playwright would keep browsers it downloaded: it must not need (or make) any
    downloads = tmp_path / "ms-playwright"
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(downloads))
    proc = await asyncio.create_subprocess_exec(
        chromium, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    installed = (await proc.communicate())[0].decode()
    async with open_page(chromium) as w:
        browser = w.page.context.browser
        assert browser is not None
        version = browser.version
        await w.page.set_content("<p id='p'>hello</p>")
        await expect(w.page.locator("#p")).to_have_text("hello")
    assert version in installed, (version, installed)
    assert not downloads.exists()
