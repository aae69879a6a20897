"""The run's event log: durable, hash-chained, append-only; the single source of truth of a run.

A run lives in ``<workspace>/.harness/runs/<run_id>/events.jsonl``. Each line is one event, compact
UTF-8 JSON with its keys in a fixed order::

    {"seq":1,"unix":1768487025.123,"type":"RUN_STARTED","run_id":"...","data":{...},"hash":"..."}
    {"seq":2,"unix":1768487025.129,"type":"TASK_STARTED","task_id":"t1","worker_id":"w1","data":{...},"hash":"..."}

``task_id`` and ``worker_id`` are left out when null; ``run_id`` is on the first line only (the
folder names the run too). ``hash`` chains each line to the one before: it is the first 16 bytes
(128 bits), base64url without padding (22 characters), of ``sha256(hash of the line before + this
line without its hash field)``, the line before's hash being empty for the first line. The stored line is that object
with ``,"hash":"<hash>"`` inserted before its final ``}``, so a checker strips the suffix textually
and rehashes: no re-serialisation, hence no dependence on any JSON library's output. An edited,
removed, inserted or moved line breaks the chain from there on; :func:`verify` says where.

Logs written before this chain (log format 2) carry ``time``, ``run_id`` and ``prev`` (the hash of
the line before, 64 zeros for the first) on every line and a 64-hex ``sha256`` of the line without
its hash. They are read and verified as they are, and a handle opened on one appends in its chain;
which chain a log uses is told by the length of its hashes. The shape is :class:`harness.models.Event`.

Durability is counted in fsyncs. :meth:`EventLog.append` writes one line with one ``os.write``
and makes it durable with one ``fdatasync`` before returning; :meth:`EventLog.append_many` writes
a whole group with one write and one fdatasync (group commit); ``durable=False`` writes now and
lets the next durable append (or :meth:`EventLog.sync`) cover it.

Several processes may append to one log (the supervisor, and ``harness approve`` from another
terminal). Every append holds an exclusive ``flock`` on the file while it reads what others
appended since, numbers its events and writes them; the fsync runs after the lock is released,
so one writer's fsync never stalls another's write. Events appended by others are handed to the
owner through :meth:`EventLog.take_foreign`, so the supervisor can fold them.

A crash can leave a torn last line (no newline, or not JSON). Readers report it (:class:`Torn`)
and ignore it; a writer truncates it before appending, so the chain goes on from the last whole
event. Any other unreadable line is corruption and raises :class:`CorruptLog`.

    EventLogError          (anything the log refuses)
    ├── CorruptLog         a line other than the last is not a JSON event (.offset, .line_no)
    ├── ChainConflict      lines appended by another writer do not continue the chain
    ├── LogClosed          the log was closed; open it again with EventLog.open
    └── LogFailed          an fsync failed: what is on disk is unknown, so the log stops
"""

from __future__ import annotations

import base64
import fcntl
import gc
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = [
    "GENESIS",
    "ChainConflict",
    "CorruptLog",
    "EventLog",
    "EventLogError",
    "LogClosed",
    "LogFailed",
    "LogState",
    "ReadResult",
    "Torn",
    "VerifyResult",
    "event_time",
    "events_path",
    "follow",
    "iter_events",
    "list_runs",
    "new_run_id",
    "read_events",
    "run_dir",
    "verify",
]

#: ``prev`` of the first event of a chain-2 log.
GENESIS = "0" * 64
EVENTS_FILE = "events.jsonl"

#: The two chains (see the module's docstring): 3 since log format 3, 2 before.
CHAIN = 3
_HASH_KEY = b',"hash":"'
_HASH_LEN = {2: 64, 3: 22}
_HASH_RE = {2: re.compile(rb"[0-9a-f]{64}\Z"), 3: re.compile(rb"[A-Za-z0-9_-]{22}\Z")}
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_TAIL_CHUNK = 64 * 1024
_FOLLOW_CHUNK = 4 * 1024 * 1024
_PREVIEW = 80

_encode_utf8 = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_encode_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode


# -- errors ---------------------------------------------------------------------------------------


