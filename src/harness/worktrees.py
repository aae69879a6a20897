"""Git worktrees: one per agent task, an integration branch per run, and the user's branch untouched.

    harness/RUN            the run's integration branch, from the run's base commit; each task's
                           work is merged into it (in dependency order) once its tests pass
    harness-task/RUN/TASK  one task's branch, from the integration branch as it was when the
                           attempt started (so the work of its dependencies is in it); not under
                           harness/RUN/, since git cannot have both a branch and branches below it
    .harness/worktrees/RUN/TASK           that branch, checked out for the agent
    .harness/worktrees/RUN/.integration   the integration branch, checked out for merging

Every call is a bounded ``git`` subprocess with a clean environment; nothing here decides
anything. The supervisor records each step in the log before it takes it, so ``resume`` can
undo what the log did not accept (:func:`reconcile`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GitError",
    "MergeConflict",
    "NotARepository",
    "Worktrees",
    "is_repository",
]

GIT_TIMEOUT = 120.0
INTEGRATION = ".integration"
#: Who the harness's commits are by, unless the repository configures someone.
IDENTITY = {"GIT_AUTHOR_NAME": "harness", "GIT_AUTHOR_EMAIL": "harness@localhost"}


class GitError(Exception):
    """A git command failed; the message holds its output."""


class NotARepository(GitError):
    """Agent tasks need a git repository (each works in its own worktree)."""


class MergeConflict(GitError):
    """A task's branch does not merge cleanly into the integration branch."""

    def __init__(self, branch: str, files: list[str], detail: str) -> None:
        self.branch = branch
        self.files = files
        super().__init__(f"merging {branch} conflicts in {', '.join(files) or 'some files'}: {detail}")


def _env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_OPTIONAL_LOCKS="0")
    return env


