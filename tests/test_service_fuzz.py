"""Hostile input against the service loop and against each real service process.

The property, from the wire protocol: whatever bytes arrive, the service keeps running, and every
line that carries a readable id (a JSON object whose id is an int or a str) gets exactly one reply
with that id. Lines without a readable id get at most one reply each, with a null id; blank lines
and notifications get none. Every line the service writes is a JSON-RPC message.

Against a real service, one long-lived process per service serves the whole hypothesis run; each
example is followed by a ``ping`` sentinel with a unique id, and the example's replies are the ones
read up to the sentinel's (plus, bounded, any still missing from calls that run on a thread pool).
A process that died or stopped answering is replaced before the next example, so hypothesis can
shrink a failure to the input that caused it.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from harness.rpc import DEFAULT_MAX_LINE, Server

SERVICES = ("planning", "bootstrap", "worker_manager")
EXAMPLE_LIMIT_SECONDS = 5.0  # per example, sentinel included; a healthy service needs milliseconds
HUGE = DEFAULT_MAX_LINE + 1024  # the one line over the limit, sent once per service

# -- strategies --------------------------------------------------------------------------------

SURROGATES = ["\ud800", "\udfff", "a\udc80b"]
TRICKY_TEXT = ["", " ", "\u2028", "\u2029", "\x00", "\n", "é", "💥", "id", "null", "1", *SURROGATES]
#: Names no service has, added to each service's own method list.
UNKNOWN_METHODS = ["rpc.discover", "Ping", "ping ", "shutdown2"]
#: Field names the services use, so wrong-typed values reach their validators.
FIELDS = [
    "objective", "context", "packets", "feedback", "tasks", "phase", "events", "worker_id",
    "task_packet", "approval_source", "idempotency_key", "id", "title", "depends_on", "value",
]  # fmt: skip

texts = st.text(max_size=12) | st.sampled_from(TRICKY_TEXT)
numbers = st.integers() | st.floats() | st.sampled_from([2**64, -(2**80), 1e308, -0.0])
scalars = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts | st.sampled_from(FIELDS), inner, max_size=3),
    max_leaves=12,
)
ids = st.integers() | st.integers(-(2**70), 2**70) | texts
bad_ids = (
    st.none()
    | st.booleans()
    | st.floats()
    | st.lists(scalars, max_size=2)
    | st.dictionaries(texts, scalars, max_size=1)
)
texts_not_shutdown = texts.filter(lambda m: m != "shutdown")
params = st.dictionaries(st.sampled_from(FIELDS) | texts, json_values, max_size=4) | st.lists(json_values, max_size=3)


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in ``one_in`` draws (integers() favours its bounds, so it is not used)."""
    return draw(st.sampled_from([False] * (one_in - 1) + [True]))


@st.composite
def messages(draw: st.DrawFn, methods: list[str]) -> Any:
    """A JSON value shaped more or less like a message: good, wrong-typed or missing fields."""
    known_methods = st.sampled_from(methods)
    msg: dict[str, Any] = {}
    if not rarely(draw, 8):
        msg["jsonrpc"] = draw(st.sampled_from(["1.0", 2.0, None, ""])) if rarely(draw, 8) else "2.0"
    kind = draw(st.sampled_from(["request"] * 6 + ["notification", "response", "error"]))
    if kind != "notification":
        msg["id"] = draw(bad_ids if rarely(draw, 8) else ids)
    if kind in ("request", "notification"):
        msg["method"] = draw(scalars if rarely(draw, 10) else texts_not_shutdown if rarely(draw, 4) else known_methods)
        if not rarely(draw, 4):
            msg["params"] = draw(scalars if rarely(draw, 10) else params)
    elif kind == "response":
        msg["result"] = draw(json_values)
    else:
        error = st.fixed_dictionaries({"code": st.integers(-32800, -32000), "message": texts})
        msg["error"] = draw(error | json_values)
    if rarely(draw, 10):
        msg[draw(texts)] = draw(json_values)
    if rarely(draw, 20):
        return [msg]  # a batch
    return msg


@st.composite
def calls(draw: st.DrawFn, methods: list[str]) -> dict[str, Any]:
    """A well-formed request to one of ``methods``, with made-up (mostly wrong) params."""
    return {
        "jsonrpc": "2.0",
        "id": draw(ids),
        "method": draw(st.sampled_from(methods)),
        "params": draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4)),
    }


