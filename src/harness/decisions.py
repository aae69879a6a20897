"""Decisions recorded from outside a run: `harness approve` / `decide` and the dashboard.

Every way a person answers a run's question from outside the process that drives it ends here, so
the CLI and the web dashboard record exactly the same events, differing only in ``source`` and
``approver``. Each decision folds the log, checks the question is still open, and appends its
event under one lock per run (``decide.lock``), so two people answering at once cannot both win:
the second is told what the first decided (:class:`Stale`) and nothing is overwritten.

:func:`questions` lists what a run waits for, with the identity (``key``) of each question as
asked; a caller that shows a question passes its key back with the answer, and an answer to a
question that has since been answered, replaced or withdrawn is refused with what happened.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import eventlog
from .events import LOG_FORMAT, EventType, LogFormatError, log_format, upgrade
from .plandiff import plan_hash
from .state import RunState, RunStatus, TaskStatus, fold
from .vocab import ANSWERS, ESCALATION_DECISIONS, TASK_DECISIONS, Decision, Question, Source

E = EventType

__all__ = [
    "Refused",
    "Stale",
    "Waiting",
    "approve_plan",
    "asks",
    "decide_task",
    "decide_tool",
    "questions",
    "record",
]


class Refused(Exception):
    """A decision that cannot be recorded: a message, and the details that help fix the call."""

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        self.details = list(details)
        super().__init__(message)


class Stale(Refused):
    """The question was answered (or changed) elsewhere after it was shown: nothing was recorded."""


@dataclass(frozen=True)
class Waiting:
    """One open question of a run, as a person would be shown it."""

    kind: str  # plan | trust | manual | escalation | tool
    key: str  # the question's identity as asked: plan:REV, task:TASK:SEQ, tool:REQUEST
    task_id: str | None
    options: tuple[str, ...]  # the answers it allows (abort is always possible for an escalation)
    how: str  # the command line that answers it
    detail: dict[str, Any] = field(default_factory=dict)  # the asking event's data


# -- reading ----------------------------------------------------------------------------------------
def load(workspace: str | os.PathLike[str], run_id: str) -> tuple[list[dict[str, Any]], RunState]:
    """A run's events (in the current format) and their fold; Refused for a missing or foreign log."""
    path = eventlog.events_path(workspace, run_id)
    if not path.is_file():
        raise Refused(f"no run {run_id!r} in {os.fspath(workspace)}")
    events = eventlog.read_events(path).events
    try:
        events = upgrade(events)
    except LogFormatError as exc:
        raise Refused(str(exc)) from exc
    return events, fold(events)


_ASKING = {E.TASK_WAITING, E.TRUST_REQUIRED, E.WORKER_TRUST_REQUIRED, E.RECOVERY_ESCALATION}


def asks(event: Mapping[str, Any]) -> bool:
    """Whether an event asks a person a question about its task (an escalation that a flag or
    policy answered at once asks nothing)."""
    etype = event.get("type")
    return etype in _ASKING and not (etype == E.RECOVERY_ESCALATION and (event.get("data") or {}).get("decision"))


def _asked(events: list[dict[str, Any]], task_id: str) -> dict[str, Any] | None:
    """The event that asked the question a task waits on (its latest asking event)."""
    for event in reversed(events):
        if event.get("task_id") == task_id and asks(event):
            return event
    return None


def questions(state: RunState, asked_by: Mapping[str, dict[str, Any]]) -> list[Waiting]:
    """What the run waits for now: the plan gate, each waiting task, each open tool request.
    ``asked_by``: task id -> the event that asked its open question (see :func:`asks`)."""
    out: list[Waiting] = []
    run = state.run_id
    if state.plan is not None and state.status is RunStatus.awaiting_approval and not state.is_approved():
        out.append(
            Waiting(
                Question.plan,
                f"plan:{state.revision}",
                None,
                tuple(ANSWERS[Question.plan]),
                f"harness approve {run}",
                {"revision": state.revision},
            )
        )
    for task in state.task_list():
        if task.status is not TaskStatus.waiting or task.waiting_for is None or task.decision is not None:
            continue
        asked = asked_by.get(task.id)
        kind = Question(task.waiting_for)
        options: tuple[str, ...] = tuple(ANSWERS[kind])
        if kind is Question.escalation:
            offered = [str(o) for o in task.options or ESCALATION_DECISIONS]
            options = tuple(offered + ([Decision.abort] if Decision.abort not in offered else []))
        seq = asked["seq"] if asked else 0
        detail = dict((asked or {}).get("data") or {})
        out.append(
            Waiting(kind, f"task:{task.id}:{seq}", task.id, options, f"harness decide {run} {task.id} ...", detail)
        )
    for rid, request in state.tool_requests.items():
        out.append(
            Waiting(
                "tool",
                f"tool:{rid}",
                request.get("task_id"),
                ("allow", "deny"),
                f"harness decide {run} {request.get('task_id')} allow|deny",
                dict(request),
            )
        )
    return out


