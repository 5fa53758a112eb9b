"""The log family: what ``sqlite://`` and ``postgresql://`` share.

Every event goes to a table of events numbered by offset. ``_transport`` is the transport of
both logs (tail, consumers, pending deliveries, replay) with ``_reading`` and ``_rpc`` its
reading and request/reply halves, over the store contract in ``_store``; each broker's
subpackage (:mod:`axonbus.transports.sqlite`, :mod:`axonbus.transports.postgres`) supplies a
store.
"""
