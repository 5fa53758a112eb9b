"""Private Redis and NATS servers for fault tests: killable and restartable at will.

Each server gets its own free port and data directory, so a test may ``kill -9`` it
without touching the shared brokers on 6379/4222. The port and directory survive
:meth:`restart`, so clients can reconnect to the same URL and persisted data comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Self

__all__ = [
    "BrokerError",
    "NatsServer",
    "RabbitServer",
    "RedisServer",
    "find_binary",
    "free_port",
]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_POLL = 0.02


class BrokerError(RuntimeError):
    """A private broker did not start (the message carries its log tail)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else in the sbin directories a non-root PATH often lacks."""
    found = shutil.which(name)
    if found:
        return found
    # Debian installs nats-server to /usr/sbin
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(directory, name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


class _BrokerProcess:
    """A broker subprocess on a fixed port and data directory. Subclasses say how to run it."""

    binary_name: ClassVar[str]

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *, port: int = 0) -> None:
        binary = find_binary(self.binary_name)
        if binary is None:
            raise FileNotFoundError(
                f"{self.binary_name} is not installed (not on PATH nor in sbin)"
            )
        self.binary = binary
        self.host = "127.0.0.1"
        # fixed at construction so the URL stays valid across restarts
        self.port = port or free_port()
        self._owned_dir: tempfile.TemporaryDirectory[str] | None = None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- subclass hooks ------------------------------------------------------------------

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self, sock: socket.socket) -> bool:
        """Given a connected socket, True once the broker answers its handshake."""
        raise NotImplementedError

    def _popen_options(self) -> dict[str, object]:
        """Extra ``subprocess.Popen`` arguments (an environment, a session of its own)."""
        return {}

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """Where the broker keeps its data and ``server.log`` (created on first use)."""
        if self._data_dir is None:
            self._owned_dir = tempfile.TemporaryDirectory(prefix=f"axonbus-{self.binary_name}-")
            self._data_dir = Path(self._owned_dir.name)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Start the broker and wait until it answers; BrokerError with its log tail if not."""
        if self.running:
            return self
        self._reap()
        # appended across restarts so a failure message can show what happened before
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            **self._popen_options(),  # type: ignore[call-overload]
        )
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._fail(f"exited with code {code} while starting")
            if self._answers():
                return self
            if time.monotonic() >= deadline:
                self.kill()
                self._fail(f"did not answer within {timeout:.1f}s")
            time.sleep(_POLL)

    def kill(self) -> None:
        """SIGKILL the broker (no shutdown, no flush) and reap it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
        self._reap()

    def restart(self, timeout: float = START_TIMEOUT) -> Self:
        """``kill()`` then ``start()`` on the same port and data directory."""
        self.kill()
        return self.start(timeout)

    def stop(self) -> None:
        """Terminate gracefully (SIGKILL after a grace period) and remove an owned temp dir."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._reap()
        if self._owned_dir is not None:
            self._owned_dir.cleanup()
            self._owned_dir = None
            self._data_dir = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    # -- async helpers: the same, off the event loop so clients keep running meanwhile -----

    async def astart(self, timeout: float = START_TIMEOUT) -> Self:
        return await asyncio.to_thread(self.start, timeout)

    async def akill(self) -> None:
        await asyncio.to_thread(self.kill)

    async def arestart(self, timeout: float = START_TIMEOUT) -> Self:
        return await asyncio.to_thread(self.restart, timeout)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"

    # -- internals -----------------------------------------------------------------------

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.settimeout(0.5)
                return self._ready(sock)
        except OSError:
            return False

    def _reap(self) -> None:
        # always wait and close the log: a Popen or file left behind is a ResourceWarning,
        # and warnings are errors in this test suite
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(STOP_TIMEOUT)
            if self._proc.poll() is None:  # ignored SIGTERM and the grace period
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _fail(self, what: str) -> None:
        cmd = " ".join(self._command())
        raise BrokerError(
            f"{self.binary_name} on port {self.port} {what}\n"
            f"command: {cmd}\n--- {self.log_path} (tail) ---\n{self.log_tail()}"
        )


class RedisServer(_BrokerProcess):
    """A private ``redis-server``; with ``appendonly`` (default) data survives ``kill -9``.

    ``appendfsync always`` (the default here) writes every acknowledged command to the AOF
    before replying, so "acknowledged means survives a restart" holds without timing luck;
    with Redis' own default ``everysec`` a write can be postponed while an fsync is running.
    """

    binary_name = "redis-server"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int = 0,
        appendonly: bool = True,
        appendfsync: str = "always",
    ) -> None:
        super().__init__(data_dir, port=port)
        self.appendonly = appendonly
        self.appendfsync = appendfsync

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
        ]

    def _ready(self, sock: socket.socket) -> bool:
        # while an AOF is loading Redis answers -LOADING, so +PONG also means "data is back"
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


class NatsServer(_BrokerProcess):
    """A private ``nats-server`` with JetStream; the store dir survives restarts."""

    binary_name = "nats-server"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int = 0,
        server_name: str = "axonbus-test",
    ) -> None:
        super().__init__(data_dir, port=port)
        self.server_name = server_name

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "js"

    def _command(self) -> list[str]:
        return [
            self.binary,
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.store_dir),
            # a fixed name: the default is a fresh random id per start, which makes logs
            # of a restarted server hard to follow
            "-n",
            self.server_name,
        ]

    def _ready(self, sock: socket.socket) -> bool:
        buf = b""
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            buf += chunk
        return buf.startswith(b"INFO ") and b'"jetstream":true' in buf


class RabbitServer(_BrokerProcess):
    """A private RabbitMQ node: its own node name, ports, data, logs, ``HOME`` (the Erlang
    cookie) and feature-flags file, all under its data directory, so it never touches the
    shared node. It boots in ~10 s (more on a loaded machine): start it once per test run.

    The start script runs the Erlang VM as a child, so the node runs in a session of its own
    and :meth:`kill` signals that process group (by the script's PID), VM included.
    """

    binary_name = "rabbitmq-server"
    start_timeout = 90.0

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *, port: int = 0) -> None:
        super().__init__(data_dir, port=port)
        # /usr/sbin/rabbitmq-server switches to the rabbitmq user and the system node's
        # settings; the script behind it runs a node as whoever starts it
        direct = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
        if direct.is_file():
            self.binary = str(direct)
        self.dist_port = free_port()
        self.node_name = f"axonbus{self.port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        return super().start(max(timeout, self.start_timeout))

    def _command(self) -> list[str]:
        return [self.binary]

    def _popen_options(self) -> dict[str, object]:
        base = self.data_dir
        for sub in ("home", "mnesia", "log"):
            (base / sub).mkdir(exist_ok=True)
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.host}:{self.port}\nloopback_users = none\n"
        )
        (base / "rabbitmq-env.conf").write_text("")  # not the system node's settings
        (base / "enabled_plugins").write_text("[].\n")
        env = {
            **os.environ,
            "HOME": str(base / "home"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(base / "feature_flags"),
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "node.pid"),
            "RABBITMQ_LOGS": "-",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        return {"env": env, "start_new_session": True}

    def _signal_group(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # its own session: the script and the VM

    def kill(self) -> None:
        """SIGKILL the node (script and Erlang VM) and reap it."""
        self._signal_group(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        self._signal_group(signal.SIGTERM)
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(STOP_TIMEOUT * 3)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
        super().stop()

    def _ready(self, sock: socket.socket) -> bool:
        # the AMQP 0-9-1 protocol header; a node that boots answers with Connection.Start
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        return sock.recv(8).startswith(b"\x01\x00\x00")