def dumps(value: Any, ascii_only: bool) -> bytes:
    # allow_nan (the default) writes NaN/Infinity tokens, which json.loads accepts; without
    # ascii_only a lone surrogate becomes the 3-byte form json.loads also accepts.
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw: st.DrawFn, line: bytes) -> bytes:
    """A line broken in one place: cut short, a byte replaced, or garbage spliced in."""
    at = draw(st.integers(0, len(line)))
    how = draw(st.sampled_from(["cut", "replace", "splice"]))
    if how == "cut":
        return line[:at]
    junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b'"', b"}", b"{", b"\r", b"\\"]))
    return line[:at] + junk + line[at + (how == "replace") :]


class Blob(bytes):
    """A line that reports itself briefly when hypothesis prints a failing example."""

    def __repr__(self) -> str:
        if len(self) <= 80:
            return bytes.__repr__(self)
        return f"Blob({bytes(self[:40])!r} + ... {len(self)} bytes)"


HOSTILE = [
    b"",
    b"   \t",
    b"\r",
    b'\xef\xbb\xbf{"id":1,"method":"ping"}',  # UTF-8 BOM
    b'{"id":1,"method":"ping"}\x00',
    b'{"id":"\xff","method":"ping"}',
    b'{"id":"\xed\xa0\x80","method":"ping"}',
    b'{"id":1e400,"method":"ping"}',
    b'{"id":' + b"9" * 5000 + b',"method":"ping"}',
    b'{"id":2,"id":3,"method":"ping"}',
    b"[" * 100_000,
    b'{"id":4,"method":"ping","params":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"id":5,"method":"echo","params":{"value":NaN}}',
    b'{"id":6,"method":"echo","params":{"value":-Infinity}}',
    b"\xff" * 40,
]
HOSTILE = [Blob(line) for line in HOSTILE]


@st.composite
def hostile_lines(draw: st.DrawFn, methods: list[str]) -> bytes:
    """One line of input for a service whose methods are ``methods`` (never ``shutdown``)."""
    assert "shutdown" not in methods
    choice = draw(st.sampled_from(["message"] * 3 + ["call"] * 3 + ["mutated", "binary", "value", "hostile"]))
    if choice == "call":
        return dumps(draw(calls(methods)), draw(st.booleans()))
    if choice in ("message", "mutated"):
        line = dumps(draw(messages(methods)), draw(st.booleans()))
        return draw(mutated(line)) if choice == "mutated" else line
    if choice == "binary":
        return draw(st.binary(max_size=64))
    if choice == "value":
        return dumps(draw(json_values), draw(st.booleans()))
    return draw(st.sampled_from(HOSTILE))


def as_blob(lines: list[bytes]) -> bytes:
    """Lines joined as they cross the wire (a raw newline inside a line makes two lines)."""
    return b"".join(line + b"\n" for line in lines)


# -- the property ------------------------------------------------------------------------------


IdKey = tuple[str, Any]


def id_key(rid: Any) -> IdKey | None:
    """A readable id, typed (1 and "1" differ), or None."""
    if isinstance(rid, bool) or not isinstance(rid, (int, str)):
        return None
    return (type(rid).__name__, rid)


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _readable_id(line: bytes, strict: bool) -> IdKey | None:
    try:
        obj = json.loads(line, parse_constant=_refuse_constant) if strict else json.loads(line)
    except (ValueError, RecursionError):
        return None
    return id_key(obj.get("id")) if isinstance(obj, dict) else None


@dataclass
class Expected:
    """What the replies to a blob must be, counted by readable id."""

    required: Counter[IdKey]  # exactly this many replies with each id
    optional: Counter[IdKey]  # NaN/Infinity tokens: a service may refuse the line (null id) or answer it
    others: int  # non-blank lines with no readable id: at most one null-id reply each


def expectations(blob: bytes) -> Expected:
    expected = Expected(Counter(), Counter(), 0)
    for line in blob.split(b"\n")[:-1]:
        if not line.strip():
            continue
        if (key := _readable_id(line, strict=True)) is not None:
            expected.required[key] += 1
        elif (key := _readable_id(line, strict=False)) is not None:
            expected.optional[key] += 1
        else:
            expected.others += 1
    return expected


