"""A run's state as a pure fold of its event log.

Nothing the supervisor knows lives anywhere else: it appends an event, then applies that same
event to its :class:`RunState`. ``fold(events)`` rebuilds the identical state from the file, so
``harness resume``, ``harness status`` and a property test all see what the run saw.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    created = "created"
    awaiting_approval = "awaiting_approval"
    approved = "approved"
    bootstrapping = "bootstrapping"
    executing = "executing"
    waiting = "waiting"  # paused for a human decision (exit 3)
    completed = "completed"
    failed = "failed"
    aborted = "aborted"


class TaskStatus(StrEnum):
    pending = "pending"
    running = "running"  # TASK_STARTED without an outcome yet
    waiting = "waiting"  # a manual step or a decision is awaited
    completed = "completed"
    failed = "failed"  # failed for good (no retry pending)
    skipped = "skipped"


class ServiceState(StrEnum):
    """The supervised lifecycle of one service process."""

    stopped = "stopped"
    starting = "starting"
    running = "running"
    backoff = "backoff"
    fatal = "fatal"


TERMINAL_TASK = frozenset({TaskStatus.completed, TaskStatus.skipped, TaskStatus.failed})


@dataclass
class TaskState:
    id: str
    title: str
    depends_on: list[str]
    status: TaskStatus = TaskStatus.pending
    attempts: int = 0  # TASK_STARTED count
    worker_id: str | None = None
    trusted: bool = False
    trust_source: str | None = None
    waiting_for: str | None = None  # manual | trust | escalation
    decision: str | None = None  # latest unconsumed human decision (done, trust, retry, skip, abort)
    decision_note: str | None = None
    decision_keep_dependents: bool = False  # with a skip decision: its dependents still run
    decision_source: str | None = None
    manual_done: bool = False
    confirmed_by: str | None = None  # a human's (or policy's) explicit trust confirmation
    keep_dependents: bool = False  # when skipped: its dependents still run
    failure: dict[str, Any] | None = None
    failure_type: str | None = None
    retries: int = 0  # recovery retries consumed
    recovered: bool = False
    retry_at: float = 0.0  # unix time before which a scheduled retry must not start (backoff)
    skip_reason: str | None = None
    started_unix: float | None = None
    finished_unix: float | None = None
    duration_ms: float | None = None


@dataclass
class ServiceInfo:
    name: str
    state: ServiceState = ServiceState.stopped
    pid: int | None = None
    restarts: int = 0
    last_exit: str | None = None


@dataclass
class RunState:
    run_id: str = ""
    objective: str = ""
    workspace: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    status: RunStatus = RunStatus.created
    plan: dict[str, Any] | None = None
    revision: int = 0
    report: dict[str, Any] | None = None
    approved_revision: int | None = None
    approval: dict[str, Any] | None = None
    rejections: list[dict[str, Any]] = field(default_factory=list)
    gate_requested_revision: int | None = None
    tasks: dict[str, TaskState] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # execution tie-break order (plan order, or as modified)
    bootstrap: dict[str, dict[str, Any]] = field(default_factory=dict)
    bootstrap_failed: dict[str, Any] | None = None
    services: dict[str, ServiceInfo] = field(default_factory=dict)
    waiting: dict[str, Any] | None = None
    amendments: list[dict[str, Any]] = field(default_factory=list)
    outcome: dict[str, Any] | None = None
    options_plan: dict[str, Any] | None = None  # the plan file the run was started with
    problems: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0
    last_unix: float = 0.0
    started_unix: float | None = None

    # -- queries ----------------------------------------------------------------------------------
    def task_list(self) -> list[TaskState]:
        return [self.tasks[t] for t in self.order if t in self.tasks]

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in TaskStatus}
        for t in self.tasks.values():
            out[t.status.value] += 1
        return out

    def is_approved(self) -> bool:
        return self.approved_revision is not None and self.approved_revision == self.revision

    def snapshot(self) -> dict[str, Any]:
        """A plain, comparable copy of the whole state."""
        return asdict(self)

    def copy(self) -> RunState:
        return copy.deepcopy(self)

    # -- the fold -------------------------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        """Apply one event. Unknown types only advance ``last_seq`` (forward compatible)."""
        self.last_seq = int(event.get("seq", self.last_seq + 1))
        self.last_unix = float(event.get("unix", self.last_unix))
        handler = _HANDLERS.get(event.get("type", ""))
        if handler is not None:
            handler(self, event, event.get("data") or {})


def fold(events: Iterable[dict[str, Any]], state: RunState | None = None) -> RunState:
    state = state or RunState()
    for event in events:
        state.apply(event)
    return state


# -- handlers, one per event type -----------------------------------------------------------------
def _task(state: RunState, event: dict[str, Any]) -> TaskState | None:
    tid = event.get("task_id")
    return state.tasks.get(tid) if tid else None


def _run_started(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    s.run_id = e.get("run_id", s.run_id)
    s.objective = d.get("objective", "")
    s.workspace = d.get("workspace", "")
    s.options = dict(d.get("options") or {})
    s.options_plan = d.get("plan_file")
    s.started_unix = e.get("unix")


def _plan_invalid(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    s.problems = list(d.get("problems") or [])


def _plan_created(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    plan = d["plan"]
    s.plan = plan
    s.revision = int(d.get("revision", plan.get("revision", s.revision + 1)))
    s.report = d.get("report")
    s.objective = plan.get("objective", s.objective)
    old = s.tasks
    s.tasks = {}
    for packet in plan.get("tasks", []):
        tid = packet["id"]
        prev = old.get(tid)
        if prev is not None and prev.status in (TaskStatus.completed,):
            s.tasks[tid] = prev  # completed work survives a re-plan
            continue
        s.tasks[tid] = TaskState(
            id=tid, title=packet.get("title") or tid, depends_on=list(packet.get("depends_on", []))
        )
    s.order = [p["id"] for p in plan.get("tasks", [])]
    s.status = RunStatus.created


def _gate_requested(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    s.gate_requested_revision = int(d.get("revision", s.revision))
    if s.status in (RunStatus.created, RunStatus.waiting):
        s.status = RunStatus.awaiting_approval


def _gate_approved(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    rev = int(d.get("revision", s.revision))
    if rev != s.revision:
        return  # a decision about an older revision changes nothing
    s.approved_revision = rev
    s.approval = dict(d)
    for tid in d.get("skip", []) or []:
        t = s.tasks.get(tid)
        if t is not None and t.status is TaskStatus.pending:
            t.status = TaskStatus.skipped
            t.skip_reason = "skipped at the gate"
            t.keep_dependents = bool(d.get("keep_dependents"))
    order = d.get("order")
    if order:
        s.order = [t for t in order if t in s.tasks] + [t for t in s.order if t not in order]
    s.status = RunStatus.approved
    s.waiting = None


def _gate_rejected(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    if int(d.get("revision", s.revision)) != s.revision:
        return
    s.rejections.append(dict(d))
    s.status = RunStatus.created
    s.waiting = None


def _amended(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    s.amendments.append(dict(d))
    for tid in d.get("skip", []) or []:
        t = s.tasks.get(tid)
        if t is not None and t.status not in (TaskStatus.completed, TaskStatus.running):
            t.status = TaskStatus.skipped
            t.skip_reason = f"amended by {d.get('requested_by', 'user')}"
            t.keep_dependents = bool(d.get("keep_dependents"))


def _phase_completed(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    result = d.get("result") or d
    s.bootstrap[str(result.get("phase", d.get("phase")))] = result


def _bootstrap_started(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    s.status = RunStatus.bootstrapping


def _bootstrap_failed(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    s.bootstrap_failed = dict(d)
    s.status = RunStatus.failed


def _task_started(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    t.status = TaskStatus.running
    t.attempts = int(d.get("attempt", t.attempts + 1))
    t.worker_id = e.get("worker_id") or d.get("worker_id") or t.worker_id
    t.started_unix = e.get("unix")
    t.waiting_for = None
    t.decision = None
    s.status = RunStatus.executing


def _task_completed(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    t.status = TaskStatus.completed
    t.finished_unix = e.get("unix")
    t.duration_ms = d.get("duration_ms")
    t.waiting_for = None
    t.decision = None
    if t.retries or t.failure:
        t.recovered = True


def _task_failed(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    t.failure = dict(d)
    t.finished_unix = e.get("unix")
    t.duration_ms = d.get("duration_ms")
    # A failure is final unless recovery schedules a retry (RECOVERY_APPLIED) or a human decides.
    t.status = TaskStatus.failed
    t.decision = None


def _task_skipped(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    t.status = TaskStatus.skipped
    t.skip_reason = d.get("reason", "skipped")
    t.keep_dependents = bool(d.get("keep_dependents"))
    t.waiting_for = None
    t.decision = None


def _task_waiting(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    t.status = TaskStatus.waiting
    t.waiting_for = d.get("kind", "manual")


def _task_decision(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    """A human or policy answered a question about this task; the supervisor acts on it."""
    t = _task(s, e)
    if t is None:
        return
    decision = d.get("decision")
    t.decision = decision
    t.decision_note = d.get("note")
    t.decision_keep_dependents = bool(d.get("keep_dependents"))
    t.decision_source = d.get("source")
    if decision == "done":
        t.manual_done = True
    elif decision == "trust":
        t.confirmed_by = str(d.get("source") or "human")


def _task_ready(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    """A waiting task got its answer (done, trust) and may be scheduled again."""
    t = _task(s, e)
    if t is None:
        return
    if t.status is TaskStatus.waiting:
        t.status = TaskStatus.pending
    t.waiting_for = None
    t.decision = None


def _trust_required(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    t.status = TaskStatus.waiting
    t.waiting_for = "trust"


def _worker_trust_resolved(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    t.trusted = True
    t.trust_source = (d.get("data") or {}).get("source")


def _failure_classified(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is not None:
        t.failure_type = d.get("failure_type")


def _recovery_applied(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    if d.get("outcome") in ("retry", "retrying"):
        t.retries += 1
        t.status = TaskStatus.pending
        t.decision = None
        t.retry_at = float(e.get("unix", 0.0)) + float(d.get("delay") or 0.0)


def _escalation(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    if not d.get("decision"):
        t.status = TaskStatus.waiting
        t.waiting_for = "escalation"


def _run_waiting(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    s.waiting = dict(d)
    s.status = RunStatus.awaiting_approval if d.get("reason") == "approval" else RunStatus.waiting


def _run_resumed(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    s.waiting = None
    s.outcome = None
    if s.status in (RunStatus.waiting, RunStatus.failed, RunStatus.aborted, RunStatus.completed):
        s.status = RunStatus.executing if s.is_approved() else RunStatus.created


def _run_aborted(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    s.status = RunStatus.aborted
    s.outcome = dict(d)
    t = s.tasks.get(d.get("task_id") or "")
    if t is not None and t.decision == "abort":
        t.decision = None  # it ended this run; a resume asks again


def _execution_complete(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    s.outcome = dict(d)
    status = d.get("status", "completed")
    s.status = RunStatus(status) if status in RunStatus.__members__ else RunStatus.failed


def _service(s: RunState, d: dict[str, Any]) -> ServiceInfo:
    name = str(d.get("service"))
    info = s.services.get(name)
    if info is None:
        info = s.services[name] = ServiceInfo(name)
    return info


def _service_started(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    info = _service(s, d)
    info.state = ServiceState.running
    info.pid = d.get("pid")


def _service_crashed(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    info = _service(s, d)
    info.state = ServiceState.backoff
    info.last_exit = d.get("exit")


def _service_restarted(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    info = _service(s, d)
    info.state = ServiceState.running
    info.restarts = int(d.get("attempt", info.restarts + 1))
    info.pid = d.get("pid", info.pid)


def _service_fatal(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    info = _service(s, d)
    info.state = ServiceState.fatal


def _service_stopped(s: RunState, e: dict[str, Any], d: dict[str, Any]) -> None:
    info = _service(s, d)
    info.state = ServiceState.stopped


_HANDLERS = {
    "RUN_STARTED": _run_started,
    "PLAN_CREATED": _plan_created,
    "PLAN_INVALID": _plan_invalid,
    "GATE_APPROVAL_REQUESTED": _gate_requested,
    "GATE_APPROVED": _gate_approved,
    "GATE_REJECTED": _gate_rejected,
    "PLAN_AMENDED": _amended,
    "BOOTSTRAP_PHASE_STARTED": _bootstrap_started,
    "BOOTSTRAP_PHASE_COMPLETED": _phase_completed,
    "BOOTSTRAP_FAILED": _bootstrap_failed,
    "TASK_STARTED": _task_started,
    "TASK_COMPLETED": _task_completed,
    "TASK_FAILED": _task_failed,
    "TASK_SKIPPED": _task_skipped,
    "TASK_WAITING": _task_waiting,
    "TASK_DECISION": _task_decision,
    "TASK_READY": _task_ready,
    "TRUST_REQUIRED": _trust_required,
    "WORKER_TRUST_RESOLVED": _worker_trust_resolved,
    "FAILURE_CLASSIFIED": _failure_classified,
    "RECOVERY_APPLIED": _recovery_applied,
    "RECOVERY_ESCALATION": _escalation,
    "RUN_WAITING": _run_waiting,
    "RUN_RESUMED": _run_resumed,
    "RUN_ABORTED": _run_aborted,
    "EXECUTION_COMPLETE": _execution_complete,
    "SERVICE_STARTED": _service_started,
    "SERVICE_CRASHED": _service_crashed,
    "SERVICE_RESTARTED": _service_restarted,
    "SERVICE_FATAL": _service_fatal,
    "SERVICE_STOPPED": _service_stopped,
}
