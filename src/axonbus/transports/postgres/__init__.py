"""``postgresql://`` (and ``postgres://``): many processes on one PostgreSQL, through asyncpg.

The store is in ``_transport`` (over the log family in :mod:`axonbus.transports.log`), its
schema and statements in ``_sql``, consumer claims and retention in ``_consumers``.

>>> async with Bus("postgresql://user@db.internal/app", name="shop") as bus: ...
"""

from ._transport import CONNECTION_ERRORS, PostgresAliasTransport, PostgresStore, PostgresTransport

__all__ = ["CONNECTION_ERRORS", "PostgresAliasTransport", "PostgresStore", "PostgresTransport"]
