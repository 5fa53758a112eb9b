from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import time
from importlib.metadata import entry_points

import pytest
from rich.console import Console

import axonbus
from axonbus._demo import run_demo
from axonbus.cli import build_parser, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"axonbus {axonbus.__version__}"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_parser_lists_demo() -> None:
    assert "demo" in build_parser().format_help()


def test_console_script_points_at_main() -> None:
    (script,) = entry_points(group="console_scripts", name="axonbus")
    assert script.value == "axonbus.cli:main"
    assert script.load() is main


def test_demo_without_rich_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("rich", "rich.console"):
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["demo"]) == 1
    assert "pip install 'axonbus[cli]'" in capsys.readouterr().err


async def test_demo_output() -> None:
    out = io.StringIO()
    log = logging.getLogger("axonbus")
    handlers, propagate, level = list(log.handlers), log.propagate, log.level
    await run_demo(Console(file=out, width=200, color_system=None))
    text = out.getvalue()

    # part 1: the Lena scenario
    assert "[AgentLoop] from=telegram user=user_001 'what time is it?'" in text
    assert "[telegram ⇢] to user_001: 'It is 09:00 (demo clock).'" in text
    assert '[discord ⇢] to user_003: "You\'re welcome!"' in text
    assert re.search(r"\[Logger\]\s+channel\.discord\.in\s+user_002", text)
    contained = (
        "[Bulkhead]  buggy_analytics failed on channel.telegram.in: "
        "RuntimeError: Analytics service down → contained"
    )
    assert contained in text
    assert text.count("buggy_analytics failed on") == 6  # 3 messages in, 3 replies out
    assert "attach discord → channels ['telegram', 'discord']" in text
    assert "slack          → restarted 2 times with backoff 20 ms, 40 ms, status running" in text
    assert "detach telegram → channels ['discord', 'slack']" in text
    assert "telegram.receive(...) now raises ChannelNotStarted (handled)" in text
    assert "final handler count: 6" in text
    assert re.search(r"buggy_analytics\s+│\s+>\s+│\s+0\s+│\s+6", text)  # stats: failed=6

    # part 2: backpressure
    assert "delivered 5, dropped 45, kept the newest: #46…#50" in text
    assert "mailbox 'slow_dashboard' is full (5): dropping events (drop_oldest)" in text
    assert "publisher waited for room 25 times; delivered 30/30, dropped 0" in text

    # part 3: request / reply
    assert "request math.add {a: 2, b: 3} → 5" in text
    assert "RemoteError handled: responder on 'math.div' raised ZeroDivisionError" in text
    assert "NoResponders handled: no responder for 'weather.lookup'" in text

    # failures are summarised, their tracebacks kept out of the output
    assert "7 handler failures were contained" in text
    assert "9 error records" in text
    assert "Traceback" not in text
    assert log.handlers == handlers  # the demo restored the logger
    assert log.propagate == propagate
    assert log.level == level
    done = re.search(r"done in (\d+\.\d+) s", text)
    assert done is not None
    assert float(done.group(1)) < 5.0


def test_axonbus_demo_subprocess() -> None:
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "axonbus.cli", "demo"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "160"},
    )
    elapsed = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr
    assert "final handler count: 6" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert elapsed < 10.0  # the demo itself takes well under a second; this is startup + load
