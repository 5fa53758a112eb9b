"""ConsoleChannel: talk to the bus from a terminal (stdin in, stdout out)."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from ._base import Channel, check_channel_type

if TYPE_CHECKING:
    from .._engine.bus import Bus
    from ._messages import ChannelReply

__all__ = ["ConsoleChannel"]

logger = logging.getLogger("axonbus.channels")


class ConsoleChannel(Channel):
    """Each non-blank line read from ``stdin`` becomes a :class:`ChannelMessage` from
    ``user_id``; each reply is written to ``stdout`` after ``reply_prefix``.

    Lines are read by a daemon thread, so the event loop never blocks on the terminal and an
    idle terminal never keeps the process alive. :meth:`run` returns at end of input; the
    channel stays attached and keeps printing replies. Both streams are injectable::

        console = ConsoleChannel(bus, stdin=io.StringIO("hello\\n"), stdout=out)
        await manager.attach(console)        # the manager runs console.run()

    One reader thread per channel instance, kept across restarts (a thread blocked in
    ``readline`` cannot be interrupted), so use an instance on one event loop only.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        user_id: str = "console",
        channel_type: str = "console",
        reply_prefix: str = "> ",
    ) -> None:
        super().__init__(bus)
        self._channel_type = check_channel_type(channel_type)
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout
        self.user_id = user_id
        self.reply_prefix = reply_prefix
        self._lines: asyncio.Queue[str | None] | None = None
        self._eof = False

    @property
    def channel_type(self) -> str:
        return self._channel_type

    async def run(self) -> None:
        """Publish every non-blank input line until end of input."""
        if self._eof:
            return
        lines = self._reader()
        while True:
            line = await lines.get()
            if line is None:
                self._eof = True
                return
            text = line.rstrip("\r\n")
            if text.strip():
                await self.receive(self.user_id, text)

    async def send(self, reply: ChannelReply) -> None:
        self.stdout.write(f"{self.reply_prefix}{reply.content}\n")
        self.stdout.flush()

    def _reader(self) -> asyncio.Queue[str | None]:
        if self._lines is None:
            self._lines = asyncio.Queue()
            thread = threading.Thread(
                target=self._read_lines,
                args=(asyncio.get_running_loop(), self._lines),
                name=f"axonbus:{self.channel_type}:stdin",
                daemon=True,
            )
            thread.start()
        return self._lines

    def _read_lines(
        self, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]
    ) -> None:
        """Reader thread: hand each line to the loop; ``None`` marks the end of input."""
        try:
            while True:
                try:
                    line = self.stdin.readline()
                except Exception as exc:  # a closed or broken stream ends the input
                    logger.warning("channel %r: reading input failed: %s", self.channel_type, exc)
                    line = ""
                loop.call_soon_threadsafe(lines.put_nowait, line or None)
                if not line:
                    return
        except RuntimeError:
            return  # the loop is closed: nobody is listening any more
