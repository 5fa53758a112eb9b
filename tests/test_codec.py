"""The wire codecs: round trips, the exact JSON shape, size limits and malformed input."""

from __future__ import annotations

import dataclasses
import enum
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from axonbus import _events
from axonbus._codec import Codec, JsonCodec, MsgpackCodec, encode_checked, get_codec
from axonbus._events import Envelope, Event
from axonbus._exceptions import DecodeError, MessageTooLarge, MissingDependency

CODECS = ["json", "msgpack"]
# how to build raw (possibly malformed) input in each codec's own format
DUMPS: dict[str, Callable[[Any], bytes]] = {"json": orjson.dumps, "msgpack": msgpack.packb}


class ToolCall(Event, topic="agent.{session_id}.tool_call"):
    session_id: str
    tool: str
    args: dict[str, Any] = {}


class Reading(Event, topic="sensor.reading"):
    # strict, aliased, and with fields whose JSON form is not their Python form
    model_config = ConfigDict(strict=True)

    at: datetime
    raw: bytes
    pair: tuple[int, int]
    unit: str = Field(alias="u")


class Point(BaseModel):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    label: str
    size: int


class Color(enum.Enum):
    RED = "red"


@pytest.fixture(params=CODECS)
def codec(request: pytest.FixtureRequest) -> Codec:
    return get_codec(request.param)


def roundtrip(codec: Codec, envelope: Envelope) -> Envelope:
    return codec.decode(codec.encode(envelope))


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 == 1.0 == True would hide a change)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "hello",
        "",
        "ünïcode ✓",
        0,
        -(2**63),
        2**64 - 1,
        1.5,
        -0.0,
        1e300,
        True,
        False,
        None,
        [],
        {},
        [1, "two", 3.0, None, [True], {"k": []}],
        {"text": "hi", "nested": {"list": [1, 2.5, {"deep": None}]}},
        b"",
        b"\x00\xff binary \x80",
    ],
)
def test_plain_payloads_round_trip_as_themselves(codec: Codec, payload: Any) -> None:
    decoded = roundtrip(codec, Envelope("chat.in", payload)).event
    assert same(decoded, payload)


@pytest.mark.parametrize("payload", [bytearray(b"abc"), memoryview(b"abc")])
def test_bytes_like_payloads_decode_as_bytes(codec: Codec, payload: Any) -> None:
    assert same(roundtrip(codec, Envelope("blob.in", payload)).event, b"abc")


def test_tuples_decode_as_lists(codec: Codec) -> None:
    assert same(roundtrip(codec, Envelope("a.b", (1, ("x",)))).event, [1, ["x"]])


def test_models_dataclasses_and_common_types_decode_in_json_form(codec: Codec) -> None:
    ident = uuid.uuid4()
    payload = {
        "point": Point(x=1, y=2),
        "box": Box("crate", 3),
        "when": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "id": ident,
        "color": Color.RED,
    }
    assert roundtrip(codec, Envelope("a.b", payload)).event == {
        "point": {"x": 1, "y": 2},
        "box": {"label": "crate", "size": 3},
        "when": "2024-05-01T12:00:00+00:00",
        "id": str(ident),
        "color": "red",
    }
    assert roundtrip(codec, Envelope("a.b", Point(x=1, y=2))).event == {"x": 1, "y": 2}
    assert roundtrip(codec, Envelope("a.b", Box("crate", 3))).event == {
        "label": "crate",
        "size": 3,
    }


def test_event_round_trips_to_an_equal_instance_of_its_class(codec: Codec) -> None:
    event = ToolCall(session_id="s1", tool="search", args={"q": "axon", "n": [1, 2]})
    decoded = roundtrip(codec, Envelope(event.topic, event))
    assert type(decoded.event) is ToolCall
    assert decoded.event == event
    assert decoded.topic == decoded.event.topic == "agent.s1.tool_call"


def test_strict_aliased_event_with_non_json_fields_round_trips(codec: Codec) -> None:
    event = Reading(at=datetime(2024, 1, 2, 3, 4, 5, 6), raw=b"abc", pair=(1, 2), u="C")
    decoded = roundtrip(codec, Envelope(event.topic, event)).event
    assert type(decoded) is Reading
    assert decoded == event


def test_event_nested_in_a_value_decodes_as_its_dict(codec: Codec) -> None:
    event = ToolCall(session_id="s1", tool="search")
    decoded = roundtrip(codec, Envelope("log.x", {"seen": event})).event
    assert decoded == {"seen": {"session_id": "s1", "tool": "search", "args": {}}}


