"""The service loop on in-memory streams, plus run_stdio in a real child process."""

from __future__ import annotations

import io
import json
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from harness.rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PROTOCOL_VERSION,
    Cancelled,
    GateBlocked,
    InvalidParams,
    InvalidPlan,
    InvalidTransition,
    Later,
    NotFound,
    RequestTimeout,
    RPCError,
    Server,
)

SERVE_LIMIT_SECONDS = 10.0


class AddParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: int
    b: int = Field(ge=0)


def make_server(**kwargs: Any) -> Server:
    """A server with a typed method, a crashing one and a domain-error one."""
    server = Server("test-service", "1.2.3", contract="test-contract", **kwargs)

    @server.method()
    def add(params: AddParams) -> dict[str, int]:
        return {"sum": params.a + params.b}

    @server.method()
    def crash() -> None:
        raise KeyError("secret internal detail")

    return server


def serve_lines(server: Server, lines: list[bytes], *, newline: bool = True) -> list[dict[str, Any]]:
    """Feed ``lines`` then EOF to ``server.serve``; return the replies (bounded: serve must end)."""
    data = b"".join(line + b"\n" for line in lines) if newline else b"\n".join(lines)
    out = io.BytesIO()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.serve(io.BytesIO(data), out)
        except BaseException as exc:  # reported below: serve must not raise
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(SERVE_LIMIT_SECONDS)
    assert not thread.is_alive(), "serve() did not return after EOF"
    assert not failure, f"serve() raised {failure[0]!r}"
    raw = out.getvalue()
    assert raw == b"" or raw.endswith(b"\n")
    replies = [json.loads(line) for line in raw.splitlines()]
    for reply in replies:
        assert reply["jsonrpc"] == "2.0"
        assert ("result" in reply) != ("error" in reply)
    return replies


def req(rid: Any, method: str, params: Any = None, *, jsonrpc: bool = True) -> bytes:
    msg: dict[str, Any] = {"id": rid, "method": method}
    if jsonrpc:
        msg["jsonrpc"] = "2.0"
    if params is not None:
        msg["params"] = params
    return json.dumps(msg).encode()


