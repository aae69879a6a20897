"""What a plan revision is, and what changed between two: the content hash and the diff.

An approval names the content it approves (``GATE_APPROVED.data.plan_hash``), so a plan that
changes afterwards, in the log or in the file the run was started with, is not run on the
strength of an approval of something else. The gate shows the diff from the previous revision
(``GATE_APPROVAL_REQUESTED.data.changes``) so a person sees what a rejection changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

if TYPE_CHECKING:
    from .state import RunState

__all__ = [
    "COMPARED_FIELDS",
    "PlanChanges",
    "describe_changes",
    "file_plan_hash",
    "plan_diff",
    "plan_hash",
    "resume_refusal",
]

#: The task fields whose difference makes a task "changed".
COMPARED_FIELDS = (
    "title",
    "objective",
    "scope_path",
    "depends_on",
    "commands",
    "acceptance_tests",
    "confirmation",
    "agent",
    "timeout",
    "risk",
)
#: What a plan file that no longer loads hashes to: never equal to a plan's hash.
UNREADABLE = "unreadable"


@with_config(ConfigDict(extra="forbid"))
class PlanChanges(TypedDict):
    """Task ids added and removed by a revision, and the compared fields that differ per kept id."""

    added: list[str]
    removed: list[str]
    changed: dict[str, list[str]]


def plan_hash(plan: Mapping[str, Any]) -> str:
    """The sha256 (hex) of the plan's canonical JSON: the same for the same content, whatever the
    order of its keys."""
    canonical = json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _field(task: Mapping[str, Any], name: str) -> Any:
    value = task.get(name)
    if value in (None, [], {}):
        return None  # absent, null and empty say the same
    if name == "depends_on":
        return sorted(value)  # the order of dependencies means nothing
    return value


def plan_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> PlanChanges:
    """Ids added (in the new plan's order), removed (in the old plan's order) and, per kept id, the
    :data:`COMPARED_FIELDS` that differ. ``old`` None: every task is added."""
    before = {t["id"]: t for t in (old or {}).get("tasks") or []}
    after = {t["id"]: t for t in new.get("tasks") or []}
    changed: dict[str, list[str]] = {}
    for tid, task in after.items():
        prev = before.get(tid)
        if prev is not None:
            fields = [f for f in COMPARED_FIELDS if _field(prev, f) != _field(task, f)]
            if fields:
                changed[tid] = fields
    return PlanChanges(
        added=[tid for tid in after if tid not in before],
        removed=[tid for tid in before if tid not in after],
        changed=changed,
    )


def describe_changes(
    changes: Mapping[str, Any],
    since: int,
    *,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
) -> str:
    """``Changes since revision 1: + t6 Write the guide; - t3 Old step; ~ t2 (acceptance_tests)``;
    titles come from the plans when they are given."""

    def titles(plan: Mapping[str, Any] | None) -> dict[str, str]:
        return {t["id"]: str(t.get("title") or "") for t in (plan or {}).get("tasks") or []}

    was, now = titles(old), titles(new)
    parts = [f"+ {tid} {now.get(tid, '')}".rstrip() for tid in changes.get("added") or []]
    parts += [f"- {tid} {was.get(tid, '')}".rstrip() for tid in changes.get("removed") or []]
    parts += [f"~ {tid} ({', '.join(fields)})" for tid, fields in (changes.get("changed") or {}).items()]
    return f"Changes since revision {since}: " + ("; ".join(parts) or "none")


def file_plan_hash(path: str) -> str | None:
    """The hash of the plan a plan file holds now (as ``harness run --plan`` loads it); None when
    the file is gone, :data:`UNREADABLE` when it no longer loads."""
    from .planfile import PlanFileError, load_plan_file

    if not os.path.isfile(path):
        return None
    try:
        return plan_hash(load_plan_file(path).model_dump(mode="json"))
    except PlanFileError:
        return UNREADABLE


def _shown(path: str) -> str:
    """The path as the person most likely typed it: relative when it is under the current directory."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith(os.pardir) else rel


def resume_refusal(state: RunState, file_hash: str | None) -> str | None:
    """Why a run must not go on as its log stands, or None.

    Two reasons: the log's plan is not the content its approval named (it was replaced without an
    approval), or the plan file the run came from (``file_hash``: what it holds now, see
    :func:`file_plan_hash`) is no longer the content recorded from it, so running the log's plan
    would not run what the file says.
    """
    if state.plan is None:
        return None
    run, rev = state.run_id, state.revision
    approved = state.approval.get("plan_hash") if state.approval and state.is_approved() else None
    if approved and approved != plan_hash(state.plan):
        return (
            f"the plan of run {run} is not the content approved (revision {rev} was approved as "
            f"{approved[:12]}, the log holds {plan_hash(state.plan)[:12]}): it was replaced without an approval; "
            f'approve it again with "harness approve {run}", or start a new run'
        )
    if file_hash is None or not state.plan_path or not state.plan_file_hash or file_hash == state.plan_file_hash:
        return None
    shown = _shown(state.plan_path)
    holds = f"the approved revision {rev}" if state.is_approved() else f"revision {rev}"
    started = [t.id for t in state.task_list() if t.attempts or t.status.value not in ("pending", "skipped")]
    if started:
        return (
            f"{shown} changed after run {run} started its tasks ({', '.join(started)}; the run still holds "
            f"{holds}): restore the file to continue this run, or start a new run with the edited file"
        )
    return (
        f"{shown} changed after run {run} was {'approved' if state.is_approved() else 'started'} "
        f'(the run still holds {holds}): approve the edited file with "harness approve {run} --plan {shown}", '
        "or start a new run"
    )