def test_unknown_event_name_decodes_to_a_dict_that_keeps_the_name(
    codec: Codec, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = ToolCall(session_id="s1", tool="search")
    data = codec.encode(Envelope(event.topic, event))
    monkeypatch.delitem(_events._REGISTRY, ToolCall.__event_name__)  # a process without it
    decoded = codec.decode(data)
    assert decoded.event == {
        "__event__": ToolCall.__event_name__,
        "session_id": "s1",
        "tool": "search",
        "args": {},
    }


def test_event_names_are_looked_up_never_imported(codec: Codec) -> None:
    wire = {"v": 1, "id": "i", "topic": "a.b", "timestamp": 1.0, "kind": "event"}
    wire |= {"type": "os.system", "data": {"command": "true"}}
    decoded = codec.decode(DUMPS[codec.name](wire))
    assert decoded.event == {"__event__": "os.system", "command": "true"}


def test_metadata_is_preserved(codec: Codec) -> None:
    envelope = Envelope(
        "a.b",
        {"x": 1},
        id="evt-1",
        headers={"traceparent": "00-abc-def-01", "idempotency-key": "k1"},
        timestamp=1717171717.123456,
        correlation_id="corr-1",
        causation_id="cause-1",
    )
    decoded = roundtrip(codec, envelope)
    assert decoded.id == "evt-1"
    assert decoded.topic == "a.b"
    assert decoded.headers == envelope.headers
    assert decoded.timestamp == envelope.timestamp
    assert decoded.correlation_id == "corr-1"
    assert decoded.causation_id == "cause-1"
    assert decoded.tracker is None
    assert decoded.reply is None


def test_lazy_id_gets_a_value_on_the_wire_and_keeps_it(codec: Codec) -> None:
    first, second = Envelope("a.b", 1), Envelope("a.b", 2)
    assert first._id is None  # nobody asked for it yet
    decoded_first, decoded_second = roundtrip(codec, first), roundtrip(codec, second)
    assert decoded_first.id == first.id
    assert decoded_second.id == second.id
    assert first.id != second.id


def test_optional_fields_are_left_out(codec: Codec) -> None:
    envelope = Envelope("a.b", "x", id="i", timestamp=2.0)
    assert envelope.headers == {}  # reading allocates an empty dict; it must still not travel
    raw = codec.encode(envelope)
    wire = orjson.loads(raw) if codec.name == "json" else msgpack.unpackb(raw)
    assert set(wire) == {"v", "id", "topic", "timestamp", "kind", "data"}
    decoded = codec.decode(raw)
    assert decoded.headers == {}
    assert decoded.correlation_id is None
    assert decoded.causation_id is None


def test_json_wire_shape_is_exactly_the_documented_one() -> None:
    codec = get_codec("json")
    event = ToolCall(session_id="s1", tool="search")
    envelope = Envelope(event.topic, event, id="i1", timestamp=1.5, headers={"h": "v"})
    envelope.correlation_id = "c1"
    assert orjson.loads(codec.encode(envelope)) == {
        "v": 1,
        "id": "i1",
        "topic": "agent.s1.tool_call",
        "timestamp": 1.5,
        "headers": {"h": "v"},
        "correlation_id": "c1",
        "kind": "event",
        "type": ToolCall.__event_name__,
        "data": {"session_id": "s1", "tool": "search", "args": {}},
    }
    blob = orjson.loads(codec.encode(Envelope("b.c", b"\x00\x01", id="i2", timestamp=2.0)))
    assert blob == {
        "v": 1,
        "id": "i2",
        "topic": "b.c",
        "timestamp": 2.0,
        "kind": "bytes",
        "data": "AAE=",
    }
    value = orjson.loads(codec.encode(Envelope("b.c", [1], id="i3", timestamp=2.0)))
    assert (value["kind"], value["data"]) == ("value", [1])


# -- what cannot be encoded ----------------------------------------------------------------


@pytest.mark.parametrize("payload", [{1, 2}, Decimal("1.5"), object(), {"k": {"nested": {1}}}])
def test_unsupported_types_raise_type_error_naming_the_type(codec: Codec, payload: Any) -> None:
    inner = payload["k"]["nested"] if isinstance(payload, dict) else payload
    with pytest.raises(TypeError, match=type(inner).__qualname__):
        codec.encode(Envelope("a.b", payload))


def test_bytes_nested_in_a_value_need_msgpack() -> None:
    payload = {"blob": b"\x00\xff", "list": [b"x"]}
    assert roundtrip(get_codec("msgpack"), Envelope("a.b", payload)).event == payload
    with pytest.raises(TypeError, match="msgpack"):
        get_codec("json").encode(Envelope("a.b", payload))


def test_integers_beyond_64_bits_are_refused(codec: Codec) -> None:
    with pytest.raises(TypeError, match="64-bit range"):
        codec.encode(Envelope("a.b", {"n": 2**64}))


def test_non_str_keys_are_refused_in_both_codecs() -> None:
    with pytest.raises(TypeError, match="str"):
        get_codec("json").encode(Envelope("a.b", {1: "x"}))
    msg = get_codec("msgpack")
    with pytest.raises(TypeError, match="map keys must be str, got int 1"):
        msg.encode(Envelope("a.b", {"ok": [{"nested": {1: "x"}}]}))
    # and a sender that does not check is still refused on receipt
    import msgpack

    wire = {"v": 1, "id": "i", "topic": "a.b", "timestamp": 1.0, "kind": "value", "data": {1: 2}}
    with pytest.raises(DecodeError, match="map key"):
        msg.decode(msgpack.packb(wire))


# -- size limit ------------------------------------------------------------------------------


def test_encode_checked_refuses_messages_over_the_limit(codec: Codec) -> None:
    envelope = Envelope("a.b", "x" * 1000)
    size = len(codec.encode(envelope))
    assert encode_checked(codec, envelope, size) == codec.encode(envelope)
    result: bytes | None = None
    with pytest.raises(MessageTooLarge) as info:
        result = encode_checked(codec, envelope, size - 1)
    assert result is None
    assert (info.value.size, info.value.limit) == (size, size - 1)
    assert isinstance(info.value, ValueError)


# -- malformed input -------------------------------------------------------------------------

GOOD: dict[str, Any] = {"v": 1, "id": "i", "topic": "a.b", "timestamp": 1.0, "kind": "value"}


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\xff\xfe garbage {", b"{not json", b"[1, 2"])
def test_garbage_bytes_raise_decode_error(codec: Codec, data: bytes) -> None:
    with pytest.raises(DecodeError, match=rf"(?i)not a {codec.name} envelope"):
        codec.decode(data)


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ([1, 2, 3], "expected an envelope map, got list"),
        ("hello", "expected an envelope map, got str"),
        ({}, "unsupported wire version None"),
        ({**GOOD, "v": 2, "data": 1}, "unsupported wire version 2"),
        ({**GOOD, "v": True, "data": 1}, "unsupported wire version True"),
        (GOOD, "no 'data' field"),
        ({k: v for k, v in GOOD.items() if k != "id"} | {"data": 1}, "no 'id' field"),
        ({**GOOD, "id": 5, "data": 1}, "'id' has type int"),
        ({**GOOD, "timestamp": "now", "data": 1}, "'timestamp' has type str"),
        ({**GOOD, "timestamp": True, "data": 1}, "'timestamp' has type bool"),
        ({**GOOD, "kind": "pickle", "data": 1}, "unknown payload kind 'pickle'"),
        ({**GOOD, "headers": {"k": 1}, "data": 1}, "headers must map str to str"),
        ({**GOOD, "headers": [], "data": 1}, "headers must map str to str"),
        ({**GOOD, "correlation_id": 7, "data": 1}, "'correlation_id' has type int"),
        ({**GOOD, "kind": "event", "data": {}}, "no 'type' field"),
        ({**GOOD, "kind": "event", "type": "x", "data": [1]}, "must be a map, got list"),
        ({**GOOD, "kind": "bytes", "data": 12}, "bytes payload must be"),
    ],
)
def test_wrong_shapes_raise_decode_error(codec: Codec, wire: Any, message: str) -> None:
    with pytest.raises(DecodeError, match=message.replace("(", r"\(")):
        codec.decode(DUMPS[codec.name](wire))


def test_bad_base64_raises_decode_error() -> None:
    raw = orjson.dumps({**GOOD, "kind": "bytes", "data": "not base64!"})
    with pytest.raises(DecodeError, match="not valid base64") as info:
        get_codec("json").decode(raw)
    assert info.value.__cause__ is not None


def test_invalid_event_data_raises_decode_error_from_validation(codec: Codec) -> None:
    wire = {**GOOD, "kind": "event", "type": ToolCall.__event_name__, "data": {"tool": 3}}
    with pytest.raises(DecodeError, match="invalid data for event") as info:
        codec.decode(DUMPS[codec.name](wire))
    assert type(info.value.__cause__).__name__ == "ValidationError"


def test_parse_errors_chain_the_underlying_error(codec: Codec) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode(b"\xc1{")
    assert info.value.__cause__ is not None


def test_msgpack_extension_types_are_refused() -> None:
    raw = msgpack.packb({**GOOD, "data": msgpack.ExtType(5, b"code")})
    with pytest.raises(DecodeError, match="extension type 5"):
        get_codec("msgpack").decode(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(CODECS))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes, name: str) -> None:
    try:
        get_codec(name).decode(data)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CODECS), st.data())