def only(replies: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(replies) == 1, replies
    return replies[0]


# -- error codes ------------------------------------------------------------------------------


@pytest.mark.parametrize("line", [b'{"id":1,', b"not json", b"{'id': 1}", b'{"id":1,"method":"ping"}}', b"\xff\xfe"])
def test_unparsable_line_gets_parse_error_with_null_id(line: bytes) -> None:
    reply = only(serve_lines(make_server(), [line]))
    assert reply["id"] is None
    assert reply["error"]["code"] == PARSE_ERROR


@pytest.mark.parametrize(
    ("line", "rid"),
    [
        (b"[]", None),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', None),
        (b"42", None),
        (b'"ping"', None),
        (b'{"id":5,"method":7}', 5),
        (b'{"id":"x","method":"ping","params":"text"}', "x"),
        (b'{"jsonrpc":"1.0","id":6,"method":"ping"}', 6),
        (b'{"id":true,"method":"ping"}', None),
        (b'{"id":8}', 8),
    ],
)
def test_invalid_request_gets_invalid_request_with_its_readable_id(line: bytes, rid: Any) -> None:
    reply = only(serve_lines(make_server(), [line]))
    assert reply["error"]["code"] == INVALID_REQUEST
    assert reply["id"] == rid and type(reply["id"]) is type(rid)


def test_unknown_method_gets_method_not_found() -> None:
    reply = only(serve_lines(make_server(), [req(3, "no_such_method")]))
    assert reply["id"] == 3
    assert reply["error"]["code"] == METHOD_NOT_FOUND


@pytest.mark.parametrize(
    ("params", "bad_field"),
    [({"a": "one", "b": 2}, "a"), ({"a": 1, "b": -1}, "b"), ({"b": 1}, "a"), ({"a": 1, "b": 1, "c": 0}, "c")],
)
def test_wrong_params_get_invalid_params_with_pydantic_details(params: dict[str, Any], bad_field: str) -> None:
    reply = only(serve_lines(make_server(), [req(4, "add", params)]))
    assert reply["id"] == 4
    error = reply["error"]
    assert error["code"] == INVALID_PARAMS
    assert isinstance(error["data"], list) and error["data"]
    assert [bad_field] in [item["loc"] for item in error["data"]]
    assert all({"loc", "msg", "type"} <= set(item) for item in error["data"])


def test_positional_params_for_a_typed_method_get_invalid_params() -> None:
    reply = only(serve_lines(make_server(), [req(4, "add", [1, 2])]))
    assert reply["error"]["code"] == INVALID_PARAMS


def test_handler_crash_gets_internal_error_without_a_traceback_on_the_wire() -> None:
    out = io.BytesIO()
    server = make_server()
    thread = threading.Thread(target=server.serve, args=(io.BytesIO(req(5, "crash") + b"\n"), out), daemon=True)
    thread.start()
    thread.join(SERVE_LIMIT_SECONDS)
    wire = out.getvalue()
    reply = json.loads(wire)
    assert reply["id"] == 5
    assert reply["error"]["code"] == INTERNAL_ERROR
    assert b"Traceback" not in wire and b".py" not in wire


@pytest.mark.parametrize(
    "error_cls", [NotFound, GateBlocked, InvalidTransition, InvalidPlan, RequestTimeout, Cancelled]
)
def test_domain_error_keeps_its_code_and_data(error_cls: type[RPCError]) -> None:
    server = make_server()

    @server.method()
    def refuse() -> None:
        raise error_cls(data={"why": ["a", "b"]})

    reply = only(serve_lines(server, [req(6, "refuse")]))
    assert reply["error"]["code"] == error_cls.code
    assert reply["error"]["data"] == {"why": ["a", "b"]}


@pytest.mark.parametrize("blocking", [False, True])
def test_result_that_is_not_json_gets_internal_error_and_the_loop_goes_on(blocking: bool) -> None:
    server = make_server()
    server.add_method("when", lambda: {"at": datetime(2026, 1, 1), "tags": {"a"}}, blocking=blocking)
    server.add_method("nan", lambda: {"x": float("nan")}, blocking=blocking)
    replies = serve_lines(server, [req(1, "when"), req(2, "nan"), req(3, "ping")])
    by_id = {r["id"]: r for r in replies}
    assert len(replies) == 3 and set(by_id) == {1, 2, 3}
    assert by_id[1]["error"]["code"] == INTERNAL_ERROR
    assert by_id[2]["error"]["code"] == INTERNAL_ERROR
    assert by_id[3]["result"] == {}


@pytest.mark.parametrize(
    "line",
    [
        rb'{"jsonrpc":"2.0","id":"\ud800","method":"ping"}',
        rb'{"jsonrpc":"2.0","id":"\udfff","method":"nope"}',
        rb'{"jsonrpc":"2.0","id":9,"method":"add","params":{"a":1,"b":1,"\udc00":1}}',
    ],
)
def test_a_lone_surrogate_escape_is_answered_and_the_loop_goes_on(line: bytes) -> None:
    # Valid JSON: the escape decodes to a lone surrogate that the reply echoes (id, loc).
    replies = serve_lines(make_server(), [line, req(10, "ping")])
    assert len(replies) == 2
    assert replies[1] == {"jsonrpc": "2.0", "id": 10, "result": {}}
    assert replies[0]["id"] == json.loads(line)["id"]


def test_deeply_nested_line_is_refused_and_the_loop_goes_on() -> None:
    deep = b'{"jsonrpc":"2.0","id":11,"method":"ping","params":{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    replies = serve_lines(make_server(), [deep, b"[" * 100_000, req(12, "ping")])
    assert replies[-1] == {"jsonrpc": "2.0", "id": 12, "result": {}}
    assert len(replies) == 3
    assert {r["error"]["code"] for r in replies[:2]} <= {PARSE_ERROR, INVALID_REQUEST}


# -- what gets no reply, what gets one --------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","method":"ping"}',
        b'{"method":"no_such_method"}',
        b'{"jsonrpc":"2.0","method":"crash"}',
        b'{"jsonrpc":"2.0","method":"add","params":{"a":"x"}}',
        b"",
        b"   \t ",
        b'{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"x"}}',
    ],
)
def test_notifications_and_blank_lines_get_no_reply(line: bytes) -> None:
    assert serve_lines(make_server(), [line]) == []


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","id":13,"result":{}}',
        b'{"jsonrpc":"2.0","id":13,"error":{"code":-32000,"message":"x"}}',
    ],
)
def test_a_response_sent_to_the_server_gets_invalid_request(line: bytes) -> None:
    reply = only(serve_lines(make_server(), [line]))
    assert reply["id"] == 13
    assert reply["error"]["code"] == INVALID_REQUEST


