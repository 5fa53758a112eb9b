"""Helpers for testing code built on axonbus, and the transport conformance kit.

>>> from axonbus.testing import check_transport
>>> await check_transport(lambda: Bus("memory://"))
"""

from .._engine.settle import settle
from ._conformance import CHECKS, CheckSkipped, check_transport

__all__ = ["CHECKS", "CheckSkipped", "check_transport", "settle"]
