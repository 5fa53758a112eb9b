"""Hiding credentials in URLs before they reach a log, an error message, a repr or a metric.

>>> redact_url("redis://app:s3cret@db:6379/0?token=abc&db=1")
'redis://app:***@db:6379/0?token=***&db=1'
"""

from __future__ import annotations

from urllib.parse import unquote_plus

__all__ = ["SECRET_OPTIONS", "redact_url"]


#: URL query options whose value is a credential (compared case-insensitively, decoded)
SECRET_OPTIONS = frozenset(
    {"password", "passwd", "pass", "pwd", "token", "access_token", "auth_token", "secret",
     "api_key", "apikey", "sslpassword", "nkey", "jwt"}
)  # fmt: skip


def redact_url(url: str) -> str:
    """``url`` with its password (or token) replaced by ``***``: for logs, reprs and errors.

    Hides the userinfo's secret (``user:***@``, a lone token as ``***@``) and the value of
    credential options in the query (``?password=***``), however they are percent-encoded.

    >>> redact_url("redis://app:s3cret@db:6379/0?token=abc&db=1")
    'redis://app:***@db:6379/0?token=***&db=1'
    """
    # by hand, not urlsplit/urlunsplit: those reject some malformed URLs (the ones error
    # messages show) and rewrite others (sqlite:///x.db becomes sqlite:/x.db)
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = -1
    if rest[:1] not in ("", "/"):
        # an authority: its userinfo ends at the last '@' (a password may hold a raw '/',
        # '?', '#' or '@'; hiding too much beats showing a secret)
        at = rest.rfind("@")
    end = _end_of(rest, "/?#", max(at, 0))
    authority, tail = rest[:end], rest[end:]
    if at != -1:
        credentials, _, host = authority.rpartition("@")
        user, colon, _secret = credentials.partition(":")
        authority = f"{user}:***@{host}" if colon else f"***@{host}"
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        query = "&".join(_redact_option(pair) for pair in query.split("&"))
        tail = f"{path}?{query}{hash_}{fragment}"
    return f"{scheme}{sep}{authority}{tail}"


def _end_of(text: str, marks: str, start: int) -> int:
    """Index of the first of ``marks`` in ``text`` from ``start`` (``len(text)`` if none)."""
    found = [i for i in (text.find(m, start) for m in marks) if i != -1]
    return min(found, default=len(text))


def _redact_option(pair: str) -> str:
    key, eq, value = pair.partition("=")
    if eq and value and unquote_plus(key).strip().lower() in SECRET_OPTIONS:
        return f"{key}=***"
    return pair
