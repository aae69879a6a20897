"""What the trust gate and the worker ids are, as the worker-manager contract defines them, for
both sides of it: the manager decides with these, and the supervisor can tell in advance what the
manager will decide (and so which worker a spawn makes) without asking."""

from __future__ import annotations

import hashlib
import os

__all__ = ["is_inside", "trusted_root", "worker_id_for_key"]


def worker_id_for_key(key: str) -> str:
    """The id of the worker spawned with idempotency key ``key``: ``w-`` + 12 hex of its sha256."""
    return "w-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def is_inside(path: str, root: str) -> bool:
    """True when real path ``path`` is ``root`` or below it (whole components, never a prefix)."""
    return os.path.commonpath([root, path]) == root


def trusted_root(scope: str, roots: list[str]) -> str | None:
    """The trusted root whose real path holds ``scope`` (a real path), if any."""
    for root in roots:
        if root and is_inside(scope, os.path.realpath(root)):
            return root
    return None
