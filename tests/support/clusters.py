"""Private broker clusters on loopback ports: a 3-node NATS JetStream cluster, and a Redis
Cluster of 3 masters and 3 replicas. Each node is a :mod:`tests.support.brokers` process
(its own port, data directory and log), killable and restartable by PID like any of them.

>>> with NatsCluster(tmp_path) as cluster:  # doctest: +SKIP
...     Bus(cluster.url + "?replicas=3", name="shop")
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.brokers import BrokerError, NatsServer, RedisServer, find_binary, free_port

__all__ = ["NatsCluster", "NatsNode", "RedisCluster", "RedisNode"]

READY_TIMEOUT = 30.0


class NatsNode(NatsServer):
    """One node of a :class:`NatsCluster`: JetStream, a cluster port, routes to its peers."""

    def __init__(self, data_dir: Path, *, name: str, cluster_name: str) -> None:
        super().__init__(data_dir, server_name=name)
        self.cluster_name = cluster_name
        self.cluster_port = free_port()
        self.routes: list[int] = []  # the other nodes' cluster ports

    def _command(self) -> list[str]:
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)
        return [
            *super()._command(),
            "--cluster_name",
            self.cluster_name,
            "--cluster",
            f"nats://127.0.0.1:{self.cluster_port}",
            "--routes",
            routes,
        ]


class NatsCluster:
    """Three nats-server nodes in one JetStream cluster; ``url`` names every node (seeds)."""

    def __init__(self, base_dir: Path, size: int = 3) -> None:
        name = f"axb{os.getpid()}"
        self.nodes = [
            NatsNode(base_dir / f"n{i}", name=f"{name}-n{i}", cluster_name=name)
            for i in range(size)
        ]
        for node in self.nodes:
            node.routes = [n.cluster_port for n in self.nodes if n is not node]

    @property
    def url(self) -> str:
        return "nats://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> Self:
        for node in self.nodes:
            node.start()
        self.wait_jetstream()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def node_named(self, name: str) -> NatsNode:
        return next(n for n in self.nodes if n.server_name == name)

    async def leader_of(self, stream: str, consumer: str | None = None) -> NatsNode:
        """The node that leads ``stream`` (or its ``consumer``) now, asked of a live node."""
        import nats

        servers = [f"nats://127.0.0.1:{n.port}" for n in self.nodes if n.running]
        nc = await nats.connect(servers=servers, allow_reconnect=False, connect_timeout=2)
        try:
            what = f"CONSUMER.INFO.{stream}.{consumer}" if consumer else f"STREAM.INFO.{stream}"
            msg = await nc.request(f"$JS.API.{what}", b"", timeout=5)
            return self.node_named(json.loads(msg.data)["cluster"]["leader"])
        finally:
            await nc.close()

    def wait_jetstream(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every running node answers a JetStream API call (a meta leader was elected)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if not node.running:
                continue
            while not _js_ready(node.port):
                if time.monotonic() > deadline:
                    raise BrokerError(f"JetStream not ready on {node}:\n{node.log_tail()}")
                time.sleep(0.1)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _js_ready(port: int) -> bool:
    """A ``$JS.API.INFO`` request over a raw socket answers without an error."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            f = sock.makefile("rb")
            f.readline()  # INFO
            sock.sendall(
                b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n'
                b"SUB _R.x 1\r\nPUB $JS.API.INFO _R.x 0\r\n\r\nPING\r\n"
            )
            while True:
                line = f.readline()
                if not line or line.startswith(b"-ERR"):
                    return False
                if line.startswith((b"MSG", b"HMSG")):
                    size = int(line.split()[-1])
                    body = f.read(size + 2)
                    if line.startswith(b"HMSG"):
                        return False  # a 503 status: no JetStream answered (yet)
                    return "error" not in json.loads(body)
    except (OSError, ValueError):
        return False


def cluster_port() -> int:
    """A free port for a Redis Cluster node: its bus port (+10000) must be free and valid."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisNode(RedisServer):
    """One node of a :class:`RedisCluster` (cluster mode, its nodes.conf in its directory)."""

    def __init__(self, data_dir: Path, *, appendfsync: str) -> None:
        super().__init__(data_dir, port=cluster_port(), appendonly=True, appendfsync=appendfsync)

    def _command(self) -> list[str]:
        return [
            *super()._command(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.data_dir / "nodes.conf"),
            # a killed master is replaced after 1 s of silence, not the default 15 s
            "--cluster-node-timeout",
            "1000",
            # a replica takes over however long its link to the master was down
            "--cluster-replica-validity-factor",
            "0",
        ]

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"


class RedisCluster:
    """3 masters and 3 replicas (``redis-cli --cluster create``); ``url`` lists the masters."""

    def __init__(self, base_dir: Path, masters: int = 3, *, appendfsync: str = "everysec") -> None:
        self.nodes = [
            RedisNode(base_dir / f"r{i}", appendfsync=appendfsync) for i in range(masters * 2)
        ]
        self.masters = masters
        cli = find_binary("redis-cli")
        if cli is None:
            raise FileNotFoundError("redis-cli is not installed")
        self.cli = cli

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[: self.masters])
        return f"redis+cluster://{seeds}"

    def start(self) -> Self:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", "1",
             "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.wait_ok()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def ask(self, node: RedisNode, *command: str) -> str:
        done = subprocess.run(
            [self.cli, "-h", "127.0.0.1", "-p", str(node.port), *command],
            capture_output=True, timeout=10, text=True,
        )  # fmt: skip
        return done.stdout

    def wait_ok(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every running node reports ``cluster_state:ok`` (all slots served)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while node.running and "cluster_state:ok" not in self.ask(node, "cluster", "info"):
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"cluster not ok on {node}:\n{self.ask(node, 'cluster', 'nodes')}"
                    )
                time.sleep(0.1)

    def master_of(self, key: str) -> RedisNode:
        """The node that serves ``key``'s slot now (asked of any running node)."""
        for node in self.nodes:
            if not node.running:
                continue
            slot = int(self.ask(node, "cluster", "keyslot", key).strip())
            for line in self.ask(node, "cluster", "nodes").splitlines():
                parts = line.split()
                if "master" not in parts[2] or "fail" in parts[2]:
                    continue
                for span in parts[8:]:
                    lo, _, hi = span.partition("-")
                    with contextlib.suppress(ValueError):
                        if int(lo) <= slot <= int(hi or lo):
                            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
                            return next(n for n in self.nodes if n.port == port)
        raise BrokerError(f"no master serves {key!r}")

    def wait_master_moved(self, key: str, old: RedisNode, timeout: float = READY_TIMEOUT) -> None:
        """Until a node other than ``old`` serves ``key``'s slot (a replica took over)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(BrokerError, ValueError, StopIteration):
                if self.master_of(key) is not old:
                    return
            if time.monotonic() > deadline:
                raise BrokerError(f"no replica took over {key!r} from {old}")
            time.sleep(0.05)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
