"""Running the gateway: :func:`serve` (what ``axonbus serve`` calls) and :class:`GatewayServer`."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import logging
import resource
import signal
import socket
import sys
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
import uvicorn.config

from .._engine.bus import Bus
from ._app import create_app
from ._auth import TokenSet, load_tokens
from ._errors import BindError, InsecureBind
from ._logs import Throttle, install_log_filters

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..channels import ChannelManager
    from ._core import Gateway

__all__ = [
    "GatewayServer",
    "default_max_connections",
    "guarded_protocol",
    "is_loopback",
    "listen",
    "serve",
]

logger = logging.getLogger("axonbus.gateway")
_refusals = Throttle(("connection refused",), interval=10.0)
logger.addFilter(_refusals)

#: what a connection over the limit receives before it is closed
_FULL_BODY = (
    b'{"error":{"code":"too_many_connections","message":"the gateway is at its connection '
    b'limit; retry later"}}'
)
_FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: "
    + str(len(_FULL_BODY)).encode()
    + b"\r\n\r\n"
    + _FULL_BODY
)


#: seconds a shutting-down server waits for clients that stopped reading before it aborts them
STALLED_GRACE = 1.0


def default_max_connections() -> int:
    """1,000 connections, or fewer when the process may open fewer files (keeping 64 spare
    for the bus, logs and the listening socket)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1000
    return max(16, min(1000, soft - 64))


