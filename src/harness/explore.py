"""Explore mode's git work: a snapshot of the workspace as it is, and the patch a run leaves.

An explore run works on a copy: the run's integration branch, made from a *snapshot* commit of
the working tree (tracked changes and untracked files that are not ignored, uncommitted work
included). The snapshot is written through a temporary index file, so neither the user's files
nor their index or branch change. Shell tasks run in the integration worktree and their work is
committed there after each attempt; agent tasks branch from it and merge into it as always. At
the end the difference between the snapshot and the branch is saved as a patch, which
`harness apply` brings into the workspace behind a confirmation.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .worktrees import _identity, git

__all__ = ["Patch", "apply_patch", "diff", "snapshot"]


def snapshot(workspace: Path) -> str:
    """A commit of the working tree as it is now (parent: HEAD), made without touching the
    working tree, the index or any branch. ``.harness/`` is left out."""
    with tempfile.TemporaryDirectory(prefix="harness-snapshot-") as tmp:
        env = {**_identity(workspace), "GIT_INDEX_FILE": os.path.join(tmp, "index")}
        git(workspace, "read-tree", "HEAD", env=env)
        git(workspace, "add", "-A", "--", ".", ":(exclude).harness", env=env)
        tree = git(workspace, "write-tree", env=env)
        head = git(workspace, "rev-parse", "HEAD")
        if tree == git(workspace, "rev-parse", "HEAD^{tree}"):
            return head  # nothing uncommitted: the snapshot is HEAD itself
        message = "harness: snapshot of the workspace for an explore run\n"
        return git(workspace, "commit-tree", tree, "-p", head, env=env, input=message)


@dataclass(frozen=True)
class Patch:
    text: str
    files: list[str]
    insertions: int
    deletions: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def diff(workspace: Path, base: str, tip: str) -> Patch:
    """What the run changed: ``base..tip`` as a binary-safe patch, with its files and line counts."""
    text = git(workspace, "diff", "--binary", "--no-color", base, tip, "--", ".", ":(exclude).harness")
    files = [
        f for f in git(workspace, "diff", "--name-only", base, tip, "--", ".", ":(exclude).harness").splitlines() if f
    ]
    added = removed = 0
    for line in git(workspace, "diff", "--numstat", base, tip, "--", ".", ":(exclude).harness").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            added += int(parts[0])
            removed += int(parts[1])
    return Patch(text + ("\n" if text and not text.endswith("\n") else ""), files, added, removed)


def apply_patch(workspace: Path, patch: Path, *, check_only: bool = False) -> None:
    """Apply ``patch`` to the working tree (not the index); checked first, so a patch that does not
    apply changes nothing and GitError says why. ``check_only``: the check alone."""
    git(workspace, "apply", "--whitespace=nowarn", "--check", str(patch))
    if not check_only:
        git(workspace, "apply", "--whitespace=nowarn", str(patch))