def test_corrupted_envelopes_decode_or_raise_decode_error(name: str, data: st.DataObject) -> None:
    codec = get_codec(name)
    event = ToolCall(session_id="s1", tool="search", args={"n": 1.5, "b": [True, None]})
    # fixed id and timestamp: the encoded length must not change between examples
    envelope = Envelope(event.topic, event, id="i", timestamp=1.25, headers={"h": "v"})
    raw = bytearray(codec.encode(envelope))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        codec.decode(bytes(raw[:cut]))
    except DecodeError:
        pass


# -- property: JSON-like payloads round-trip exactly ------------------------------------------

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    # NaN and infinities are left out: JSON has no spelling for them (orjson writes null)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


# no deadline: timing on a loaded CI machine is not what these properties are about
@settings(deadline=None)
@given(st.one_of(json_values, st.binary()), st.sampled_from(CODECS))
def test_json_like_payloads_round_trip_exactly(payload: Any, name: str) -> None:
    codec = get_codec(name)
    decoded = roundtrip(codec, Envelope("prop.test", payload, headers={"h": "1"}))
    assert same(decoded.event, payload)


# -- codec lookup and the optional dependency -------------------------------------------------


def test_get_codec_by_name() -> None:
    assert isinstance(get_codec("json"), JsonCodec)
    assert isinstance(get_codec("msgpack"), MsgpackCodec)
    assert [get_codec(n).name for n in CODECS] == CODECS


