"""``sqlite:///path.db``: a durable event log in one file, for the processes of one host.

The store is in ``_transport`` (over the log family in :mod:`axonbus.transports.log`), its
schema and statements in ``_sql``, consumer claims and retention in ``_consumers``.

>>> async with Bus("sqlite:///events.db") as bus: ...
"""

from ._transport import SqliteStore, SqliteTransport

__all__ = ["SqliteStore", "SqliteTransport"]
