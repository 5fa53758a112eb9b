"""No token reaches a log line: uvicorn's own lines included, in any spelling of ``token=``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from axonbus import Bus
from axonbus.gateway import TokenSet, create_app
from axonbus.gateway._logs import RedactTokens, Throttle, redact_query
from axonbus.gateway._server import server_config
from tests.gateway.helpers import SECRET_UI
from tests.support.asgi import serving

websockets = pytest.importorskip("websockets")


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def capture(*names: str) -> Iterator[Captured]:
    """Our own handler on these loggers (after uvicorn configured them: it replaces handlers)."""
    handler = Captured()
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(saved[name])


SPELLINGS = ["token", "%74oken", "%74%6F%6B%65%6E", "access_token", "%2574oken"]


async def test_uvicorn_lines_never_show_a_token(bus: Bus, tokens: TokenSet) -> None:
    app = create_app(bus, tokens=tokens)
    # what `axonbus serve` runs, with uvicorn's access log turned on as well
    config = server_config(app, "127.0.0.1", 0, log_level="info")
    config.access_log = True
    names = ("uvicorn.error", "uvicorn.access", "axonbus.gateway.access")
    with capture(*names) as captured:
        await _traffic(config)
    text = "\n".join(captured.lines)
    assert "[accepted]" in text  # uvicorn's WebSocket lines were captured
    assert "/v1/stats" in text  # and its access lines
    assert SECRET_UI not in text
    assert "?token=***" in text
    assert "%74oken=***" in text


async def _traffic(config: uvicorn.Config) -> None:
    async with serving(config) as base:
        ws_base = base.replace("http://", "ws://")
        for key in SPELLINGS:
            async with websockets.connect(f"{ws_base}/v1/ws?{key}={SECRET_UI}") as ws:
                await ws.recv()  # "ready" (or an error frame: the key is not a token)
        async with httpx.AsyncClient(base_url=base) as client:
            for key in SPELLINGS:
                await client.get(f"/v1/stats?pattern=a&{key}={SECRET_UI}")


def test_redaction_handles_every_spelling() -> None:
    line = '"GET /v1/events?pattern=a.%3E&%74oKeN=abc&x=1&access_token=def HTTP/1.1" 200'
    assert redact_query(line) == (
        '"GET /v1/events?pattern=a.%3E&%74oKeN=***&x=1&access_token=*** HTTP/1.1" 200'
    )
    assert redact_query("/v1/ws?+token+=abc") == "/v1/ws?+token+=***"
    assert redact_query("nothing here") == "nothing here"
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, '"WebSocket %s"', ("/v?token=s",), None
    )
    assert RedactTokens().filter(record)
    assert record.getMessage() == '"WebSocket /v?token=***"'


def test_a_flood_of_accept_failures_is_one_line_per_interval() -> None:
    throttle = Throttle(("Too many open files",), interval=60.0)
    passed = 0
    for _ in range(1000):
        record = logging.LogRecord(
            "asyncio",
            logging.ERROR,
            __file__,
            1,
            "socket.accept() out of system resource: [Errno 24] Too many open files",
            None,
            None,
        )
        passed += throttle.filter(record)
    other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "something else", None, None)
    assert passed == 1
    assert throttle.filter(other)


def test_serve_config_is_hardened() -> None:
    app = create_app(Bus())
    config = server_config(app, "127.0.0.1", 0, max_connections=7, header_timeout=2.0)
    assert config.access_log is False
    assert config.timeout_keep_alive == 5
    assert not isinstance(config.http, str)
    assert config.http.__name__.startswith("Guarded")
    with pytest.raises(ValueError, match="65535"):
        server_config(app, "127.0.0.1", 99999)
