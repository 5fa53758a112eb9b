"""Shared test services (Redis, NATS, Postgres, RabbitMQ): where they are and whether they are up.

A missing service skips the tests that need it on a developer's machine, and fails them
when ``CI`` is set, so CI can never go green by silently skipping the transports.
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn
from urllib.parse import SplitResult, unquote, urlsplit

import pytest

__all__ = [
    "amqp_url",
    "host_port",
    "in_ci",
    "nats_url",
    "postgres_url",
    "probe",
    "redact",
    "redis_url",
    "require",
    "skip_or_fail",
    "with_address",
    "with_option",
]

CONNECT_TIMEOUT = 1.0

_DEFAULT_PORTS = {
    "redis": 6379,
    "rediss": 6379,
    "nats": 4222,
    "tls": 4222,
    "postgres": 5432,
    "postgresql": 5432,
    "amqp": 5672,
    "amqps": 5671,
}

# url -> None (reachable) or the reason it is not; probing once per process keeps a
# suite with many service tests from paying the 1 s connect timeout per test
_probe_cache: dict[str, str | None] = {}


def redis_url() -> str:
    """URL of the shared Redis (``AXONBUS_TEST_REDIS_URL``)."""
    return os.environ.get("AXONBUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def nats_url() -> str:
    """URL of the shared NATS with JetStream (``AXONBUS_TEST_NATS_URL``)."""
    return os.environ.get("AXONBUS_TEST_NATS_URL", "nats://127.0.0.1:4222")


def postgres_url() -> str:
    """URL of the shared Postgres (``AXONBUS_TEST_POSTGRES_URL``)."""
    return os.environ.get("AXONBUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def amqp_url() -> str:
    """URL of the shared RabbitMQ (``AXONBUS_TEST_AMQP_URL``)."""
    return os.environ.get("AXONBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def in_ci() -> bool:
    """True when ``CI`` is set to anything non-empty."""
    return bool(os.environ.get("CI"))


def skip_or_fail(reason: str, *, allow_module_level: bool = False) -> NoReturn:
    """Skip the current test (or module), or fail it when running in CI."""
    if in_ci():
        pytest.fail(f"CI is set, so a missing service is a failure: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=_netloc(parts, password="***")).geturl()


def with_option(url: str, key: str, value: str) -> str:
    """``url`` with the query option ``key=value`` added (``?`` or ``&``)."""
    return f"{url}{'&' if '?' in url else '?'}{key}={value}"


def host_port(url: str) -> tuple[str, int]:
    """Host and port of ``url``, with the scheme's default port if it names none."""
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    if port is None:
        raise ValueError(f"no port in {redact(url)} and no default for {parts.scheme!r}")
    return parts.hostname or "127.0.0.1", port


def with_address(url: str, host: str, port: int) -> str:
    """``url`` pointing at ``host:port`` instead, keeping scheme, credentials, path and query."""
    parts = urlsplit(url)
    return parts._replace(netloc=_netloc(parts, host=host, port=port)).geturl()


def require(service_name: str, url: str) -> None:
    """Skip (or fail in CI) unless ``service_name`` answers at ``url``.

    ``service_name`` picks the handshake: ``redis`` must answer ``PING`` with ``+PONG``,
    ``nats`` must announce ``"jetstream":true`` in its ``INFO``; anything else only needs
    the TCP port to accept.
    """
    if url not in _probe_cache:
        _probe_cache[url] = probe(service_name, url)
    problem = _probe_cache[url]
    if problem is not None:
        skip_or_fail(
            f"{service_name} is not available at {redact(url)} ({problem}); start it or "
            f"point the AXONBUS_TEST_{service_name.upper()}_URL environment variable at one"
        )


def probe(service_name: str, url: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None if the service at ``url`` is up, else a short reason. Not cached."""
    parts = urlsplit(url)
    try:
        host, port = host_port(url)
    except ValueError as exc:
        return f"bad URL: {exc}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            if service_name == "redis":
                return _check_redis(sock, parts)
            if service_name == "nats":
                return _check_nats(sock)
            if service_name == "amqp":
                return _check_amqp(sock)
            return None
    except OSError as exc:  # refused, timed out, reset mid-handshake
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _check_redis(sock: socket.socket, parts: SplitResult) -> str | None:
    if parts.password is not None:
        # a password-protected Redis answers PING with -NOAUTH, which is not "down"
        password = unquote(parts.password)
        user = unquote(parts.username) if parts.username else None
        sock.sendall(_resp(["AUTH", user, password] if user else ["AUTH", password]))
        reply = _read_line(sock)
        if not reply.startswith(b"+OK"):
            return f"AUTH answered {reply!r}"
    sock.sendall(b"PING\r\n")
    reply = _read_line(sock)
    if not reply.startswith(b"+PONG"):
        return f"PING answered {reply!r}"
    return None


def _check_nats(sock: socket.socket) -> str | None:
    info = _read_line(sock)
    if not info.startswith(b"INFO "):
        return f"expected an INFO line, got {info[:80]!r}"
    if b'"jetstream":true' not in info:
        return "the server does not have JetStream enabled (start it with -js)"
    return None


def _check_amqp(sock: socket.socket) -> str | None:
    sock.sendall(b"AMQP\x00\x00\x09\x01")  # AMQP 0-9-1: answered with Connection.Start
    first = sock.recv(8)
    if not first.startswith(b"\x01\x00\x00"):
        return f"expected an AMQP 0-9-1 Connection.Start, got {first!r}"
    return None


def _resp(args: list[str]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _read_line(sock: socket.socket, limit: int = 64 * 1024) -> bytes:
    buf = b""
    while b"\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return buf if buf else b"<connection closed>"
        buf += chunk
        if len(buf) > limit:
            break
    return buf.split(b"\r\n", 1)[0]


def _netloc(
    parts: SplitResult,
    *,
    password: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> str:
    host = host if host is not None else parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host
    port = port if port is not None else parts.port
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.username is not None or parts.password is not None:
        user = parts.username or ""
        pw = password if password is not None else parts.password
        userinfo = f"{user}:{pw}" if pw is not None else user
        netloc = f"{userinfo}@{netloc}"
    return netloc
