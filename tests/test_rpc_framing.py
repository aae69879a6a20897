"""Framing and message parsing: bytes <-> JSON lines <-> the four JSON-RPC message models."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.rpc import (
    INVALID_REQUEST,
    ErrorResponse,
    InvalidRequest,
    LineReader,
    LineWriter,
    Notification,
    Request,
    Response,
    decode,
    encode,
    parse_message,
)
from harness.rpc._framing import Oversized, sniff_id

FAST = settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies --------------------------------------------------------------------------------

#: Characters that have broken line framing somewhere: line and paragraph separators, NEL, CR,
#: NUL, quotes and backslashes.
TRICKY = '\u2028\u2029\u0085\n\r\x00"\\\t\x1b\ufeff'
texts = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(TRICKY), max_size=24)
ids = st.integers() | texts
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)
params = st.dictionaries(texts, json_values, max_size=4) | st.lists(json_values, max_size=4)
method_names = texts.filter(bool)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    msg: dict[str, Any] = {"id": draw(ids), "method": draw(method_names)}
    if draw(st.booleans()):
        msg["jsonrpc"] = "2.0"
    if draw(st.booleans()):
        msg["params"] = draw(params)
    return msg


@st.composite
def notifications(draw: st.DrawFn) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": draw(method_names)}
    if draw(st.booleans()):
        msg["params"] = draw(params)
    return msg


responses = st.builds(lambda i, r: {"jsonrpc": "2.0", "id": i, "result": r}, ids, json_values)


@st.composite
def error_responses(draw: st.DrawFn) -> dict[str, Any]:
    error: dict[str, Any] = {"code": draw(st.integers(-(2**31), 2**31 - 1)), "message": draw(texts)}
    if draw(st.booleans()):
        error["data"] = draw(json_values)
    return {"jsonrpc": "2.0", "id": draw(st.none() | ids), "error": error}


messages = requests() | notifications() | responses | error_responses()


# -- encode / decode / parse -------------------------------------------------------------------


def _expected_kind(msg: dict[str, Any]) -> type:
    if "method" in msg:
        return Request if "id" in msg else Notification
    return ErrorResponse if "error" in msg else Response


@FAST
@given(messages)
@example({"jsonrpc": "2.0", "id": "line\u2028sep", "method": "m\u2029", "params": {"k\n": ["\u2028", {"x": [1, [2]]}]}})
@example({"id": 0, "method": "ping"})
def test_any_message_survives_encode_decode_and_parse(msg: dict[str, Any]) -> None:
    line = encode(msg)
    again = decode(line)
    assert again == msg
    parsed = parse_message(again)
    assert type(parsed) is _expected_kind(msg)
    assert parsed.jsonrpc == "2.0"
    if isinstance(parsed, (Request, Response, ErrorResponse)):
        assert parsed.id == msg["id"] and type(parsed.id) is type(msg["id"])
    if isinstance(parsed, (Request, Notification)):
        assert parsed.method == msg["method"]
        assert parsed.params == msg.get("params")
    if isinstance(parsed, Response):
        assert parsed.result == msg["result"]
    if isinstance(parsed, ErrorResponse):
        assert parsed.error.code == msg["error"]["code"]
        assert parsed.error.data == msg["error"].get("data")


@FAST
@given(json_values)
@example("\u2028\u2029\n\r\x85")
def test_encode_never_produces_an_embedded_newline(value: Any) -> None:
    line = encode(value)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b"\r" not in line
    line.decode("utf-8")  # strict: the wire is UTF-8


def test_encode_keeps_line_separators_as_utf8_on_one_line() -> None:
    line = encode({"s": "a\u2028b\u2029c"})
    assert line.count(b"\n") == 1
    assert decode(line) == {"s": "a\u2028b\u2029c"}


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\udc80"])
def test_encode_of_a_lone_surrogate_yields_one_valid_utf8_line(text: str) -> None:
    # json.loads turns the escape "\ud800" into a lone surrogate, so a peer can send one; the
    # reply that echoes it (an id, a method name, a validation location) must still be writable.
    line = encode({"id": text})
    assert line.count(b"\n") == 1
    line.decode("utf-8")
    assert decode(line) == {"id": text}


def test_encode_refuses_nan_rather_than_writing_invalid_json() -> None:
    with pytest.raises(ValueError):
        encode({"x": float("nan")})


def test_a_request_without_jsonrpc_is_accepted() -> None:
    parsed = parse_message(decode(b'{"id": 7, "method": "ping"}'))
    assert isinstance(parsed, Request)
    assert parsed.id == 7 and parsed.method == "ping" and parsed.jsonrpc == "2.0"


def test_a_notification_without_jsonrpc_is_accepted() -> None:
    assert isinstance(parse_message({"method": "tick", "params": {"i": 1}}), Notification)


def test_a_message_built_by_us_carries_jsonrpc_2_0_on_the_wire() -> None:
    line = encode(Request(id=1, method="ping").model_dump())
    assert decode(line)["jsonrpc"] == "2.0"


@pytest.mark.parametrize(
    "batch",
    [[{"jsonrpc": "2.0", "id": 1, "method": "ping"}], [], [{"method": "tick"}, {"id": 2, "method": "ping"}]],
)
def test_a_batch_is_refused_with_invalid_request(batch: list[Any]) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_message(batch)
    assert info.value.code == INVALID_REQUEST
    assert info.value.request_id is None


@pytest.mark.parametrize(
    ("obj", "readable_id"),
    [
        (5, None),
        ("ping", None),
        (None, None),
        ({}, None),
        ({"id": 1}, 1),
        ({"id": "a", "method": 3}, "a"),
        ({"id": 1, "method": ""}, 1),
        ({"id": 1, "method": "m", "params": "text"}, 1),
        ({"id": 1, "method": "m", "extra": True}, 1),
        ({"jsonrpc": "1.0", "id": 2, "method": "m"}, 2),
        ({"id": True, "method": "m"}, None),
        ({"id": 1.5, "method": "m"}, None),
        ({"id": [1], "method": "m"}, None),
        ({"id": None, "method": "m"}, None),
        ({"id": 3, "result": 1, "error": {"code": 1, "message": "x"}}, 3),
        ({"id": 4, "error": {"code": "1", "message": "x"}}, 4),
    ],
)
def test_an_invalid_message_is_refused_with_its_readable_id(obj: Any, readable_id: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_message(obj)
    assert info.value.code == INVALID_REQUEST
    assert info.value.request_id == readable_id
    assert type(info.value.request_id) is type(readable_id)


# -- LineReader --------------------------------------------------------------------------------

line_contents = st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"."))


@FAST
@given(st.lists(line_contents, max_size=12), st.integers(1, 40), st.booleans())
def test_line_reader_bounds_each_line_and_continues_after_an_oversized_one(
    lines: list[bytes], max_line: int, final_newline: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    reader = LineReader(io.BytesIO(data), max_line=max_line)
    got = list(reader)
    expected = list(lines)
    if lines and not final_newline and expected[-1] == b"":
        expected.pop()  # "a\n" + "" without a newline: the stream simply ends
    assert len(got) == len(expected)
    for content, item in zip(expected, got, strict=True):
        if len(content) <= max_line:
            assert item == content
        else:
            assert isinstance(item, Oversized)
            assert item.size > max_line
            assert content.startswith(item.head)
            assert len(item.head) == min(512, max_line + 1)


def test_line_reader_returns_none_at_eof_and_keeps_returning_it() -> None:
    reader = LineReader(io.BytesIO(b"one\n"))
    assert reader.read() == b"one"
    assert reader.read() is None
    assert reader.read() is None


def test_line_reader_accepts_a_line_exactly_at_the_limit() -> None:
    reader = LineReader(io.BytesIO(b"x" * 16 + b"\n" + b"y" * 17 + b"\nz\n"), max_line=16)
    assert reader.read() == b"x" * 16
    assert isinstance(reader.read(), Oversized)
    assert reader.read() == b"z"


def test_line_writer_writes_whole_lines_from_many_threads() -> None:
    out = io.BytesIO()
    writer = LineWriter(out)
    payload = {"pad": "p" * 3000}

    def spam(tag: int) -> None:
        for i in range(200):
            writer.send({"tag": tag, "i": i, **payload})

    threads = [threading.Thread(target=spam, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    lines = out.getvalue().split(b"\n")
    assert lines.pop() == b""
    assert len(lines) == 800
    for tag in range(4):
        assert [decode(x)["i"] for x in lines if decode(x)["tag"] == tag] == list(range(200))


# -- sniff_id ----------------------------------------------------------------------------------

short_ids = st.integers(-(10**17), 10**17) | st.text(max_size=40)


@FAST
@given(short_ids, st.text(max_size=40))
def test_sniff_id_finds_the_id_of_a_request_in_its_first_bytes(rid: int | str, method: str) -> None:
    line = encode({"jsonrpc": "2.0", "id": rid, "method": method or "m", "params": {"pad": "x" * 1000}})
    got = sniff_id(line[:512])
    assert got == rid and type(got) is type(rid)


@pytest.mark.parametrize(
    "head",
    [
        b'{"jsonrpc":"2.0","method":"m","params":{"x":',
        b'{"id":true,"method":"m"',
        b'{"id":null,"method":"m"',
        b"\xff\xfe garbage",
        b"",
    ],
)
def test_sniff_id_returns_none_when_no_id_is_readable(head: bytes) -> None:
    assert sniff_id(head) is None


@FAST
@given(st.integers(10**18, 10**40) | st.integers(-(10**40), -(10**18)))
def test_sniff_id_never_reports_a_truncated_integer_id(rid: int) -> None:
    # A wrong id is worse than none: the -32600 for an oversized line would fail another request.
    head = encode({"jsonrpc": "2.0", "id": rid, "method": "m", "params": {"pad": "x" * 600}})[:512]
    assert sniff_id(head) in (rid, None)


@pytest.mark.parametrize("raw", [b"1.5", b"2e3", b"7.0"])
def test_sniff_id_does_not_read_a_non_integer_number_as_an_integer_id(raw: bytes) -> None:
    assert sniff_id(b'{"jsonrpc":"2.0","id":' + raw + b',"method":"m","params":{') is None


def test_sniff_id_ignores_an_id_nested_in_params() -> None:
    # Our own Peer writes the top-level id last; a task packet's "id" comes first in params.
    line = encode({"jsonrpc": "2.0", "method": "spawn_worker", "params": {"task_packet": {"id": 5}}, "id": 9})
    head = line[: line.index(b"}") + 1]  # the oversized line's head ends inside params
    assert sniff_id(head) is None
    assert sniff_id(line) in (9, None)


def test_json_decode_of_invalid_utf8_raises_value_error() -> None:
    # The server relies on this to answer -32700 rather than crash.
    with pytest.raises(ValueError):
        decode(b'{"id":1,"method":"\xff"}')


@pytest.mark.parametrize(
    "line",
    [
        b'{"id":1,"method":"m","params":{"a":[1,2.5,"x",null,true]}}\n',
        b'{"s":"\\ud800","e":"\\u00e9"}',  # a lone surrogate escape: the reference parser's reading
        b'{"big":123456789012345678901234567890}',
        b'{"a":1,"a":2}',  # the last one wins, as in json.loads
        b'{"x":1e400}',  # overflows to inf in both
        b"[]",
        b'"text"',
    ],
)
def test_decode_reads_every_line_as_json_loads_does(line: bytes) -> None:
    assert repr(decode(line)) == repr(json.loads(line))


@pytest.mark.parametrize("line", [b"NaN", b'{"a":NaN}', b'{"a":-Infinity}', b"{", b'{"a":1', b"\xff", b""])
def test_decode_refuses_what_is_not_json_and_nan_tokens(line: bytes) -> None:
    with pytest.raises(ValueError):
        decode(line)
