"""The example transport of the documentation passes the conformance kit, across processes.

``examples/hub_transport.py`` (and its broker, ``examples/hub/broker.py``) are written on the
public contract only (``axonbus.transports``): this is the proof that a transport can be
written outside the package.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from axonbus import Bus, RequestTimeout
from axonbus.testing import CHECKS, CheckSkipped, check_transport, settle

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
TRANSPORT = EXAMPLES / "hub_transport.py"
BROKER = EXAMPLES / "hub" / "broker.py"


def _load(path: Path) -> ModuleType:
    name = f"example_{path.parent.name}_{path.stem}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


@pytest.fixture
def socket_path() -> Iterator[str]:
    """A path for the hub's socket, short enough for a unix socket."""
    with tempfile.TemporaryDirectory(prefix="hub") as folder:
        yield f"{folder}/hub.sock"


@pytest.fixture
async def hub(socket_path: str) -> AsyncIterator[str]:
    """The URL of a hub running in this process, one per test."""
    _load(TRANSPORT)
    server = await _load(BROKER).serve(socket_path)
    try:
        yield f"hub://{socket_path}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_example_transport_conformance(name: str, hub: str) -> None:
    try:
        await CHECKS[name](lambda: Bus(hub))
    except CheckSkipped as skip:
        pytest.fail(f"the example connects buses, yet {name} was skipped: {skip}")


@pytest.mark.timeout(60)
async def test_check_transport_passes_every_check(hub: str) -> None:
    report = await check_transport(lambda: Bus(hub))
    assert report == dict.fromkeys(CHECKS, "passed"), report


async def test_example_request_times_out(hub: str) -> None:
    # the requester's reply is failed by the sink's timer while the responder is still busy
    release = asyncio.Event()

    async def busy(req: int) -> int:
        await release.wait()
        return req

    async with Bus(hub) as first, Bus(hub) as second:
        second.respond("slow.echo", busy)
        await second.flush()
        with pytest.raises(RequestTimeout):
            await first.request("slow.echo", 1, timeout=0.2)
        release.set()
        assert await first.request("slow.echo", 2, timeout=10) == 2


async def test_example_runs() -> None:
    lines = await _load(TRANSPORT).main()
    assert lines == ["second got hello from first", "2 + 3 = 5"], lines


# what another process runs: it loads the example transport, publishes three events and asks
# this process a question
PUBLISHER = """
import asyncio, runpy, sys
from axonbus import Bus, RequestTimeout
runpy.run_path(sys.argv[1])

async def main():
    async with Bus("hub://" + sys.argv[2]) as bus:
        for i in range(3):
            await bus.publish("greetings.hello", f"hello {i}")
        print(await bus.request("math.add", {"a": 2, "b": 3}, timeout=10))

asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_example_connects_processes(socket_path: str) -> None:
    # the hub in a process of its own, a publisher in another, the subscriber here
    _load(TRANSPORT)
    path = socket_path
    broker = await asyncio.create_subprocess_exec(
        sys.executable, str(BROKER), path, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert broker.stdout is not None
        assert (await asyncio.wait_for(broker.stdout.readline(), 20)).startswith(b"hub listening")
        got: list[str] = []
        three = asyncio.Event()

        def hello(event: str) -> None:
            got.append(event)
            if len(got) == 3:
                three.set()

        async with Bus(f"hub://{path}") as bus:
            bus.subscribe("greetings.>", hello)
            bus.respond("math.add", lambda req: req["a"] + req["b"])
            await bus.flush()  # the hub knows of both before the publisher starts
            publisher = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                PUBLISHER,
                str(TRANSPORT),
                path,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(publisher.communicate(), 40)
            assert publisher.returncode == 0
            assert out.decode().strip() == "5", out
            await asyncio.wait_for(three.wait(), 20)
        assert got == ["hello 0", "hello 1", "hello 2"], got
    finally:
        broker.terminate()
        await broker.wait()


async def _start_hub(path: str) -> asyncio.subprocess.Process:
    broker = await asyncio.create_subprocess_exec(
        sys.executable, str(BROKER), path, stdout=asyncio.subprocess.PIPE
    )
    assert broker.stdout is not None
    assert (await asyncio.wait_for(broker.stdout.readline(), 20)).startswith(b"hub listening")
    return broker


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_example_reconnects_to_a_restarted_hub(socket_path: str) -> None:
    # connect() restores the subscriptions: after the hub restarts, events flow again
    _load(TRANSPORT)
    hub = await _start_hub(socket_path)
    try:
        got: list[int] = []
        async with Bus(f"hub://{socket_path}") as here, Bus(f"hub://{socket_path}") as there:
            here.subscribe("pings.>", got.append)
            await here.flush()
            await there.publish("pings.one", 1)
            await settle(here, lambda: got == [1])
            hub.kill()  # every bus loses its connection, and the hub all it knew
            await hub.wait()
            hub = await _start_hub(socket_path)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while len(got) < 2 and loop.time() < deadline:  # until ``here`` subscribed again
                await there.publish("pings.two", 2)
                await asyncio.sleep(0.05)
            assert got[:2] == [1, 2], got
    finally:
        if hub.returncode is None:
            hub.kill()
            await hub.wait()


# another process holds a durable's events in a handler that never returns, until it is killed
HOLDER = """
import asyncio, runpy, sys
from axonbus import Bus
runpy.run_path(sys.argv[1])

async def hold(event):
    print("holding", event, flush=True)
    await asyncio.Event().wait()

async def main():
    async with Bus("hub://" + sys.argv[2]) as bus:
        bus.subscribe("orders.>", hold, durable="billing")
        await bus.flush()
        print("ready", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_example_hub_takes_back_what_a_killed_process_held(hub: str) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        str(TRANSPORT),
        hub.removeprefix("hub://"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 20) == b"ready\n"
        async with Bus(hub) as bus:
            for i in range(3):
                await bus.publish("orders.created", i)
            await bus.flush()
            assert await asyncio.wait_for(holder.stdout.readline(), 20) == b"holding 0\n"
            holder.kill()  # the handler never finished: nothing was acknowledged
            await holder.wait()
            got: list[int] = []
            three = asyncio.Event()

            def billing(event: int) -> None:
                got.append(event)
                if len(got) == 3:
                    three.set()

            bus.subscribe("orders.>", billing, durable="billing")
            await asyncio.wait_for(three.wait(), 20)
        assert got == [0, 1, 2], got
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


@pytest.mark.parametrize("example", [TRANSPORT, BROKER], ids=lambda p: p.name)
def test_example_uses_only_public_names(example: Path) -> None:
    tree = ast.parse(example.read_text())
    private = [
        f"line {node.lineno}: {node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    imports = [
        f"line {node.lineno}: {node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module != "__future__"
        and any(part.startswith("_") for part in node.module.split("."))
    ]
    assert not private, private
    assert not imports, imports
    # short enough to read in one sitting: about 200 lines besides the blank ones
    assert len([line for line in example.read_text().splitlines() if line.strip()]) <= 200
