"""``nats://`` (and ``tls://``): the NATS transport, with JetStream for ``durable=``.

The transport is in ``_transport``; ``_conn`` holds one connection, ``_writer`` batches
outbound events and their confirmation, ``_pack`` packs small events together,
``_jetstream`` runs the durable consumers and ``_rpc`` request/reply.

>>> async with Bus("nats://127.0.0.1:4222", name="shop") as bus: ...
"""

from ._transport import NatsTransport

__all__ = ["NatsTransport"]
