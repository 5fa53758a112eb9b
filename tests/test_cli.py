from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from rich.console import Console

import axonbus
from axonbus import Bus
from axonbus._cli_log import parse_when
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

    # part 1: channels on a bus
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


# -- axonbus replay / tail (the event log) -------------------------------------------------------


def _seed(url: str, items: list[tuple[str, object]]) -> list[str]:
    """Publish ``(topic, payload)`` pairs on ``url``; returns the event ids."""

    async def go() -> list[str]:
        async with Bus(url) as bus:  # the CLI's default bus name, "axonbus"
            ids = [(await bus.publish(topic, payload)).id for topic, payload in items]
            await bus.flush()
            return ids

    return asyncio.run(go())


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_replay_prints_offset_topic_and_payload(
    log_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(log_url, [("orders.o1.placed", {"qty": 2}), ("other.x", 0), ("orders.o2.placed", "é")])
    assert main(["replay", "orders.>", "--url", log_url]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  #1  orders\.o1\.placed  \{\"qty\":2\}", lines[0]
    ), lines[0]
    assert lines[1].endswith('  #3  orders.o2.placed  "é"'), lines[1]
    assert err.strip().splitlines()[-1] == "2 events"


def test_replay_json_lines(log_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = _seed(log_url, [("a.b", {"n": i}) for i in range(3)])
    assert main(["replay", ">", "--url", log_url, "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["offset"] for r in records] == [1, 2, 3]
    assert [r["id"] for r in records] == ids
    assert [r["topic"] for r in records] == ["a.b"] * 3
    assert [r["event"] for r in records] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(isinstance(r["timestamp"], float) for r in records)


def test_replay_since_until_and_limit(log_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = _seed(log_url, [("a.b", i) for i in range(6)])

    def offsets(*extra: str) -> list[int]:
        assert main(["replay", ">", "--url", log_url, "--json", *extra]) == 0
        return [json.loads(line)["offset"] for line in capsys.readouterr().out.splitlines()]

    assert offsets("--since", "10m") == [1, 2, 3, 4, 5, 6]  # published just now
    assert offsets("--since", "4") == [4, 5, 6]  # an offset, included
    assert offsets("--since", ids[1]) == [3, 4, 5, 6]  # an event id: the events after it
    assert offsets("--until", "2") == [1, 2]
    assert offsets("--limit", "2") == [1, 2]
    assert offsets("--since", "3", "--limit", "2") == [3, 4]
    future = (datetime.now() + timedelta(minutes=5)).isoformat(timespec="seconds")
    assert offsets("--since", future) == []


def test_parse_when() -> None:
    assert parse_when("42") == 42
    assert parse_when("10m") == timedelta(minutes=10)
    assert parse_when("1.5h") == timedelta(hours=1.5)
    assert parse_when("250ms") == timedelta(milliseconds=250)
    assert parse_when("2d") == timedelta(days=2)
    assert parse_when("2026-11-22T10:00") == datetime(2026, 11, 22, 10, 0)
    assert parse_when("abc123-7") == "abc123-7"


def test_replay_on_memory_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", ">", "--url", "memory://"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("axonbus replay: memory:// keeps no event log")
    assert "Traceback" not in err


def test_replay_since_an_unknown_id_is_a_clear_error(
    log_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(log_url, [("a.b", 1)])
    assert main(["replay", ">", "--url", log_url, "--since", "no-such-id"]) == 2
    assert "axonbus replay: no stored event with id 'no-such-id'" in capsys.readouterr().err


def test_replay_since_an_unknown_word_explains_the_accepted_forms(
    log_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(log_url, [("a.b", 1)])
    assert main(["replay", ">", "--url", log_url, "--since", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no stored event with id 'yesterday'" in err
    for form in ("an offset (42)", "10m", "2h", "1d", "an ISO time (2026-11-22T10:00)"):
        assert form in err


def test_replay_reads_a_sqlite_url_with_options(
    log_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(log_url, [("a.b", 1)])
    assert main(["replay", ">", "--url", f"{log_url}?busy_timeout=5"]) == 0
    assert capsys.readouterr().err.strip().endswith("1 events")


def test_replay_refuses_a_missing_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.db"
    for command in ("replay", "tail"):
        assert main([command, ">", "--url", f"sqlite:///{missing}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"axonbus {command}: no event log at {str(missing)!r}")
        assert "check the path" in err
        assert not missing.exists()
        assert list(tmp_path.iterdir()) == []  # no -wal / -shm either


def test_tail_refuses_memory_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AXONBUS_URL", raising=False)
    for argv in (["tail", ">"], ["tail", ">", "--url", "memory://"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("axonbus tail: memory:// is private to each process")
        assert "--url" in err
        assert "AXONBUS_URL" in err
        assert err.count("\n") == 1


def _register(monkeypatch: pytest.MonkeyPatch, handler: object) -> None:
    """Register a ``boom`` command whose handler is ``handler``."""
    from axonbus import cli

    def add(subparsers: object) -> None:
        parser = subparsers.add_parser("boom")  # type: ignore[attr-defined]
        parser.add_argument("--url")
        parser.set_defaults(handler=handler)

    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, add))


@pytest.mark.parametrize(
    "error",
    [
        axonbus.ConfigError([("a.b", "bad", "good"), ("c", "worse", "better")], "x.toml"),
        axonbus.ConnectionLost("cannot reach redis://u:s3cretPW@db:6379/0\n(second line)"),
        axonbus.NoEventLog("memory:// keeps no event log"),
        axonbus.TransportError("DB index is out of range"),
        KeyError("no stored event 'x' on redis://u:s3cretPW@db:6379/0\n(second line)"),
    ],
    ids=["config", "connection", "no-log", "transport", "lookup"],
)
def test_any_command_reports_an_axonbus_error_in_one_line_with_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception
) -> None:
    def handler(args: object) -> int:
        raise error

    _register(monkeypatch, handler)
    assert main(["boom", "--url", "redis://u:s3cretPW@db:6379/0"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("axonbus boom: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "s3cretPW" not in err


def test_a_bug_still_shows_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(args: object) -> int:
        raise ZeroDivisionError("a bug, not the user's input")

    _register(monkeypatch, handler)
    with pytest.raises(ZeroDivisionError):
        main(["boom"])


def test_replay_reads_axonbus_url_from_the_environment(
    log_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(log_url, [("env.x", "from env")])
    monkeypatch.setenv("AXONBUS_URL", log_url)
    assert main(["replay", ">"]) == 0
    assert capsys.readouterr().out.rstrip().endswith('env.x  "from env"')


async def test_tail_prints_what_another_process_publishes(log_url: str) -> None:
    async with Bus(log_url):  # the file exists before the tail opens it
        pass
    tail = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "axonbus.cli",
        "tail",
        "demo.>",
        "--url",
        log_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert tail.stdout is not None
    assert tail.stderr is not None
    try:
        banner = await asyncio.wait_for(tail.stderr.readline(), 15)
        assert banner.startswith(b"tailing 'demo.>'"), banner
        async with Bus(log_url) as bus:
            await bus.publish("other.x", "not shown")
            await bus.publish("demo.live", {"hello": "tail"})
        line = (await asyncio.wait_for(tail.stdout.readline(), 5)).decode()
        assert re.search(r'  demo\.live  \{"hello":"tail"\}$', line.rstrip()), line
        tail.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(tail.wait(), 10)
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()
    rest = (await tail.stdout.read()).decode()
    err = (await tail.stderr.read()).decode()
    assert code == 130, err
    assert rest == ""  # "other.x" never printed
    assert "Traceback" not in err


def test_tail_on_a_missing_directory_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'x.db'}"
    assert main(["tail", ">", "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("axonbus tail: no event log at ")
    assert not (tmp_path / "missing").exists()