class EventLogError(Exception):
    """The event log refused an operation; the message says why and what to do."""


class CorruptLog(EventLogError):
    """A line that is not the last one is not a JSON event: the file was damaged or edited."""

    def __init__(self, message: str, *, offset: int, line_no: int | None) -> None:
        super().__init__(message)
        self.offset = offset
        self.line_no = line_no


class ChainConflict(EventLogError):
    """Lines another writer appended do not continue this writer's chain (seq, prev or hash)."""


class LogClosed(EventLogError):
    """The log was closed by its owner and then used."""


class LogFailed(EventLogError):
    """An fsync failed. What reached the disk is unknown, so the log refuses further appends."""


# -- small value types ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Torn:
    """A torn tail: bytes after the last whole event (a crash mid-append)."""

    offset: int  # where the torn bytes start; the file is whole up to here
    size: int  # how many bytes are torn
    preview: str  # their first bytes, decoded leniently, for the report

    def describe(self) -> str:
        return f"torn tail of {self.size} bytes at offset {self.offset} ignored: {self.preview!r}"


@dataclass(slots=True)
class ReadResult:
    """Every whole event of a log, in file order, and the torn tail if there was one."""

    events: list[dict[str, Any]]
    torn: Torn | None = None


@dataclass(slots=True)
class VerifyResult:
    """What :func:`verify` found. A torn tail is a note, not a failure of the chain."""

    ok: bool
    count: int
    problems: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None
    notes: list[str] = field(default_factory=list)
    torn: Torn | None = None


class LogState(Enum):
    """Lifecycle of an :class:`EventLog` handle."""

    OPEN = "open"  # appends allowed
    CLOSED = "closed"  # closed by its owner; open the file again to append
    FAILED = "failed"  # an fsync failed; nothing more is appended through this handle


# -- paths and run ids ----------------------------------------------------------------------------


def run_dir(workspace: str | os.PathLike[str], run_id: str) -> Path:
    """The folder of one run. The id is checked so that it can never name a path outside."""
    if not _RUN_ID.match(run_id):
        raise ValueError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
    return Path(workspace) / ".harness" / "runs" / run_id


def events_path(workspace: str | os.PathLike[str], run_id: str) -> Path:
    """The event log file of one run."""
    return run_dir(workspace, run_id) / EVENTS_FILE


def new_run_id(now: float | None = None) -> str:
    """A fresh run id that sorts by creation time: ``20260115-142345-a1b2c3`` (UTC)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def list_runs(workspace: str | os.PathLike[str]) -> list[str]:
    """The ids of the runs in a workspace that have an event log, oldest first, newest last."""
    root = Path(workspace) / ".harness" / "runs"
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    return sorted(
        e.name
        for e in entries
        if e.is_dir() and _RUN_ID.match(e.name) and os.path.isfile(os.path.join(e.path, EVENTS_FILE))
    )


# -- encoding -------------------------------------------------------------------------------------

_stamp_cache: tuple[int, str] = (-1, "")


def _rfc3339(unix: float) -> str:
    """``2026-01-15T14:23:45.123Z`` for a unix time; the seconds part is cached per second."""
    global _stamp_cache
    millis = int(unix * 1000)
    sec, ms = divmod(millis, 1000)
    cached_sec, prefix = _stamp_cache
    if cached_sec != sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _stamp_cache = (sec, prefix)
    return f"{prefix}.{ms:03d}Z"


def event_time(event: dict[str, Any]) -> str:
    """The RFC 3339 time of an event: its ``time`` (chain-2 logs) or its unix seconds."""
    stamp = event.get("time")
    if isinstance(stamp, str):
        return stamp
    unix = event.get("unix")
    return _rfc3339(float(unix)) if isinstance(unix, int | float) else ""


def _chain_hash(chain: int, prev: str, body: bytes) -> str:
    """The hash of one line's ``body`` (the line without its hash field) after ``prev``."""
    if chain == 2:
        return hashlib.sha256(body).hexdigest()
    digest = hashlib.sha256(prev.encode("ascii") + body).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")  # 128 bits


