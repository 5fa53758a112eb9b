"""``redis://``: many processes on one Redis, through redis-py (asyncio).

The transport is in ``_transport``, its server-side scripts in ``_lua`` and request/reply in
``_rpc``.

>>> async with Bus("redis://127.0.0.1:6379/0", name="assistant") as bus: ...
"""

from ._transport import RedisTransport

__all__ = ["RedisTransport"]
