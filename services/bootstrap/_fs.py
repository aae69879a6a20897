"""Small file-system helpers shared by the phases: stamps, digests, paths, atomic writes.

A phase's cache key is a digest of its context and of *stamps* of what it reads, so a stamp must
change whenever the content does: small files are stamped by content hash (mtime granularity can
hide a quick rewrite of the same length), large ones by size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

#: Files up to this size are stamped by content; larger ones by size and mtime.
HASH_LIMIT = 1 << 20

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode


def canonical(value: Any) -> str:
    """Deterministic compact JSON (sorted keys), the input of every digest."""
    return _dumps(value)


def digest(value: Any, length: int = 32) -> str:
    """A short hex digest of ``value``'s canonical JSON (128 bits by default)."""
    return hashlib.sha256(canonical(value).encode("utf-8")).hexdigest()[:length]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_stamp(path: Path) -> str | None:
    """What identifies this version of a file; None when there is no regular file there."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    if st.st_size > HASH_LIMIT:
        return f"size:{st.st_size}:mtime:{st.st_mtime_ns}"
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable:{exc.errno}"


def resolve_workspace(workspace: str) -> Path:
    """The workspace's real path (relative paths are taken from the service's cwd)."""
    return Path(os.path.realpath(os.path.expanduser(workspace)))


def resolve_under(base: Path, value: str) -> Path:
    """``value`` as an absolute path, relative ones taken from ``base``."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def find_git_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding a ``.git`` entry (dir or file)."""
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` so readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(text.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
