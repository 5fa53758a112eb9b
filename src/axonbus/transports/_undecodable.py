"""What a transport does with a message that is neither an axonbus frame nor a CloudEvent:
count it, and log it with the reason, once per burst.

>>> import logging
>>> seen = Undecodable(logging.getLogger("axonbus"))
>>> seen.report("redis://…", "chat.in", "not a CloudEvent: not JSON")
>>> seen.count
1
"""

from __future__ import annotations

import logging
import time

__all__ = ["BURST", "Undecodable"]

#: seconds in which further undecodable messages are only counted, then summed up in one line
BURST = 10.0


class Undecodable:
    """A counter of messages dropped as undecodable, logging the first of each burst."""

    __slots__ = ("_logged_at", "_logger", "_since", "count")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self.count = 0  # every one, for metrics and tests
        self._since = 0  # counted since the last line logged
        self._logged_at = -BURST

    def report(self, where: str, channel: str, reason: str) -> None:
        """Count one message dropped on ``channel``; log it unless a burst is under way."""
        self.count += 1
        self._since += 1
        now = time.monotonic()
        if now - self._logged_at < BURST:
            return
        more = self._since - 1
        tail = f" ({more} more since the last report)" if more else ""
        self._logger.error(
            "%s: undecodable message on %s, dropped: %s%s", where, channel, reason, tail
        )
        self._logged_at = now
        self._since = 0
