"""Header keys a transport reads or sets on an envelope.

A publish with an ``idempotency_key`` header is stored once by a transport that dedupes
(``BrokerTransport.dedupes``); the envelope ``publish`` returns for a duplicate carries the
``axonbus_duplicate`` header:

>>> from axonbus.transports import DUPLICATE, IDEMPOTENCY_KEY
>>> (IDEMPOTENCY_KEY, DUPLICATE)
('idempotency_key', 'axonbus_duplicate')
"""

from __future__ import annotations

__all__ = ["DUPLICATE", "IDEMPOTENCY_KEY"]

#: the header that makes a publish idempotent on transports that dedupe (``dedupes``)
IDEMPOTENCY_KEY = "idempotency_key"
#: set on the envelope ``publish`` returns when the event was a duplicate (and went nowhere)
DUPLICATE = "axonbus_duplicate"
