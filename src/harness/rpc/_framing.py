"""Newline-delimited JSON framing, written once for servers and clients alike.

One message is one line of compact UTF-8 JSON. ``encode`` never emits a raw newline inside a
message (``json.dumps`` escapes control characters in strings). ``LineReader`` reads lines up to a
size limit; a longer line is skipped to its end and reported, so the stream goes on. ``LineWriter``
is the single writer of a stream: a lock makes every line one uninterrupted write.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

#: Default maximum size of one line, in bytes (configurable per reader).
DEFAULT_MAX_LINE = 4 * 1024 * 1024


def _plain(value: Any) -> Any:
    """What the encoder does with a value JSON has no word for: a pydantic model is its JSON dump
    (by alias), nested anywhere in a message; anything else is refused."""
    dump = getattr(value, "model_dump", None)
    if dump is None:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return dump(mode="json", by_alias=True)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_plain).encode
_dumps_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=_plain).encode
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],]')
_ID_MEMBER = re.compile(rb'\s*"id"\s*:\s*(-?(?:0|[1-9]\d*)|"(?:[^"\\]|\\.)*")\s*[,}]')


def encode(obj: Any) -> bytes:
    """One compact JSON line, newline-terminated, always valid UTF-8.

    Text holding a lone surrogate (possible after decoding ``"\\ud800"``) cannot be UTF-8
    encoded; such a message is written with ASCII escapes instead, which carries it exactly.
    """
    try:
        return _dumps(obj).encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return _dumps_ascii(obj).encode("ascii") + b"\n"


def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


_fast_loads: Any = None


def decode(line: bytes) -> Any:
    """Decode one line (bytes, without or with its newline). Raises ValueError when not JSON,
    including Python's extensions NaN, Infinity and -Infinity, which no other peer would accept.

    pydantic-core's parser (a dependency already) reads a message about 3x faster than
    ``json.loads``; whatever it refuses (a lone surrogate escape, say) is asked again of
    ``json.loads``, the reference, so the two agree on every line."""
    global _fast_loads
    if _fast_loads is None:
        from pydantic_core import from_json

        _fast_loads = from_json
    try:
        return _fast_loads(line, allow_inf_nan=False)
    except ValueError:
        return json.loads(line, parse_constant=_no_constants)


def sniff_id(head: bytes) -> int | str | None:
    """Best effort: the top-level id of a line too large (or too broken) to parse.

    Scans strings and brackets to know the nesting depth, so an ``"id"`` inside params is never
    taken for the message's own; a number must be a whole JSON integer. None when unsure: a wrong
    id would be worse than null, it could fail somebody else's request.
    """
    depth = 0
    expect_member = False
    pos = 0
    while True:
        m = _TOKEN.search(head, pos)
        if m is None:
            return None
        tok = m.group()
        if depth == 1 and expect_member:
            member = _ID_MEMBER.match(head, m.start())
            if member is not None:
                try:
                    value = json.loads(member.group(1))
                except ValueError:
                    return None
                return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None
        if tok in (b"{", b"["):
            depth += 1
            expect_member = tok == b"{"
        elif tok in (b"}", b"]"):
            depth -= 1
            expect_member = False
        elif tok == b",":
            expect_member = True
        else:
            expect_member = False
        pos = m.end()


@dataclass(frozen=True, slots=True)
class Oversized:
    """Stands in for a line that exceeded the limit; ``head`` holds its first bytes."""

    size: int
    head: bytes


class LineReader:
    """Reads newline-terminated lines from a binary stream, bounding each line's size."""

    def __init__(self, stream: IO[bytes], max_line: int = DEFAULT_MAX_LINE) -> None:
        self._stream = stream
        self.max_line = max_line

    def read(self) -> bytes | Oversized | None:
        """The next line (stripped of its newline), an Oversized marker, or None at EOF."""
        line = self._stream.readline(self.max_line + 1)
        if not line:
            return None
        if line.endswith(b"\n"):
            return line[:-1]
        if len(line) <= self.max_line:
            return line  # last line without a newline, at EOF
        head, size = line[:512], len(line)
        while True:  # discard the rest of the oversized line, bounded memory
            chunk = self._stream.readline(65536)
            size += len(chunk)
            if not chunk or chunk.endswith(b"\n"):
                break
        return Oversized(size, head)

    def __iter__(self) -> Iterator[bytes | Oversized]:
        while (line := self.read()) is not None:
            yield line


class LineWriter:
    """The single writer of a stream: each ``write`` puts one whole line, under a lock."""

    def __init__(self, stream: IO[bytes] | int) -> None:
        self._fd: int | None = stream if isinstance(stream, int) else None
        self._stream = None if isinstance(stream, int) else stream
        self._lock = threading.Lock()
        self.closed = False

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._fd is not None:
                view = memoryview(data)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
            else:
                assert self._stream is not None
                view = memoryview(data)
                while view:  # an unbuffered stream may take part of a large write
                    n = self._stream.write(view)
                    view = view[n or 0 :] if n is not None else view[len(view) :]
                self._stream.flush()

    def send(self, obj: Any) -> None:
        self.write(encode(obj))

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                if self._fd is not None:
                    os.close(self._fd)
                elif self._stream is not None:
                    self._stream.close()
            except OSError:
                pass
