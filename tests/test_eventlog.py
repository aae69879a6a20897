"""The event log: durability, torn tails, the hash chain, several writers, following."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.eventlog import (
    GENESIS,
    ChainConflict,
    CorruptLog,
    EventLog,
    LogClosed,
    LogFailed,
    LogState,
    event_time,
    events_path,
    follow,
    iter_events,
    list_runs,
    new_run_id,
    read_events,
    run_dir,
    verify,
)
from harness.events import EventType
from harness.models import Event

RUN = "20260115-142345-a1b2c3"
TIMEOUT = 20


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return events_path(tmp_path, RUN)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts data syncs (the real one still runs)."""
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    return calls


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# -- format -------------------------------------------------------------------------------------


def test_stored_line_is_compact_json_in_key_order_hashed_without_its_hash_field(log_path):
    with EventLog.open(log_path, RUN, clock=lambda: 1768487025.1234567) as log:
        event = log.append(EventType.TASK_STARTED, {"title": "Build é"}, task_id="t1")
    line = log_path.read_bytes()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    body = line[:-1]
    assert list(json.loads(body)) == ["seq", "unix", "type", "run_id", "task_id", "data", "hash"]
    without_hash = body[: body.rindex(b',"hash":"')] + b"}"
    assert chain_hash("", without_hash) == event["hash"]  # the first line chains from nothing
    assert "Build é".encode() in body  # UTF-8, not \u escapes
    assert event_time(event) == "2026-01-15T14:23:45.123Z"
    assert event["unix"] == 1768487025.123457
    assert event["seq"] == 1 and event["run_id"] == RUN
    assert "worker_id" not in event and "prev" not in event and "time" not in event
    assert Event.model_validate(event).type == "TASK_STARTED"


def test_only_the_first_line_names_the_run(log_path):
    with EventLog.open(log_path, RUN) as log:
        events = log.append_many([("A",), ("B", {}, "t1", "w1")], durable=False)
    assert events[0]["run_id"] == RUN and "run_id" not in events[1]
    assert list(events[1]) == ["seq", "unix", "type", "task_id", "worker_id", "data", "hash"]


def chain_hash(prev: str, body: bytes) -> str:
    """The chain's hash, written out here independently of the module."""
    return base64.urlsafe_b64encode(hashlib.sha256(prev.encode() + body).digest()[:16]).rstrip(b"=").decode()


def _chain2_log(path: Path, types: list[str]) -> list[dict]:
    """A log as format 2 wrote it: time, run_id and prev on every line, sha256 hex of the line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prev, out, lines = GENESIS, [], []
    for i, etype in enumerate(types, 1):
        event = {"seq": i, "time": "2026-01-15T14:23:45.123Z", "unix": 1768487025.123, "type": etype,
                 "run_id": RUN, "data": {"i": i}, "prev": prev}  # fmt: skip
        body = json.dumps(event, separators=(",", ":")).encode()
        prev = event["hash"] = hashlib.sha256(body).hexdigest()
        lines.append(body[:-1] + b',"hash":"' + prev.encode() + b'"}\n')
        out.append(event)
    path.write_bytes(b"".join(lines))
    return out


def test_a_format_2_log_is_read_verified_and_appended_in_its_own_chain(log_path):
    old = _chain2_log(log_path, ["RUN_STARTED", "PLAN_CREATED"])
    assert read_events(log_path).events == old
    assert verify(log_path).ok
    with EventLog.open(log_path, RUN, create=False) as log:
        event = log.append("TASK_STARTED", task_id="t1")
    assert event["prev"] == old[-1]["hash"] and len(event["hash"]) == 64 and event["run_id"] == RUN
    result = verify(log_path)
    assert result.ok and result.count == 3
    lines = lines_of(log_path)
    lines[1] = lines[1].replace(b'"i":2', b'"i":7')
    log_path.write_bytes(b"".join(lines))
    assert verify(log_path).first_bad_seq == 2


def test_a_log_mixing_the_two_chains_fails_verification(log_path):
    _chain2_log(log_path, ["RUN_STARTED"])
    new = events_path(log_path.parent.parent, "other-run")
    with EventLog.open(new, "other-run") as log:
        log.append("A", durable=False)
        log.append("B", durable=False)
    with open(log_path, "ab") as f:
        f.write(lines_of(new)[1])
    result = verify(log_path)
    assert not result.ok and result.first_bad_seq == 2


def test_appended_events_are_what_read_events_returns_later(log_path):
    with EventLog.open(log_path, RUN) as log:
        appended = [log.append("RUN_STARTED", {"pair": (1, 2)}, durable=False)]
        appended += log.append_many([("TASK_READY", {"n": 1}, "t1"), ("TASK_STARTED", None, "t1", "w1")], durable=False)
    assert appended[0]["data"] == {"pair": [1, 2]}  # normalised as JSON, like a later read
    assert read_events(log_path).events == appended
    assert list(iter_events(log_path)) == appended


def test_seq_counts_up_and_each_prev_is_the_hash_before(log_path):
    with EventLog.open(log_path, RUN) as log:
        events = [log.append("WORKER_EVENT", {"i": i}, durable=False) for i in range(5)]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    lines = lines_of(log_path)
    prevs = [""] + [e["hash"] for e in events[:-1]]
    for line, prev, event in zip(lines, prevs, events, strict=True):
        body = line[: line.rindex(b',"hash":"')] + b"}"
        assert chain_hash(prev, body) == event["hash"]
    assert log.last_seq == 5 and log.last_hash == events[-1]["hash"]


def test_unknown_event_type_read_from_a_file_stays_a_string(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append("SOMETHING_FROM_A_NEWER_VERSION", durable=False)
    assert read_events(log_path).events[0]["type"] == "SOMETHING_FROM_A_NEWER_VERSION"
    assert verify(log_path).ok


def test_lone_surrogate_in_data_is_stored_escaped_and_reads_back(log_path):
    with EventLog.open(log_path, RUN) as log:
        event = log.append("WORKER_EVENT", {"output": "bad byte \udcff"}, durable=False)
    assert event["data"]["output"] == "bad byte \udcff"
    assert read_events(log_path).events == [event]
    assert verify(log_path).ok


def test_data_that_is_not_json_is_refused_and_nothing_is_written(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append("RUN_STARTED", durable=False)
        with pytest.raises(TypeError):
            log.append_many([("A", {"ok": 1}), ("B", {"bad": object()})])
        with pytest.raises(ValueError):
            log.append("A", {"nan": float("nan")})
        with pytest.raises(TypeError):
            log.append("A", ["not", "a", "dict"])  # type: ignore[arg-type]
        assert log.last_seq == 1
        assert log.append("C", durable=False)["seq"] == 2
    assert [e["type"] for e in read_events(log_path).events] == ["RUN_STARTED", "C"]


def test_event_type_values_are_their_names():
    assert all(member.value == member.name for member in EventType)
    assert {"TASK_WAITING", "SERVICE_FATAL", "EXECUTION_COMPLETE"} <= set(EventType.__members__)


_TAILS = {
    "none": b"",
    "partial": b'{"seq":99,"ty',
    "garbage-line": b"#\x00 not json\n",
    "garbage-line-and-partial": b'{oops\n{"se',
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 6), tail=st.sampled_from(sorted(_TAILS)), chunk=st.integers(1, 400))
def test_every_reader_applies_the_same_torn_tail_rule(tmp_path: Path, n: int, tail: str, chunk: int) -> None:
    """read_events, iter_events (any chunk size), follow, verify and a writer reopening the log all
    agree on where the whole events end and what is torn."""
    path = tmp_path / f"{n}-{tail}-{chunk}" / "events.jsonl"
    log = EventLog.open(path, "run-1")
    for i in range(n):
        log.append("E", {"i": i, "pad": "x" * (i * 37 % 90)})
    log.close()
    with open(path, "ab") as f:
        f.write(_TAILS[tail])
    whole = read_events(path)
    assert [e["data"]["i"] for e in whole.events] == list(range(n))
    assert (whole.torn is None) == (tail == "none")
    assert list(iter_events(path, chunk=chunk)) == whole.events
    assert list(follow(path, stop=lambda: True)) == whole.events
    checked = verify(path)
    assert checked.ok and checked.count == n and (checked.torn is None) == (tail == "none")
    reopened = EventLog.open(path, "run-1", create=False)
    assert reopened.last_seq == n and (reopened.torn is None) == (tail == "none")
    reopened.close()
    assert path.read_bytes().count(b"\n") == n  # the writer cut exactly the torn tail


def test_a_bad_line_followed_by_more_is_corruption_for_every_reader(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog.open(path, "run-1")
    log.append("E", {"i": 0})
    log.close()
    with open(path, "ab") as f:
        f.write(b"{oops\n")
    log = EventLog.open(path, "run-1", create=False)  # the writer cuts it as a torn tail ...
    log.close()
    with open(path, "ab") as f:  # ... so damage it where it is not the last line
        f.write(b"{oops\n")
        f.write(b"{}\n")
    with pytest.raises(CorruptLog):
        read_events(path)
    with pytest.raises(CorruptLog):
        list(iter_events(path, chunk=7))
    with pytest.raises(CorruptLog):
        list(follow(path, stop=lambda: True))
    assert not verify(path).ok


# -- durability ---------------------------------------------------------------------------------


def test_append_is_in_the_file_and_fsynced_before_it_returns(log_path, fsyncs):
    log = EventLog.open(log_path, RUN)
    try:
        fsyncs.clear()
        event = log.append("TASK_STARTED", {"attempt": 1}, task_id="t1")
        assert len(fsyncs) == 1
        assert read_events(log_path).events == [event]
    finally:
        log.close()


def test_append_many_is_one_write_and_one_fsync(log_path, fsyncs, monkeypatch):
    log = EventLog.open(log_path, RUN)
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        writes.append(fd)
        return real_write(fd, data)

    try:
        fsyncs.clear()
        monkeypatch.setattr(os, "write", counting_write)
        events = log.append_many([("TASK_READY", {"i": i}, f"t{i}") for i in range(20)])
        monkeypatch.undo()
        assert len(writes) == 1 and len(fsyncs) == 1
        assert [e["seq"] for e in events] == list(range(1, 21))
        assert len(read_events(log_path).events) == 20
    finally:
        log.close()


def test_non_durable_append_is_covered_by_the_next_durable_one(log_path, fsyncs):
    log = EventLog.open(log_path, RUN)
    try:
        fsyncs.clear()
        log.append("TASK_READY", task_id="t1", durable=False)
        log.append("WORKER_EVENT", worker_id="w1", durable=False)
        assert fsyncs == []
        assert len(read_events(log_path).events) == 2  # written, only not yet synced
        log.append("TASK_STARTED", task_id="t1")
        assert len(fsyncs) == 1
    finally:
        log.close()


def test_sync_flushes_pending_writes_once_and_is_free_when_nothing_is_pending(log_path, fsyncs):
    log = EventLog.open(log_path, RUN)
    try:
        fsyncs.clear()
        log.sync()
        assert fsyncs == []
        log.append("TASK_READY", durable=False)
        log.sync()
        log.sync()
        assert len(fsyncs) == 1
    finally:
        log.close()


def test_close_makes_pending_writes_durable(log_path, fsyncs):
    log = EventLog.open(log_path, RUN)
    fsyncs.clear()
    log.append("TASK_READY", durable=False)
    log.close()
    log.close()
    assert len(fsyncs) == 1


def test_creating_a_log_fsyncs_its_directory_once_and_reopening_does_not(log_path, monkeypatch):
    synced_dirs: list[str] = []
    real = os.fsync

    def counting(fd: int) -> None:
        synced_dirs.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    EventLog.open(log_path, RUN).close()
    assert str(log_path.parent) in synced_dirs
    assert synced_dirs.count(str(log_path.parent)) == 1
    synced_dirs.clear()
    EventLog.open(log_path, RUN).close()
    assert synced_dirs == []


def test_failed_fsync_stops_the_log(log_path, monkeypatch):
    log = EventLog.open(log_path, RUN)

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    try:
        monkeypatch.setattr(os, "fdatasync", broken)
        with pytest.raises(LogFailed):
            log.append("TASK_STARTED")
        monkeypatch.undo()
        assert log.state is LogState.FAILED
        with pytest.raises(LogFailed):
            log.append("TASK_STARTED", durable=False)
    finally:
        log.close()


def test_closed_log_refuses_appends(log_path):
    log = EventLog.open(log_path, RUN)
    log.close()
    with pytest.raises(LogClosed):
        log.append("TASK_STARTED")


def test_open_without_create_on_a_missing_log_raises(log_path):
    with pytest.raises(FileNotFoundError):
        EventLog.open(log_path, RUN, create=False)


def test_opening_another_runs_log_is_refused(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append("RUN_STARTED", durable=False)
    with pytest.raises(Exception) as info:
        EventLog.open(log_path, "some-other-run")
    assert type(info.value).__name__ == "EventLogError"


def test_reopened_log_continues_the_chain(log_path):
    with EventLog.open(log_path, RUN) as log:
        first = log.append_many([("A",), ("B",)], durable=False)
    with EventLog.open(log_path, RUN, create=False) as log:
        assert log.last_seq == 2 and log.last_hash == first[-1]["hash"]
        log.append("C", durable=False)
    assert verify(log_path).count == 3


# -- torn tails ---------------------------------------------------------------------------------


def test_torn_tail_is_reported_truncated_and_the_next_append_continues_seq(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append_many([("A",), ("B",)])
    whole = log_path.stat().st_size
    with open(log_path, "ab") as f:
        f.write(b'{"seq":3,"time":"2026-01-1')
    with EventLog.open(log_path, RUN) as log:
        assert log.torn is not None
        assert (log.torn.offset, log.torn.size) == (whole, 26)
        assert log.torn.preview.startswith('{"seq":3')
        assert log_path.stat().st_size == whole
        assert verify(log_path).ok
        assert log.append("C")["seq"] == 3
    result = verify(log_path)
    assert result.ok and result.count == 3


def test_last_line_that_is_not_json_counts_as_torn(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append("A", durable=False)
    with open(log_path, "ab") as f:
        f.write(b"\x00\x00\x00garbage\n")
    assert read_events(log_path).torn is not None
    checked = verify(log_path)
    assert checked.ok and checked.notes and checked.torn is not None
    with EventLog.open(log_path, RUN) as log:
        assert log.torn is not None and log.append("B")["seq"] == 2
    assert verify(log_path).ok


def test_a_log_that_is_only_a_torn_line_starts_again_at_seq_1(log_path):
    log_path.parent.mkdir(parents=True)
    log_path.write_bytes(b'{"seq":1,"ti')
    with EventLog.open(log_path, RUN) as log:
        assert log.torn is not None and log.torn.offset == 0
        event = log.append("RUN_STARTED")
    assert event["seq"] == 1 and event["run_id"] == RUN
    assert verify(log_path).ok


def test_read_events_reports_a_torn_tail_and_leaves_the_file_alone(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append("A", durable=False)
    with open(log_path, "ab") as f:
        f.write(b'{"seq":2')
    size = log_path.stat().st_size
    result = read_events(log_path)
    assert [e["type"] for e in result.events] == ["A"]
    assert result.torn is not None and result.torn.size == 8
    assert log_path.stat().st_size == size
    assert [e["type"] for e in iter_events(log_path)] == ["A"]


def test_verify_reports_a_torn_tail_as_a_note_not_a_failure(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append("A", durable=False)
    with open(log_path, "ab") as f:
        f.write(b'{"seq":2')
    result = verify(log_path)
    assert result.ok and result.count == 1 and result.problems == []
    assert len(result.notes) == 1 and result.torn is not None


def test_a_bad_line_before_the_end_is_corruption(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append_many([("A",), ("B",), ("C",)], durable=False)
    lines = lines_of(log_path)
    lines[1] = b"not json at all\n"
    log_path.write_bytes(b"".join(lines))
    with pytest.raises(CorruptLog) as info:
        read_events(log_path)
    assert info.value.line_no == 2 and info.value.offset == len(lines[0])
    with pytest.raises(CorruptLog):
        list(iter_events(log_path))
    result = verify(log_path)
    assert not result.ok and result.first_bad_seq == 2


def test_torn_tail_left_by_another_writer_is_cut_before_appending(log_path):
    log = EventLog.open(log_path, RUN)
    try:
        log.append("A", durable=False)
        whole = log_path.stat().st_size
        with open(log_path, "ab") as f:  # another process died mid-append
            f.write(b'{"seq":2,"time"')
        assert log.append("B")["seq"] == 2
        assert log.torn is not None and log.torn.offset == whole
        assert log.take_foreign() == []
    finally:
        log.close()
    assert verify(log_path).ok and verify(log_path).count == 2


# -- the hash chain -----------------------------------------------------------------------------


def _reserialise(event: dict) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _rehash(event: dict, prev: str) -> dict:
    body = {k: v for k, v in event.items() if k != "hash"}
    event["hash"] = chain_hash(prev, _reserialise(body)[:-1])
    return event


def _tamper(lines: list[bytes], kind: str, i: int, j: int) -> int:
    """Apply one tampering in place; return the first seq verify must flag."""
    if kind == "edit":  # change an event, keep its hash
        event = json.loads(lines[i])
        event["data"]["tampered"] = True
        lines[i] = _reserialise(event)
        return i + 1
    if kind == "edit_and_rehash":  # change an event and fix its own hash: the next hash breaks
        event = json.loads(lines[i])
        event["data"]["tampered"] = True
        lines[i] = _reserialise(_rehash(event, json.loads(lines[i - 1])["hash"] if i else ""))
        return i + 2
    if kind == "remove":
        del lines[i]
        return i + 2
    assert kind == "swap"
    lines[i], lines[j] = lines[j], lines[i]
    return j + 1


event_specs = st.lists(
    st.tuples(
        st.sampled_from([t.value for t in EventType] + ["CUSTOM_TYPE"]),
        st.dictionaries(
            st.text(max_size=5),
            st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.none()),
            max_size=3,
        ),
        st.one_of(st.none(), st.sampled_from(["t1", "t2", "deploy-é"])),
    ),
    min_size=2,
    max_size=12,
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(specs=event_specs, data=st.data())
def test_any_single_tampering_breaks_the_chain_where_it_happened(specs, data):
    n = len(specs)
    kind = data.draw(st.sampled_from(["edit", "edit_and_rehash", "remove", "swap"]))
    if kind == "edit":
        i, j = data.draw(st.integers(0, n - 1)), 0
    elif kind in ("edit_and_rehash", "remove"):  # both leave the last event undetectable
        i, j = data.draw(st.integers(0, n - 2)), 0
    else:
        i = data.draw(st.integers(0, n - 2))
        j = data.draw(st.integers(i + 1, n - 1))
    with tempfile.TemporaryDirectory() as tmp:
        path = events_path(tmp, RUN)
        with EventLog.open(path, RUN) as log:
            log.append_many(specs, durable=False)
        assert verify(path).ok
        lines = lines_of(path)
        first_bad = _tamper(lines, kind, i, j)
        path.write_bytes(b"".join(lines))
        result = verify(path)
    assert not result.ok
    assert result.first_bad_seq == first_bad
    assert result.problems


def test_removing_the_first_event_is_detected(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append_many([("A",), ("B",)], durable=False)
    log_path.write_bytes(b"".join(lines_of(log_path)[1:]))
    result = verify(log_path)
    assert not result.ok and result.first_bad_seq == 2


def test_an_untouched_log_verifies(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append_many([(t.value, {"i": 1}) for t in EventType], durable=False)
    result = verify(log_path)
    assert result.ok and result.count == len(EventType) and result.first_bad_seq is None


# -- several writers ----------------------------------------------------------------------------

WRITER = r"""
import sys
from harness.eventlog import EventLog
path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = EventLog.open(path, "RUN_ID")
print("ready", flush=True)
sys.stdin.readline()
i = 0
while i < count:
    if i % 4 == 3:
        log.append_many([("W", {"w": name, "i": i + k}) for k in range(3)])
        i += 3
    else:
        log.append("W", {"w": name, "i": i}, durable=i % 2 == 0)
        i += 1