def test_every_reply_carries_jsonrpc_2_0_even_when_the_request_omits_it() -> None:
    replies = serve_lines(make_server(), [req(1, "ping", jsonrpc=False), req(2, "nope", jsonrpc=False), b"{"])
    assert len(replies) == 3
    assert all(r["jsonrpc"] == "2.0" for r in replies)
    assert replies[0] == {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_oversized_line_gets_invalid_request_and_the_next_line_is_answered() -> None:
    server = make_server(max_line=256)
    big = json.dumps({"jsonrpc": "2.0", "id": 14, "method": "add", "params": {"pad": "x" * 1000}}).encode()
    replies = serve_lines(server, [big, req(15, "add", {"a": 1, "b": 2})])
    assert len(replies) == 2
    assert replies[0]["id"] == 14
    assert replies[0]["error"]["code"] == INVALID_REQUEST
    assert replies[1] == {"jsonrpc": "2.0", "id": 15, "result": {"sum": 3}}


def test_oversized_line_without_a_readable_id_gets_invalid_request_with_null_id() -> None:
    replies = serve_lines(make_server(max_line=64), [b"z" * 500, req(16, "ping")])
    assert replies[0]["id"] is None and replies[0]["error"]["code"] == INVALID_REQUEST
    assert replies[1]["id"] == 16


def test_eof_after_input_answers_everything_then_serve_returns() -> None:
    lines = [req(i, "add", {"a": i, "b": 1}) for i in range(500)]
    replies = serve_lines(make_server(), lines, newline=False)  # the last line has no newline
    assert [r["id"] for r in replies] == list(range(500))
    assert [r["result"]["sum"] for r in replies] == [i + 1 for i in range(500)]


def server_with_release(**kwargs: Any) -> Server:
    """make_server plus a blocking wait_for_release and an inline release that ends its wait."""
    server = make_server(**kwargs)
    released = threading.Event()

    @server.method(blocking=True)
    def wait_for_release() -> dict[str, bool]:
        return {"released": released.wait(SERVE_LIMIT_SECONDS)}

    @server.method()
    def release() -> dict[str, bool]:
        released.set()
        return {}

    return server


def test_blocking_handler_does_not_hold_up_the_loop_and_is_answered_before_exit() -> None:
    server = server_with_release()
    replies = serve_lines(server, [req(1, "wait_for_release"), req(2, "release")])
    # The inline call was answered while the blocking one waited for it; EOF came next, and the
    # blocking call was still answered before serve() returned.
    assert [r["id"] for r in replies] == [2, 1]
    assert replies[1]["result"] == {"released": True}


def test_with_every_pool_thread_busy_blocking_calls_wait_and_the_reading_goes_on() -> None:
    server = server_with_release(max_threads=1)
    # Call 1 takes the one pool thread: calls 2 and 3 wait for it while "release" is still read
    # and answered, then every call is answered.
    lines = [req(1, "wait_for_release"), req(2, "wait_for_release"), req(3, "wait_for_release"), req(4, "release")]
    replies = serve_lines(server, lines)
    assert replies[0]["id"] == 4
    assert sorted(r["id"] for r in replies[1:]) == [1, 2, 3]
    assert all(r["result"] == {"released": True} for r in replies[1:])


def test_a_handler_that_returns_later_runs_its_first_part_in_order_and_its_rest_on_the_pool() -> None:
    server = make_server()
    steps: list[str] = []
    released = threading.Event()

    @server.method()
    def start(params: AddParams) -> Later:
        steps.append(f"first {params.a}")  # on the reader, before the next line is read

        def rest() -> dict[str, Any]:
            if params.a < 0:
                raise InvalidParams("a must not be negative in the rest", {"a": params.a})
            return {"released": released.wait(SERVE_LIMIT_SECONDS), "a": params.a}

        return Later(rest)

    @server.method()
    def release() -> dict[str, Any]:
        steps.append("release")
        released.set()
        return {}

    @server.method()
    def note(params: AddParams) -> Later:  # also sent as a notification: its rest runs all the same
        return Later(lambda: steps.append(f"note {params.a}"))

    lines = [req(1, "start", {"a": 1, "b": 0}), req(2, "start", {"a": -1, "b": 0}), req(3, "release")]
    lines.append(json.dumps({"jsonrpc": "2.0", "method": "note", "params": {"a": 7, "b": 0}}).encode())
    replies = serve_lines(server, lines)
    assert steps[:3] == ["first 1", "first -1", "release"]  # the first parts ran in order, inline
    assert "note 7" in steps
    by_id = {r["id"]: r for r in replies}
    assert by_id[1]["result"] == {"released": True, "a": 1}  # answered by its rest, after the release
    assert by_id[2]["error"]["code"] == INVALID_PARAMS and by_id[2]["error"]["data"] == {"a": -1}
    order = [r["id"] for r in replies]
    assert order.index(3) < order.index(1)  # the release was answered while call 1 still waited for it


def test_shutdown_answers_then_stops_the_loop() -> None:
    replies = serve_lines(make_server(), [req(1, "ping"), req(2, "shutdown"), req(3, "ping")])
    assert replies == [
        {"jsonrpc": "2.0", "id": 1, "result": {}},
        {"jsonrpc": "2.0", "id": 2, "result": {}},
    ]


def test_initialize_describes_the_service() -> None:
    result = only(serve_lines(make_server(), [req(1, "initialize", {})]))["result"]
    assert result["name"] == "test-service"
    assert result["version"] == "1.2.3"
    assert result["contract"] == "test-contract"
    assert result["protocol_version"] == PROTOCOL_VERSION
    assert result["jsonrpc"] == "2.0"
    assert {"initialize", "ping", "shutdown", "add", "crash"} <= set(result["methods"])
    from harness.models import InitializeResult

    InitializeResult.model_validate(result)


def test_ping_answers_an_empty_result_with_or_without_params() -> None:
    replies = serve_lines(make_server(), [req(1, "ping"), req(2, "ping", {}), req("p", "ping", [])])
    assert [(r["id"], r["result"]) for r in replies] == [(1, {}), (2, {}), ("p", {})]


def test_ids_come_back_with_their_type() -> None:
    replies = serve_lines(make_server(), [req(0, "ping"), req("0", "ping"), req(-(2**70), "ping"), req("", "ping")])
    assert [(type(r["id"]), r["id"]) for r in replies] == [(int, 0), (str, "0"), (int, -(2**70)), (str, "")]


def test_notify_from_a_handler_reaches_the_wire_before_its_reply() -> None:
    server = make_server()

    @server.method()
    def announce() -> dict[str, Any]:
        server.notify("event", {"n": 1})
        return {}

    replies_raw = io.BytesIO()
    server.serve(io.BytesIO(req(1, "announce") + b"\n"), replies_raw)
    first, second = (json.loads(x) for x in replies_raw.getvalue().splitlines())
    assert first == {"jsonrpc": "2.0", "method": "event", "params": {"n": 1}}
    assert second["id"] == 1


# -- run_stdio in a real process --------------------------------------------------------------


def _run_fixture(cmd: list[str], stdin: bytes) -> tuple[list[bytes], bytes, int]:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(stdin, timeout=SERVE_LIMIT_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    return out.splitlines(), err, proc.returncode


def test_stray_output_of_a_handler_never_reaches_the_wire(rpc_fixture_cmd: Callable[..., list[str]]) -> None:
    lines, err, status = _run_fixture(rpc_fixture_cmd("echo_service"), req(1, "noisy") + b"\n" + req(2, "ping") + b"\n")
    assert status == 0
    replies = [json.loads(line) for line in lines]  # every stdout line is a protocol message
    assert [r["id"] for r in replies] == [1, 2]
    assert replies[0]["result"] == {"ok": True}
    for noise in (b"noise from print", b"noise written to fd 1", b"noise from a child process"):
        assert noise in err


def test_run_stdio_exits_zero_on_eof_after_answering(rpc_fixture_cmd: Callable[..., list[str]]) -> None:
    stdin = b"".join(req(i, "echo_blocking", {"value": i}) + b"\n" for i in range(50))
    lines, _, status = _run_fixture(rpc_fixture_cmd("echo_service"), stdin)
    assert status == 0
    assert sorted(json.loads(line)["result"]["value"] for line in lines) == list(range(50))


def test_fixture_can_be_piped_without_initialize(rpc_fixture_cmd: Callable[..., list[str]]) -> None:
    line = b'{"id":1,"method":"echo","params":{"value":"\xe2\x80\xa8"}}\n'  # U+2028, raw UTF-8
    lines, _, status = _run_fixture(rpc_fixture_cmd("echo_service"), line)
    assert status == 0
    assert json.loads(only_line(lines)) == {"jsonrpc": "2.0", "id": 1, "result": {"value": "\u2028"}}


def only_line(lines: list[bytes]) -> bytes:
    assert len(lines) == 1, lines
    return lines[0]


def test_the_line_size_limit_is_configurable_per_service_process() -> None:
    import json as _json
    import os as _os
    import subprocess as _subprocess
    import sys as _sys

    lines = _json.dumps({"id": 1, "method": "ping", "params": {"pad": "x" * 300}}) + "\n" + '{"id":2,"method":"ping"}\n'
    out = _subprocess.run(
        [_sys.executable, "-m", "harness.services.planning"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=30,
        env={**_os.environ, "HARNESS_MAX_LINE": "200"},
    )
    replies = [_json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in replies] == [1, 2]
    assert replies[0]["error"]["code"] == -32600 and replies[0]["error"]["data"]["limit"] == 200
    assert replies[1]["result"] == {}
