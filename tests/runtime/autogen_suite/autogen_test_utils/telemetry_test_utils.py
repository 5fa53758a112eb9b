"""An OpenTelemetry exporter that keeps the finished spans, and a tracer provider using it."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

__all__ = ["MyTestExporter", "get_test_tracer_provider"]


class MyTestExporter(SpanExporter):
    """Collects every exported span in memory."""

    def __init__(self) -> None:
        self.exported_spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported_spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def clear(self) -> None:
        self.exported_spans.clear()

    def get_exported_spans(self) -> list[ReadableSpan]:
        return list(self.exported_spans)


def get_test_tracer_provider(exporter: MyTestExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider
