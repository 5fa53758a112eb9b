"""The 30-second tour: typed events, patterns, the bulkhead, request/reply, wait_for.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from axonbus import Bus, Context, Event, HandlerFailed


class ToolCall(Event, topic="agent.{session_id}.tool_call"):
    session_id: str
    tool: str
    args: dict[str, Any] = {}


class ToolResult(Event, topic="agent.{session_id}.tool_result"):
    session_id: str
    tool: str
    value: Any


async def main() -> list[str]:
    lines: list[str] = []
    async with Bus() as bus:

        @bus.on(ToolCall)  # by type: subscribes to agent.*.tool_call
        async def run_tool(call: ToolCall, ctx: Context) -> None:
            value = await bus.request(f"tools.{call.tool}", call.args, timeout=2.0)
            await ctx.publish(ToolResult(session_id=call.session_id, tool=call.tool, value=value))

        async def flaky_audit(event: Any) -> None:
            raise RuntimeError("audit store is down")  # contained by the bulkhead

        bus.subscribe_all(flaky_audit)
        bus.subscribe(HandlerFailed, lambda f: lines.append(f"contained: {f.error_message}"))
        bus.respond("tools.add", lambda args: args["a"] + args["b"])

        waiter = bus.wait_for(ToolResult, where=lambda r: r.session_id == "s1", timeout=5)
        await bus.publish(ToolCall(session_id="s1", tool="add", args={"a": 2, "b": 3}))
        result = await waiter
        lines.append(f"{result.tool} -> {result.value}")
        await bus.drain()
    return lines


if __name__ == "__main__":
    for line in asyncio.run(main()):
        print(line)
