"""How the channel manager restarts a crashed channel."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RestartPolicy"]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Exponential backoff for restarting a channel whose ``start()`` or ``run()`` crashed.

    The delay before the n-th consecutive restart is
    ``min(max_backoff, backoff * factor ** (n - 1))``, scaled by a random factor in [0.5, 1.0]
    when ``jitter`` is on. After ``max_restarts`` consecutive failed restarts the channel is
    marked ``"failed"`` and left alone (``None``: retry forever). A channel whose ``run()``
    stayed up for ``reset_after`` seconds before crashing starts counting from 1 again.

    >>> manager = ChannelManager(bus, restart=RestartPolicy(max_restarts=10, backoff=0.5))
    """

    max_restarts: int | None = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    factor: float = 2.0
    jitter: bool = True
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_restarts is not None and self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0 or None, got {self.max_restarts}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if self.reset_after < 0:
            raise ValueError(f"reset_after must be >= 0, got {self.reset_after}")

    def delay(self, restart: int) -> float:
        """Seconds to wait before consecutive restart number ``restart`` (1 for the first)."""
        base = min(self.max_backoff, self.backoff * self.factor ** max(0, restart - 1))
        if self.jitter:
            base *= random.uniform(0.5, 1.0)
        return base

    def gives_up(self, restart: int) -> bool:
        """True when consecutive restart number ``restart`` would exceed ``max_restarts``."""
        return self.max_restarts is not None and restart > self.max_restarts
