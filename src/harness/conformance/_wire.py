"""The kit's own view of a service's pipes: raw lines in, every line out recorded.

The kit cannot use :class:`harness.rpc.Peer`: a peer forgives what the kit must judge (it skips
lines that are not JSON and always writes well-formed requests). Here every byte the service puts
on stdout is kept, sorted and later checked, and the kit may write anything it likes, garbage
included. Every wait is bounded; the child runs in its own session and its whole process group is
killed when the kit is done with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

#: A line longer than this is recorded as a framing violation and not decoded.
MAX_LINE = 16 * 1024 * 1024
#: How much of the service's stderr a failure detail quotes.
STDERR_TAIL = 600


class LineKind(StrEnum):
    """What one stdout line turned out to be."""

    reply = "reply"  # has an id and a result or an error
    notification = "notification"  # has a method and no id
    request = "request"  # has a method and an id: the service asked us something
    not_json = "not_json"
    not_object = "not_object"
    not_message = "not_message"  # a JSON object that is none of the above


@dataclass(slots=True)
class Line:
    """One line the service wrote on stdout, as received."""

    raw: bytes
    kind: LineKind
    message: Any = None
    at: float = field(default_factory=time.monotonic)

    def preview(self, limit: int = 120) -> str:
        text = self.raw.decode("utf-8", errors="replace")
        return text if len(text) <= limit else text[: limit - 1] + "…"


class KitError(Exception):
    """A wait the kit did could not be satisfied; the message says why, for a check's detail."""


def classify(raw: bytes) -> Line:
    """Sort one stdout line (without its newline) into a :class:`Line`."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Line(raw, LineKind.not_json)
    if not isinstance(obj, dict):
        return Line(raw, LineKind.not_object, obj)
    if "method" in obj:
        return Line(raw, LineKind.request if "id" in obj else LineKind.notification, obj)
    if "id" in obj and ("result" in obj or "error" in obj):
        return Line(raw, LineKind.reply, obj)
    return Line(raw, LineKind.not_message, obj)


def _id_key(rid: Any) -> str:
    """Reply ids compared by their JSON text, so 1, 1.0 and "1" stay distinct."""
    return json.dumps(rid)


class Wire:
    """A started service program: write lines to its stdin, read sorted lines from its stdout."""

    def __init__(
        self, argv: Sequence[str], *, cwd: str | None, stderr_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self._stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=cwd,
                env=env,
                bufsize=0,
                start_new_session=True,
            )
        except OSError:
            self._stderr.close()
            raise
        self.lines: list[Line] = []
        self._replies: dict[str, list[Line]] = {}
        self._cv = threading.Condition()
        self._eof = False
        self._told_exit = False
        self._next_id = 0
        self.sent_ids: list[Any] = []
        self._reader = threading.Thread(target=self._read_loop, name="conformance-reader", daemon=True)
        self._reader.start()

    # -- reading --------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        assert self.proc.stdout is not None
        stream = self.proc.stdout
        try:
            while True:
                raw = stream.readline(MAX_LINE + 1)
                if not raw:
                    break
                if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                    while (rest := stream.readline(65536)) and not rest.endswith(b"\n"):
                        pass
                    self._add(Line(raw[:512], LineKind.not_json))
                    continue
                self._add(classify(raw.rstrip(b"\n").rstrip(b"\r") if raw.endswith(b"\n") else raw))
        except (OSError, ValueError):
            pass
        finally:
            with self._cv:
                self._eof = True
                self._cv.notify_all()

    def _add(self, line: Line) -> None:
        with self._cv:
            self.lines.append(line)
            if line.kind == LineKind.reply:
                self._replies.setdefault(_id_key(line.message.get("id")), []).append(line)
            self._cv.notify_all()

    # -- writing --------------------------------------------------------------------------------
    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def send_line(self, data: bytes) -> None:
        """Write one line (a newline is added). A closed pipe is the service's problem, not ours."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data + b"\n")
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise KitError(f"cannot write to the service: {exc}{self.exit_note()}") from exc

    def send(self, obj: Any, *, rid: Any = None) -> None:
        if rid is not None:
            self.sent_ids.append(rid)
        self.send_line(json.dumps(obj, separators=(",", ":")).encode("utf-8"))

    def request(
        self, method: str, params: Any = None, *, timeout: float, jsonrpc: bool = True, rid: Any = None
    ) -> dict[str, Any]:
        """Send a request and wait (bounded) for the reply carrying its id; return that reply."""
        rid = self.new_id() if rid is None else rid
        msg: dict[str, Any] = {"jsonrpc": "2.0"} if jsonrpc else {}
        msg.update({"id": rid, "method": method})
        if params is not None:
            msg["params"] = params
        self.send(msg, rid=rid)
        return self.wait_reply(rid, timeout)

    def wait_reply(self, rid: Any, timeout: float) -> dict[str, Any]:
        key = _id_key(rid)
        deadline = time.monotonic() + timeout
        with self._cv:
            while key not in self._replies:
                left = deadline - time.monotonic()
                if self._eof:
                    raise KitError(f"no reply to id {rid!r}: the service closed its stdout{self.exit_note()}")
                if left <= 0:
                    raise KitError(f"no reply to id {rid!r} within {timeout:g} s")
                self._cv.wait(left)
            return self._replies[key][0].message

    def mark(self) -> int:
        """A position in the stream of lines: ``wait_line(..., since=mark)`` looks only after it."""
        with self._cv:
            return len(self.lines)

    def wait_line(self, wanted: Callable[[Line], bool], *, since: int, timeout: float, what: str) -> Line:
        """The first line after ``since`` that ``wanted`` accepts; KitError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines[since:]:
                    if wanted(line):
                        return line
                since = len(self.lines)
                left = deadline - time.monotonic()
                if self._eof:
                    raise KitError(f"no {what}: the service closed its stdout{self.exit_note()}")
                if left <= 0:
                    raise KitError(f"no {what} within {timeout:g} s")
                self._cv.wait(left)

    # -- the process ----------------------------------------------------------------------------
    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def exit_note(self) -> str:
        """' (exit status N; stderr: ...)' once the process ended, else ''.

        The stderr tail is quoted the first time only: every later check fails for the same
        reason and the report should say it once.
        """
        code = self.wait_exit(0.5) if self._eof else self.proc.poll()
        if code is None:
            return ""
        tail = "" if self._told_exit else self.stderr_tail()
        self._told_exit = True
        return f" (exit status {code}" + (f"; stderr: {tail}" if tail else "") + ")"

    def stderr_tail(self) -> str:
        try:
            self._stderr.flush()
            data = self._stderr_path.read_bytes()
        except OSError:
            return ""
        text = " | ".join(data.decode("utf-8", errors="replace").strip().splitlines()[-4:])
        return text[-STDERR_TAIL:]

    def snapshot(self) -> list[Line]:
        with self._cv:
            return list(self.lines)

    def close(self) -> None:
        """End it all: close stdin, kill the process group, reap, join the reader (bounded)."""
        self.close_stdin()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.wait_exit(5.0)
        self._reader.join(2.0)
        if self.proc.stdout is not None:
            try:
                self.proc.stdout.close()
            except OSError:
                pass
        self._stderr.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
