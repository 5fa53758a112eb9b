"""The engine: the Bus and what it is made of (mailboxes, routing, subscriptions, streams,
middleware, publishing, dead letters, replay).

Its public names are exported from :mod:`axonbus`; import them from there.
"""
