"""The driver's side of an agent task: its worktree, its prompt, and how its work lands.

    prepare   INTEGRATION_CREATED (once) -> WORKTREE_CREATED -> git worktree add
    prompt    built from the workspace's instructions, the packet, the dependencies' outcomes and
              the previous attempt's failure; saved in the worker's folder, hashed into TASK_STARTED
    land      tests passed: commit (trailers tie it to the log) -> MERGE_STARTED -> merge into the
              integration branch -> TASK_COMPLETED; a conflict is a failure of its own class
    settle    the worktree goes (WORKTREE_REMOVED); an attempt not accepted leaves its diff behind
    reconcile on resume: worktrees of attempts the log did not accept are removed, a merge it did
              not accept is undone

Each step is an event before it is a side effect, so the log explains every worktree and branch.
In explore mode the integration branch starts from a snapshot of the working tree (:mod:`..explore`),
shell tasks run in its worktree and their work is committed there after the attempt's verdict is
logged (trailers name the run, task and attempt); EXPLORE_DIFF records the patch at the end.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..agents.prompt import Dependency, Previous, build_prompt, digest
from ..events import EventType as E
from ..explore import diff, snapshot
from ..state import RunState, TaskStatus
from ..worktrees import MergeConflict, Worktrees, commit_all, trailers

Emit = Callable[..., Any]


class AgentWork:
    def __init__(
        self, workspace: Path, run_id: str, emit: Emit, state: Callable[[], RunState], *, explore: bool = False
    ) -> None:
        self.trees = Worktrees(workspace, run_id)
        self._emit = emit
        self._state = state
        self._git = threading.Lock()  # one git operation on the run's branches at a time
        self.explore = explore  # the run works on a snapshot of the workspace (explore mode)
        # explore mode: the integration worktree is where shell tasks run and where agents' work is
        # merged; one of them at a time (taken before self._git, never after)
        self.tree_lock = threading.Lock()

    # -- the integration branch ---------------------------------------------------------------------
    def _integration(self) -> None:
        """The integration branch and worktree, made once and recorded first (held: self._git).
        From HEAD; in explore mode from a snapshot of the working tree as it is."""
        state = self._state()
        if state.integration is None:
            self.trees.require_repository()
            base = snapshot(self.trees.workspace) if self.explore else self.trees.head()
            made: dict[str, Any] = {
                "branch": self.trees.integration_branch,
                "base": base,
                "path": str(self.trees.integration_path),
            }
            if self.explore:
                made["snapshot"] = True
            self._emit(E.INTEGRATION_CREATED, made, durable=True)
            self.trees.ensure_integration(base)
        else:
            self.trees.ensure_integration(state.integration["base"])

    def explore_tree(self) -> str:
        """Explore mode: where shell tasks run (the integration worktree, made on first use)."""
        with self._git:
            self._integration()
        return str(self.trees.integration_path)

    def keep_shell_work(self, tid: str, attempt: int, outcome: str) -> str | None:
        """Explore mode: commit what a shell task's attempt changed in the integration worktree, so
        later tasks (agents' worktrees included) start from it; the commit or None."""
        packet = self._state().packets.get(tid) or {}
        message = f"{packet.get('title') or tid} ({outcome})\n\n" + trailers(
            [("Harness-Run", self.trees.run_id), ("Harness-Task", tid), ("Harness-Attempt", str(attempt))]
        )
        with self._git:
            if not self.trees.integration_path.exists():
                return None
            return commit_all(self.trees.integration_path, message)

    def explore_diff(self, run_dir: Path) -> dict[str, Any] | None:
        """Explore mode, at the end: the patch from the snapshot to the branch, saved in the run's
        folder; the EXPLORE_DIFF payload (None when the run made no integration branch)."""
        state = self._state()
        if state.integration is None:
            return None
        with self._git:
            base = state.integration["base"]
            tip = self.trees.tip() or base
            patch = diff(self.trees.workspace, base, tip)
        path = None
        if patch.text:
            path = run_dir / "explore.patch"
            path.write_text(patch.text, encoding="utf-8")
        return {
            "base": base,
            "tip": tip,
            "files": patch.files,
            "insertions": patch.insertions,
            "deletions": patch.deletions,
            "patch": str(path) if path else None,
            "sha256": patch.sha256 if path else None,
        }

    # -- before the attempt -------------------------------------------------------------------------
    def prepare(self, tid: str, attempt: int) -> str:
        """The attempt's fresh worktree (the integration branch first, if this is the first)."""
        with self._git:
            self._integration()
            created = {
                "attempt": attempt,
                "path": str(self.trees.path(tid)),
                "branch": self.trees.branch(tid),
                "start": self.trees.tip(),
            }
            self._emit(E.WORKTREE_CREATED, created, task_id=tid, durable=True)
            self.trees.create(tid)
        return str(self.trees.path(tid))

    def prompt(self, tid: str, workdir: str, worker_dir: str) -> dict[str, Any]:
        """Write the attempt's prompt in the worker's folder; what TASK_STARTED records of it."""
        state = self._state()
        packet = state.packets[tid]
        t = state.tasks[tid]
        deps = [
            Dependency(d, state.tasks[d].title, state.tasks[d].agent_message or "completed")
            for d in packet.get("depends_on", [])
            if d in state.tasks and state.tasks[d].status is TaskStatus.completed
        ]
        previous = None
        if t.failure is not None and t.attempts:
            f = t.failure
            previous = Previous(
                attempt=int(f.get("attempt") or t.attempts),
                summary=str(f.get("summary") or f.get("reason") or "failed"),
                failure_type=t.failure_type,
                test_output="\n".join(x for x in (f.get("stdout_tail"), f.get("stderr_tail")) if x),
                agent_message=str(f.get("agent_message") or t.agent_message or ""),
                conflict=tuple(f.get("conflict") or ()),
                note=t.decision_note,
            )
        text = build_prompt(
            packet, workdir=workdir, system_prompt=_system_prompt(state), dependencies=deps, previous=previous
        )
        os.makedirs(worker_dir, exist_ok=True)
        Path(worker_dir, "prompt.md").write_text(text, encoding="utf-8")
        return {"prompt_sha256": digest(text), "prompt_bytes": len(text.encode("utf-8")), "worktree": workdir}

    # -- after the attempt ----------------------------------------------------------------------------
    def land(self, tid: str, attempt: int, agent: dict[str, Any] | None) -> tuple[str | None, str | None]:
        """Commit the task's work and merge it into the integration branch: (commit, new tip).
        Raises MergeConflict (the merge is undone) when it does not merge cleanly."""
        state = self._state()
        packet = state.packets[tid]
        approval = state.approval or {}
        message = (
            f"{packet.get('title') or tid}\n\n{packet.get('objective') or ''}".rstrip()
            + "\n\n"
            + trailers(
                [
                    ("Harness-Run", self.trees.run_id),
                    ("Harness-Task", tid),
                    ("Harness-Attempt", str(attempt)),
                    (
                        "Harness-Agent",
                        " ".join(x for x in ((agent or {}).get("agent"), (agent or {}).get("model")) if x),
                    ),
                    ("Harness-Approved-By", f"{approval.get('approver', '')} via {approval.get('source', '')}"),
                    ("Harness-Tests", "; ".join(packet.get("acceptance_tests") or [])),
                ]
            )
        )
        with self.tree_lock if self.explore else contextlib.nullcontext(), self._git:
            commit = self.trees.commit(tid, message)
            if commit is None:
                return None, self.trees.tip()
            before = self.trees.tip() or ""
            self._emit(
                E.MERGE_STARTED, {"attempt": attempt, "commit": commit, "before": before}, task_id=tid, durable=True
            )
            merged = self.trees.merge(tid, f"Merge {tid} (attempt {attempt}) into {self.trees.integration_branch}")
            return commit, merged

    def settle(self, tid: str, attempt: int, *, accepted: bool, worker_dir: str | None) -> None:
        """The attempt is over: its worktree and branch go; a rejected attempt's diff is kept."""
        saved = None
        with self._git:
            if not accepted and worker_dir is not None:
                diff = self.trees.changes(tid)
                if diff:
                    saved = os.path.join(worker_dir, "changes.diff")
                    os.makedirs(worker_dir, exist_ok=True)
                    Path(saved).write_text(diff, encoding="utf-8")
            reason = "accepted: merged" if accepted else "not accepted"
            self._emit(E.WORKTREE_REMOVED, {"attempt": attempt, "reason": reason, "diff": saved}, task_id=tid)
            self.trees.remove(tid)

    def reconcile(self) -> list[str]:
        """On resume: undo merges the log did not accept, remove every task worktree (no attempt runs
        now; the interrupted ones re-run in fresh worktrees). Returns what was done, for the person."""
        notes: list[str] = []
        state = self._state()
        if state.integration is None:
            return notes
        with self._git:
            self.trees.ensure_integration(state.integration["base"])
            for task in state.task_list():
                if task.merge_before:
                    self.trees.reset_integration(task.merge_before)
                    notes.append(f"undid the merge of {task.id}, which the log did not accept")
            for tid in self.trees.present():
                t = state.tasks.get(tid)
                removed = {"attempt": t.attempts if t is not None else None, "reason": "left by an earlier supervisor"}
                self._emit(E.WORKTREE_REMOVED, removed, task_id=tid if t is not None else None)
                self.trees.remove(tid)
                notes.append(f"removed the worktree of {tid} left by an earlier supervisor")
        return notes

    def finish(self) -> None:
        """The run ended: the integration worktree goes (its branch stays for `harness merge`)."""
        with self._git:
            path = self.trees.integration_path
            if path.exists():
                from ..worktrees import git

                git(self.trees.workspace, "worktree", "remove", "--force", str(path), check=False)


def _system_prompt(state: RunState) -> str:
    phase = state.bootstrap.get("system_prompt_fastpath") or {}
    path = (phase.get("artifacts") or {}).get("path")
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


__all__ = ["AgentWork", "MergeConflict"]
