"""``amqp://`` and ``amqps://``: many processes on one RabbitMQ, through aio-pika (aiormq).

The transport is in ``_transport``, the names on the broker in ``_names``, the queues fed to
mailboxes in ``_consumers`` and the bookkeeping reads and writes in ``_records``.

>>> async with Bus("amqp://guest:guest@127.0.0.1:5672/", name="shop") as bus: ...
"""

from ._transport import AmqpsTransport, AmqpTransport

__all__ = ["AmqpTransport", "AmqpsTransport"]