def parse_reply(line: bytes) -> dict[str, Any]:
    """A line the service wrote; it must be a well-formed JSON-RPC message."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise AssertionError(f"non-JSON on the wire: {line[:200]!r}") from exc
    assert isinstance(obj, dict), f"not an object on the wire: {line[:200]!r}"
    assert obj.get("jsonrpc") == "2.0", f"reply without jsonrpc 2.0: {line[:200]!r}"
    if "method" in obj and "id" not in obj:
        return obj  # a notification the service chose to send
    assert "id" in obj and ("result" in obj) != ("error" in obj), f"malformed reply: {line[:200]!r}"
    if "error" in obj:
        error = obj["error"]
        assert isinstance(error, dict), f"error is not an object: {line[:200]!r}"
        assert isinstance(error.get("code"), int) and isinstance(error.get("message"), str), f"bad error: {error}"
    return obj


def check_replies(blob: bytes, replies: list[dict[str, Any]]) -> None:
    expected = expectations(blob)
    got: Counter[IdKey] = Counter()
    nulls = 0
    for reply in replies:
        if "id" not in reply:
            continue  # a notification
        key = id_key(reply["id"])
        if key is None:
            assert reply["id"] is None, f"reply with an id nobody sent: {reply}"
            nulls += 1
        else:
            got[key] += 1
    for key in got.keys() | expected.required.keys() | expected.optional.keys():
        low, high = expected.required[key], expected.required[key] + expected.optional[key]
        assert low <= got[key] <= high, f"{got[key]} replies with id {key[1]!r}; expected {low}..{high}"
    allowed_nulls = expected.others + expected.optional.total()
    assert nulls <= allowed_nulls, f"{nulls} null-id replies for {allowed_nulls} lines without a readable id"


# -- in-process: the library's own loop --------------------------------------------------------


class EchoParams(BaseModel):
    value: Any = None


class StrictParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: int
    title: str = ""


def hostile_target() -> Server:
    server = Server("fuzz-target", "0")
    server.add_method("echo", lambda p: {"value": p.value}, params=EchoParams)
    server.add_method("echo_blocking", lambda p: {"value": p.value}, params=EchoParams, blocking=True)
    server.add_method("strict", lambda p: p, params=StrictParams, blocking=True)

    def crash() -> None:
        raise RuntimeError("boom")

    server.add_method("crash", crash)
    return server


TARGET_METHODS = ["ping", "initialize", "echo", "echo_blocking", "strict", "crash", *UNKNOWN_METHODS]


@settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_lines(TARGET_METHODS), min_size=1, max_size=8))
def test_server_loop_answers_every_readable_id_exactly_once_whatever_the_input(lines: list[bytes]) -> None:
    blob = as_blob(lines)
    out = io.BytesIO()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            hostile_target().serve(io.BytesIO(blob), out)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(EXAMPLE_LIMIT_SECONDS)
    assert not thread.is_alive(), "serve() did not return after EOF"
    assert not failure, f"serve() raised {failure[0]!r}"
    check_replies(blob, [parse_reply(line) for line in out.getvalue().splitlines()])


# -- real services -----------------------------------------------------------------------------


class LiveService:
    """One service process fed raw bytes; a reader thread queues every line it writes."""

    def __init__(self, argv: list[str], cwd: Path, stderr_path: Path) -> None:
        self.argv = argv
        self.cwd = cwd
        self.stderr_path = stderr_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.sentinels = itertools.count()
        self.restarts = -1
        self.methods: list[str] = ["ping", *UNKNOWN_METHODS]

    def start(self) -> None:
        self.stop()
        self.restarts += 1
        self.lines = queue.Queue()
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=self.cwd,
                start_new_session=True,
            )
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, sink: queue.Queue[bytes | None]) -> None:
        try:
            for line in stream:
                sink.put(line)
        except (OSError, ValueError):
            pass
        sink.put(None)

    def stop(self) -> int | None:
        """Close stdin (a service exits on EOF); kill if it does not within the bound; reap."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        try:
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            return proc.wait(EXAMPLE_LIMIT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(EXAMPLE_LIMIT_SECONDS)
            return None
        finally:
            proc.stdout.close()  # type: ignore[union-attr]

    def stderr_tail(self) -> str:
        return self.stderr_path.read_bytes()[-2000:].decode(errors="replace")

    def exchange(self, blob: bytes) -> list[dict[str, Any]]:
        """Send ``blob`` and a sentinel ping; the replies to ``blob``. Restarts a broken process."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        tag = f"sentinel-{next(self.sentinels)}"
        sentinel = json.dumps({"jsonrpc": "2.0", "id": tag, "method": "ping"}).encode() + b"\n"
        deadline = time.monotonic() + EXAMPLE_LIMIT_SECONDS + len(blob) / 50e6
        try:
            try:
                self.proc.stdin.write(blob + sentinel)
                self.proc.stdin.flush()
            except BrokenPipeError:
                code = self.proc.wait(EXAMPLE_LIMIT_SECONDS)
                raise AssertionError(f"the service exited ({code}) mid-input; stderr:\n{self.stderr_tail()}") from None
            replies: list[dict[str, Any]] = []
            while (reply := self._next_reply(deadline)).get("id") != tag:
                replies.append(reply)
            # Calls that run on a thread pool may still answer after the sentinel.
            missing = expectations(blob).required
            missing.subtract(key for r in replies if (key := id_key(r.get("id"))) is not None)
            while +missing:
                reply = self._next_reply(deadline)
                replies.append(reply)
                if (key := id_key(reply.get("id"))) is not None:
                    missing[key] -= 1
            return replies
        except BaseException:
            self.stop()  # the next example gets a fresh process
            raise

    def _next_reply(self, deadline: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            raise AssertionError(f"no answer in time; stderr:\n{self.stderr_tail()}") from None
        if line is None:
            code = self.proc.wait(EXAMPLE_LIMIT_SECONDS) if self.proc else None
            raise AssertionError(f"the service exited ({code}); stderr:\n{self.stderr_tail()}")
        return parse_reply(line)


@pytest.fixture(scope="module", params=SERVICES)
def live_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, service_cmd: Callable[[str], list[str]]
) -> Iterator[LiveService]:
    name = request.param
    workspace = tmp_path_factory.mktemp(f"fuzz-{name}")
    service = LiveService(service_cmd(name), workspace, workspace.parent / f"fuzz-{name}.stderr")
    service.start()
    try:
        (reply,) = service.exchange(b'{"jsonrpc":"2.0","id":"init","method":"initialize"}\n')
        names = [m for m in reply["result"]["methods"] if m != "shutdown"]
        service.methods = names + UNKNOWN_METHODS
        yield service
    finally:
        was_running = service.proc is not None and service.proc.poll() is None
        status = service.stop()
    if was_running:  # a failed example already replaced (or buried) a broken process
        assert status == 0, f"{name} did not exit cleanly on stdin EOF ({status}); stderr:\n{service.stderr_tail()}"


HUGE_LINES = [
    Blob(b'{"jsonrpc":"2.0","id":"huge","method":"ping","params":{"pad":"' + b"x" * HUGE + b'"}}'),
    Blob(b"y" * HUGE),
    b'{"jsonrpc":"2.0","id":"after-huge","method":"ping"}',
]


def service_lines(service: LiveService) -> list[bytes]:
    """Valid calls carrying values that JSON cannot hold (Infinity), which a reply may echo."""
    packet = b'{"id":"a","title":"Build it","commands":["true"],"timeout":Infinity}'
    workspace = json.dumps(str(service.cwd)).encode()
    return [
        b'{"jsonrpc":"2.0","id":"inf-1","method":"refine","params":{"plan":{"objective":"build it","tasks":['
        + packet
        + b']},"feedback":"keep it"}}',
        b'{"jsonrpc":"2.0","id":"inf-2","method":"validate","params":{"packets":[' + packet + b"]}}",
        b'{"jsonrpc":"2.0","id":"inf-3","method":"spawn_worker","params":{"task_packet":'
        + packet
        + b',"workspace":'
        + workspace
        + b',"idempotency_key":"fuzz-inf"}}',
    ]


def test_real_service_survives_each_hostile_line_and_lines_over_the_limit(live_service: LiveService) -> None:
    failures = []
    for chunk in [[line] for line in HOSTILE + service_lines(live_service)] + [HUGE_LINES]:
        blob = as_blob(chunk)
        try:
            check_replies(blob, live_service.exchange(blob))
        except AssertionError as exc:
            failures.append(f"{chunk!r}:\n    {str(exc).splitlines()[0]}")
    assert not failures, "\n".join(failures)


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_real_service_survives_hostile_input_and_answers_every_readable_id_once(
    live_service: LiveService, data: st.DataObject
) -> None:
    lines = data.draw(st.lists(hostile_lines(live_service.methods), min_size=1, max_size=6), label="lines")
    blob = as_blob(lines)
    check_replies(blob, live_service.exchange(blob))


def test_real_service_was_never_restarted_during_the_fuzz_run(live_service: LiveService) -> None:
    # Runs after the tests above on the same process: a death there would have restarted it.
    assert live_service.restarts == 0, f"the service died {live_service.restarts} time(s); see the failures above"
    assert live_service.exchange(as_blob([b'{"id":1,"method":"ping"}'])) == [{"jsonrpc": "2.0", "id": 1, "result": {}}]
