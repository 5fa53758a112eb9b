"""The CloudEvents mapping (``axonbus._cloudevents``), checked against the CloudEvents SDK."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

import orjson
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from axonbus import Event
from axonbus._cloudevents import (
    BYTES_TYPE,
    VALUE_TYPE,
    CloudEvents,
    is_binary,
    is_structured,
    make_source,
    wire_option,
    with_wire,
)
from axonbus._events import Envelope
from axonbus._exceptions import DecodeError
from axonbus.transports._undecodable import Undecodable


class Ordered(Event, name="ce.test.ordered"):
    order: int
    item: str


WIRE = CloudEvents(make_source("shop", "a1b2"))


def _envelope(event: object) -> Envelope:
    return Envelope(
        "orders.new",
        event,
        id="ev-1",
        headers={
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "priority": "high",
            "idempotency_key": "k 1",
        },
        timestamp=1_717_171_717.25,
        correlation_id="corr-1",
        causation_id="cause-1",
    )


def test_structured_attributes_are_the_documented_mapping() -> None:
    data = WIRE.structured(_envelope(Ordered(order=7, item="tea")))
    sdk = JSONFormat().read(None, data)  # raises on anything CloudEvents 1.0 refuses
    attrs = sdk.get_attributes()
    assert attrs["specversion"] == "1.0"
    assert attrs["id"] == "ev-1"
    assert attrs["source"] == WIRE.source
    assert attrs["source"].startswith("axonbus://shop/")
    assert attrs["type"] == "ce.test.ordered"
    assert attrs["subject"] == "orders.new"
    assert attrs["time"] == datetime(2024, 5, 31, 16, 8, 37, 250000, tzinfo=UTC)
    assert attrs["datacontenttype"] == "application/json"
    assert attrs["correlationid"] == "corr-1"
    assert attrs["causationid"] == "cause-1"
    assert attrs["traceparent"].startswith("00-0af7")
    assert attrs["priority"] == "high"
    # a header that is not a valid extension name travels in axonbusheaders
    assert orjson.loads(attrs["axonbusheaders"]) == {"idempotency_key": "k 1"}
    assert sdk.get_data() == {"order": 7, "item": "tea"}


def test_binary_headers_are_valid_for_the_sdk_and_round_trip() -> None:
    env = _envelope(Ordered(order=7, item="tea"))
    headers, body = WIRE.binary(env)
    assert headers["ce-type"] == "ce.test.ordered"
    assert headers["content-type"] == "application/json"
    assert is_binary(headers)
    sdk = from_binary(HTTPMessage(headers, body), JSONFormat())
    assert sdk.get_subject() == "orders.new"
    assert sdk.get_extension("axonbusheaders") == '{"idempotency_key":"k 1"}'
    back = WIRE.from_binary(headers, body)
    assert back.event == Ordered(order=7, item="tea")
    assert (back.id, back.topic, back.timestamp) == ("ev-1", "orders.new", env.timestamp)
    assert (back.correlation_id, back.causation_id) == ("corr-1", "cause-1")
    assert back.headers == env.headers


@pytest.mark.parametrize(
    ("payload", "kind"),
    [({"text": "hi"}, VALUE_TYPE), ([1, "two", None], VALUE_TYPE), (None, VALUE_TYPE),
     ("plain", VALUE_TYPE), (b"\x00\xffraw", BYTES_TYPE)],
)  # fmt: skip
def test_values_and_bytes_round_trip_in_both_modes(payload: object, kind: str) -> None:
    env = Envelope("t.x", payload, id="e2", timestamp=10.5)
    structured = WIRE.structured(env)
    assert JSONFormat().read(None, structured).get_type() == kind
    assert WIRE.from_structured(structured).event == payload
    headers, body = WIRE.binary(env)
    from_binary(HTTPMessage(headers, body), JSONFormat())
    assert WIRE.from_binary(headers, body).event == payload


def test_a_foreign_event_decodes_to_its_class_by_type_else_to_a_dict() -> None:
    known = {"specversion": "1.0", "id": "x", "source": "/node", "type": "ce.test.ordered",
             "data": {"order": 1, "item": "cake"}}  # fmt: skip
    env = WIRE.from_structured(orjson.dumps(known), topic="orders.new")
    assert env.event == Ordered(order=1, item="cake")
    assert env.topic == "orders.new"
    unknown = {**known, "type": "com.example.other", "subject": "s.t", "myext": "v"}
    env = WIRE.from_structured(orjson.dumps(unknown))
    assert env.event == {"__event__": "com.example.other", "order": 1, "item": "cake"}
    assert env.topic == "s.t"  # no channel topic given: the subject
    assert env.headers == {"myext": "v"}
    scalar = WIRE.from_binary(
        {"ce-specversion": "1.0", "ce-id": "y", "ce-source": "/n", "ce-type": "n.count",
         "content-type": "text/plain"}, b"caf\xc3\xa9", topic="t")  # fmt: skip
    assert scalar.event == {"__event__": "n.count", "data": "café"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b'{"text": "plain JSON from an agent"}', "no specversion"),
     (b'{"specversion": "1.0", "id": "", "source": "/s", "type": "t"}', "'id'"),
     (b'{"specversion": "0.3", "id": "i", "source": "/s", "type": "t"}', "0.3"),
     (b"[1, 2]", "not an object"),
     (b"{not json", "not JSON"),
     (b'{"specversion":"1.0","id":"i","source":"/s","type":"ce.test.ordered","data":{}}',
      "invalid data")],
)  # fmt: skip
def test_what_is_not_a_cloudevent_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        WIRE.from_structured(data, topic="t")


def test_header_values_are_percent_encoded_like_the_http_binding() -> None:
    env = Envelope("t.x", 1, id="a b%", headers={"note": "line\nbreak é"}, timestamp=0.0)
    headers, body = WIRE.binary(env)
    assert headers["ce-id"] == "a%20b%25"
    assert all(v.isascii() and v.isprintable() for v in headers.values())
    sdk = from_binary(HTTPMessage(headers, body), JSONFormat())
    assert sdk.get_id() == "a b%"
    assert WIRE.from_binary(headers, body).headers == {"note": "line\nbreak é"}


def test_own_events_are_recognised_and_compact_envelopes_are_not_structured() -> None:
    data = WIRE.structured(Envelope("t", 1))
    assert WIRE.is_own(data)
    assert not CloudEvents(make_source("shop", "other")).is_own(data)
    assert is_structured(data)
    assert not is_structured(b'{"v":1,"id":"x"}')  # the json codec's envelope
    assert not is_structured(b"\x87\xa1v\x01")  # msgpack


def test_wire_option() -> None:
    options = {"wire": "cloudevents", "other": "1"}
    assert wire_option(options) == "cloudevents"
    assert options == {"other": "1"}
    assert wire_option({}) == "compact"
    with pytest.raises(ValueError, match="compact, cloudevents"):
        wire_option({"wire": "xml"})


def test_undecodable_messages_are_counted_and_logged_once_per_burst(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="axonbus.test")
    seen = Undecodable(logging.getLogger("axonbus.test"))
    for _ in range(50):
        seen.report("redis://h", "bus/t", "not a CloudEvent: not JSON")
    assert seen.count == 50
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "bus/t" in lines[0]
    assert "not JSON" in lines[0]


def test_bus_wire_argument_is_the_url_option() -> None:
    from axonbus import Bus

    bus = Bus("redis://127.0.0.1:6379/0", wire="cloudevents")
    assert bus.transport.wire == "cloudevents"  # type: ignore[attr-defined]
    assert Bus("nats://127.0.0.1:4222").transport.wire == "compact"  # type: ignore[attr-defined]
    assert (
        with_wire("redis://h/0?maxlen=5", "cloudevents") == "redis://h/0?maxlen=5&wire=cloudevents"
    )
    with pytest.raises(ValueError, match="contradicts"):
        Bus("nats://127.0.0.1:4222?wire=compact", wire="cloudevents")
    with pytest.raises(ValueError, match="wire must be one of"):
        Bus("nats://127.0.0.1:4222", wire="xml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-01-01T00:00:00.123456789Z", 1767225600.123456),  # nanoseconds, as Go writes them
     ("2026-01-01t00:00:00z", 1767225600.0),
     ("2026-01-01T02:00:00.5+02:00", 1767225600.5)],
)  # fmt: skip
def test_time_is_read_as_rfc_3339(text: str, expected: float) -> None:
    event = {"specversion": "1.0", "id": "i", "source": "/s", "type": "t", "time": text}
    assert WIRE.from_structured(orjson.dumps(event), topic="t").timestamp == expected


def test_time_round_trips_exactly_through_the_cached_second() -> None:
    from datetime import datetime

    from axonbus._cloudevents import _rfc3339, _timestamp

    rng = random.Random(7)
    for _ in range(2000):
        moment = rng.uniform(0, 2e9)
        text = _rfc3339(moment)
        expected = datetime.fromisoformat(text).timestamp()
        assert _timestamp(text) == expected  # parsed, or read from the second cached
        assert _timestamp(text) == expected
        assert abs(expected - moment) <= 0.5e-6 + 1e-6