# -- recording --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _deciding(workspace: str | os.PathLike[str], run_id: str) -> Iterator[tuple[list[dict[str, Any]], RunState]]:
    """The run's decision lock, and its events and state read under it."""
    path = eventlog.events_path(workspace, run_id)
    if not path.is_file():
        raise Refused(f"no run {run_id!r} in {os.fspath(workspace)}")
    fd = os.open(path.parent / "decide.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield load(workspace, run_id)
    finally:
        os.close(fd)  # closing drops the lock


def record(
    workspace: str | os.PathLike[str], run_id: str, specs: list[tuple[EventType, dict[str, Any], str | None]]
) -> list[dict[str, Any]]:
    """Append events to a run's log from outside the process driving it (the log locks each
    append); Refused for a log of another format, which can be read but not changed."""
    path = eventlog.events_path(workspace, run_id)
    head = next(eventlog.iter_events(path), None)
    fmt = log_format([head] if head else [])
    if fmt != LOG_FORMAT:
        raise Refused(f"run {run_id} was recorded in log format {fmt} by another version; it can be read, not changed")
    log = eventlog.EventLog.open(path, run_id, create=False)
    try:
        return [log.append(etype, data, task_id=task_id, durable=True) for etype, data, task_id in specs]
    finally:
        log.close()


def _task(state: RunState, run_id: str, task_id: str) -> Any:
    task = state.tasks.get(task_id)
    if task is None:
        raise Refused(f"unknown task {task_id!r} in run {run_id}", [f"tasks: {', '.join(state.tasks) or '(none)'}"])
    return task


def _by(data: dict[str, Any]) -> str:
    who = data.get("approver") or data.get("rule") or "?"
    return f"{who} ({data.get('source', '?')})"


def _after(events: list[dict[str, Any]], types: set[str], task_id: str | None, seq: int) -> dict[str, Any] | None:
    for event in reversed(events):
        if event["seq"] <= seq:
            return None
        if event["type"] in types and (task_id is None or event.get("task_id") == task_id):
            return event
    return None


def approve_plan(
    workspace: str | os.PathLike[str],
    run_id: str,
    *,
    source: Source,
    approver: str,
    skip: Sequence[str] = (),
    keep_dependents: bool = False,
    order: Sequence[str] = (),
    reject: str | None = None,
    clarify: str | None = None,
    revision: int | None = None,
) -> dict[str, Any]:
    """Approve the plan's current revision (GATE_APPROVED), or reject it with feedback
    (GATE_REJECTED). ``revision``: the revision the person saw; another one is refused as Stale."""
    with _deciding(workspace, run_id) as (events, state):
        if state.plan is None:
            raise Refused(f"run {run_id} has no plan to approve")
        if revision is not None and revision != state.revision:
            raise Stale(f"the plan is now at revision {state.revision}, not the revision {revision} shown")
        approved = (state.approval or {}).get("plan_hash")
        if state.is_approved() and approved in (None, plan_hash(state.plan)):
            event = _after(events, {E.GATE_APPROVED}, None, 0)
            by = f" by {_by(event['data'])} at {eventlog.event_time(event)[:19]}" if event else ""
            raise Stale(f"run {run_id} is already approved (revision {state.revision}){by}")
        if state.status in (RunStatus.completed, RunStatus.aborted):
            raise Refused(f"run {run_id} has ended ({state.status.value})")
        unknown = [t for t in [*skip, *order] if t not in state.tasks]
        if unknown:
            raise Refused(f"unknown task id(s): {', '.join(unknown)}", [f"tasks: {', '.join(state.tasks)}"])
        base: dict[str, Any] = {"gate": "plan", "revision": state.revision, "source": source, "approver": approver}
        if reject or clarify:
            data = {**base, "feedback": reject or clarify, "kind": "reject" if reject else "clarify"}
            record(workspace, run_id, [(E.GATE_REJECTED, data, None)])
            return data
        data = {**base, "plan_hash": plan_hash(state.plan)}
        if skip:
            data["skip"] = list(skip)
            data["keep_dependents"] = keep_dependents
        if order:
            data["order"] = list(order)
        record(workspace, run_id, [(E.GATE_APPROVED, data, None)])
        return data


def decide_task(
    workspace: str | os.PathLike[str],
    run_id: str,
    task_id: str,
    decision: str,
    *,
    source: Source,
    approver: str,
    note: str | None = None,
    keep_dependents: bool = False,
    key: str | None = None,
) -> dict[str, Any]:
    """Answer a task's question (manual step, trust, escalation) with TASK_DECISION.
    ``key``: the question as shown (:attr:`Waiting.key`); another one is refused as Stale."""
    if decision not in TASK_DECISIONS:
        raise Refused(f"'{decision}' is not a task decision", [f"decisions: {', '.join(TASK_DECISIONS)}"])
    with _deciding(workspace, run_id) as (events, state):
        task = _task(state, run_id, task_id)
        if key is not None:
            asked = _asked(events, task_id)
            seq = int(key.rsplit(":", 1)[-1]) if key.count(":") == 2 and key.rsplit(":", 1)[-1].isdigit() else -1
            answered = _after(events, {E.TASK_DECISION}, task_id, seq)
            if answered is not None:
                d = answered["data"]
                raise Stale(
                    f"{task_id} was already answered '{d.get('decision')}' by {_by(d)} at {eventlog.event_time(answered)[:19]}"
                )
            if asked is None or asked["seq"] != seq or task.status is not TaskStatus.waiting:
                raise Stale(f"{task_id} no longer waits on that question (it is {task.status.value})")
        if task.status.value in ("completed", "skipped"):
            raise Refused(f"task {task_id} is already {task.status.value}")
        if task.decision is not None:
            raise Stale(f"{task_id} already has a decision waiting to be acted on: '{task.decision}'")
        if decision in ("retry", "skip") and task.failure_type:
            options = [str(o) for o in task.options or []]  # what the task's last escalation offered
            if options and decision not in options:
                raise Refused(
                    f"'{decision}' is not an option for {task_id} ({task.failure_type} failure)",
                    [f"options: {', '.join(options)} (abort is always possible)"],
                )
        data: dict[str, Any] = {"decision": decision, "source": source, "approver": approver}
        if note:
            data["note"] = note
        if decision == "skip":
            data["keep_dependents"] = keep_dependents
        record(workspace, run_id, [(E.TASK_DECISION, data, task_id)])
        return data


def decide_tool(
    workspace: str | os.PathLike[str],
    run_id: str,
    task_id: str,
    decision: str,
    *,
    source: Source,
    approver: str,
    note: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Answer the tool request a task's agent waits on (TOOL_PERMISSION_DECIDED); the driving
    supervisor picks it up. ``request_id``: the request as shown; a request answered meanwhile is Stale."""
    if decision not in ("allow", "deny"):
        raise Refused(f"a tool request is answered allow or deny, not '{decision}'")
    with _deciding(workspace, run_id) as (_, state):
        _task(state, run_id, task_id)
        if request_id is not None and request_id in state.tool_decisions:
            d = state.tool_decisions[request_id]
            raise Stale(f"that tool request was already answered '{d.get('decision')}' by {_by(d)}")
        pending = [
            r
            for r in state.tool_requests.values()
            if r.get("task_id") == task_id and (request_id is None or r.get("request_id") == request_id)
        ]
        if not pending:
            raise Refused(f"{task_id}'s agent is not waiting for a tool decision")
        request = pending[-1]
        data: dict[str, Any] = {
            "request_id": request["request_id"],
            "tool": request["tool"],
            "call": request["call"],
            "decision": decision,
            "source": source,
            "approver": approver,
        }
        if note:
            data["reason"] = note
        record(workspace, run_id, [(E.TOOL_PERMISSION_DECIDED, data, task_id)])
        return data


def driven(workspace: str | os.PathLike[str], run_id: str) -> bool:
    """Whether a harness process holds the run's lock (drives it) right now."""
    lock = eventlog.run_dir(workspace, run_id) / "lock"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
