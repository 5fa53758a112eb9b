"""An AG-UI run whose agent runs in another process of the bus (redis:// and nats://): the
gateway only bridges."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import httpx
import pytest

pytest.importorskip("ag_ui")

from axonbus import Bus
from axonbus.gateway import create_app
from tests.gateway.helpers import running_server
from tests.gateway.test_agui import DEMO_SEQUENCE, read_events, run_input, squeeze
from tests.support.services import nats_url, redis_url, require

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("service", ["redis", "nats"])
async def test_run_in_another_process(service: str) -> None:
    url = redis_url() if service == "redis" else nats_url()
    require(service, url)
    name = "remote" + uuid.uuid4().hex[:8]
    thread = "t" + uuid.uuid4().hex[:8]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.interop.agui_worker", url, name, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert worker.stdin is not None
    assert worker.stdout is not None
    try:
        line = await asyncio.wait_for(worker.stdout.readline(), 30)
        assert line.strip() == b"ready"
        body = run_input(thread, "r1", "what is 6 * 7?")
        async with (
            Bus(url) as bus,
            running_server(create_app(bus)) as base,
            httpx.AsyncClient(base_url=base, timeout=20) as client,
            client.stream("POST", f"/v1/agui/{name}", json=body) as r,
        ):
            assert r.status_code == 200, await r.aread()
            events = await read_events(r)
    finally:
        worker.stdin.close()
        try:
            await asyncio.wait_for(worker.wait(), 15)
        except TimeoutError:
            worker.kill()
            await worker.wait()
    assert squeeze([e["type"] for e in events]) == DEMO_SEQUENCE
    assert events[-1]["result"].startswith("6 * 7 = 42.")
