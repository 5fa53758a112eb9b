from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Spans:
    """An SDK tracer provider whose finished spans are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"{name}: {[s.name for s in self.finished()]}"
        return found[0]


@pytest.fixture
def spans() -> Iterator[Spans]:
    s = Spans()
    yield s
    s.provider.shutdown()


@pytest.fixture(params=["redis", "nats"])
def broker(request: pytest.FixtureRequest) -> tuple[str, str]:
    """``(url, bus name)`` on the shared Redis or NATS; the name's keys / stream go afterwards."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_service")
        request.getfixturevalue("redis_raw")  # deletes the name's keys afterwards
        name: str = request.getfixturevalue("redis_bus_name")
    else:
        url = request.getfixturevalue("nats_service")
        name = request.getfixturevalue("nats_bus_name")
    return url, name
