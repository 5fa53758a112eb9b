"""Length-prefixed frames: several encoded envelopes in one broker message.

Each frame is its length (4 bytes, big-endian) followed by its bytes. Redis (pub/sub messages
built by the publish script) and NATS (packs) carry runs of same-topic events this way.

>>> frames(join_frames([b"a", b"bc"]))
([b'a', b'bc'], True)
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["frames", "join_frames"]


def join_frames(parts: Iterable[bytes]) -> bytes:
    """``parts``, each behind its length."""
    out: list[bytes] = []
    append = out.append
    for data in parts:
        append(len(data).to_bytes(4, "big"))
        append(data)
    return b"".join(out)


def frames(data: bytes, start: int = 0) -> tuple[list[bytes], bool]:
    """The frames in ``data`` from ``start``, and whether it was well-formed (a truncated frame
    ends the list)."""
    found: list[bytes] = []
    pos, end = start, len(data)
    while pos < end:
        first = pos + 4
        stop = first + int.from_bytes(data[pos:first], "big")
        if stop > end:
            return found, False
        found.append(data[first:stop])
        pos = stop
    return found, True
