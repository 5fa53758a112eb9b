"""OpenTelemetry tracing: a PRODUCER span per publish, a CONSUMER span per handler call, and the
W3C trace context in the envelope's headers in between, so one trace follows an event across
processes (``redis://``, ``nats://``, the sqlite / postgres logs) and through the actor
runtime's ``send_message`` (a bus request).

>>> bus = Bus("nats://127.0.0.1:4222", middleware=[OpenTelemetryMiddleware()])

Off when nothing records: with no SDK tracer provider configured (the OpenTelemetry API's
default, a proxy to a no-op tracer) the middleware adds no headers and opens no spans, and
handlers run on the bus's fast path (``Middleware.active``). The global provider is looked up
again until one is set, so ``trace.set_tracer_provider(...)`` may come after the bus is created.

Spans follow the messaging semantic conventions: ``publish {topic}`` (PRODUCER, ended when the
event is handed to the bus: the hook runs before routing, so the span marks the send rather
than timing it) and ``process {topic}`` (CONSUMER, around the handler; its parent is the
producer's context from the headers, or a new trace when there is none). Attributes:
``messaging.system="axonbus"``, ``messaging.destination.name`` (the topic),
``messaging.message.id``, ``messaging.message.conversation_id`` (the correlation id),
``messaging.operation.name`` / ``.type``, and on the consumer ``messaging.destination.
subscription.name`` and ``messaging.axonbus.attempt``. A handler's exception is recorded on its
span with an error status. Topics matching ``exclude`` (by default the actor runtime's
membership heartbeats) are not traced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry import trace as otel_trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)

from .._engine.context import Context
from .._engine.middleware import HandleNext, Middleware
from .._events import Envelope
from .._topics import match, split_pattern

__all__ = ["OpenTelemetryMiddleware", "tracing"]

_SCOPE = "axonbus"
_EMPTY = otel_context.Context()
#: topics not traced unless ``exclude`` says otherwise: the runtime's membership heartbeats
DEFAULT_EXCLUDE = ("$rt.*.members",)
_CACHE_LIMIT = 4096


# Whether the API keeps the global provider in a module attribute we can read for free (None
# until one is set); get_tracer_provider() costs about 1 us per call (an os.environ lookup),
# most of a whole publish, so it is called only once a provider is known to be there.
_HAS_SLOT = hasattr(otel_trace, "_TRACER_PROVIDER")


def _is_noop(provider: TracerProvider) -> bool:
    return isinstance(provider, (NoOpTracerProvider, ProxyTracerProvider))


class OpenTelemetryMiddleware(Middleware):
    """Trace publishes and handler calls with OpenTelemetry (see the module docstring).

    ``tracer_provider``: an SDK ``TracerProvider``, or None for the global one.
    ``propagator``: the text-map propagator (default: the global one, W3C trace context and
    baggage). ``exclude``: topic patterns never traced.

    >>> provider = TracerProvider()
    >>> provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    >>> bus = Bus("redis://localhost", middleware=[OpenTelemetryMiddleware(provider)])
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        propagator: TextMapPropagator | None = None,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
    ) -> None:
        for pattern in exclude:
            split_pattern(pattern)
        self._provider = tracer_provider
        self._propagator = propagator
        self._exclude = tuple(exclude)
        self._excluded: dict[str, bool] = {}
        self._tracer: Tracer | None = None
        self._seen_global: object = None  # the global provider last found to be a no-op
        if tracer_provider is not None:
            if not _is_noop(tracer_provider):
                self._tracer = self._make_tracer(tracer_provider)
        else:
            # loads a provider named by $OTEL_PYTHON_TRACER_PROVIDER, if any; later calls are
            # then a plain module attribute read (see active())
            otel_trace.get_tracer_provider()

    def __repr__(self) -> str:
        where = "global provider" if self._provider is None else repr(self._provider)
        state = "recording" if self._tracer is not None else "idle"
        return f"<OpenTelemetryMiddleware {where} {state}>"

    @staticmethod
    def _make_tracer(provider: TracerProvider) -> Tracer:
        from .._version import __version__

        return provider.get_tracer(_SCOPE, __version__)

    # -- on or off -----------------------------------------------------------------------------

    def active(self) -> bool:
        """True once a real (SDK) tracer provider is in use; cheap while there is none."""
        if self._tracer is not None:
            return True
        if self._provider is not None or (_HAS_SLOT and otel_trace._TRACER_PROVIDER is None):
            return False
        provider = otel_trace.get_tracer_provider()
        if provider is self._seen_global:
            return False
        if _is_noop(provider):
            self._seen_global = provider
            return False
        self._tracer = self._make_tracer(provider)
        return True

    def _traced(self, topic: str) -> bool:
        if not self._exclude:
            return True
        excluded = self._excluded.get(topic)
        if excluded is None:
            if len(self._excluded) >= _CACHE_LIMIT:
                self._excluded.clear()
            excluded = self._excluded[topic] = any(match(p, topic) for p in self._exclude)
        return not excluded

    def _textmap(self) -> TextMapPropagator:
        return self._propagator if self._propagator is not None else propagate.get_global_textmap()

    # -- the hooks -----------------------------------------------------------------------------

    def on_publish(self, envelope: Envelope) -> Envelope | None:
        tracer = self._tracer
        if tracer is None:
            if self._provider is not None or (_HAS_SLOT and otel_trace._TRACER_PROVIDER is None):
                return envelope  # the common "off" case, decided without a call
            if not self.active():
                return envelope
            tracer = self._tracer
            assert tracer is not None
        if not self._traced(envelope.topic):
            return envelope
        topic = envelope.topic
        parent: otel_context.Context | None = None  # the current context
        if not otel_trace.get_current_span().get_span_context().is_valid:
            headers = envelope.headers_or_none
            if headers and "traceparent" in headers:
                # relayed with its trace context (the gateway passes traceparent through)
                parent = self._textmap().extract(headers)
        attributes: dict[str, Any] = {
            "messaging.system": "axonbus",
            "messaging.destination.name": topic,
            "messaging.operation.name": "publish",
            "messaging.operation.type": "send",
            "messaging.message.id": envelope.id,
        }
        if envelope.correlation_id is not None:
            attributes["messaging.message.conversation_id"] = envelope.correlation_id
        span = tracer.start_span(
            f"publish {topic}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
        )
        try:
            ctx = otel_trace.set_span_in_context(span, parent)
            self._textmap().inject(envelope.headers, context=ctx)
        finally:
            span.end()
        return envelope

    async def on_handle(self, event: Any, ctx: Context, call_next: HandleNext) -> Any:
        tracer = self._tracer
        if tracer is None and not self.active():
            return await call_next(event, ctx)
        env = ctx.envelope
        topic = env.topic
        if not self._traced(topic):
            return await call_next(event, ctx)
        tracer = self._tracer
        assert tracer is not None
        headers = env.headers_or_none
        # never the worker task's own context: it is whatever was current when it started
        parent = self._textmap().extract(headers) if headers else _EMPTY
        attributes: dict[str, Any] = {
            "messaging.system": "axonbus",
            "messaging.destination.name": topic,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.message.id": env.id,
            "messaging.destination.subscription.name": ctx.subscription,
            "messaging.axonbus.attempt": ctx.attempt,
        }
        if env.correlation_id is not None:
            attributes["messaging.message.conversation_id"] = env.correlation_id
        span = tracer.start_span(
            f"process {topic}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        token = otel_context.attach(otel_trace.set_span_in_context(span, parent))
        try:
            return await call_next(event, ctx)
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        except BaseException as exc:  # cancelled (a timeout, or the bus stopping)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            otel_context.detach(token)
            span.end()


def tracing(
    tracer_provider: TracerProvider | None = None,
    *,
    propagator: TextMapPropagator | None = None,
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
) -> OpenTelemetryMiddleware:
    """Shorthand: ``Bus(url, middleware=[tracing()])``."""
    return OpenTelemetryMiddleware(tracer_provider, propagator=propagator, exclude=exclude)
