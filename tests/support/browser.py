"""A small Chrome DevTools Protocol client for browser tests: Debian's headless Chromium,
driven over one WebSocket with the ``websockets`` library (no Selenium, no Playwright).

>>> async with Browser() as browser:                  # fresh profile, one blank page
...     await browser.navigate("http://127.0.0.1:8765/")
...     await browser.wait_for("document.body.dataset.ready === 'true'")
...     await browser.evaluate("document.title")
...     await browser.screenshot(Path("artifacts/browser/page.png"))

How it works: Chromium starts with ``--remote-debugging-port=0`` and a new temporary
``--user-data-dir``; it writes the port it picked and the browser's WebSocket path to
``DevToolsActivePort`` in that profile. The client connects there, opens a page with
``Target.createTarget`` and attaches to it with ``Target.attachToTarget(flatten=true)``, so
every page command travels on the same socket with that ``sessionId``. Replies are matched
to requests by ``id``; events (console messages, uncaught page errors) are collected. On exit
it asks ``Browser.close``, then ends Chromium's whole process group (it was started in a
session of its own) and removes the profile.

A missing Chromium skips the test locally and fails it in CI (:func:`require_chromium`,
through :func:`tests.support.services.skip_or_fail`); ``scripts/ensure-browser`` installs it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.support.services import skip_or_fail

__all__ = [
    "CHROMIUM_FLAGS",
    "Browser",
    "BrowserError",
    "chromium_path",
    "require_chromium",
]

DEFAULT_CHROMIUM = "/usr/bin/chromium"

# the flags the machine notes ask for: without the background-networking ones Chromium keeps
# trying to reach Google's hosts, which a closed network refuses
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class BrowserError(RuntimeError):
    """Chromium did not start, a CDP command failed, or page JavaScript threw."""


class BetweenDocuments(BrowserError):
    """A command that reached the page while it was replacing its document (a navigation the
    page started itself, such as ``location.assign``): the next poll sees the new document."""


#: what Chromium answers to a ``Runtime.evaluate`` that crossed a navigation
_BETWEEN_DOCUMENTS = (
    "Inspected target navigated or closed",
    "Execution context was destroyed",
    "Cannot find context with specified id",
)


def chromium_path() -> str:
    """Where Chromium is expected: ``AXONBUS_TEST_CHROMIUM``, else ``/usr/bin/chromium``."""
    return os.environ.get("AXONBUS_TEST_CHROMIUM", DEFAULT_CHROMIUM)


def require_chromium() -> str:
    """The Chromium executable; skips the test (fails it when ``CI`` is set) if it is missing."""
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        skip_or_fail(
            f"Chromium is not installed at {path}: run scripts/ensure-browser (Debian's "
            "chromium package, as root) or point AXONBUS_TEST_CHROMIUM at one"
        )
    return path


class Browser:
    """Headless Chromium with one page, driven over the DevTools Protocol.

    ``async with Browser() as b`` starts it (``start_timeout`` seconds at most) and always
    ends the whole process tree. ``page_errors`` collects uncaught exceptions of the page and
    ``console`` its console messages (``(type, text)``).
    """

    def __init__(
        self,
        executable: str | None = None,
        *,
        width: int = 1280,
        height: int = 900,
        start_timeout: float = 15.0,
        command_timeout: float = 10.0,
    ) -> None:
        self.executable = executable or chromium_path()
        self.width = width
        self.height = height
        self.start_timeout = start_timeout
        self.command_timeout = command_timeout
        self.page_errors: list[str] = []
        self.console: list[tuple[str, str]] = []
        self._profile: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._session: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Browser:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._profile = Path(tempfile.mkdtemp(prefix="axonbus-chromium-"))
        log = self._profile / "chromium.log"
        with log.open("wb") as out:
            self._proc = await asyncio.create_subprocess_exec(
                self.executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self._profile / 'profile'}",
                f"--window-size={self.width},{self.height}",
                "about:blank",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # its own process group: close() ends all of it
            )
        ws_url = await self._devtools_url()
        self._ws = await connect(ws_url, max_size=None, ping_interval=None, open_timeout=10)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self._session = attached["sessionId"]
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )

    async def _devtools_url(self) -> str:
        assert self._profile is not None
        assert self._proc is not None
        port_file = self._profile / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                raise BrowserError(
                    f"Chromium exited with {self._proc.returncode} while starting:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(FileNotFoundError):
                lines = port_file.read_text().split()
                if len(lines) >= 2:  # written in one go, but may be read half-written
                    return f"ws://127.0.0.1:{int(lines[0])}{lines[1]}"
            await asyncio.sleep(0.05)
        raise BrowserError(
            f"Chromium wrote no DevToolsActivePort in {self.start_timeout} s:\n" + self.log_tail()
        )

    def log_tail(self, lines: int = 30) -> str:
        """The end of Chromium's own stdout / stderr (for failure messages)."""
        if self._profile is None:
            return ""
        try:
            text = (self._profile / "chromium.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def close(self) -> None:
        """Close the browser, end its process group and remove the profile. Idempotent."""
        if self._ws is not None and self._reader is not None and not self._reader.done():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.send("Browser.close", session=False)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._ws.close()
            self._ws = None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._proc is not None:
            await self._end_process_group(self._proc)
            self._proc = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    @staticmethod
    async def _end_process_group(proc: asyncio.subprocess.Process) -> None:
        # the group id is the pid (start_new_session); renderers and the zygote are in it too
        # and may outlive the main process, so the group is signalled even after it exits
        pgid = proc.pid
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                if proc.returncode is None or _group_alive(pgid):
                    os.killpg(pgid, sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await proc.wait()
                    while _group_alive(pgid):
                        await asyncio.sleep(0.05)
                    return

    # -- the protocol --------------------------------------------------------------------------

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: bool = True
    ) -> dict[str, Any]:
        """Send one CDP command (to the page unless ``session=False``); returns its result."""
        if self._ws is None:
            raise BrowserError("the browser is not running")
        message: dict[str, Any] = {"id": next(self._ids), "method": method}
        if params:
            message["params"] = params
        if session and self._session is not None:
            message["sessionId"] = self._session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        try:
            await self._ws.send(json.dumps(message))
            async with asyncio.timeout(self.command_timeout):
                reply = await future
        except TimeoutError:
            raise BrowserError(f"{method} got no reply in {self.command_timeout} s") from None
        finally:
            self._pending.pop(message["id"], None)
        if "error" in reply:
            text = str(reply["error"].get("message", ""))
            kind = BetweenDocuments if text.startswith(_BETWEEN_DOCUMENTS) else BrowserError
            raise kind(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                if "id" in message:
                    future = self._pending.get(message["id"])
                    if future is not None and not future.done():
                        future.set_result(message)
                else:
                    self._on_event(message.get("method", ""), message.get("params", {}))
        except Exception as exc:  # the connection broke: fail what is waiting
            error = BrowserError(f"DevTools connection lost: {exc!r}")
        else:
            error = BrowserError("DevTools connection closed")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description")
            self.page_errors.append(description or details.get("text", "page error"))
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])
            )
            self.console.append((params.get("type", "log"), text))

    # -- page helpers --------------------------------------------------------------------------

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"page JavaScript threw: {description}\n  in: {expression}")
        return result.get("result", {}).get("value")

    async def wait_for(
        self, predicate: str, timeout: float = 10.0, *, interval: float = 0.05
    ) -> Any:
        """Evaluate ``predicate`` every ``interval`` seconds until it is truthy; returns that
        value. Raises :class:`BrowserError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while True:
            try:
                value = await self.evaluate(predicate)
            except BetweenDocuments:
                value = None  # the page navigated under this poll: ask the new document
            if value:
                return value
            if time.monotonic() >= deadline:
                raise BrowserError(f"waited {timeout} s for: {predicate} (last value {value!r})")
            await asyncio.sleep(interval)

    async def navigate(self, url: str, timeout: float = 10.0) -> None:
        """Open ``url`` in the page and wait until its document has loaded."""
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url} failed: {result['errorText']}")
        await self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
            timeout,
        )

    async def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        """Save a PNG of the page (the whole scrollable page unless ``full_page=False``)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": max(self.width, int(size["width"])),
                "height": max(self.height, int(size["height"])),
                "scale": 1,
            }
        result = await self.send("Page.captureScreenshot", params)
        data = base64.b64decode(result["data"])
        await asyncio.to_thread(_write, path, data)
        return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` is still running (zombies do not count: whoever
    adopted them reaps them, and a signal cannot end them anyway)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
