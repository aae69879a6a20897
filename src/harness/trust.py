"""What the trust gate and the worker ids are, as the worker-manager contract defines them, for
both sides of it: the manager decides with these, and the supervisor can tell in advance what the
manager will decide (and so which worker a spawn makes) without asking."""

from __future__ import annotations

import hashlib
import os

__all__ = ["TRUSTED_ROOT", "is_inside", "real_path", "trusted_root", "worker_id_for_key"]

#: The trust source of a worker whose scope lies under a trusted root (its approver: that root).
TRUSTED_ROOT = "trusted_root"

#: Where the kernel names what an open descriptor refers to (Linux).
_FD_NAMES = "/proc/self/fd/"
_O_PATH = getattr(os, "O_PATH", 0)


def worker_id_for_key(key: str) -> str:
    """The id of the worker spawned with idempotency key ``key``: ``w-`` + 12 hex of its sha256."""
    return "w-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def real_path(path: str) -> str:
    """``os.path.realpath(path)``, asked of the kernel where it can tell: an existing path is
    opened (O_PATH, nothing read) and the name of its descriptor read back, three system calls
    however deep the path, where ``os.path.realpath`` makes one per component. Anything else (a
    path that does not exist, a loop, no /proc) goes to ``os.path.realpath``."""
    if _O_PATH:
        try:
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        except (OSError, ValueError):
            return os.path.realpath(path)
        try:
            named = os.readlink(_FD_NAMES + str(fd))
        except OSError:
            named = ""
        finally:
            os.close(fd)
        if named.startswith("/") and not named.endswith(" (deleted)"):
            return named
    return os.path.realpath(path)


def is_inside(path: str, root: str) -> bool:
    """True when real path ``path`` is ``root`` or below it (whole components, never a prefix).
    Both are real paths, so normalized: absolute, no ``.`` or ``..``, no trailing separator."""
    return path == root or path.startswith(root if root.endswith("/") else root + "/")


def trusted_root(scope: str, roots: list[str]) -> str | None:
    """The trusted root whose real path holds ``scope`` (a real path), if any."""
    for root in roots:
        if root and is_inside(scope, real_path(root)):
            return root
    return None
