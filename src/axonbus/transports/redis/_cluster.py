"""``redis+cluster://``: the Redis transport on a Redis Cluster.

>>> Bus("redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000", name="shop")

Every key and channel of a bus starts with its name as a hash tag (``{shop}:bindings``,
``{shop}:durable:billing``, ``{shop}/orders.created``), so all of them hash to one slot and
live on one shard: the publish script, pipelines and blocking reads work unchanged. One bus
lives on one shard; several buses (names) spread over the cluster's shards. The seeds are
asked, through redis-py's cluster client, which master serves the bus's slot; the transport
then talks to that master, and asks again after every reconnect (a replica promoted after its
master failed, or the slot moved). Plain events travel on classic pub/sub, which a cluster
forwards to every node, so a subscriber reached through any node gets them (sharded pub/sub
has no pattern subscriptions).

What a cluster promises, and does not:

- Redis replicates asynchronously: a durable event the master acknowledged can be missing
  from the replica that replaces it. ``wait_replicas=1`` makes every batch of publishes wait
  for ``WAIT 1``: it is confirmed (``flush`` returns, the outbox lets it go) only once one
  replica has it; ``WAIT`` is asked again every ``wait_timeout`` seconds (1) until then, and if
  the master dies first the batch is sent again to the replica that replaced it (it may then
  be stored twice). A master without a live replica holds up publishing until one is back
  (the outbox fills, then publishes raise ``ConnectionLost`` after
  ``unavailable_timeout``). ``WAIT`` is not a consensus: with several replicas, a failover that
  promotes one that had not acknowledged can still lose an event.
- During a failover (``cluster-node-timeout`` plus an election, a second or two with a node
  timeout of 1 s) the bus is disconnected: publishes wait up to ``unavailable_timeout``.
- Deliveries held when the master failed, and acknowledgements not yet replicated, are
  delivered again (at least once).

URL options: those of ``redis://`` plus ``wait_replicas`` (0) and ``wait_timeout`` (s, 1).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlencode

from ..base import float_option, int_option, register_transport
from ._transport import RedisTransport

try:
    from redis import exceptions as rexc
    from redis.asyncio.cluster import ClusterNode, RedisCluster
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the redis+cluster:// transport needs redis-py: pip install 'axonbus[redis]'"
    ) from exc

__all__ = ["RedisClusterTransport", "TlsRedisClusterTransport"]

logger = logging.getLogger("axonbus")


def split_seeds(address: str) -> tuple[str, str, list[tuple[str, int]], str]:
    """``(userinfo@, host:port seeds, path)`` of a cluster URL without its query.

    >>> split_seeds("redis+cluster://:pw@a:7000,b:7001/0")
    ('redis', ':pw@', [('a', 7000), ('b', 7001)], '/0')
    """
    scheme, _, rest = address.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    seeds = []
    for host in filter(None, (h.strip() for h in hosts.split(","))):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"a cluster seed must be host:port, got {host!r}")
        seeds.append((name.strip("[]"), int(port)))
    if not seeds:
        raise ValueError("a redis+cluster:// URL needs at least one host:port")
    if path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0")
    return scheme.removesuffix("+cluster"), f"{userinfo}{at}", seeds, slash + path


@register_transport
class RedisClusterTransport(RedisTransport):
    """``redis+cluster://host:port,host:port``; see the module docstring."""

    scheme = "redis+cluster"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.wait_replicas = int_option(self.options, "wait_replicas", 0)
        self.wait_timeout = float_option(self.options, "wait_timeout", 1.0)
        raw = self._redis_url.partition("?")[0]
        self._node_scheme, self._userinfo, self.seeds, _ = split_seeds(raw)
        self._query = urlencode(self.options)
        self.master = ""  # host:port of the master serving the bus's slot, once connected
        self.unreplicated = 0  # WAITs that timed out (asked again)

    def key_prefix(self, name: str) -> str:
        if "{" in name or "}" in name:
            raise ValueError(f"bus name {name!r}: no '{{' or '}}' on redis+cluster://")
        return "{" + name + "}"

    async def _slot_master(self) -> tuple[str, int]:
        """The master that serves the bus's slot now, asked of the seeds (the first that
        answers) with redis-py's cluster client."""
        user, _, password = self._userinfo.rstrip("@").partition(":")
        options: dict[str, Any] = {
            "startup_nodes": [ClusterNode(host, port) for host, port in self.seeds],
            "socket_connect_timeout": self.unavailable_timeout or None,
            "socket_timeout": max(5.0, self.unavailable_timeout),
            "ssl": self._node_scheme == "rediss",
        }
        if user:
            options["username"] = unquote(user)
        if password:
            options["password"] = unquote(password)
        cluster = RedisCluster(**options)
        try:
            await cluster.initialize()
            node = cluster.get_node_from_key(f"{self.prefix}:bindings")
            if node is None:
                raise rexc.ConnectionError("no master serves the bus's slot (yet)")
            return str(node.host), int(node.port)
        except rexc.RedisClusterException as exc:  # no seed answered, or slots not covered
            raise rexc.ConnectionError(f"no cluster seed answered: {exc}") from exc
        finally:
            await cluster.aclose()

    async def connect(self) -> None:
        host, port = await self._slot_master()
        self.master = f"{host}:{port}"
        query = f"?{self._query}" if self._query else ""
        self._redis_url = f"{self._node_scheme}://{self._userinfo}{host}:{port}/0{query}"
        await super().connect()

    async def write_batch(self, batch: list[Any]) -> None:
        await super().write_batch(batch)
        if self.wait_replicas and any(op[0] == "pub" for op in batch):
            client = self._client
            if client is None:
                raise rexc.ConnectionError("not connected")
            timeout_ms = max(1, int(self.wait_timeout * 1000))
            # the batch is on the master; until a replica has it too, the batch is not
            # confirmed. Sending it again would only store it twice: ask again instead. If the
            # master dies meanwhile, the batch goes again to the replica that replaced it.
            while True:
                got = await client.execute_command(  # type: ignore[no-untyped-call]
                    "WAIT", self.wait_replicas, timeout_ms
                )
                if int(got) >= self.wait_replicas:
                    return
                self.unreplicated += 1
                if self.unreplicated in (1, 10, 100) or not self.unreplicated % 1000:
                    logger.warning(
                        "%s: %s of %s replicas acknowledged within %ss; waiting for them",
                        self, got, self.wait_replicas, self.wait_timeout,
                    )  # fmt: skip


@register_transport
class TlsRedisClusterTransport(RedisClusterTransport):
    """``rediss+cluster://``: the same over TLS."""

    scheme = "rediss+cluster"
