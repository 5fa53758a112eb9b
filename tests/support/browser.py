"""Browser tests: Debian's headless Chromium driven by Playwright for Python.

Playwright starts the Chromium at :func:`chromium_path` (``executable_path``), never one of its
own downloads, so no ``playwright install`` step exists and ``~/.cache/ms-playwright`` stays
empty. :func:`open_page` gives a fresh browser with one page, and records what the page said:

>>> async with open_page(require_chromium()) as watched:
...     await watched.page.goto("http://127.0.0.1:8765/")
...     await expect(watched.page.locator("body")).to_have_attribute("data-ready", "true")
...     assert watched.errors == []

A missing Chromium (or a missing Playwright) skips the test locally and fails it in CI
(:func:`require_chromium`, through :func:`tests.support.services.skip_or_fail`);
``scripts/ensure-browser`` installs Debian's chromium package.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.services import skip_or_fail

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Error, Page

__all__ = [
    "CHROMIUM_ARGS",
    "WatchedPage",
    "chromium_path",
    "open_page",
    "require_chromium",
]

DEFAULT_CHROMIUM = "/usr/bin/chromium"

# on top of Playwright's own switches (no background networking, no component updates, no
# sync, no first-run pages, no sandbox): a closed network refuses QUIC, and there is no GPU
CHROMIUM_ARGS = ("--disable-gpu", "--disable-quic")

LAUNCH_TIMEOUT_MS = 60_000  # a cold start on a loaded two-core machine


def chromium_path() -> str:
    """Where Chromium is expected: ``AXONBUS_TEST_CHROMIUM``, else ``/usr/bin/chromium``."""
    return os.environ.get("AXONBUS_TEST_CHROMIUM", DEFAULT_CHROMIUM)


def require_chromium() -> str:
    """The Chromium executable; skips the test (fails it when ``CI`` is set) if it or
    Playwright for Python is missing."""
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        skip_or_fail(
            f"Chromium is not installed at {path}: run scripts/ensure-browser (Debian's "
            "chromium package, as root) or point AXONBUS_TEST_CHROMIUM at one"
        )
    if importlib.util.find_spec("playwright") is None:
        skip_or_fail("Playwright for Python is not installed: pip install -e '.[dev]'")
    return path


@dataclass
class WatchedPage:
    """A Playwright page, with its console messages (``"type: text"``) and its uncaught
    JavaScript errors as they happen."""

    page: Page
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def _on_console(self, message: ConsoleMessage) -> None:
        where = message.location.get("url", "")
        self.console.append(f"{message.type}: {message.text}" + (f" ({where})" if where else ""))

    def _on_error(self, error: Error) -> None:
        self.errors.append(error.stack or f"{error.name}: {error.message}")

    async def save_failure(self, directory: Path, stem: str) -> None:
        """Best effort, for CI artifacts: ``stem.png``, ``stem.html`` (the page as it is now)
        and ``stem.log`` (its console and errors)."""
        files: dict[Path, str] = {}
        with contextlib.suppress(Exception):  # the page may be gone: keep what can be had
            await self.page.screenshot(path=directory / f"{stem}.png", full_page=True, timeout=5000)
            files[directory / f"{stem}.html"] = await self.page.content()
        lines = self.console + [f"page error: {e}" for e in self.errors]
        files[directory / f"{stem}.log"] = "\n".join(lines or ["no console, no page errors"]) + "\n"
        await asyncio.to_thread(_write, files)


def _write(files: dict[Path, str]) -> None:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@contextlib.asynccontextmanager
async def open_page(
    executable: str,
    *,
    width: int = 1280,
    height: int = 900,
    timeout: float = 10.0,
) -> AsyncIterator[WatchedPage]:
    """A new headless Chromium (fresh profile) with one ``width`` x ``height`` page, closed on
    exit. ``timeout`` (seconds) is the page's default for actions and waits."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            timeout=LAUNCH_TIMEOUT_MS,
        )
        try:
            context = await browser.new_context(viewport={"width": width, "height": height})
            page = await context.new_page()
            page.set_default_timeout(timeout * 1000)
            watched = WatchedPage(page)
            page.on("console", watched._on_console)
            page.on("pageerror", watched._on_error)
            yield watched
        finally:
            await browser.close()
