"""``axonbus dead-letters``: list and replay the dead letters a bus keeps (on sqlite://)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from axonbus import Bus, DeadLetters, Retry
from axonbus._engine.settle import settle
from axonbus.cli import main


async def _dead_letter(url: str) -> None:
    calls: list[Any] = []

    async def fails(event: Any) -> None:
        calls.append(event)
        raise RuntimeError("broken")

    async with Bus(url, name="cli") as bus:
        bus.subscribe("orders.x", fails, durable="orders", retry=Retry(1))
        await bus.flush()
        await bus.publish("orders.x", {"n": 7})
        await settle(bus, lambda: len(calls) >= 1)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_lists_then_replays_the_kept_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'bus.db'}"
    await _dead_letter(url)
    base = ("dead-letters", "--url", url, "--name", "cli")
    code, out, err = await asyncio.to_thread(_run, capsys, *base, "--json")
    assert code == 0, err
    (line,) = out.splitlines()
    row = json.loads(line)
    assert (row["original_topic"], row["event"], row["error_type"]) == (
        "orders.x",
        {"n": 7},
        "RuntimeError",
    )
    assert "1 dead letters" in err
    code, out, err = await asyncio.to_thread(_run, capsys, *base, "--topic", "other.>")
    assert (code, out) == (0, ""), "the topic filter kept a dead letter on orders.x"
    code, _, err = await asyncio.to_thread(_run, capsys, *base, "--replay")
    assert (code, err.strip()) == (0, "1 events published again")
    async with Bus(url, name="cli") as bus:
        assert await DeadLetters(bus).list() == []
        replayed = [e.event for e in await bus.events("orders.x")]
    assert replayed == [{"n": 7}, {"n": 7}], "published, then published again by --replay"


async def test_memory_keeps_no_dead_letters(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await asyncio.to_thread(_run, capsys, "dead-letters", "--url", "memory://")
    assert code == 1
    assert "keeps no dead letters" in err
