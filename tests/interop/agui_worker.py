"""An AG-UI agent in a process of its own: ``python -m tests.interop.agui_worker URL NAME``
serves the demo agent as ``NAME`` on the bus at URL, says ``ready``, and stops when its
standard input closes."""

from __future__ import annotations

import asyncio
import sys

from axonbus import Bus
from axonbus.agent import DemoAgent
from axonbus.agent.agui import AgUiAgent


async def main(url: str, name: str) -> None:
    async with Bus(url) as bus, AgUiAgent(bus, name, DemoAgent(bus, token_delay=0, tool_delay=0)):
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
