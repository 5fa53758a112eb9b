"""Log hygiene for the server: no token in any log line, and no flood of one repeated line.

uvicorn logs WebSocket handshakes (``"WebSocket /v1/ws?token=…" [accepted]``) on
``uvicorn.error`` at INFO and, when asked, every request on ``uvicorn.access``, both with the
raw query string. :func:`install_log_filters` puts a :class:`RedactTokens` filter on those
loggers (and the gateway's own), which rewrites any ``token=`` / ``access_token=`` value, in
any spelling a client can send (``%74oken=``, ``TOKEN=``, ``+`` or ``%20`` around it), to
``***`` before a handler sees the record::

    install_log_filters()
    logging.getLogger("uvicorn.error").info('"WebSocket /v1/ws?token=abc" [accepted]')
    # -> "WebSocket /v1/ws?token=*** [accepted]"

:class:`Throttle` keeps a line that can repeat thousands of times a second (``accept()``
failing with "Too many open files") to one record per ``interval`` seconds, with a count of
the ones it held back.
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import unquote_plus

__all__ = ["RedactTokens", "Throttle", "install_log_filters", "redact_query"]

#: query parameter names whose values are secrets (compared after percent-decoding, any case)
SECRET_PARAMS = frozenset({"token", "access_token"})

#: loggers whose lines may carry a request's query string
REDACTED_LOGGERS = ("uvicorn.error", "uvicorn.access", "uvicorn", "axonbus.gateway.access")

# a query parameter: after "?" or "&" (also "&amp;"), a key, "=", a value up to a delimiter
_PARAM = re.compile(r"(?P<lead>[?&;])(?P<key>[^=&;?\s\"'#]+)=(?P<value>[^&;\s\"'#]*)")


def _is_secret(key: str) -> bool:
    try:
        # twice: a client may percent-encode the percent sign itself (%2574oken)
        name = unquote_plus(unquote_plus(key))
    except Exception:  # pragma: no cover - unquote_plus takes any str
        return True
    return name.strip().lower() in SECRET_PARAMS


def redact_query(text: str) -> str:
    """``text`` with the value of every secret query parameter replaced by ``***``.

    >>> redact_query("GET /v1/events?pattern=a.%3E&%74oken=s3cret HTTP/1.1")
    'GET /v1/events?pattern=a.%3E&%74oken=*** HTTP/1.1'
    """
    if "=" not in text:
        return text

    def repl(m: re.Match[str]) -> str:
        if _is_secret(m.group("key")):
            return f"{m.group('lead')}{m.group('key')}=***"
        return m.group(0)

    return _PARAM.sub(repl, text)


class RedactTokens(logging.Filter):
    """Rewrites a record's message so that no secret query value reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as it would
            return True
        clean = redact_query(message)
        if clean != message:
            record.msg = clean
            record.args = None
        return True


class Throttle(logging.Filter):
    """At most one record per ``interval`` seconds among those whose message contains one of
    ``needles``; the next one that passes says how many were held back."""

    def __init__(self, needles: tuple[str, ...], interval: float = 10.0) -> None:
        super().__init__()
        self.needles = needles
        self.interval = interval
        self._last = -float("inf")
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        if not any(n in message for n in self.needles):
            return True
        now = time.monotonic()
        if now - self._last < self.interval:
            self._held += 1
            return False
        self._last = now
        if self._held:
            record.msg = f"{message} ({self._held} more like it in the last {self.interval:g}s)"
            record.args = None
            self._held = 0
        return True


#: what asyncio and uvicorn log for every connection refused while out of file descriptors
ACCEPT_FAILURES = ("out of system resource", "Too many open files", "Errno 24")


def install_log_filters() -> None:
    """Put :class:`RedactTokens` on uvicorn's and the gateway's loggers and a
    :class:`Throttle` on accept failures (idempotent)."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
    for name in ("asyncio", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, Throttle) for f in logger.filters):
            logger.addFilter(Throttle(ACCEPT_FAILURES))