def git(
    cwd: str | os.PathLike[str],
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> str:
    """Run ``git args`` in ``cwd`` (``input`` on its stdin, else none); its stdout (stripped).
    Raises GitError when it fails."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env={**_env(), **(env or {})},
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed (agent tasks work in git worktrees)") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {' '.join(args[:2])} did not finish in {GIT_TIMEOUT:g} s") from exc
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def is_repository(path: str | os.PathLike[str]) -> bool:
    try:
        return git(path, "rev-parse", "--is-inside-work-tree", check=False) == "true"
    except GitError:
        return False


@dataclass(frozen=True)
class Worktrees:
    """The worktrees and branches of one run in one workspace."""

    workspace: Path
    run_id: str

    # -- names ------------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.workspace / ".harness" / "worktrees" / self.run_id

    @property
    def integration_branch(self) -> str:
        return f"harness/{self.run_id}"

    @property
    def integration_path(self) -> Path:
        return self.root / INTEGRATION

    def branch(self, task_id: str) -> str:
        return f"harness-task/{self.run_id}/{task_id}"

    def path(self, task_id: str) -> Path:
        return self.root / task_id

    # -- the run ----------------------------------------------------------------------------------
    def require_repository(self) -> None:
        if not is_repository(self.workspace):
            raise NotARepository(
                f"{self.workspace} is not a git repository: agent tasks each work in their own git worktree. "
                f"Make it one (git init && git add -A && git commit -m 'initial'), or give those tasks commands"
            )
        if not git(self.workspace, "rev-parse", "--verify", "--quiet", "HEAD", check=False):
            raise NotARepository(f"{self.workspace} has no commit yet: commit once (git add -A && git commit)")

    def head(self) -> str:
        return git(self.workspace, "rev-parse", "HEAD")

    def tip(self, branch: str | None = None) -> str | None:
        out = git(
            self.workspace,
            "rev-parse",
            "--verify",
            "--quiet",
            f"refs/heads/{branch or self.integration_branch}",
            check=False,
        )
        return out or None

    def ensure_integration(self, base: str) -> None:
        """The integration branch (from ``base``) and its worktree, created if missing; ``.harness/``
        is listed in the repository's own exclude file so the user's ``git status`` stays clean."""
        self._exclude_harness()
        if self.tip() is None:
            git(self.workspace, "branch", self.integration_branch, base)
        if not (self.integration_path / ".git").exists():
            self._prune()
            self.root.mkdir(parents=True, exist_ok=True)
            git(self.workspace, "worktree", "add", "--quiet", str(self.integration_path), self.integration_branch)

    # -- one task ---------------------------------------------------------------------------------
    def create(self, task_id: str) -> str:
        """A fresh worktree for the task, on its branch made from the integration tip; the start commit."""
        self.remove(task_id)
        start = self.tip()
        if start is None:
            raise GitError(f"the integration branch {self.integration_branch} is missing")
        git(self.workspace, "worktree", "add", "--quiet", "-b", self.branch(task_id), str(self.path(task_id)), start)
        return start

    def commit(self, task_id: str, message: str) -> str | None:
        """Commit everything the task changed in its worktree; the commit, or None when nothing changed."""
        return commit_all(self.path(task_id), message)

    def changes(self, task_id: str) -> str:
        """Everything the task changed since its branch left the integration branch, as a diff
        (saved for the record before the worktree of an attempt not accepted goes)."""
        where = self.path(task_id)
        if not where.exists():
            return ""
        base = git(where, "merge-base", "HEAD", self.integration_branch, check=False) or "HEAD"
        git(where, "add", "-A", "--", ".")
        return git(where, "diff", "--cached", base)

    def merge(self, task_id: str, message: str) -> str:
        """Merge the task's branch into the integration branch; the new integration tip.
        On a conflict the merge is undone and :class:`MergeConflict` names the files."""
        where = self.integration_path
        branch = self.branch(task_id)
        proc = subprocess.run(
            ["git", "merge", "--no-ff", "--no-edit", "-m", message, branch],
            cwd=where,
            env={**_env(), **_identity(where)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
        )
        if proc.returncode != 0:
            files = git(where, "diff", "--name-only", "--diff-filter=U", check=False).split()
            git(where, "merge", "--abort", check=False)
            raise MergeConflict(branch, files, (proc.stdout + proc.stderr).strip()[-400:])
        return git(where, "rev-parse", "HEAD")

    def merge_into_checkout(self, message: str) -> tuple[str, str]:
        """Merge the integration branch into the workspace's current branch: (that branch, the new HEAD)."""
        into = git(self.workspace, "rev-parse", "--abbrev-ref", "HEAD")
        proc = subprocess.run(
            ["git", "merge", "--no-ff", "--no-edit", "-m", message, self.integration_branch],
            cwd=self.workspace,
            env={**_env(), **_identity(self.workspace)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
        )
        if proc.returncode != 0:
            git(self.workspace, "merge", "--abort", check=False)
            raise GitError((proc.stdout + proc.stderr).strip()[-400:] or "git merge failed")
        return into, git(self.workspace, "rev-parse", "HEAD")

    def reset_integration(self, commit: str) -> None:
        """Move the integration branch back to ``commit`` (undo a merge the log did not accept)."""
        git(self.integration_path, "reset", "--quiet", "--hard", commit)

    def remove(self, task_id: str, *, branch: bool = True) -> None:
        """The task's worktree (and branch) gone, whatever state they are in."""
        where = self.path(task_id)
        if where.exists():
            git(self.workspace, "worktree", "remove", "--force", str(where), check=False)
            if where.exists():
                shutil.rmtree(where, ignore_errors=True)
        self._prune()
        if branch and self.tip(self.branch(task_id)):
            git(self.workspace, "branch", "-D", self.branch(task_id), check=False)

    def present(self) -> list[str]:
        """Task ids that have a worktree folder now."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != INTEGRATION)

    def branches(self) -> list[str]:
        out = git(
            self.workspace,
            "for-each-ref",
            "--format=%(refname:short)",
            f"refs/heads/harness/{self.run_id}",
            check=False,
        )
        more = git(
            self.workspace,
            "for-each-ref",
            "--format=%(refname:short)",
            f"refs/heads/harness/{self.run_id}/",
            check=False,
        )
        return sorted(set(out.split()) | set(more.split()))

    def clean(self) -> list[str]:
        """Every worktree and branch of the run removed; what was removed."""
        gone = []
        for tid in self.present():
            self.remove(tid)
            gone.append(str(self.path(tid)))
        if self.integration_path.exists():
            git(self.workspace, "worktree", "remove", "--force", str(self.integration_path), check=False)
            shutil.rmtree(self.integration_path, ignore_errors=True)
            gone.append(str(self.integration_path))
        self._prune()
        for branch in self.branches():
            git(self.workspace, "branch", "-D", branch, check=False)
            gone.append(branch)
        if self.root.is_dir() and not any(self.root.iterdir()):
            self.root.rmdir()
        return gone

    def _exclude_harness(self) -> None:
        exclude = Path(self.workspace, git(self.workspace, "rev-parse", "--git-path", "info/exclude"))
        try:
            lines = exclude.read_text(encoding="utf-8").splitlines() if exclude.exists() else []
            if ".harness/" not in lines and "/.harness/" not in lines:
                exclude.parent.mkdir(parents=True, exist_ok=True)
                with exclude.open("a", encoding="utf-8") as f:
                    f.write(("\n" if lines and lines[-1] else "") + "/.harness/\n")
        except OSError:
            pass  # only cosmetic: untracked .harness/ would show in git status

    def _prune(self) -> None:
        git(self.workspace, "worktree", "prune", check=False)


def _identity(where: Path) -> dict[str, str]:
    """The harness's name on commits and merges, unless the repository (or the user) sets one."""
    if git(where, "config", "user.email", check=False):
        return {}
    return {
        **IDENTITY,
        "GIT_COMMITTER_NAME": IDENTITY["GIT_AUTHOR_NAME"],
        "GIT_COMMITTER_EMAIL": IDENTITY["GIT_AUTHOR_EMAIL"],
    }


def commit_all(where: Path, message: str) -> str | None:
    """Commit everything changed in the worktree ``where``; the commit, or None when nothing changed."""
    git(where, "add", "-A", "--", ".")
    if not git(where, "status", "--porcelain"):
        return None
    git(where, "commit", "--quiet", "--no-verify", "-F", "-", env=_identity(where), input=message)
    return git(where, "rev-parse", "HEAD")


def trailers(pairs: Sequence[tuple[str, str]]) -> str:
    """Git trailers (``Key: value`` lines) tying a commit to the log."""
    return "\n".join(f"{key}: {' '.join(str(value).split())}" for key, value in pairs if value not in (None, ""))
