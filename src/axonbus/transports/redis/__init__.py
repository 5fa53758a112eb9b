"""``redis://``: many processes on one Redis, through redis-py (asyncio).

The transport is in ``_transport``, its server-side scripts in ``_lua`` and request/reply in
``_rpc``; ``redis+cluster://`` (a Redis Cluster) in ``_cluster``.

>>> async with Bus("redis://127.0.0.1:6379/0", name="assistant") as bus: ...
"""

from ._cluster import RedisClusterTransport
from ._transport import RedisTransport

__all__ = ["RedisClusterTransport", "RedisTransport"]
