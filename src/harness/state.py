"""A run's state as a pure fold of its event log.

Nothing the supervisor knows lives anywhere else: it appends an event, then applies that same
event to its :class:`RunState`. ``fold(events)`` rebuilds the identical state from the file, so
``harness resume``, ``harness status`` and a property test all see what the run saw.

Besides the tasks themselves the fold keeps the indexes the scheduler reads, updated per event
so that nothing scans the whole plan per completion: the ready queue (pending tasks whose
dependencies are satisfied, in execution order), dependency counters, the tasks that hold new
starts (stop on error), the tasks with a decision to act on, the tasks doomed by a skipped
dependency and the failures not yet handed to recovery. Every change of a task's status goes
through :func:`_refresh`, the one place those indexes are kept true.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, cast

from . import events as ev
from .events import EventType as E
from .plandiff import plan_hash
from .planlog import COMPACT_SINCE, created_plan, read_plan
from .vocab import Decision, Question

__all__ = ["TERMINAL_TASK", "RunState", "RunStatus", "ServiceInfo", "ServiceState", "TaskState", "TaskStatus", "fold"]


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
    planned = "planned"  # a run in plan mode ended: what would run was shown, nothing ran


class TaskStatus(StrEnum):
    pending = "pending"
    running = "running"  # TASK_STARTED without an outcome yet
    waiting = "waiting"  # a manual step, trust or an escalation decision is awaited
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
    waiting_for: Question | None = None  # manual | trust | escalation
    decision: Decision | None = None  # latest unconsumed decision (done, trust, retry, skip, abort)
    decision_note: str | None = None
    decision_keep_dependents: bool = False  # with a skip decision: its dependents still run
    decision_source: str | None = None
    manual_done: bool = False
    confirmed_by: str | None = None  # a human's (or policy's) explicit trust confirmation
    keep_dependents: bool = False  # when skipped: its dependents still run
    failure: dict[str, Any] | None = None
    failure_type: str | None = None
    options: list[Decision] | None = None  # what the last escalation offered
    retries: int = 0  # recovery retries consumed
    recovered: bool = False
    retry_at: float = 0.0  # unix time before which a scheduled retry must not start (backoff)
    skip_reason: str | None = None
    started_unix: float | None = None
    nodes: dict[int, str] = field(default_factory=dict)  # attempt -> the cluster node it ran on
    finished_unix: float | None = None
    duration_ms: float | None = None
    # -- agent tasks
    worktree: str | None = None  # the attempt's worktree while it exists
    merge_before: str | None = None  # a merge started and not yet accepted: the integration tip before it
    commit: str | None = None
    agent_message: str | None = None  # the last attempt's agent's final message (bounded)
    tokens: int = 0  # all attempts
    cost_usd: float = 0.0
    turns: int = 0

    @property
    def node(self) -> str | None:
        """The cluster node of the latest attempt (None: it ran on this machine, or has not started)."""
        return self.nodes.get(self.attempts)


@dataclass
class ServiceInfo:
    name: str
    state: ServiceState = ServiceState.stopped
    pid: int | None = None
    start_time: int | None = None  # /proc/PID/stat starttime of that pid, when it was recorded
    restarts: int = 0
    last_exit: str | None = None


class ReadyQueue:
    """The ready tasks in execution order: a heap of (position, id) with lazy deletion.

    ``add`` and ``discard`` are O(log n) and O(1); :meth:`first` pops stale entries as it goes and
    pushes back what it looked at, so its cost grows with what it skips, not with the plan.
    """

    __slots__ = ("_heap", "_members", "_pos")

    def __init__(self, positions: dict[str, int]) -> None:
        self._pos = positions
        self._members: set[str] = set()
        self._heap: list[tuple[int, str]] = []

    def add(self, tid: str) -> None:
        if tid not in self._members:
            self._members.add(tid)
            heapq.heappush(self._heap, (self._pos.get(tid, len(self._pos)), tid))

    def discard(self, tid: str) -> None:
        self._members.discard(tid)  # its heap entry is dropped when it surfaces

    def __contains__(self, tid: object) -> bool:
        return tid in self._members

    def __len__(self) -> int:
        return len(self._members)

    def first(self, n: int, *, skip: Any = None) -> list[str]:
        """Up to ``n`` ready ids in order, leaving out those for which ``skip(id)`` is true."""
        taken: list[str] = []
        seen: list[tuple[int, str]] = []
        heap = self._heap
        while heap and len(taken) < n:
            entry = heapq.heappop(heap)
            if entry[1] not in self._members or (seen and seen[-1] == entry):
                continue  # stale, or a duplicate of an id added, discarded and added again
            seen.append(entry)
            if skip is None or not skip(entry[1]):
                taken.append(entry[1])
        for entry in seen:
            heapq.heappush(heap, entry)
        return taken

    def ordered(self) -> list[str]:
        return sorted(self._members, key=lambda t: self._pos.get(t, len(self._pos)))


@dataclass
class RunState:
    run_id: str = ""
    objective: str = ""
    workspace: str = ""
    log_format: int = ev.LOG_FORMAT
    compact_plans: bool = False  # plans are logged compact (format 3 on; a log whose RUN_STARTED says so)
    options: dict[str, Any] = field(default_factory=dict)
    status: RunStatus = RunStatus.created
    plan: dict[str, Any] | None = None
    previous_plan: dict[str, Any] | None = None  # the revision a PLAN_CREATED replaced (for the gate's diff)
    revision: int = 0
    report: dict[str, Any] | None = None
    approved_revision: int | None = None
    approval: dict[str, Any] | None = None
    # the plan as it was when approved, if the approval named this content (or named none): the
    # per-command checks hold each command to it, whatever the log's plan says later
    approved_plan: dict[str, Any] | None = None
    rejections: list[dict[str, Any]] = field(default_factory=list)
    planner_usage: dict[str, float] = field(default_factory=dict)  # calls, tokens_in, tokens_out, cost_usd
    tool_requests: dict[str, dict[str, Any]] = field(default_factory=dict)  # request id -> the open request
    tool_decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # request id -> its answer
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
    plan_path: str | None = None  # the plan file the latest revision from a file came from
    plan_file_hash: str | None = None  # and the hash of that file's plan as loaded then
    problems: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0
    last_unix: float = 0.0
    started_unix: float | None = None
    integration: dict[str, Any] | None = None  # the run's integration branch (agent tasks), once made
    # -- indexes for the scheduler: derived from the above, kept per event, not part of a snapshot
    packets: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)
    approved_packets: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)
    ready: ReadyQueue = field(default_factory=lambda: ReadyQueue({}), repr=False, compare=False)
    blocking: set[str] = field(default_factory=set, repr=False, compare=False)  # failed / awaiting escalation
    decided: set[str] = field(default_factory=set, repr=False, compare=False)  # an unconsumed decision
    doomed: set[str] = field(default_factory=set, repr=False, compare=False)  # pending, a dependency skipped
    unhandled: set[str] = field(default_factory=set, repr=False, compare=False)  # failed, not yet recovered
    running: set[str] = field(default_factory=set, repr=False, compare=False)
    _unmet: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _dependents: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)
    _satisfied: set[str] = field(default_factory=set, repr=False, compare=False)
    _counts: dict[TaskStatus, int] = field(default_factory=dict, repr=False, compare=False)

    # -- queries ----------------------------------------------------------------------------------
    def task_list(self) -> list[TaskState]:
        return [self.tasks[t] for t in self.order if t in self.tasks]

    def counts(self) -> dict[str, int]:
        return {s.value: self._counts.get(s, 0) for s in TaskStatus}

    def is_approved(self) -> bool:
        return self.approved_revision is not None and self.approved_revision == self.revision

    def usage(self) -> dict[str, float]:
        """Tokens, cost and turns of every agent attempt of the run."""
        tasks = self.tasks.values()
        return {
            "tokens": sum(t.tokens for t in tasks),
            "cost_usd": round(sum(t.cost_usd for t in tasks), 6),
            "turns": sum(t.turns for t in tasks),
        }

    def halted(self) -> bool:
        """Stop on error: a task that failed for good, or awaits an escalation decision, holds new starts."""
        return bool(self.blocking)

    def in_order(self, ids: Iterable[str]) -> list[str]:
        pos = self.ready._pos
        return sorted(ids, key=lambda t: pos.get(t, len(pos)))

    def dependents(self, tid: str) -> list[str]:
        return self._dependents.get(tid, [])

    def snapshot(self) -> dict[str, Any]:
        """A plain, comparable copy of the whole state (the scheduler's indexes left out)."""
        bare = replace(self, **{name: _EMPTY[name]() for name in _INDEXES})  # not deep-copied just to be dropped
        out = asdict(bare)
        for name in _INDEXES:
            del out[name]
        return out

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


_INDEXES = (
    "packets",
    "approved_packets",
    "ready",
    "blocking",
    "decided",
    "doomed",
    "unhandled",
    "running",
    "_unmet",
    "_dependents",
    "_satisfied",
    "_counts",
)


#: An empty value of each index, for a snapshot that leaves them out.
_EMPTY: dict[str, Callable[[], Any]] = {
    f.name: f.default_factory for f in fields(RunState) if f.name in _INDEXES and callable(f.default_factory)
}


def fold(events: Iterable[dict[str, Any]], state: RunState | None = None) -> RunState:
    state = state or RunState()
    for event in events:
        state.apply(event)
    return state


# -- the indexes ----------------------------------------------------------------------------------
def _satisfies(t: TaskState) -> bool:
    """Whether dependents of ``t`` may run: it completed, or was skipped with its dependents kept."""
    return t.status is TaskStatus.completed or (t.status is TaskStatus.skipped and t.keep_dependents)


def _refresh(s: RunState, t: TaskState, old: TaskStatus | None) -> None:
    """Bring every index up to date with ``t`` after its status (or what qualifies it) changed."""
    tid = t.id
    if old is not t.status:
        if old is not None:
            s._counts[old] -= 1
        s._counts[t.status] = s._counts.get(t.status, 0) + 1
    status = t.status
    sat = _satisfies(t)
    if sat != (tid in s._satisfied):
        delta = -1 if sat else 1
        (s._satisfied.add if sat else s._satisfied.discard)(tid)
        for dep in s._dependents.get(tid, ()):
            s._unmet[dep] += delta
            d = s.tasks[dep]
            if d.status is TaskStatus.pending:
                _place(s, d)
    if status is TaskStatus.skipped and not t.keep_dependents:
        for dep in s._dependents.get(tid, ()):
            if s.tasks[dep].status is TaskStatus.pending:
                s.doomed.add(dep)
    if status is TaskStatus.pending:
        if any(_doomed_by(s, d) for d in t.depends_on):
            s.doomed.add(tid)
    else:
        s.doomed.discard(tid)
    _place(s, t)
    if status is TaskStatus.running:
        s.running.add(tid)
    else:
        s.running.discard(tid)
    if status is TaskStatus.failed or (status is TaskStatus.waiting and t.waiting_for is Question.escalation):
        s.blocking.add(tid)
    else:
        s.blocking.discard(tid)


def _doomed_by(s: RunState, dep: str) -> bool:
    d = s.tasks.get(dep)
    return d is not None and d.status is TaskStatus.skipped and not d.keep_dependents


def _place(s: RunState, t: TaskState) -> None:
    if t.status is TaskStatus.pending and s._unmet.get(t.id, 0) == 0:
        s.ready.add(t.id)
    else:
        s.ready.discard(t.id)


def _set(s: RunState, t: TaskState, status: TaskStatus) -> None:
    old = t.status
    t.status = status
    _refresh(s, t, old)


def _decide(s: RunState, t: TaskState, decision: Decision | None) -> None:
    t.decision = decision
    if decision is None:
        s.decided.discard(t.id)
    else:
        s.decided.add(t.id)


def _reindex(s: RunState) -> None:
    """Rebuild every index from the tasks (a new plan revision, or a new order)."""
    positions = {tid: i for i, tid in enumerate(s.order)}
    s.ready = ReadyQueue(positions)
    s._dependents = {tid: [] for tid in s.tasks}
    s._unmet = {}
    s._satisfied = {tid for tid, t in s.tasks.items() if _satisfies(t)}
    s._counts = {}
    s.blocking, s.doomed, s.running = set(), set(), set()
    s.decided = {tid for tid, t in s.tasks.items() if t.decision is not None}
    s.unhandled &= set(s.tasks)
    for tid in s.order:
        t = s.tasks[tid]
        s._unmet[tid] = sum(1 for d in t.depends_on if d not in s._satisfied)
        for d in t.depends_on:
            if d in s._dependents:
                s._dependents[d].append(tid)
    for tid in s.order:
        _refresh(s, s.tasks[tid], None)


# -- handlers, one per event type -----------------------------------------------------------------
def _task(state: RunState, event: dict[str, Any]) -> TaskState | None:
    tid = event.get("task_id")
    return state.tasks.get(tid) if tid else None


def _run_started(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    d = cast(ev.RunStarted, data)
    s.run_id = e.get("run_id", s.run_id)
    s.log_format = int(data.get("log_format", 1))
    s.objective = d.get("objective", "")
    s.workspace = d.get("workspace", "")
    s.options = dict(d.get("options") or {})
    s.compact_plans = s.log_format >= COMPACT_SINCE
    s.options_plan = read_plan(d["plan_file"], s.compact_plans) if d.get("plan_file") else None
    s.plan_path = d.get("plan_path")
    s.plan_file_hash = d.get("plan_file_hash")
    s.started_unix = e.get("unix")


def _plan_invalid(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    s.problems = list(cast(ev.PlanInvalid, data).get("problems") or [])


def _plan_created(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    d = cast(ev.PlanCreated, data)
    plan = created_plan(d, s.options_plan, s.compact_plans)
    s.previous_plan = s.plan
    s.plan = plan
    if d.get("plan_file_hash"):
        s.plan_path = d.get("plan_path", s.plan_path)
        s.plan_file_hash = d["plan_file_hash"]
    s.revision = int(d.get("revision", plan.get("revision", s.revision + 1)))
    s.report = d.get("report")
    s.objective = plan.get("objective", s.objective)
    old = s.tasks
    s.tasks = {}
    s.packets = {}
    for packet in plan.get("tasks", []):
        tid = packet["id"]
        s.packets[tid] = packet
        prev = old.get(tid)
        if prev is not None and prev.status is TaskStatus.completed:
            s.tasks[tid] = prev  # completed work survives a re-plan
            continue
        s.tasks[tid] = TaskState(
            id=tid, title=packet.get("title") or tid, depends_on=list(packet.get("depends_on", []))
        )
    s.order = list(s.packets)
    s.status = RunStatus.created
    _reindex(s)


def _gate_requested(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    s.gate_requested_revision = int(cast(ev.GateApprovalRequested, data).get("revision", s.revision))
    if s.status in (RunStatus.created, RunStatus.waiting):
        s.status = RunStatus.awaiting_approval


def _gate_approved(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    d = cast(ev.GateApproved, data)
    rev = int(d.get("revision", s.revision))
    if rev != s.revision:
        return  # a decision about an older revision changes nothing
    s.approved_revision = rev
    s.approval = dict(d)
    named = d.get("plan_hash")
    s.approved_plan = s.plan if s.plan is not None and (not named or named == plan_hash(s.plan)) else None
    s.approved_packets = {p["id"]: p for p in (s.approved_plan or {}).get("tasks", [])}
    for tid in d.get("skip", []) or []:
        t = s.tasks.get(tid)
        if t is not None and t.status is TaskStatus.pending:
            t.skip_reason = "skipped at the gate"
            t.keep_dependents = bool(d.get("keep_dependents"))
            _set(s, t, TaskStatus.skipped)
    order = d.get("order")
    if order:
        s.order = [t for t in order if t in s.tasks] + [t for t in s.order if t not in order]
        _reindex(s)
    s.status = RunStatus.approved
    s.waiting = None


def _gate_rejected(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    if int(data.get("revision", s.revision)) != s.revision:
        return
    s.rejections.append(dict(data))
    s.status = RunStatus.created
    s.waiting = None


def _refine_failed(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    """The rejection was answered, without a new revision: the same revision goes to the gate again."""
    if s.rejections and int(data.get("revision", -1)) == int(s.rejections[-1].get("revision", -2)):
        s.rejections[-1] = {**s.rejections[-1], "refine_failed": data.get("message", "")}


def _tool_requested(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    if data.get("request_id") not in s.tool_decisions:
        s.tool_requests[str(data.get("request_id"))] = {
            **data,
            "task_id": e.get("task_id"),
            "worker_id": e.get("worker_id"),
        }


def _tool_decided(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    rid = str(data.get("request_id"))
    if rid in s.tool_decisions:
        return  # the first answer stands (a late one from another terminal changes nothing)
    s.tool_requests.pop(rid, None)
    s.tool_decisions[rid] = dict(data)


def _planner_call(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    u = s.planner_usage
    u["calls"] = u.get("calls", 0) + 1
    for key in ("tokens_in", "tokens_out", "cost_usd"):
        if isinstance(data.get(key), int | float):
            u[key] = u.get(key, 0) + data[key]


def _amended(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    d = cast(ev.PlanAmended, data)
    s.amendments.append(dict(d))
    for tid in d.get("skip", []) or []:
        t = s.tasks.get(tid)
        if t is not None and t.status not in (TaskStatus.completed, TaskStatus.running):
            t.skip_reason = f"amended by {d.get('requested_by', 'user')}"
            t.keep_dependents = bool(d.get("keep_dependents"))
            t.waiting_for = None
            _set(s, t, TaskStatus.skipped)


def _phase_completed(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    result = data.get("result") or data  # format 1 nested the result
    s.bootstrap[str(result.get("phase", data.get("phase")))] = result


def _bootstrap_started(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    s.status = RunStatus.bootstrapping


def _bootstrap_failed(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    s.bootstrap_failed = dict(data)
    s.status = RunStatus.failed


def _task_started(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    d = cast(ev.TaskStarted, data)
    t.attempts = int(d.get("attempt", t.attempts + 1))
    t.worker_id = e.get("worker_id") or d.get("worker_id") or t.worker_id
    t.started_unix = e.get("unix")
    t.waiting_for = None
    _decide(s, t, None)
    _set(s, t, TaskStatus.running)
    s.status = RunStatus.executing


def _integration_created(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    s.integration = dict(data)


def _worktree_created(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is not None:
        t.worktree = cast(ev.WorktreeCreated, data).get("path")


def _worktree_removed(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is not None:
        t.worktree = None


def _agent_usage(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    d = cast(ev.AgentUsage, data)
    t.tokens += int(d.get("tokens_in") or 0) + int(d.get("tokens_out") or 0)
    t.cost_usd += float(d.get("cost_usd") or 0.0)
    t.turns += int(d.get("turns") or 0)
    t.agent_message = d.get("final_message") or None


def _merge_started(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is not None:
        t.merge_before = cast(ev.MergeStarted, data).get("before")


def _task_completed(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    t.finished_unix = e.get("unix")
    t.duration_ms = cast(ev.TaskCompleted, data).get("duration_ms")
    t.commit = data.get("commit")
    t.merge_before = None
    t.waiting_for = None
    _decide(s, t, None)
    if t.retries or t.failure:
        t.recovered = True
    s.unhandled.discard(t.id)
    _set(s, t, TaskStatus.completed)


def _task_failed(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    d = cast(ev.TaskFailed, data)
    t.failure = dict(d)
    t.merge_before = None
    t.finished_unix = e.get("unix")
    t.duration_ms = d.get("duration_ms")
    # A failure is final unless recovery schedules a retry (RECOVERY_APPLIED) or a human decides.
    _decide(s, t, None)
    s.unhandled.add(t.id)
    _set(s, t, TaskStatus.failed)


def _failure_detected(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    tid = e.get("task_id")
    if tid:
        s.unhandled.discard(tid)  # recovery has it: classified next, then retried or escalated


def _task_skipped(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    d = cast(ev.TaskSkipped, data)
    t.skip_reason = d.get("reason", "skipped")
    t.keep_dependents = bool(d.get("keep_dependents"))
    t.waiting_for = None
    _decide(s, t, None)
    s.unhandled.discard(t.id)
    _set(s, t, TaskStatus.skipped)


def _task_waiting(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    t.waiting_for = Question(cast(ev.TaskWaiting, data).get("kind", Question.manual))
    _set(s, t, TaskStatus.waiting)


def _task_decision(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    """A human or policy answered a question about this task; the supervisor acts on it."""
    t = _task(s, e)
    if t is None:
        return
    d = cast(ev.TaskDecision, data)
    raw = d.get("decision")
    decision = Decision(raw) if raw else None
    _decide(s, t, decision)
    t.decision_note = d.get("note")
    t.decision_keep_dependents = bool(d.get("keep_dependents"))
    t.decision_source = d.get("source")
    if decision is Decision.done:
        t.manual_done = True
    elif decision is Decision.trust:
        t.confirmed_by = str(d.get("source") or "human")


def _task_ready(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    """A waiting task got its answer (done, trust) and may be scheduled again."""
    t = _task(s, e)
    if t is None:
        return
    t.waiting_for = None
    _decide(s, t, None)
    _set(s, t, TaskStatus.pending if t.status is TaskStatus.waiting else t.status)


def _trust_required(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    t.waiting_for = Question.trust
    _set(s, t, TaskStatus.waiting)


def _worker_trust_resolved(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    t.trusted = True
    t.trust_source = cast(ev.WorkerTrust, data).get("source")


def short_node(node: str) -> str:
    """A cluster node id as people read it: its first 12 characters (Ray's ids are 56 hex)."""
    return node[:12]


def _worker_placed(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    """A worker's node, from worker_started (or from its result when it never started)."""
    t = _task(s, e)
    placement = data.get("placement")
    if t is None or not isinstance(placement, dict) or not placement.get("node_id"):
        return
    t.nodes[t.attempts] = str(placement["node_id"])


def _worker_spawned(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    trust = cast(ev.WorkerSpawned, data).get("trust")
    if trust:  # resolved at the spawn by a trusted root
        _worker_trust_resolved(s, e, trust)


def _failure_classified(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is not None:
        t.failure_type = cast(ev.FailureClassified, data).get("failure_type")


def _recovery_applied(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    d = cast(ev.RecoveryApplied, data)
    t.retries += 1
    t.waiting_for = None
    _decide(s, t, None)
    t.retry_at = float(e.get("unix", 0.0)) + float(d.get("delay") or 0.0)
    s.unhandled.discard(t.id)
    _set(s, t, TaskStatus.pending)


def _escalation(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    t = _task(s, e)
    if t is None:
        return
    d = cast(ev.RecoveryEscalation, data)
    t.options = [Decision(o) for o in d.get("options") or []] or None
    if not d.get("decision"):
        t.waiting_for = Question.escalation
        _set(s, t, TaskStatus.waiting)


def _run_waiting(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    s.waiting = dict(data)
    s.status = RunStatus.awaiting_approval if data.get("reason") == "approval" else RunStatus.waiting


def _run_resumed(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    s.waiting = None
    s.outcome = None
    if s.status in (RunStatus.waiting, RunStatus.failed, RunStatus.aborted, RunStatus.completed):
        s.status = RunStatus.executing if s.is_approved() else RunStatus.created


def _run_aborted(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    d = cast(ev.RunAborted, data)
    s.status = RunStatus.aborted
    s.outcome = dict(d)
    t = s.tasks.get(d.get("task_id") or "")
    if t is not None and t.decision is Decision.abort:
        _decide(s, t, None)  # it ended this run; a resume asks again


def _execution_complete(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    s.outcome = dict(data)
    status = data.get("status", "completed")
    s.status = RunStatus(status) if status in RunStatus.__members__ else RunStatus.failed


def _service(s: RunState, d: dict[str, Any]) -> ServiceInfo:
    name = str(d.get("service"))
    info = s.services.get(name)
    if info is None:
        info = s.services[name] = ServiceInfo(name)
    return info


def _service_started(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    info = _service(s, data)
    info.state = ServiceState.running
    info.pid = data.get("pid")
    info.start_time = data.get("start_time")


def _service_crashed(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    info = _service(s, data)
    info.state = ServiceState.backoff
    info.last_exit = data.get("exit")


def _service_restarted(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    info = _service(s, data)
    info.state = ServiceState.running
    info.restarts = int(data.get("attempt", info.restarts + 1))
    info.pid = data.get("pid", info.pid)
    info.start_time = data.get("start_time")


def _service_fatal(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    _service(s, data).state = ServiceState.fatal


def _service_stopped(s: RunState, e: dict[str, Any], data: dict[str, Any]) -> None:
    _service(s, data).state = ServiceState.stopped


_HANDLERS = {
    E.RUN_STARTED: _run_started,
    E.PLAN_CREATED: _plan_created,
    E.PLAN_INVALID: _plan_invalid,
    E.PLAN_REFINE_FAILED: _refine_failed,
    E.PLANNER_CALL: _planner_call,
    E.TOOL_PERMISSION_REQUESTED: _tool_requested,
    E.TOOL_PERMISSION_DECIDED: _tool_decided,
    E.GATE_APPROVAL_REQUESTED: _gate_requested,
    E.GATE_APPROVED: _gate_approved,
    E.GATE_REJECTED: _gate_rejected,
    E.PLAN_AMENDED: _amended,
    E.BOOTSTRAP_PHASE_STARTED: _bootstrap_started,
    E.BOOTSTRAP_PHASE_COMPLETED: _phase_completed,
    E.BOOTSTRAP_FAILED: _bootstrap_failed,
    E.INTEGRATION_CREATED: _integration_created,
    E.WORKTREE_CREATED: _worktree_created,
    E.WORKTREE_REMOVED: _worktree_removed,
    E.AGENT_USAGE: _agent_usage,
    E.MERGE_STARTED: _merge_started,
    E.TASK_STARTED: _task_started,
    E.TASK_COMPLETED: _task_completed,
    E.TASK_FAILED: _task_failed,
    E.TASK_SKIPPED: _task_skipped,
    E.TASK_WAITING: _task_waiting,
    E.TASK_DECISION: _task_decision,
    E.TASK_READY: _task_ready,
    E.TRUST_REQUIRED: _trust_required,
    E.WORKER_SPAWNED: _worker_spawned,
    E.WORKER_STARTED: _worker_placed,
    E.WORKER_FAILED: _worker_placed,
    E.WORKER_TRUST_RESOLVED: _worker_trust_resolved,
    E.FAILURE_DETECTED: _failure_detected,
    E.FAILURE_CLASSIFIED: _failure_classified,
    E.RECOVERY_APPLIED: _recovery_applied,
    E.RECOVERY_ESCALATION: _escalation,
    E.RUN_WAITING: _run_waiting,
    E.RUN_RESUMED: _run_resumed,
    E.RUN_ABORTED: _run_aborted,
    E.EXECUTION_COMPLETE: _execution_complete,
    E.SERVICE_STARTED: _service_started,
    E.SERVICE_CRASHED: _service_crashed,
    E.SERVICE_RESTARTED: _service_restarted,
    E.SERVICE_FATAL: _service_fatal,
    E.SERVICE_STOPPED: _service_stopped,
}