log.close()
""".replace("RUN_ID", RUN)


def _start_writer(path: Path, name: str, count: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), name, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def _wait_ready(proc: subprocess.Popen[bytes]) -> None:
    ready: queue.Queue[bytes] = queue.Queue()
    out = proc.stdout
    assert out is not None
    threading.Thread(target=lambda: ready.put(out.readline()), daemon=True).start()
    assert ready.get(timeout=TIMEOUT) == b"ready\n"


def test_two_processes_appending_at_once_make_one_chain_without_lost_or_doubled_seq(log_path):
    EventLog.open(log_path, RUN).close()
    count = 150
    procs = [_start_writer(log_path, name, count) for name in ("a", "b")]
    try:
        for proc in procs:
            _wait_ready(proc)
        for proc in procs:  # release both at once
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        for proc in procs:
            proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=TIMEOUT)
    result = verify(log_path)
    assert result.ok, result.problems
    events = read_events(log_path).events
    assert [e["seq"] for e in events] == list(range(1, 2 * count + 1))
    for name in ("a", "b"):
        mine = [e["data"]["i"] for e in events if e["data"]["w"] == name]
        assert mine == list(range(count))  # nothing lost, nothing doubled, in order


def test_take_foreign_returns_what_another_writer_appended(log_path):
    ours = EventLog.open(log_path, RUN)
    theirs = EventLog.open(log_path, RUN)
    try:
        ours.append("RUN_STARTED", durable=False)
        approved = theirs.append("GATE_APPROVED", {"source": "cli"}, durable=False)
        assert approved["seq"] == 2  # the other writer caught up first
        mine = ours.append("BOOTSTRAP_PHASE_STARTED", durable=False)
        assert mine["seq"] == 3
        assert ours.take_foreign() == [approved]
        assert ours.take_foreign() == []
        assert [e["seq"] for e in theirs.take_foreign()] == [1, 3]
    finally:
        ours.close()
        theirs.close()
    assert verify(log_path).ok


def test_take_foreign_sees_another_process_while_this_one_only_waits(log_path):
    log = EventLog.open(log_path, RUN)
    try:
        log.append("GATE_APPROVAL_REQUESTED")
        proc = _start_writer(log_path, "cli", 2)
        try:
            _wait_ready(proc)
            proc.communicate(b"go\n", timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=TIMEOUT)
        foreign = log.take_foreign()
        assert [(e["seq"], e["data"]["w"]) for e in foreign] == [(2, "cli"), (3, "cli")]
        assert log.last_seq == 3
        assert log.append("GATE_APPROVED")["seq"] == 4
    finally:
        log.close()
    assert verify(log_path).ok


def test_threads_sharing_one_log_never_reuse_a_seq(log_path):
    log = EventLog.open(log_path, RUN)

    def work(k: int) -> None:
        for i in range(40):
            log.append("WORKER_EVENT", {"k": k, "i": i}, durable=i % 8 == 0)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
            assert not t.is_alive()
    finally:
        log.close()
    result = verify(log_path)
    assert result.ok and result.count == 160


def test_a_thread_in_fsync_does_not_block_another_threads_append(log_path, monkeypatch):
    log = EventLog.open(log_path, RUN)
    in_fsync, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def slow_first_sync(fd: int) -> None:
        if not in_fsync.is_set():
            in_fsync.set()
            assert release.wait(TIMEOUT)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_first_sync)
    durable = threading.Thread(target=log.append, args=("TASK_STARTED",))
    try:
        durable.start()
        assert in_fsync.wait(TIMEOUT)
        assert log.append("WORKER_EVENT", durable=False)["seq"] == 2  # while seq 1 syncs
        assert durable.is_alive()
    finally:
        release.set()
        durable.join(TIMEOUT)
        log.close()
    assert not durable.is_alive()
    assert verify(log_path).count == 2


def test_lines_from_another_writer_that_break_the_chain_raise_chain_conflict(log_path):
    log = EventLog.open(log_path, RUN)
    try:
        first = log.append("A", durable=False)
        forged = {k: v for k, v in first.items() if k != "run_id"} | {"seq": 2}
        with open(log_path, "ab") as f:
            f.write(_reserialise(_rehash(forged, "f" * 22)))  # hashed after another line than ours
        with pytest.raises(ChainConflict):
            log.append("B")
    finally:
        log.close()


# -- following ----------------------------------------------------------------------------------


def test_follow_yields_events_as_they_are_appended_and_stops_when_told(log_path):
    stop = threading.Event()
    seen: queue.Queue[dict] = queue.Queue()

    def reader() -> None:
        for event in follow(log_path, stop=stop, poll=0.01):
            seen.put(event)

    thread = threading.Thread(target=reader)
    thread.start()  # before the file exists: follow waits for it
    try:
        with EventLog.open(log_path, RUN) as log:
            for i in range(3):
                appended = log.append("TASK_COMPLETED", {"i": i}, durable=False)
                assert seen.get(timeout=TIMEOUT) == appended
    finally:
        stop.set()
        thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert seen.empty()


def _split_last_line(path: Path, at: int) -> bytes:
    """Cut the last line of the file at ``at`` bytes; return the rest of it."""
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:at])
    return lines[-1][at:]


def _stop_after(actions: list[Any]) -> Callable[[], bool]:
    """A stop callable that runs one action per poll and says stop when they are used up."""
    remaining = list(actions)

    def stop() -> bool:
        if not remaining:
            return True
        remaining.pop(0)()
        return False

    return stop


def test_follow_waits_for_the_newline_of_a_partial_line(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append_many([("A",), ("B",)], durable=False)
    rest = _split_last_line(log_path, 30)
    progress: list[str] = []

    def complete_line() -> None:
        with open(log_path, "ab") as f:
            f.write(rest)
        progress.append("completed")

    stop = _stop_after([lambda: None, complete_line])
    got = [(e["type"], list(progress)) for e in follow(log_path, stop=stop, poll=0.001)]
    assert got == [("A", []), ("B", ["completed"])]


def test_follow_sees_a_torn_tail_rewritten_by_a_writer_as_the_new_event(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append("A", durable=False)
    with open(log_path, "ab") as f:
        f.write(b'{"seq":2,"time":"2026')
    written: list[dict] = []

    def writer_reopens_and_appends() -> None:
        with EventLog.open(log_path, RUN) as log:
            written.append(log.append("B", {"x": 1}, durable=False))

    stop = _stop_after([lambda: None, writer_reopens_and_appends])
    got = list(follow(log_path, stop=stop, poll=0.001))
    assert [e["type"] for e in got] == ["A", "B"] and got[1] == written[0]


def test_follow_from_seq_skips_earlier_events(log_path):
    with EventLog.open(log_path, RUN) as log:
        log.append_many([("A",), ("B",), ("C",)], durable=False)
    got = list(follow(log_path, stop=lambda: True, from_seq=2))
    assert [e["seq"] for e in got] == [3]


# -- runs ---------------------------------------------------------------------------------------


def test_new_run_ids_sort_by_time_and_list_runs_puts_the_newest_last(tmp_path):
    ids = [new_run_id(now=t) for t in (1768487025.0, 1700000000.0, 1768490000.0)]
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", i) for i in ids)
    for run_id in ids:
        EventLog.open(events_path(tmp_path, run_id), run_id).close()
    (tmp_path / ".harness" / "runs" / "empty-folder").mkdir()
    assert list_runs(tmp_path) == sorted(ids) == [ids[1], ids[0], ids[2]]
    assert list_runs(tmp_path / "nowhere") == []


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "", ".hidden"])
def test_run_dir_refuses_ids_that_could_leave_the_runs_folder(tmp_path, bad):
    with pytest.raises(ValueError):
        run_dir(tmp_path, bad)
