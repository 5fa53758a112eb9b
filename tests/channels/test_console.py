from __future__ import annotations

import io
import sys
from collections.abc import Awaitable, Callable

from axonbus import Bus
from axonbus.channels import ChannelManager, ChannelMessage, ChannelReply, ConsoleChannel

Eventually = Callable[[Callable[[], bool]], Awaitable[None]]


async def test_console_lines_in_replies_out(bus: Bus, eventually: Eventually) -> None:
    received: list[ChannelMessage] = []

    async def agent(msg: ChannelMessage) -> None:
        received.append(msg)
        await bus.publish(msg.reply(msg.content.upper()))

    bus.subscribe("channel.console.in", agent)
    stdin = io.StringIO("hello\n\n   \nsecond line\r\nlast without newline")
    stdout = io.StringIO()
    async with ChannelManager(bus) as manager:
        console = ConsoleChannel(bus, stdin=stdin, stdout=stdout, user_id="ada")
        await manager.attach(console)
        await eventually(lambda: len(received) == 3)
        await bus.drain()
        assert manager.status()["console"].state == "running"  # EOF ends run(), not the channel
    assert [m.content for m in received] == ["hello", "second line", "last without newline"]
    assert {m.user_id for m in received} == {"ada"}
    assert {m.channel_type for m in received} == {"console"}
    assert stdout.getvalue() == "> HELLO\n> SECOND LINE\n> LAST WITHOUT NEWLINE\n"


async def test_console_run_directly_and_custom_prefix(bus: Bus) -> None:
    seen: list[str] = []

    async def record(msg: ChannelMessage) -> None:
        seen.append(msg.content)

    bus.subscribe("channel.term.in", record)
    stdout = io.StringIO()
    console = ConsoleChannel(
        bus, stdin=io.StringIO("a\nb\n"), stdout=stdout, channel_type="term", reply_prefix="bot: "
    )
    async with console:
        await console.run()  # returns at end of input
        await console.run()  # and at once afterwards
        await bus.publish(ChannelReply(channel_type="term", user_id="console", content="hi"))
        await bus.drain()
    assert seen == ["a", "b"]
    assert stdout.getvalue() == "bot: hi\n"


async def test_console_defaults_to_process_streams(bus: Bus) -> None:
    console = ConsoleChannel(bus)
    assert console.stdin is sys.stdin
    assert console.stdout is sys.stdout
    assert console.channel_type == "console"


async def test_console_broken_input_ends_run(bus: Bus) -> None:
    class Broken(io.StringIO):
        def readline(self, size: int | None = -1) -> str:
            raise OSError("terminal went away")

    async with ConsoleChannel(bus, stdin=Broken(), stdout=io.StringIO()) as console:
        await console.run()
    assert not console.running
