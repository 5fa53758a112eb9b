"""The conformance kit on the in-process transport."""

from __future__ import annotations

import asyncio

import pytest

from axonbus import Bus
from axonbus.testing import CHECKS, CheckSkipped, check_transport


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_memory_conformance(name: str) -> None:
    try:
        await CHECKS[name](lambda: Bus("memory://"))
    except CheckSkipped as skip:
        pytest.skip(str(skip))


async def test_check_transport_reports_every_check() -> None:
    report = await check_transport(lambda: Bus())
    assert set(report) == set(CHECKS)
    two_buses = {"cross_process_delivery", "cross_process_group", "cross_process_request"}
    two_buses.add("durable_resumes")
    skipped = {*two_buses, "dead_letters_are_kept_and_replayed"}  # memory:// keeps nothing
    assert all(report[k].startswith("skipped") for k in skipped), report
    assert all(v == "passed" for k, v in report.items() if k not in skipped), report


async def test_check_transport_names_the_failing_check() -> None:
    class Lossy(Bus):
        async def publish(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if args and isinstance(args[0], str) and args[0].endswith(".order"):
                await super().publish(*args, **kwargs)  # a broken transport that duplicates
            return await super().publish(*args, **kwargs)

    with pytest.raises(AssertionError, match="per_publisher_order"):
        await check_transport(lambda: Lossy(), only=["per_publisher_order"])


async def test_each_loop_variant_runs_on_that_loop(request: pytest.FixtureRequest) -> None:
    # the ids come from tests/conformance/conftest.py: [asyncio] and, with uvloop, [uvloop]
    loop = type(asyncio.get_running_loop())
    if request.node.callspec.id == "uvloop":
        assert f"{loop.__module__}.{loop.__qualname__}" == "uvloop.Loop"
    else:
        assert request.node.callspec.id == "asyncio"
        assert loop.__module__.startswith("asyncio")
    # and the bus works on it (the kit's checks above cover the rest)
    async with Bus() as bus:
        got: list[int] = []

        async def on_tick(event: int) -> None:
            got.append(event)

        bus.subscribe("loop.tick", on_tick)
        for i in range(300):  # more than one worker run
            await bus.publish("loop.tick", i)
        await bus.drain()
        assert got == list(range(300))