def _genesis(chain: int) -> str:
    return GENESIS if chain == 2 else ""


def _encode_event(
    seq: int,
    unix: float,
    type_: str,
    run_id: str,
    task_id: str | None,
    worker_id: str | None,
    data: dict[str, Any] | None,
    prev: str,
    chain: int = CHAIN,
) -> tuple[bytes, str]:
    """One stored line (with its newline) and its hash."""
    if not isinstance(type_, str) or not type_:
        raise TypeError(f"event type must be a non-empty string, not {type_!r}")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise TypeError(f"event data must be a dict, not {type(data).__name__}")
    obj: dict[str, Any]
    if chain == 2:
        obj = {"seq": seq, "time": _rfc3339(unix), "unix": unix, "type": str(type_), "run_id": run_id}
    else:
        obj = {"seq": seq, "unix": unix, "type": str(type_)}
        if seq == 1:
            obj["run_id"] = run_id
    if task_id is not None:
        obj["task_id"] = _check_id("task_id", task_id)
    if worker_id is not None:
        obj["worker_id"] = _check_id("worker_id", worker_id)
    obj["data"] = data
    if chain == 2:
        obj["prev"] = prev
    try:
        body = _encode_utf8(obj).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (say, from undecodable process output) has no UTF-8 form; the
        # escaped spelling is still valid JSON and reads back to the same string.
        body = _encode_ascii(obj).encode("ascii")
    digest = _chain_hash(chain, prev, body)
    return b"".join((body[:-1], _HASH_KEY, digest.encode("ascii"), b'"}\n')), digest