def test_unknown_codec_lists_the_known_names() -> None:
    with pytest.raises(ValueError, match="'yaml'; known codecs: json, msgpack"):
        get_codec("yaml")


def test_missing_msgpack_is_a_clear_error_when_the_codec_is_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)  # makes `import msgpack` fail
    with pytest.raises(MissingDependency, match=r"pip install 'axonbus\[msgpack\]'") as info:
        get_codec("msgpack")
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value.__cause__, ImportError)
    assert isinstance(get_codec("json"), JsonCodec)


def test_importing_axonbus_does_not_need_msgpack() -> None:
    script = (
        "import sys; sys.modules['msgpack'] = None\n"
        "import axonbus, axonbus._codec as c\n"
        "assert c.get_codec('json').name == 'json'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=20)


GOOD_WIRE: dict[str, Any] = {
    "v": 1,
    "id": "abc-1",
    "topic": "t.x",
    "timestamp": 1717171717.5,
    "kind": "value",
    "data": {"n": 1},
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"timestamp": 1717171717},  # an int timestamp comes back as a float
        {"correlation_id": "c", "causation_id": "d"},
        {"data": None},
        {"headers": {"k": "v"}},  # not the fast path: full validation
        {"kind": "bytes", "data": "aGk="},
    ],
)
def test_the_decode_fast_path_agrees_with_full_validation(changes: dict[str, Any]) -> None:
    from axonbus._codec import _b64_decode, _from_wire, _from_wire_checked

    wire = {**GOOD_WIRE, **changes}
    fast, checked = _from_wire(dict(wire), _b64_decode), _from_wire_checked(wire, _b64_decode)
    for attr in ("topic", "event", "id", "headers", "timestamp", "correlation_id", "causation_id"):
        assert getattr(fast, attr) == getattr(checked, attr), attr
    assert type(fast.timestamp) is float


@pytest.mark.parametrize(
    "changes",
    [
        {"v": True},
        {"v": 2},
        {"id": 5},
        {"topic": None},
        {"timestamp": True},
        {"timestamp": "now"},
        {"correlation_id": 3},
        {"causation_id": b"x"},
    ],
)
def test_the_decode_fast_path_refuses_what_validation_refuses(changes: dict[str, Any]) -> None:
    from axonbus._codec import _b64_decode, _from_wire

    with pytest.raises(DecodeError):
        _from_wire({**GOOD_WIRE, **changes}, _b64_decode)
    wire = {**GOOD_WIRE, **changes}
    del wire["data"]
    with pytest.raises(DecodeError):
        _from_wire(wire, _b64_decode)
