"""An asyncio TCP proxy that injects connection faults between a client and a broker.

Modes (switch at any time, from the proxy's event loop):

* forwarding (default, and after :meth:`TcpProxy.heal`): bytes flow both ways.
* :meth:`TcpProxy.cut`: every current connection is reset (RST on both sides) and new
  ones are accepted and reset at once, until healed.
* :meth:`TcpProxy.blackhole`: a silent network. Sockets stay open, but no byte (nor a
  close) is passed on in either direction, and new connections are accepted but not
  connected upstream, so nothing is ever answered.

Healing a blackhole *resumes* everything it held, like TCP after a partition heals: the
bytes and closes held back are delivered late, and connections accepted meanwhile are
connected upstream then. A client that gave up during the blackhole has closed its socket,
so that close is what reaches the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from types import TracebackType
from typing import Self

from tests.support.services import with_address

__all__ = ["Mode", "TcpProxy"]

_CHUNK = 64 * 1024
_CLOSE_TIMEOUT = 1.0  # to flush the last bytes to a peer on a normal close


class Mode(enum.Enum):
    FORWARD = "forward"
    CUT = "cut"
    BLACKHOLE = "blackhole"


class _Link:
    """One client connection and, once connected, its upstream connection."""

    __slots__ = ("client", "upstream")

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None

    def _writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.upstream) if w is not None]

    def reset(self) -> None:
        """Drop both sockets now, with RST rather than FIN, as a failing network would."""
        for writer in self._writers():
            sock = writer.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # idempotent, and also ends a close() still flushing to a peer that stopped reading
            writer.transport.abort()

    async def close(self, timeout: float) -> None:
        """Close both sides normally (flush, then FIN); reset what is left after ``timeout``."""
        writers = self._writers()
        for writer in writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True),
                timeout,
            )
        self.reset()


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``, with faults on demand."""

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1"):
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.connections_total = 0  # accepted client connections, refused ones included
        self.bytes_forwarded = 0  # both directions
        self._mode = Mode.FORWARD
        self._flowing = asyncio.Event()  # set unless blackholed
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # anything unexpected raised while proxying; tests may assert it stays empty
        self.errors: list[BaseException] = []

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> Self:
        """Listen on a free port of ``listen_host``."""
        if self._server is not None:
            return self
        self._server = await asyncio.start_server(self._handle, self.listen_host, 0)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening, drop every connection and wait for all proxy tasks to end."""
        self._closed = True
        self._flowing.set()  # release anything held by a blackhole so it can see _closed
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # let handlers for connections accepted just before close() register themselves
        await asyncio.sleep(0)
        for link in list(self._links):
            link.reset()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- addresses -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("TcpProxy.start() has not been awaited")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return (self.listen_host, self.port)

    def url_for(self, url: str) -> str:
        """``url`` (``redis://``, ``nats://``, ...) rewritten to go through this proxy."""
        return with_address(url, self.listen_host, self.port)

    # -- faults --------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def active_connections(self) -> int:
        return len(self._links)

    def cut(self) -> None:
        """Reset every connection, and reset new ones on accept, until :meth:`heal`."""
        self._mode = Mode.CUT
        # nothing held by a blackhole may be delivered after a cut: the links are gone
        self._flowing.set()
        for link in list(self._links):
            link.reset()

    def blackhole(self) -> None:
        """Stop passing bytes and closes either way; accept but don't answer new connections."""
        self._mode = Mode.BLACKHOLE
        self._flowing.clear()

    def heal(self) -> None:
        """Forward again; whatever a blackhole held is delivered now (see module docs)."""
        self._mode = Mode.FORWARD
        self._flowing.set()

    # -- forwarding ----------------------------------------------------------------------

    def _dropping(self) -> bool:
        # a method, not an inline test: the answer changes across every await
        return self._closed or self._mode is Mode.CUT

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio runs this as a task it does not keep; we keep it so close() can end it
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections_total += 1
        link = _Link(writer)
        self._links.add(link)
        graceful = False
        try:
            graceful = await self._serve(link, reader)
            if graceful:
                await link.close(_CLOSE_TIMEOUT)
        except asyncio.CancelledError:
            pass  # only close() cancels these tasks; ending quietly keeps the loop's log clean
        except Exception as exc:  # a bug here must not surface as "exception never retrieved"
            self.errors.append(exc)
        finally:
            link.reset()
            self._links.discard(link)
            self._tasks.discard(task)

    async def _serve(self, link: _Link, client_reader: asyncio.StreamReader) -> bool:
        """Proxy one connection; True if it ended normally (a side closed), False if reset."""
        if self._dropping():
            return False
        # a blackhole accepts the connection but does not connect it anywhere yet
        await self._flowing.wait()
        if self._dropping():
            return False
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            return False  # upstream down: the client sees its connection reset
        link.upstream = up_writer
        if self._dropping() or link not in self._links:
            return False
        pumps = [
            asyncio.create_task(self._pump(client_reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, link.client)),
        ]
        try:
            # either side closing or failing ends the connection for both
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        return all(p.result() for p in done) and not (self._dropping())

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Copy until EOF (True) or a socket error (False)."""
        try:
            while True:
                data = await reader.read(_CHUNK)
                # held here while blackholed: the data, or the close (empty read)
                await self._flowing.wait()
                if self._dropping():
                    return False
                if not data:
                    return True
                writer.write(data)
                await writer.drain()
                self.bytes_forwarded += len(data)
        except OSError:
            return False  # reset or broken pipe: propagated to the other side as a reset