def guarded_protocol(
    max_connections: int, header_timeout: float, send_buffer: int | None = 256 * 1024
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (h11, or httptools when installed), refusing connections over
    ``max_connections`` at once with a 503, and closing a connection that has not sent a
    complete request head within ``header_timeout`` seconds (when it opened, or after its
    previous response): a client trickling its headers cannot hold a connection.
    ``send_buffer``: the kernel send buffer of each connection (``SO_SNDBUF``; Linux grows it
    up to 4 MiB otherwise, which a client that stops reading would hold on to).
    """
    from uvicorn.importer import import_from_string

    base: Any = import_from_string(uvicorn.config.HTTP_PROTOCOLS["auto"])
    # One sweep over the armed connections every `tick` seconds instead of a timer per
    # connection: thousands of SSE clients then cost no timer each (a deadline is checked up to
    # `tick` late).
    tick = min(1.0, header_timeout / 4)
    armed: set[Any] = set()  # connections with a request head deadline
    sweeper: dict[str, Any] = {"loop": None, "handle": None}

    def watch(protocol: Any) -> None:
        loop = protocol.loop
        if sweeper["loop"] is not loop:  # a new event loop (tests): forget the old one's
            armed.clear()
            sweeper["loop"], sweeper["handle"] = loop, None
        armed.add(protocol)
        if sweeper["handle"] is None:
            sweeper["handle"] = loop.call_later(tick, sweep, loop)

    def sweep(loop: asyncio.AbstractEventLoop) -> None:
        sweeper["handle"] = None
        if sweeper["loop"] is not loop:
            return
        now = loop.time()
        for protocol in [p for p in armed if p._head_deadline <= now]:
            armed.discard(protocol)
            protocol._head_timeout()
        if armed:
            sweeper["handle"] = loop.call_later(tick, sweep, loop)

    class GuardedProtocol(base):  # type: ignore[misc]
        _head_deadline: float = 0.0
        _armed_cycle: Any = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                logger.warning(
                    "gateway: connection refused: at the limit of %d connections",
                    max_connections,
                )
                transport.write(_FULL)
                transport.close()
                self.connections.discard(self)
                return
            sock = transport.get_extra_info("socket")
            if send_buffer is not None and sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            self._arm()

        def _arm(self) -> None:
            self._armed_cycle = self.cycle
            self._head_deadline = self.loop.time() + header_timeout
            watch(self)

        def _disarm(self) -> None:
            armed.discard(self)

        def _head_timeout(self) -> None:
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return  # closed, or upgraded to a WebSocket
            cycle = self.cycle
            if cycle is self._armed_cycle and (cycle is None or cycle.response_complete):
                # no new request head since the deadline was set: idle, or trickling headers
                self.transport.close()

        def handle_websocket_upgrade(self, *args: Any) -> None:
            self._disarm()  # the WebSocket protocol takes the connection over
            super().handle_websocket_upgrade(*args)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    GuardedProtocol.__name__ = GuardedProtocol.__qualname__ = f"Guarded{base.__name__}"
    return GuardedProtocol


def listen(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for ``host`` (every address it resolves to, like uvicorn's own binding)
    and ``port``; :class:`BindError` in one line when that fails. Binding before anything
    starts reports a port in use before the bus connects, and without uvicorn's log lines."""
    where = f"{_display(host)}:{port}"
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(f"cannot listen on {where}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # each address family gets its own socket, as asyncio's create_server does
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise BindError(f"cannot listen on {where}: {reason}") from None
    return sockets


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class GatewayServer(uvicorn.Server):
    """uvicorn's server, ending the gateway's SSE streams and WebSockets before it waits for
    connections to close (they would keep it waiting forever).

    ``handle_signals=False`` leaves signals alone: :func:`serve` handles them itself for the
    whole run, the bus's close included, and tests run the server inside their own loop.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        handle_signals: bool = True,
        on_started: Callable[[GatewayServer], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.handle_signals = handle_signals
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            self.on_started(self)

    @property
    def gateway(self) -> Gateway | None:
        app = self.config.app
        state = getattr(app, "state", None)
        return getattr(state, "gateway", None)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self.handle_signals:
            yield
            return
        with super().capture_signals():
            yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        gateway = self.gateway
        if gateway is not None:
            gateway.close_feeds()
        # a connection whose client stopped reading keeps unsent bytes, and a transport closes
        # only once they are sent: abort those after a second rather than wait the whole
        # graceful timeout for them
        reaper = asyncio.get_running_loop().call_later(STALLED_GRACE, self._abort_stalled)
        try:
            await super().shutdown(sockets=sockets)
        finally:
            reaper.cancel()

    def _abort_stalled(self) -> None:
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
                transport.abort()

    @property
    def port(self) -> int | None:
        """The port actually bound (useful with ``port=0``), once started."""
        for server in self.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return None


def _ws_implementation() -> str:
    # uvicorn's "auto" picks the legacy API of `websockets`, deprecated (and warning) since 14
    has_sansio = "websockets-sansio" in uvicorn.config.WS_PROTOCOLS
    if has_sansio and importlib.util.find_spec("websockets") is not None:
        return "websockets-sansio"
    if importlib.util.find_spec("wsproto") is not None:
        return "wsproto"
    return "auto"


def server_config(
    app: Starlette,
    host: str,
    port: int,
    *,
    log_level: str = "info",
    max_connections: int | None = None,
    header_timeout: float = 10.0,
    send_buffer: int | None = 256 * 1024,
) -> uvicorn.Config:
    """The uvicorn configuration :func:`serve` uses: no uvicorn access log
    (``axonbus.gateway.access`` logs requests), tokens redacted from uvicorn's own lines, at
    most ``max_connections`` (default :func:`default_max_connections`) with a 503 beyond,
    ``header_timeout`` seconds for a request head, 5 s keep-alive, 16 KiB request heads,
    ``send_buffer`` bytes of kernel send buffer per connection."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, not {port}")
    if max_connections is None:
        max_connections = default_max_connections()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        ws=_ws_implementation(),
        http=guarded_protocol(max_connections, header_timeout, send_buffer),
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,
        ws_max_size=16 * 1024 * 1024,
    )
    install_log_filters()  # after uvicorn configured its loggers
    return config


