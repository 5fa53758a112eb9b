"""Transports: how events leave the process. One transport per module."""

from .base import Transport, open_transport, register_transport
from .memory import MemoryTransport

__all__ = ["MemoryTransport", "Transport", "open_transport", "register_transport"]
