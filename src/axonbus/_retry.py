"""Retry policy for failed deliveries."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Retry"]


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry a failed delivery with exponential backoff, then dead-letter it.

    ``attempts`` counts every try, the first included: ``Retry(attempts=3)`` runs the handler at
    most three times. The delay before try ``n`` (n >= 2) is
    ``min(max_backoff, backoff * 2 ** (n - 2))``, scaled by a random factor in [0.5, 1.0] when
    ``jitter`` is on (so a burst of failures does not retry in lockstep).

    >>> bus.subscribe("orders.>", charge, retry=Retry(attempts=5, backoff=0.2))
    """

    attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 10.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"Retry.attempts must be >= 1, got {self.attempts}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("Retry.backoff and Retry.max_backoff must be >= 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt`` (2 for the first retry)."""
        base: float = min(self.max_backoff, self.backoff * (2 ** max(0, attempt - 2)))
        if self.jitter:
            base *= random.uniform(0.5, 1.0)
        return base