async def serve(
    bus: Bus | str = "memory://",
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    tokens: TokenSet | str | Path | None = None,
    insecure: bool = False,
    demo: bool = True,
    state_manager: Any = None,
    channels: ChannelManager | None = None,
    max_body: int | None = None,
    log_level: str = "info",
    max_connections: int | None = None,
    header_timeout: float = 10.0,
    allowed_hosts: Iterable[str] | None = None,
    allowed_origins: Iterable[str] = (),
) -> int:
    """Run the gateway until SIGINT / SIGTERM; returns the exit code (130 after SIGINT, else 0).

    >>> asyncio.run(serve("memory://", port=8765))        # what `axonbus serve` does

    ``bus``: a URL (the bus is created, started and closed here) or a :class:`Bus` (started
    here if new, closed by its owner). ``demo``: also run the demo agent
    (:class:`axonbus.agent.DemoAgent`) and a :class:`~axonbus.agent.StateManager`, so the
    dashboard can chat. Without ``tokens`` the gateway is open to anyone who can reach it, so
    a ``host`` beyond loopback raises :class:`InsecureBind` unless ``insecure=True``.
    ``max_connections`` and ``header_timeout``: see :func:`server_config`. ``allowed_hosts``
    and ``allowed_origins``: see :func:`create_app` (by default, with ``insecure=True`` beyond
    loopback, any ``Host``). A port that cannot be bound raises :class:`BindError` before
    the bus starts.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be a number in 0..65535, not {port!r}")
    if max_connections is not None and (
        isinstance(max_connections, bool)
        or not isinstance(max_connections, int)
        or max_connections < 1
    ):
        raise ValueError(f"max_connections must be a positive int, not {max_connections!r}")
    if isinstance(tokens, str | Path):
        tokens = load_tokens(tokens)
    if tokens is None and not insecure and not is_loopback(host):
        raise InsecureBind(
            f"refusing to serve on {host!r} with open access: give a tokens file "
            "(--tokens FILE) or pass --insecure"
        )
    loop = asyncio.get_running_loop()
    received: list[int] = []
    server: GatewayServer | None = None

    def on_signal(sig: int) -> None:
        received.append(sig)
        if server is not None:
            server.handle_exit(sig, None)

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or Windows: uvicorn's defaults apply
        installed.append(sig)
    try:
        async with contextlib.AsyncExitStack() as stack:
            sockets = listen(host, port)
            for sock in sockets:
                stack.callback(sock.close)
            the_bus = Bus(bus) if isinstance(bus, str) else bus
            if isinstance(bus, str):
                await the_bus.start()
                stack.push_async_callback(the_bus.close)
            elif the_bus.state == "new":
                await the_bus.start()
            if demo:
                from ..agent import DemoAgent, StateManager

                if state_manager is None:
                    state_manager = StateManager(the_bus)
                    stack.callback(state_manager.close)
                agent = DemoAgent(the_bus).start()
                stack.push_async_callback(agent.stop)
                # the same agent over AG-UI (POST /v1/agui/demo) when the agui extra is there
                try:
                    from ..agent.agui import AgUiAgent
                except ImportError:
                    pass
                else:
                    agui = AgUiAgent(the_bus, "demo", agent).start()
                    stack.push_async_callback(agui.stop)
            # open access beyond loopback (--insecure) is reached by names we cannot know
            if allowed_hosts is None and tokens is None and not is_loopback(host):
                allowed_hosts = ("*",)
            app = create_app(
                the_bus,
                tokens=tokens,
                state_manager=state_manager,
                channels=channels,
                max_body=max_body,
                allowed_hosts=allowed_hosts,
                allowed_origins=allowed_origins,
            )
            access = "token auth" if tokens is not None else "OPEN ACCESS (no tokens file)"

            def announce(started: GatewayServer) -> None:
                print(
                    f"axonbus gateway on http://{_display(host)}:{started.port or port}/ - "
                    f"bus {the_bus!r}, {access}, {_loop_name(loop)} event loop; Ctrl-C to stop",
                    file=sys.stderr,
                    flush=True,
                )

            config = server_config(
                app,
                host,
                port,
                log_level=log_level,
                max_connections=max_connections,
                header_timeout=header_timeout,
            )
            server = GatewayServer(config, handle_signals=not installed, on_started=announce)
            if received:  # a signal arrived while starting
                return _exit_code(received)
            await server.serve(sockets=sockets)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return _exit_code(received)


def _loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio`` (the package the running loop comes from)."""
    return type(loop).__module__.split(".", 1)[0]


def _exit_code(received: list[int]) -> int:
    return 130 if signal.SIGINT in received else 0


def _display(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