def _check_id(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, not {type(value).__name__}")
    return value


def _split_hash(line: bytes) -> tuple[bytes, str, int] | None:
    """(the hashed body, the stored hash, its chain) of one line without its newline, or None if
    the line does not end with a hash field of either chain."""
    if line[-2:] != b'"}':
        return None
    for chain, size in _HASH_LEN.items():
        cut = len(line) - 2 - size - len(_HASH_KEY)
        if cut > 0 and line[cut : cut + len(_HASH_KEY)] == _HASH_KEY:
            stored = line[-2 - size : -2]
            if _HASH_RE[chain].match(stored):
                return line[:cut] + b"}", stored.decode("ascii"), chain
    return None


def _chain_of(event: dict[str, Any]) -> int:
    """The chain of a parsed event, from its stored hash."""
    digest = event.get("hash")
    return 2 if isinstance(digest, str) and len(digest) == 64 else 3


# -- decoding -------------------------------------------------------------------------------------

_fast_loads: Callable[[bytes], Any] | None = None


def _loads_fn() -> Callable[[bytes], Any]:
    """The fastest strict JSON parser at hand: pydantic-core's (a dependency already; about 3x
    ``json.loads`` on event lines), imported on first use to keep start-up cheap."""
    global _fast_loads
    if _fast_loads is None:
        try:
            from pydantic_core import from_json
        except ImportError:  # pragma: no cover - pydantic is a hard dependency
            _fast_loads = json.loads
        else:
            _fast_loads = from_json
    return _fast_loads


def _parse_line(line: bytes, fast: Callable[[bytes], Any]) -> dict[str, Any] | None:
    """The event on one line, or None if the line is not a JSON object. ``json.loads`` is the
    reference: the fast parser's refusals (lone surrogate escapes) are asked again there."""
    try:
        value = fast(line)
    except ValueError:
        try:
            value = json.loads(line)
        except ValueError:
            return None
    return value if type(value) is dict else None


def _preview(data: bytes) -> str:
    return data[:_PREVIEW].decode("utf-8", "replace")


class _GcPaused:
    """Pauses the cyclic collector while many small dicts are built: the collector's passes
    over the young objects cost 40% of a large read and find nothing (events are trees)."""

    def __enter__(self) -> None:
        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was:
            gc.enable()


def _read_locked(path: str | os.PathLike[str], start: int = 0) -> bytes:
    """The file from byte ``start`` to its end, read under a shared lock so that no append is
    seen half written. A file shorter than ``start`` raises :class:`EventLogError`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            size = os.fstat(fd).st_size
            if size < start:
                raise EventLogError(f"{path} is shorter ({size} bytes) than what was read of it ({start})")
            chunks = []
            offset = start
            while offset < size:
                chunk = os.pread(fd, size - offset, offset)
                if not chunk:
                    break
                chunks.append(chunk)
                offset += len(chunk)
            return b"".join(chunks)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _whole_end(data: bytes, fast: Callable[[bytes], Any]) -> int:
    """THE torn-tail rule, the one place it is written. ``data`` runs from a line start to the end
    of the file; the result is where its torn tail starts (``len(data)`` when there is none).

    A crash mid-append leaves at most one damaged line, the last: bytes after the last newline, or
    a last whole line that is not a JSON object (a write cut inside it, then a newline of a later
    append). Both are torn: reported, ignored by readers, cut by the next writer. Every line before
    the torn tail must be a JSON event; a bad one there is corruption, never a tear.
    """
    end = data.rfind(b"\n") + 1
    if end == 0:
        return 0
    start = data.rfind(b"\n", 0, end - 1) + 1
    return end if _parse_line(data[start : end - 1], fast) is not None else start


def _torn(data: bytes, cut: int, base: int) -> Torn | None:
    return Torn(base + cut, len(data) - cut, _preview(data[cut:])) if cut < len(data) else None


def _strict(whole: bytes, base: int, fast: Callable[[bytes], Any]) -> tuple[list[bytes], list[dict[str, Any]]]:
    """The lines of ``whole`` (complete lines, before any torn tail) and their events; a line that
    is not a JSON event raises :class:`CorruptLog`."""
    lines = whole.split(b"\n")
    lines.pop()  # the empty string after the last newline
    with _GcPaused():
        try:
            events = [fast(line) for line in lines]
            if all(type(e) is dict for e in events):
                return lines, events
        except ValueError:
            pass
        events = []
        offset = base
        for i, line in enumerate(lines):
            event = _parse_line(line, fast)
            if event is None:
                where = f"line {i + 1} (offset {offset})" if base == 0 else f"offset {offset}"
                raise CorruptLog(f"{where} is not a JSON event; run `harness log verify`", offset=offset, line_no=i + 1)
            events.append(event)
            offset += len(line) + 1
    return lines, events


def _read(data: bytes, base: int = 0) -> tuple[list[bytes], list[dict[str, Any]], Torn | None]:
    """Lines, events and torn tail of a buffer that runs from a line start to the end of the file."""
    fast = _loads_fn()
    cut = _whole_end(data, fast)
    lines, events = _strict(data[:cut], base, fast)
    return lines, events, _torn(data, cut, base)


def read_events(path: str | os.PathLike[str]) -> ReadResult:
    """Every whole event of a log, fast (one pass, one parse per line, collector paused).

    A torn tail (see :func:`_whole_end`) is reported in ``.torn`` and left out. A bad line anywhere
    else raises :class:`CorruptLog`. Hashes are not checked here; that is :func:`verify`'s job.
    """
    _, events, torn = _read(_read_locked(path))
    return ReadResult(events, torn)


def iter_events(path: str | os.PathLike[str], chunk: int = 1 << 20) -> Iterator[dict[str, Any]]:
    """The events of a log one by one, in bounded memory. Same rules as :func:`read_events`: a
    torn tail ends the iteration quietly, a bad line before the end raises :class:`CorruptLog`.
    The last whole line of each chunk is held back until more follows, since the torn-tail rule
    may apply to it."""
    fast = _loads_fn()
    with open(path, "rb") as f:
        base, carry = 0, b""
        while True:
            more = f.read(chunk)
            data = carry + more
            if not more:
                cut = _whole_end(data, fast)
                yield from _strict(data[:cut], base, fast)[1]
                return
            last = data.rfind(b"\n")
            held = data.rfind(b"\n", 0, last) + 1 if last > 0 else 0
            yield from _strict(data[:held], base, fast)[1]
            base, carry = base + held, data[held:]


def read_since(path: str | os.PathLike[str], offset: int) -> tuple[list[dict[str, Any]], int]:
    """The whole events from byte ``offset`` (a line start a previous call returned) to the end,
    and the offset to read from next. What may still be a torn tail is left for the next call,
    as :func:`follow` does. A log cut below ``offset`` raises :class:`EventLogError`: the caller
    reads it again from 0."""
    data = _read_locked(path, offset)
    with _GcPaused():
        consumed, events = _follow_chunk(data, offset, _loads_fn())
    return events, offset + consumed


# -- verification ---------------------------------------------------------------------------------


def verify(path: str | os.PathLike[str]) -> VerifyResult:
    """Check the whole chain: every line's hash (which covers the hash before it), ``seq``
    counting up by one from 1, and one run id. An edited event fails its own hash; a removed,
    duplicated or moved event breaks ``seq`` and the chain where it was. (Cutting events off the
    end leaves a shorter valid chain; compare ``count`` with what you expect to catch that.) A torn
    tail is a note. Both chains are read (see the module's docstring); a log mixing them fails.
    """
    data = _read_locked(path)
    fast = _loads_fn()
    cut = _whole_end(data, fast)
    torn = _torn(data, cut, 0)
    lines = data[:cut].split(b"\n")
    lines.pop()
    result = VerifyResult(ok=True, count=0, torn=torn)
    expected_seq, prev_hash, run_id = 1, "", None
    chain: int | None = None

    def bad(seq: int | None, message: str) -> None:
        result.problems.append(message)
        if result.first_bad_seq is None:
            result.first_bad_seq = seq if seq is not None else expected_seq

    with _GcPaused():
        for i, line in enumerate(lines):
            event = _parse_line(line, fast)
            if event is None:
                bad(None, f"line {i + 1}: not a JSON event")
                expected_seq += 1
                continue
            result.count += 1
            raw_seq = event.get("seq")
            seq = raw_seq if isinstance(raw_seq, int) else None
            where = f"seq {raw_seq!r} (line {i + 1})"
            split = _split_hash(line)
            stored: str | None = None
            if split is None:
                bad(seq, f"{where}: no hash field at the end")
            else:
                body, stored, line_chain = split
                if chain is None:
                    chain = line_chain
                    prev_hash = _genesis(chain)
                if line_chain != chain:
                    bad(seq, f"{where}: its hash is of another chain than the log's first line")
                elif _chain_hash(chain, prev_hash, body) != stored:
                    what = "the event was edited" if chain == 2 else "the event was edited, or one before it changed"
                    bad(seq, f"{where}: hash mismatch, {what}")
            if seq != expected_seq:
                bad(seq, f"{where}: expected seq {expected_seq}; an event was removed or moved")
            if chain == 2 and event.get("prev") != prev_hash:
                bad(seq, f"{where}: prev does not match the hash of the event before it")
            named = event.get("run_id")
            if run_id is None:
                run_id = named
                if chain == 3 and i == 0 and not isinstance(named, str):
                    bad(seq, f"{where}: the first event does not name its run")
            elif named is not None and named != run_id:
                bad(seq, f"{where}: run_id {named!r} differs from {run_id!r}")
            elif chain == 2 and named is None:
                bad(seq, f"{where}: no run_id")
            expected_seq = (seq if seq is not None else expected_seq) + 1
            prev_hash = stored if stored is not None else str(event.get("hash"))
    if torn is not None:
        result.notes.append(torn.describe())
    result.ok = not result.problems
    return result


# -- following ------------------------------------------------------------------------------------


def follow(
    path: str | os.PathLike[str],
    *,
    stop: threading.Event | Callable[[], bool],
    poll: float = 0.1,
    from_seq: int = 0,
) -> Iterator[dict[str, Any]]:
    """Yield the events of a log as they are appended, from ``seq > from_seq`` on.

    A line is yielded only once its newline is there; a partial line is read again at the next
    poll, so a torn tail that a writer truncates and overwrites is seen as the new line. Waits for
    the file to appear. Stops once ``stop`` is set (or returns true) after a last pass, so every
    event appended before the stop is yielded. Events are never yielded twice (by seq).
    """
    if isinstance(stop, threading.Event):
        should_stop: Callable[[], bool] = stop.is_set
        wait: Callable[[float], object] = stop.wait
    else:
        should_stop, wait = stop, time.sleep
    fast = _loads_fn()
    last_seq = from_seq
    offset = 0  # start of the first line not yet consumed
    fd: int | None = None
    try:
        while True:
            stopping = should_stop()
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    fd = None
            if fd is not None:
                size = os.fstat(fd).st_size
                if size < offset:  # cut below what we consumed: re-read, dedupe by seq
                    offset = 0
                chunk = _FOLLOW_CHUNK
                while offset < size:
                    data = os.pread(fd, min(size - offset, chunk), offset)
                    consumed, events = _follow_chunk(data, offset, fast)
                    for event in events:
                        seq = event.get("seq")
                        if isinstance(seq, int) and seq > last_seq:
                            last_seq = seq
                            yield event
                    if consumed == 0:
                        if len(data) < size - offset:  # one line longer than the chunk
                            chunk *= 2
                            continue
                        break  # a partial (or not yet whole) line: wait for more
                    offset += consumed
            if stopping:
                return
            wait(poll)
    finally:
        if fd is not None:
            os.close(fd)


def _follow_chunk(data: bytes, base: int, fast: Callable[[bytes], Any]) -> tuple[int, list[dict[str, Any]]]:
    """(bytes consumed, events) of ``data``. What may still be a torn tail (see :func:`_whole_end`)
    is left unconsumed: it is read again once the writer cuts or completes it."""
    cut = _whole_end(data, fast)
    return cut, _strict(data[:cut], base, fast)[1]


# -- the writer -----------------------------------------------------------------------------------


def _datasync(fd: int) -> None:
    """fdatasync where the platform has it (looked up per call so tests can count calls)."""
    sync = getattr(os, "fdatasync", None) or os.fsync
    sync(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> list[Path]:
    """mkdir -p, returning the directories it created, outermost first."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        created.append(d)
    return created


def _scan_tail(fd: int, size: int) -> tuple[dict[str, Any] | None, Torn | None]:
    """The last whole event of a file and its torn tail, reading only the end of the file."""
    fast = _loads_fn()
    chunk = _TAIL_CHUNK
    while True:
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        if start > 0:  # begin at a line start: the first (partial) line belongs to an earlier chunk
            first = data.find(b"\n") + 1
            start, data = start + first, data[first:] if first else b""
        cut = _whole_end(data, fast)
        last_start = data.rfind(b"\n", 0, cut - 1) + 1 if cut else 0
        if cut == 0 and start > 0:
            chunk *= 2  # no whole line in this chunk: look further back
            continue
        torn = _torn(data, cut, start)
        if cut == 0:
            return None, torn  # no whole line at all
        event = _parse_line(data[last_start : cut - 1], fast)
        if event is None:
            offset = start + last_start
            raise CorruptLog(
                f"offset {offset}: not a JSON event; run `harness log verify`", offset=offset, line_no=None
            )
        return _check_tail_event(event, start + last_start), torn


def _check_tail_event(event: dict[str, Any], offset: int) -> dict[str, Any]:
    seq, digest = event.get("seq"), event.get("hash")
    if not isinstance(seq, int) or not isinstance(digest, str):
        raise CorruptLog(f"offset {offset}: the last event has no seq or hash", offset=offset, line_no=None)
    return event


EventSpec = tuple[Any, ...]  # (type, data, task_id, worker_id), trailing items optional


class EventLog:
    """An open, appendable event log (one per run per process). Thread-safe.

    Use :meth:`open`. Appends return the stored events as plain dicts, exactly as
    :func:`read_events` would return them later (``task_id``/``worker_id`` absent when null).
    """

    def __init__(self, path: Path, run_id: str, fd: int, clock: Callable[[], float], torn: Torn | None) -> None:
        self.path = path
        self.run_id = run_id
        self.torn = torn
        self._fd = fd
        self._clock = clock
        self._lock = threading.Lock()  # orders seq assignment and writes inside this process
        self._state = LogState.OPEN
        self._seq = 0
        self._chain = CHAIN  # a new log's; an existing one's is learnt from its last line
        self._hash = ""
        self._end = 0  # file size after the last line this handle knows of
        self._synced = 0  # every byte before this offset is known durable
        self._foreign: list[dict[str, Any]] = []

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        run_id: str,
        *,
        create: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> EventLog:
        """Open a log for appending, creating it (and its folders) when ``create``.

        Learns the last seq and hash from the end of the file. A torn tail is reported in
        ``.torn`` and truncated, so appends continue the chain from the last whole event.
        Raises FileNotFoundError when the file is missing and ``create`` is false.
        """
        path = Path(path)
        created_dirs = _make_dirs(path.parent) if create else []
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        created = False
        if create:
            try:
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                created = True
            except FileExistsError:
                fd = os.open(path, flags)
        else:
            fd = os.open(path, flags)
        try:
            if created:  # the new name (and new folders) must survive a crash too
                for d in {path.parent, *(d.parent for d in created_dirs)}:
                    _fsync_dir(d)
            log = cls(path, run_id, fd, clock, None)
            with log._lock:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    log._resync(os.fstat(fd).st_size)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        return log

    def close(self) -> None:
        """Make every written event durable and release the file. Idempotent."""
        with self._lock:
            if self._state is LogState.CLOSED:
                return
            failed = self._state is LogState.FAILED
            self._state = LogState.CLOSED
            try:
                if not failed and self._synced < self._end:
                    _datasync(self._fd)
            finally:
                os.close(self._fd)

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> LogState:
        return self._state

    @property
    def last_seq(self) -> int:
        """Seq of the last event this handle knows of (0 for an empty log)."""
        return self._seq

    @property
    def last_hash(self) -> str:
        return self._hash

    # -- appending ----------------------------------------------------------------------------

    def append(
        self,
        type: str,
        data: dict[str, Any] | None = None,
        *,
        task_id: str | None = None,
        worker_id: str | None = None,
        durable: bool = True,
    ) -> dict[str, Any]:
        """Append one event; when ``durable`` it is on disk (fdatasync) before this returns."""
        return self.append_many([(type, data, task_id, worker_id)], durable=durable)[0]

    def append_many(self, events: Iterable[EventSpec], durable: bool = True) -> list[dict[str, Any]]:
        """Append a group of ``(type, data, task_id, worker_id)`` events with one write and, when
        ``durable``, one fdatasync (group commit). All or none of the group is written."""
        specs = list(events)
        if not specs:
            return []
        with self._lock:
            self._check_open()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._catch_up()
                seq, prev = self._seq, self._hash
                parts = []
                for spec in specs:
                    type_, data, task_id, worker_id = _unpack(spec)
                    seq += 1
                    line, prev = _encode_event(
                        seq,
                        round(float(self._clock()), 6),
                        type_,
                        self.run_id,
                        task_id,
                        worker_id,
                        data,
                        prev,
                        self._chain,
                    )
                    parts.append(line)
                buf = b"".join(parts)
                self._write_all(buf)
                self._seq, self._hash = seq, prev
                self._end += len(buf)
                target = self._end
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        if durable:
            self._sync_to(target)
        # Parsed back from the stored bytes with the reader's parser, so that the caller folds
        # exactly what a later read_events returns (tuples become lists, no aliasing of data).
        fast = _loads_fn()
        return [_parse_line(line, fast) for line in parts]  # type: ignore[misc]

    def sync(self) -> None:
        """Make every event written so far durable (one fdatasync, none if nothing is pending)."""
        with self._lock:
            self._check_open()
            target = self._end
        self._sync_to(target)

    def take_foreign(self, look: bool = True) -> list[dict[str, Any]]:
        """The events other processes appended since the last call, in order.

        Looks at the file first (one fstat), so a supervisor that is only waiting, not
        appending, still sees what ``harness approve`` wrote from another terminal. Right after
        an append, which caught up under the file's lock, ``look=False`` skips that look.
        """
        with self._lock:
            if look and self._state is LogState.OPEN and os.fstat(self._fd).st_size != self._end:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                try:
                    self._catch_up()
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
            taken, self._foreign = self._foreign, []
        return taken

    # -- internals (called with self._lock held, and the flock where said) --------------------

    def _check_open(self) -> None:
        if self._state is LogState.CLOSED:
            raise LogClosed(f"{self.path}: the log was closed; open it again with EventLog.open")
        if self._state is LogState.FAILED:
            raise LogFailed(f"{self.path}: an fsync failed earlier; open the log again to go on")

    def _write_all(self, buf: bytes) -> None:
        """One write (a loop only on a short write). On error the partial line is cut off again,
        so the file never keeps half an event from us. Flock held."""
        start = self._end
        done = 0
        try:
            while done < len(buf):
                done += os.write(self._fd, buf[done:] if done else buf)
        except BaseException:
            if done:
                os.ftruncate(self._fd, start)
            raise

    def _sync_to(self, target: int) -> None:
        """fdatasync unless a sync that started after ``target`` was written already ran. No
        lock is held across the fsync, so other threads go on writing meanwhile."""
        if self._synced >= target:
            return
        covered = self._end  # everything written before the fsync starts is covered by it
        try:
            _datasync(self._fd)
        except OSError as exc:
            with self._lock:
                if self._state is LogState.OPEN:
                    self._state = LogState.FAILED
            raise LogFailed(f"{self.path}: fsync failed: {exc}") from exc
        with self._lock:
            if covered > self._synced:
                self._synced = covered

    def _resync(self, size: int) -> None:
        """Learn the last seq and hash from the file's end; cut a torn tail. Flock held."""
        last, torn = _scan_tail(self._fd, size)
        if torn is not None:
            os.ftruncate(self._fd, torn.offset)
            _datasync(self._fd)
            self.torn = torn
            size = torn.offset
        if last is None:
            self._chain = CHAIN
            self._seq, self._hash = 0, _genesis(CHAIN)
        else:
            named = last.get("run_id")
            if named is not None and named != self.run_id:
                raise EventLogError(f"{self.path} belongs to run {named!r}, not {self.run_id!r}")
            self._chain = _chain_of(last)
            self._seq, self._hash = last["seq"], last["hash"]
        self._end = self._synced = size

    def _catch_up(self) -> None:
        """Read what other writers appended since our last write; check that it continues the
        chain, keep it for take_foreign, and cut a torn tail a crashed writer left. Flock held."""
        size = os.fstat(self._fd).st_size
        if size == self._end:
            return
        if size < self._end:  # shrunk under us: only a tail cut by someone else; relearn
            self._resync(size)
            return
        data = os.pread(self._fd, size - self._end, self._end)
        lines, events, torn = _read(data, base=self._end)
        seq, prev = self._seq, self._hash
        offset = self._end
        for line, event in zip(lines, events, strict=True):
            split = _split_hash(line)
            if (
                event.get("seq") != seq + 1
                or split is None
                or split[2] != self._chain
                or (self._chain == 2 and event.get("prev") != prev)
                or _chain_hash(self._chain, prev, split[0]) != split[1]
            ):
                raise ChainConflict(
                    f"{self.path}: the event at offset {offset} does not continue the chain "
                    f"after seq {seq}; run `harness log verify`"
                )
            seq, prev = event["seq"], split[1]
            offset += len(line) + 1
        if torn is not None:  # offsets are absolute already (base=self._end)
            os.ftruncate(self._fd, torn.offset)
            _datasync(self._fd)
            self.torn = torn
            size = torn.offset
        self._foreign.extend(events)
        self._seq, self._hash, self._end = seq, prev, size


def _unpack(spec: EventSpec | Sequence[Any]) -> tuple[Any, Any, Any, Any]:
    if isinstance(spec, str):
        return spec, None, None, None
    n = len(spec)
    if not 1 <= n <= 4:
        raise TypeError("an event is (type, data, task_id, worker_id); trailing items optional")
    padded = tuple(spec) + (None,) * (4 - n)
    return padded[0], padded[1], padded[2], padded[3]
