"""The event catalogue: every event type a run's log holds, the payload of each, and its description.

One enum (:class:`EventType`) is used by every writer and by the fold; one ``TypedDict`` per type
says what its ``data`` holds (:data:`PAYLOADS`), so a writer that misspells a key is a type error
and a log that drifts from the catalogue fails a test; ``schemas/LogEvent.json`` is generated from
the same types for readers in other languages. :func:`describe` is the one place that turns an
event into words for people: progress lines, ``harness log``, the report and the dashboard.

Log formats (``RUN_STARTED.data.log_format``):

* 1 (no ``log_format`` key): worker events carried the worker manager's whole notification,
  packet included. Read-only commands read it through :func:`upgrade`; ``resume`` refuses it.
* 2: worker events are flat (``state``, ``at`` and the event's own fields) and a spawned worker's
  packet is referenced by the plan revision it came from, never copied. Every line carries
  ``time``, ``run_id`` and ``prev`` (:mod:`harness.eventlog`). Read as it is; ``resume`` refuses it.
* 3: lines carry neither ``time`` nor ``prev`` (the hash chains them) and only the first names
  the run. Worker events leave out what can be said again (their implied state, the manager's
  clock, a spawn's defaults, a result's empty fields: ``harness.supervisor._replay``). Commands
  that the checks allowed by default with nothing replaced are counted in TASK_STARTED
  (``checked``) instead of a COMMAND_CHECKED each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Literal, NotRequired, cast

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

from .plandiff import PlanChanges
from .vocab import CheckVerdict, Decision, HookPoint, HookVerdict, Mode, Question, Source, WaitReason

__all__ = [
    "LOG_FORMAT",
    "PAYLOADS",
    "WORKER_STATE",
    "EventType",
    "LogFormatError",
    "describe",
    "describe_call",
    "log_format",
    "upgrade",
    "worker_event_type",
]

#: The format this version writes (and the newest it reads).
LOG_FORMAT = 3


class EventType(StrEnum):
    """Every event type the harness writes, in the order a run meets them."""

    RUN_STARTED = "RUN_STARTED"
    RUN_RESUMED = "RUN_RESUMED"
    PLANNER_CALL = "PLANNER_CALL"
    PLAN_CREATED = "PLAN_CREATED"
    PLAN_INVALID = "PLAN_INVALID"
    PLAN_REFINE_FAILED = "PLAN_REFINE_FAILED"
    GATE_APPROVAL_REQUESTED = "GATE_APPROVAL_REQUESTED"
    GATE_APPROVED = "GATE_APPROVED"
    GATE_REJECTED = "GATE_REJECTED"
    PLAN_AMENDED = "PLAN_AMENDED"
    BOOTSTRAP_PHASE_STARTED = "BOOTSTRAP_PHASE_STARTED"
    BOOTSTRAP_PHASE_COMPLETED = "BOOTSTRAP_PHASE_COMPLETED"
    BOOTSTRAP_FAILED = "BOOTSTRAP_FAILED"
    TASK_WAITING = "TASK_WAITING"
    TASK_DECISION = "TASK_DECISION"
    TASK_READY = "TASK_READY"
    TRUST_REQUIRED = "TRUST_REQUIRED"
    TASKS_PREVIEWED = "TASKS_PREVIEWED"
    INTEGRATION_CREATED = "INTEGRATION_CREATED"
    WORKTREE_CREATED = "WORKTREE_CREATED"
    COMMAND_CHECKED = "COMMAND_CHECKED"
    HOOK_RAN = "HOOK_RAN"
    TASK_STARTED = "TASK_STARTED"
    TOOL_PERMISSION_REQUESTED = "TOOL_PERMISSION_REQUESTED"
    TOOL_PERMISSION_DECIDED = "TOOL_PERMISSION_DECIDED"
    AGENT_USAGE = "AGENT_USAGE"
    MERGE_STARTED = "MERGE_STARTED"
    WORKTREE_REMOVED = "WORKTREE_REMOVED"
    TASK_COMPLETED = "TASK_COMPLETED"
    TASK_FAILED = "TASK_FAILED"
    TASK_SKIPPED = "TASK_SKIPPED"
    WORKER_SPAWNED = "WORKER_SPAWNED"
    WORKER_TRUST_REQUIRED = "WORKER_TRUST_REQUIRED"
    WORKER_TRUST_RESOLVED = "WORKER_TRUST_RESOLVED"
    WORKER_STARTED = "WORKER_STARTED"
    WORKER_STEP_FINISHED = "WORKER_STEP_FINISHED"
    WORKER_FINISHED = "WORKER_FINISHED"
    WORKER_FAILED = "WORKER_FAILED"
    FAILURE_DETECTED = "FAILURE_DETECTED"
    FAILURE_CLASSIFIED = "FAILURE_CLASSIFIED"
    RECOVERY_APPLIED = "RECOVERY_APPLIED"
    PERMISSION_REQUIRED = "PERMISSION_REQUIRED"
    RECOVERY_ESCALATION = "RECOVERY_ESCALATION"
    RUN_WAITING = "RUN_WAITING"
    RUN_ABORTED = "RUN_ABORTED"
    EXECUTION_COMPLETE = "EXECUTION_COMPLETE"
    EXPLORE_DIFF = "EXPLORE_DIFF"
    RUN_APPLIED = "RUN_APPLIED"
    RUN_MERGED = "RUN_MERGED"
    RUN_CLEANED = "RUN_CLEANED"
    SERVICE_STARTED = "SERVICE_STARTED"
    SERVICE_CRASHED = "SERVICE_CRASHED"
    SERVICE_RESTARTED = "SERVICE_RESTARTED"
    SERVICE_FATAL = "SERVICE_FATAL"
    SERVICE_STOPPED = "SERVICE_STOPPED"
    SERVICE_NOTIFICATION = "SERVICE_NOTIFICATION"


E = EventType
_closed = with_config(ConfigDict(extra="forbid"))


# -- payloads ---------------------------------------------------------------------------------------
@_closed
class RunOptionsData(TypedDict):
    parallel: int
    approve: bool
    policy: str
    agent: NotRequired[dict[str, Any]]
    planner: NotRequired[dict[str, Any]]  # the planning context's planner fields: backend, llm (no key), agent
    mode: NotRequired[Mode]  # plan | explore | execute (absent: execute)


@_closed
class SandboxInfo(TypedDict):
    """The OS sandbox of a session's steps (harness.sandbox.choose)."""

    mode: Literal["bwrap", "off"]  # bwrap: every step under bubblewrap; off: unconfined
    policy: Literal["required", "auto", "off"]  # what the policy asked for
    tool: str | None  # bwrap's path, when found
    version: str | None
    reason: str  # in words: how it confines, or why there is no sandbox


@_closed
class ExecutorInfo(TypedDict):
    """Where a session's tasks run when not as local processes (config ``executor:``/``ray:``)."""

    kind: Literal["ray"]
    address: str | None  # the cluster joined (None: a local Ray started for the run)
    shared_fs: bool  # the workspace is on a file system every node shares: nothing is bundled
    bundle_cap_mb: int


@_closed
class RunStarted(TypedDict):
    log_format: int
    objective: str
    workspace: str
    options: RunOptionsData
    supervisor_pid: int
    plan_file: NotRequired[dict[str, Any]]  # the plan file the run was started with, as loaded
    plan_path: NotRequired[str]  # that file's absolute path: resume refuses it once it holds other content
    plan_file_hash: NotRequired[str]  # plan_hash of the file's plan as loaded (harness.plandiff)
    sandbox: NotRequired[SandboxInfo]  # how this session's steps are confined (absent: logs before the sandbox)
    executor: NotRequired[ExecutorInfo]  # absent: local processes


@_closed
class RunResumed(TypedDict):
    supervisor_pid: int
    sandbox: NotRequired[SandboxInfo]  # decided again for this session (bubblewrap may have come or gone)
    executor: NotRequired[ExecutorInfo]  # this session's (absent: local processes)


@_closed
class PlanCreated(TypedDict):
    plan: NotRequired[
        dict[str, Any]
    ]  # a Plan (schemas/Plan.json), compact (harness.planlog); its packets recorded once
    from_plan_file: NotRequired[bool]  # instead of plan: the plan is RUN_STARTED's plan_file, unchanged
    revision: int
    report: dict[str, Any] | None  # the planner's ValidationReport
    feedback: NotRequired[str | None]  # a revision: the feedback it answers
    applied: NotRequired[list[Any]]  # a revision: what the planner changed
    plan_path: NotRequired[str]  # a revision from a plan file (harness approve --plan): its absolute path
    plan_file_hash: NotRequired[str]  # and plan_hash of the file's plan as loaded


@_closed
class PlannerCall(TypedDict):
    """One call of a model planner: an HTTP request to a model endpoint, or one agent run."""

    provider: str  # openai | anthropic | agent
    model: str | None
    purpose: str  # decompose | repair | refine
    call: int  # the planner's calls so far in this request, this one included
    attempt: int  # 1, then each retry of the same call
    outcome: (
        str  # ok | retry | format_rejected | permission | quota | timeout | unavailable | rejected | unusable | failed
    )
    duration_ms: float
    host: NotRequired[str]  # the endpoint's host (never a key)
    agent: NotRequired[str]  # the agent that planned
    mode: NotRequired[str]  # schema | json | prompt: how JSON was asked for
    status: NotRequired[int | None]  # the HTTP status
    tokens_in: NotRequired[int]
    tokens_out: NotRequired[int]
    cost_usd: NotRequired[float]
    exit_code: NotRequired[int | None]  # an agent's
    retry_in: NotRequired[float]  # seconds before the next attempt
    error: NotRequired[str]  # what went wrong, scrubbed of secrets


@_closed
class PlanInvalid(TypedDict):
    problems: list[dict[str, Any]]
    message: str


@_closed
class PlanRefineFailed(TypedDict):
    """The planner could not revise the plan after a rejection; the revision stays at the gate."""

    revision: int
    feedback: str | None
    message: str
    problems: list[dict[str, Any]]


@_closed
class GateApprovalRequested(TypedDict):
    gate: Literal[Question.plan]
    revision: int
    tasks: int
    risky: list[str]
    changes: NotRequired[PlanChanges]  # revision > 1: what changed since the previous revision


@_closed
class GateApproved(TypedDict):
    gate: Literal[Question.plan]
    revision: int
    source: Source
    approver: str
    plan_hash: NotRequired[str]  # plan_hash of the revision approved (absent in older logs)
    rule: NotRequired[str]
    skip: NotRequired[list[str]]
    keep_dependents: NotRequired[bool]
    order: NotRequired[list[str]]


@_closed
class GateRejected(TypedDict):
    gate: Literal[Question.plan]
    revision: int
    source: Source
    approver: str
    feedback: str
    kind: Literal["reject", "clarify"]
    rule: NotRequired[str]


@_closed
class PlanAmended(TypedDict):
    skip: list[str]
    keep_dependents: bool
    requested_by: str
    confirmed: bool
    source: NotRequired[Source]


@_closed
class BootstrapPhaseStarted(TypedDict):
    phase: str
    context_digest: str
    idempotency_key: NotRequired[str | None]


@with_config(ConfigDict(extra="allow"))
class BootstrapPhaseCompleted(TypedDict):
    """A PhaseResult (schemas/PhaseResult.json) with the digests replay needs."""

    phase: str
    success: bool
    status: str


@_closed
class BootstrapFailed(TypedDict):
    phase: str
    diagnostics: list[str]


@_closed
class TaskWaiting(TypedDict):
    kind: Literal[Question.manual]
    title: str
    objective: str
    how: str
    confirmation: NotRequired[str]  # what the person confirms (the verdict when there are no tests)


@_closed
class TaskDecision(TypedDict):
    decision: Decision | None  # None: a refusal
    source: Source
    approver: NotRequired[str]
    rule: NotRequired[str]
    note: NotRequired[str | None]
    keep_dependents: NotRequired[bool]  # with skip: its dependents still run
    refused: NotRequired[Decision]  # the decision the supervisor refused, and why
    reason: NotRequired[str]


@_closed
class TaskReady(TypedDict):
    after: Decision  # the answer that released a waiting task (done, trust)


@_closed
class TrustRequired(TypedDict):
    reason: str
    risky: bool
    how: str


@_closed
class IntegrationCreated(TypedDict):
    """The run's integration branch, made from ``base`` (the user's HEAD) before the first agent
    task; in explore mode from a snapshot of the workspace as it is (uncommitted work included),
    before the first task of any kind."""

    branch: str
    base: str
    path: str
    snapshot: NotRequired[bool]  # base is a snapshot commit of the working tree (explore mode)


@_closed
class ToolPermissionRequested(TypedDict):
    """A running agent asked whether it may run a tool (its CLI's two-way channel); it waits."""

    request_id: str
    attempt: int
    tool: str
    call: str  # e.g. Bash(npm test), Write(/path/file)


@_closed
class ToolPermissionDecided(TypedDict):
    """The answer the agent got: by a policy tool rule, a person, or the harness (no one to ask)."""

    request_id: str
    tool: str
    call: str
    decision: Literal["allow", "deny"]
    source: Source
    rule: NotRequired[str]
    approver: NotRequired[str]
    reason: NotRequired[str]


@_closed
class TasksPreviewed(TypedDict):
    """Plan mode: what each task would run, in order. Nothing was run."""

    tasks: list[dict[str, Any]]  # id, title, cwd, worktree?, agent?, argv?, commands, acceptance_tests, sandbox?


@_closed
class ExploreDiff(TypedDict):
    """Explore mode: what the run changed in its copy, saved as a patch for `harness apply`."""

    base: str  # the snapshot the run started from
    tip: str  # the integration branch's last commit
    files: list[str]
    insertions: int
    deletions: int
    patch: str | None  # the patch file (None: nothing changed)
    sha256: str | None


@_closed
class RunApplied(TypedDict):
    """`harness apply`: an explore run's patch applied to the workspace."""

    patch: str
    sha256: str
    files: list[str]
    approver: str


@_closed
class WorktreeCreated(TypedDict):
    attempt: int
    path: str
    branch: str
    start: str | None  # the integration tip it starts from (None until created)


@_closed
class WorktreeRemoved(TypedDict):
    attempt: int | None
    reason: str
    diff: NotRequired[str | None]  # where the changes of an attempt not accepted were saved


@_closed
class CommandChecked(TypedDict):
    """One command of a task checked before the task's worker is spawned (harness.commands): the
    decision and the rule that made it. An ``ask`` is followed by an ``allow`` once answered."""

    attempt: int
    kind: Literal["command", "acceptance"]  # which list of the packet: commands or acceptance_tests
    index: int  # its place in that list
    command: str  # as the plan holds it
    decision: CheckVerdict
    rule: str  # deny-list:NAME | a policy rule's name | not_in_approved_plan | hook:LABEL | rewrite_limit | default
    source: str  # builtin | policy | plan | hook | default; an answered ask: who answered (tty, cli, policy)
    reason: NotRequired[str]
    replaced_by: NotRequired[str]  # what pre_command hooks put in its place: the command that runs
    approver: NotRequired[str]  # an answered ask: the person, or the policy


@_closed
class HookRan(TypedDict):
    """One run of a hook (harness.hooks)."""

    point: HookPoint
    hook: str  # its name, its argv as configured, or a URL's scheme and host (never its path)
    kind: Literal["command", "url"]
    decision: HookVerdict
    duration_ms: float
    exit_code: NotRequired[int | None]  # a command hook's
    status: NotRequired[int | None]  # a URL hook's HTTP status
    message: NotRequired[str]  # the hook's message, a deny's reason, or what failed
    replaced_by: NotRequired[str]  # pre_command: the command it put instead
    attempt: NotRequired[int]
    command: NotRequired[str]  # pre_command, post_command: the command it was asked about
    outcome: NotRequired[str]  # post_task: the verdict it was told about (completed, failed)


@_closed
class TaskStarted(TypedDict):
    attempt: int
    worker_id: NotRequired[str]  # format 2; since 3 the event's own worker_id
    checked: NotRequired[int]  # commands and tests the checks allowed by default (no COMMAND_CHECKED each)
    prompt_sha256: NotRequired[str]  # an agent task: the prompt saved in the worker's folder
    prompt_bytes: NotRequired[int]
    worktree: NotRequired[str]


@_closed
class AgentUsage(TypedDict):
    """What one attempt's agent did and spent, read from its output (whatever its exit code)."""

    attempt: int
    agent: str
    model: str | None
    session_id: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    turns: int
    tools: dict[str, int]
    duration_ms: float | None
    exit_code: int | None
    failure: str | None
    failure_detail: NotRequired[str | None]
    denied_tools: NotRequired[list[str]]
    final_message: str  # bounded


@_closed
class MergeStarted(TypedDict):
    attempt: int
    commit: str  # the task's commit
    before: str  # the integration tip before the merge: resume resets to it if the merge is not accepted


@_closed
class TaskCompleted(TypedDict):
    attempt: int
    worker_id: NotRequired[str]  # format 2; since 3 the event's own worker_id
    duration_ms: float | None
    commit: NotRequired[str | None]  # an agent task: its commit (None when it changed nothing)
    merged: NotRequired[str | None]  # the integration tip after its merge


@_closed
class FailedStep(TypedDict):
    kind: str
    index: int
    command: str


@_closed
class TaskFailed(TypedDict):
    attempt: int
    reason: str  # the worker's failure reason (acceptance_failed, timeout, interrupted, ...)
    summary: str
    exit_code: NotRequired[int | None]
    signal: NotRequired[int | None]
    timed_out: NotRequired[bool]
    interrupted: NotRequired[bool]
    failed_step: NotRequired[FailedStep | None]
    duration_ms: NotRequired[float | None]
    stderr_tail: NotRequired[str]
    stdout_tail: NotRequired[str]
    message: NotRequired[str]
    agent_failure: NotRequired[str | None]  # what went wrong inside the agent (AgentFailure)
    agent_detail: NotRequired[str | None]
    agent_message: NotRequired[str]  # the agent's last message (bounded)
    conflict: NotRequired[list[str]]  # a merge conflict: the files
    denied_by: NotRequired[str]  # reason denied: the check's rule or the hook (hook:LABEL) that refused it


@_closed
class TaskSkipped(TypedDict):
    reason: str
    source: NotRequired[Source | None]
    note: NotRequired[str | None]
    keep_dependents: NotRequired[bool]
    dependents: NotRequired[list[str]]  # with a decision: the dependents it holds back or lets run
    dependency: NotRequired[str]  # skipped because this dependency was skipped


@_closed
class WorkerSpawned(TypedDict):
    """Fields left out are the run's defaults (log format 3): the run's workspace and folder, the
    key RUN:TASK:ATTEMPT, the workspace as scope, no variables allowed through."""

    state: NotRequired[str]  # left out: trust_required
    at: NotRequired[float]  # format 2: the manager's clock
    revision: int  # the packet is the plan's task of this revision (recorded once, in PLAN_CREATED)
    workspace: NotRequired[str]
    run_dir: NotRequired[str]
    attempt: int
    idempotency_key: NotRequired[str | None]
    scope_dir: NotRequired[str]
    env_allow: NotRequired[list[str]]
    trust: NotRequired[dict[str, Any]]  # resolved at the spawn by a trusted root: source, approver (state ready)
    sandbox: NotRequired[dict[str, Any]]  # SandboxParams as sent: mode, network, writable, readonly
    budget: NotRequired[dict[str, Any]]  # caps on this attempt's agent


@_closed
class WorkerTrust(TypedDict):
    state: NotRequired[str]  # left out when the type implies it
    at: NotRequired[float]
    source: NotRequired[str]
    approver: NotRequired[str | None]
    reason: NotRequired[str]


@_closed
class WorkerStarted(TypedDict):
    state: NotRequired[str]
    at: NotRequired[float]
    pid: int  # the first step's (on a cluster node: that node's pid)
    placement: NotRequired[dict[str, Any]]  # a cluster executor's: executor, node_id, task_id


@with_config(ConfigDict(extra="allow"))
class WorkerStep(TypedDict):
    state: NotRequired[str]
    at: NotRequired[float]


@with_config(ConfigDict(extra="allow"))
class WorkerEnded(TypedDict):
    """The worker's compact result (schemas/WorkerResult.json) without its empty fields, output
    files relative to the run folder (format 2: all fields, with ``state`` and ``at``)."""

    state: NotRequired[str]
    at: NotRequired[float]
    ok: bool


@_closed
class FailureDetected(TypedDict):
    attempt: int
    reason: str
    summary: str
    exit_code: int | None
    signal: int | None
    timed_out: bool


@_closed
class FailureClassified(TypedDict):
    attempt: int
    failure_type: str
    rule: str
    evidence: NotRequired[str]


@_closed
class RecoveryApplied(TypedDict):
    """A retry is scheduled. ``retry`` counts the task's retries (this one included); ``limit`` is
    the recipe's automatic retries; ``next_attempt`` is the attempt number the retry runs as."""

    recipe: str  # RecipeName
    failure_type: str | None
    retry: int
    limit: int
    next_attempt: int
    delay: float
    note: NotRequired[str | None]


@_closed
class PermissionRequired(TypedDict):
    attempt: int
    what: str | None
    command: str | None
    failed_step: FailedStep | None


@_closed
class RecoveryEscalation(TypedDict):
    attempt: int
    failure_type: str
    reason: str
    summary: str
    options: list[Decision]
    needs_input: bool
    decision: Decision | None  # None: nobody could answer; the task waits
    source: NotRequired[Source]
    rule: NotRequired[str]
    how: NotRequired[str]
    policy_exhausted: NotRequired[str]  # a policy rule's retries ran out: a person is asked


@_closed
class WaitingTask(TypedDict):
    task_id: str
    kind: Question
    how: str


@_closed
class RunWaiting(TypedDict):
    reason: WaitReason
    revision: NotRequired[int]
    how: NotRequired[str]
    tasks: NotRequired[list[WaitingTask]]
    service: NotRequired[str]
    message: NotRequired[str]


@_closed
class RunAborted(TypedDict):
    task_id: str
    reason: str
    note: str | None


@_closed
class ExecutionComplete(TypedDict):
    status: Literal["completed", "failed", "aborted", "planned"]
    reason: NotRequired[str]
    usage: NotRequired[dict[str, float]]  # the run's agents together: tokens, cost_usd, turns
    pending: int
    running: int
    waiting: int
    completed: int
    failed: int
    skipped: int


@_closed
class RunMerged(TypedDict):
    branch: str
    into: str
    commit: str
    by: str


@_closed
class RunCleaned(TypedDict):
    removed: list[str]
    by: str


@_closed
class ServiceStarted(TypedDict):
    service: str
    pid: int
    start_time: int | None  # /proc/PID/stat starttime: with the pid, names this process for good
    command: list[str]
    launch: NotRequired[Literal["fork"]]  # forked by the CLI to run the command's service; absent: exec'd


@_closed
class ServiceCrashed(TypedDict):
    service: str
    exit: str
    in_flight: list[str]
    pid: NotRequired[int | None]
    phase: NotRequired[Literal["start", "replay"]]


@_closed
class ServiceRestarted(TypedDict):
    service: str
    pid: int
    start_time: int | None
    attempt: int


@_closed
class ServiceFatal(TypedDict):
    service: str
    reason: str


@_closed
class ServiceStopped(TypedDict):
    service: str


@_closed
class ServiceNotification(TypedDict):
    service: str
    method: str
    params: Any


#: The payload type of each event type.
PAYLOADS: dict[EventType, type] = {
    E.RUN_STARTED: RunStarted,
    E.RUN_RESUMED: RunResumed,
    E.PLANNER_CALL: PlannerCall,
    E.PLAN_CREATED: PlanCreated,
    E.PLAN_INVALID: PlanInvalid,
    E.PLAN_REFINE_FAILED: PlanRefineFailed,
    E.GATE_APPROVAL_REQUESTED: GateApprovalRequested,
    E.GATE_APPROVED: GateApproved,
    E.GATE_REJECTED: GateRejected,
    E.PLAN_AMENDED: PlanAmended,
    E.BOOTSTRAP_PHASE_STARTED: BootstrapPhaseStarted,
    E.BOOTSTRAP_PHASE_COMPLETED: BootstrapPhaseCompleted,
    E.BOOTSTRAP_FAILED: BootstrapFailed,
    E.TASK_WAITING: TaskWaiting,
    E.TASK_DECISION: TaskDecision,
    E.TASK_READY: TaskReady,
    E.TRUST_REQUIRED: TrustRequired,
    E.TASKS_PREVIEWED: TasksPreviewed,
    E.INTEGRATION_CREATED: IntegrationCreated,
    E.WORKTREE_CREATED: WorktreeCreated,
    E.COMMAND_CHECKED: CommandChecked,
    E.HOOK_RAN: HookRan,
    E.TASK_STARTED: TaskStarted,
    E.TOOL_PERMISSION_REQUESTED: ToolPermissionRequested,
    E.TOOL_PERMISSION_DECIDED: ToolPermissionDecided,
    E.AGENT_USAGE: AgentUsage,
    E.MERGE_STARTED: MergeStarted,
    E.WORKTREE_REMOVED: WorktreeRemoved,
    E.TASK_COMPLETED: TaskCompleted,
    E.TASK_FAILED: TaskFailed,
    E.TASK_SKIPPED: TaskSkipped,
    E.WORKER_SPAWNED: WorkerSpawned,
    E.WORKER_TRUST_REQUIRED: WorkerTrust,
    E.WORKER_TRUST_RESOLVED: WorkerTrust,
    E.WORKER_STARTED: WorkerStarted,
    E.WORKER_STEP_FINISHED: WorkerStep,
    E.WORKER_FINISHED: WorkerEnded,
    E.WORKER_FAILED: WorkerEnded,
    E.FAILURE_DETECTED: FailureDetected,
    E.FAILURE_CLASSIFIED: FailureClassified,
    E.RECOVERY_APPLIED: RecoveryApplied,
    E.PERMISSION_REQUIRED: PermissionRequired,
    E.RECOVERY_ESCALATION: RecoveryEscalation,
    E.RUN_WAITING: RunWaiting,
    E.RUN_ABORTED: RunAborted,
    E.EXECUTION_COMPLETE: ExecutionComplete,
    E.EXPLORE_DIFF: ExploreDiff,
    E.RUN_APPLIED: RunApplied,
    E.RUN_MERGED: RunMerged,
    E.RUN_CLEANED: RunCleaned,
    E.SERVICE_STARTED: ServiceStarted,
    E.SERVICE_CRASHED: ServiceCrashed,
    E.SERVICE_RESTARTED: ServiceRestarted,
    E.SERVICE_FATAL: ServiceFatal,
    E.SERVICE_STOPPED: ServiceStopped,
    E.SERVICE_NOTIFICATION: ServiceNotification,
}


# -- worker events: the worker manager's notification <-> the logged event --------------------------
_WORKER_PREFIX = "WORKER_"
#: The state each worker event leaves its worker in; format 3 logs a worker event's state only
#: when it is another one.
WORKER_STATE: dict[str, str] = {
    E.WORKER_SPAWNED: "trust_required",
    E.WORKER_TRUST_REQUIRED: "trust_required",
    E.WORKER_TRUST_RESOLVED: "ready_for_prompt",
    E.WORKER_STARTED: "running",
    E.WORKER_FINISHED: "finished",
    E.WORKER_FAILED: "failed",
}


def worker_event_type(event: str) -> EventType | None:
    """worker_started -> WORKER_STARTED, trust_resolved -> WORKER_TRUST_RESOLVED; None if unknown."""
    name = _WORKER_PREFIX + (event[len("worker_") :] if event.startswith("worker_") else event).upper()
    try:
        return EventType(name)
    except ValueError:
        return None


def worker_event_name(etype: str) -> str:
    """The inverse of :func:`worker_event_type`: WORKER_STARTED -> worker_started."""
    rest = etype[len(_WORKER_PREFIX) :].lower()
    return rest if rest.startswith("trust_") or rest == "step_finished" else "worker_" + rest


# -- log formats ------------------------------------------------------------------------------------
class LogFormatError(Exception):
    """A log this version cannot read as it is (written by a newer harness, or refused for writing)."""


def log_format(events: Iterable[Mapping[str, Any]]) -> int:
    """The format of a log, from its RUN_STARTED (1 when it does not say)."""
    for event in events:
        if event.get("type") == E.RUN_STARTED:
            return int((event.get("data") or {}).get("log_format", 1))
        break
    return LOG_FORMAT


def upgrade(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of a log in the current format, for reading. Raises :class:`LogFormatError` for a
    format newer than this version knows. Format 1 worker events are flattened in memory."""
    fmt = log_format(events)
    if fmt >= 2 and fmt <= LOG_FORMAT:
        return events  # format 2 lines carry more than format 3's; what readers use is the same
    if fmt > LOG_FORMAT:
        raise LogFormatError(
            f"this log is in format {fmt}, written by a newer harness; this version reads formats up to {LOG_FORMAT}"
        )
    out = []
    for event in events:
        etype = str(event.get("type", ""))
        data = event.get("data") or {}
        if etype.startswith(_WORKER_PREFIX) and "event" in data:
            flat = {k: v for k, v in (data.get("data") or {}).items() if k != "packet"}
            flat.update(state=data.get("state"), at=data.get("time", event.get("unix")))
            event = {**event, "data": flat}
        elif etype == E.RECOVERY_APPLIED and "retry" not in data:
            event = {**event, "data": {**data, "retry": data.get("attempt"), "limit": data.get("retries")}}
        out.append(event)
    return out


# -- descriptions -----------------------------------------------------------------------------------
def _secs(value: Any) -> str:
    try:
        return f"{float(value):g} s"
    except (TypeError, ValueError):
        return "0 s"


def _by(d: Mapping[str, Any]) -> str:
    """'via cli by ann', 'via policy rule ci'."""
    out = f"via {d.get('source') or 'someone'}"
    if d.get("rule"):
        out += f" rule {d['rule']}"
    if d.get("approver") and d.get("approver") != d.get("source"):
        out += f" by {d['approver']}"
    return out


def _note(d: Mapping[str, Any]) -> str:
    return f" (note: {d['note']})" if d.get("note") else ""


def describe_call(d: Mapping[str, Any]) -> str:
    """One planner call in a line: who, what for, how it ended, what it cost."""
    who = (
        f"agent {d.get('agent')}"
        if d.get("provider") == "agent"
        else f"{d.get('provider')} {d.get('model') or ''}".strip()
    )
    status = f" {d['status']}" if d.get("status") else ""
    tokens = (
        f", {d.get('tokens_in', 0)}+{d.get('tokens_out', 0)} tokens"
        if d.get("tokens_in") or d.get("tokens_out")
        else ""
    )
    retry = f", retry in {d['retry_in']:g} s" if d.get("retry_in") is not None else ""
    error = f": {d['error']}" if d.get("error") and d.get("outcome") != "ok" else ""
    ms = float(d.get("duration_ms") or 0)
    return f"{who} {d.get('purpose')} call {d.get('call')}: {d.get('outcome')}{status} in {ms / 1000:.1f} s{tokens}{retry}{error}"


def describe(event: Mapping[str, Any], titles: Mapping[str, str] | None = None) -> str:
    """What an event says, in one line for people, without its time, type or task id.

    With ``titles`` (task id -> title), task events start with the task's title. Unknown types and
    missing fields give a shorter line, never an error: this reads logs of any age.
    """
    d = cast(Mapping[str, Any], event.get("data") or {})
    etype = str(event.get("type", ""))
    tid = event.get("task_id")
    title = titles.get(tid, "") if titles is not None and tid else ""
    text = _phrase(etype, d, event)
    if title and etype.startswith("TASK_"):
        return f"{title}: {text}" if text and not text.startswith("(") else f"{title} {text}".strip()
    return text


def _sandbox(d: Mapping[str, Any]) -> str:
    box = d.get("sandbox")
    if not isinstance(box, Mapping):
        return ""
    return "; sandbox: bubblewrap" if box.get("mode") == "bwrap" else f"; no sandbox: {box.get('reason')}"


def _phrase(etype: str, d: Mapping[str, Any], event: Mapping[str, Any]) -> str:  # noqa: C901 - one case per type
    if etype == E.RUN_STARTED:
        return str(d.get("objective") or "") + (" (from a plan file)" if d.get("plan_file") else "") + _sandbox(d)
    if etype == E.RUN_RESUMED:
        return f"by supervisor pid {d.get('supervisor_pid')}" + _sandbox(d)
    if etype == E.PLAN_CREATED:
        if d.get("from_plan_file"):
            return f"revision {d.get('revision')}: the plan file's plan, as validated"
        plan = d.get("plan") or {}
        return f"revision {d.get('revision')}: {len(plan.get('tasks', []))} tasks: {plan.get('objective', '')}"
    if etype == E.PLAN_INVALID:
        return f"{len(d.get('problems') or [])} problem(s): {d.get('message', '')}"
    if etype == E.PLANNER_CALL:
        return describe_call(d)
    if etype == E.PLAN_REFINE_FAILED:
        return f"revision {d.get('revision')} stays at the gate: {d.get('message', '')}"
    if etype == E.GATE_APPROVAL_REQUESTED:
        risky = f", risky: {', '.join(d['risky'])}" if d.get("risky") else ""
        changes = d.get("changes") or {}
        counts = (
            f" ({len(changes.get('added') or [])} added, {len(changes.get('removed') or [])} removed, "
            f"{len(changes.get('changed') or {})} changed)"
            if changes
            else ""
        )
        return f"revision {d.get('revision')}: {d.get('tasks')} tasks{counts}{risky}"
    if etype in (E.GATE_APPROVED, E.GATE_REJECTED):
        text = f"revision {d.get('revision')} {_by(d)}"
        if d.get("skip"):
            text += f", skipping {', '.join(d['skip'])}"
        if d.get("feedback"):
            text += f"; feedback: {d['feedback']}"
        return text
    if etype == E.PLAN_AMENDED:
        return f"skip {', '.join(d.get('skip') or [])} as requested by {d.get('requested_by')}"
    if etype in (E.BOOTSTRAP_PHASE_STARTED, E.BOOTSTRAP_PHASE_COMPLETED):
        return str(d.get("phase")) + (f" {d['status']}" if d.get("status") else "")
    if etype == E.BOOTSTRAP_FAILED:
        return f"{d.get('phase')}: " + "; ".join(str(x) for x in d.get("diagnostics") or [])
    if etype == E.TASK_WAITING:
        return f"a manual step: `{d.get('how')}`"
    if etype == E.TASK_DECISION:
        if d.get("decision"):
            return f"decided {d['decision']} {_by(d)}{_note(d)}"
        if d.get("refused"):
            return f"'{d['refused']}' refused: {d.get('reason', '')}"
        return str(d.get("reason") or "")
    if etype == E.TASK_READY:
        return f"(ready again after '{d.get('after')}')"
    if etype == E.TRUST_REQUIRED:
        return f"needs trust: {d.get('reason')}: `{d.get('how')}`"
    if etype == E.TASK_STARTED:
        return f"(attempt {d.get('attempt')})"
    if etype == E.COMMAND_CHECKED:
        what = "test" if d.get("kind") == "acceptance" else "command"
        text = f"{what} `{d.get('command')}`: {d.get('decision')} ({d.get('rule')}"
        text += f", {d['source']})" if d.get("source") not in (None, d.get("rule")) else ")"
        if d.get("replaced_by"):
            text += f" runs as `{d['replaced_by']}`"
        return text + (f": {d['reason']}" if d.get("reason") else "")
    if etype == E.HOOK_RAN:
        about = f" on `{d['command']}`" if d.get("command") else ""
        ms = float(d.get("duration_ms") or 0)
        text = f"{d.get('point')} hook {d.get('hook')}{about}: {d.get('decision')} in {ms:.0f} ms"
        if d.get("replaced_by"):
            text += f", replaced by `{d['replaced_by']}`"
        return text + (f": {d['message']}" if d.get("message") else "")
    if etype == E.AGENT_USAGE:
        cost = f", ${d['cost_usd']:.4f}" if isinstance(d.get("cost_usd"), int | float) else ""
        tools = sum((d.get("tools") or {}).values())
        failed = f"; {d['failure']}" if d.get("failure") else ""
        used = f"{d.get('tokens_in', 0)} in / {d.get('tokens_out', 0)} out tokens{cost}"
        return f"{d.get('agent')} {d.get('model') or ''}: {used}, {d.get('turns', 0)} turns, {tools} tool calls{failed}"
    if etype == E.INTEGRATION_CREATED:
        return f"{d.get('branch')} from {str(d.get('base'))[:12]}"
    if etype == E.WORKTREE_CREATED:
        return f"attempt {d.get('attempt')}: {d.get('branch')} at {d.get('path')}"
    if etype == E.WORKTREE_REMOVED:
        return str(d.get("reason") or "")
    if etype == E.MERGE_STARTED:
        return f"merging {str(d.get('commit'))[:12]} into the integration branch"
    if etype == E.TASK_COMPLETED:
        ms = d.get("duration_ms") or 0
        return f"({float(ms) / 1000:.1f} s)"
    if etype in (E.TASK_FAILED, E.FAILURE_DETECTED):
        return str(d.get("summary") or d.get("reason") or "failed")
    if etype == E.TASK_SKIPPED:
        keep = " (dependents still run)" if d.get("keep_dependents") else ""
        return f"skipped ({d.get('reason')}){keep}"
    if etype.startswith(_WORKER_PREFIX):
        return f"{event.get('worker_id')} {d.get('state') or WORKER_STATE.get(etype, '')}".strip()
    if etype == E.FAILURE_CLASSIFIED:
        seen = f": {d['evidence']}" if d.get("evidence") else ""
        return f"{d.get('failure_type')} (rule {d.get('rule')}){seen}"
    if etype == E.RECOVERY_APPLIED:
        recipe = d.get("recipe")
        if recipe == "rerun_interrupted":
            return f"interrupted, re-run as attempt {d.get('next_attempt')} (not a failure of the task)"
        if recipe == "retry_after_decision":
            return f"{d.get('failure_type')}: retried as decided, as attempt {d.get('next_attempt')}{_note(d)}"
        retry = f"retry {d.get('retry')} of {d.get('limit')}"
        return f"{d.get('failure_type')}: retrying automatically in {_secs(d.get('delay'))} ({retry})"
    if etype == E.PERMISSION_REQUIRED:
        return f"permission required: {d.get('what')}"
    if etype == E.RECOVERY_ESCALATION:
        if d.get("decision"):
            return f"escalated ({d.get('reason')}); decided {d['decision']} {_by(d)}"
        return f"escalated ({d.get('reason')}); asked: {', '.join(d.get('options') or [])}: `{d.get('how')}`"
    if etype == E.RUN_WAITING:
        return f"for {d.get('reason')}" + (f": `{d['how']}`" if d.get("how") else "")
    if etype == E.RUN_ABORTED:
        return f"the run was aborted{_note(d)}"
    if etype == E.TOOL_PERMISSION_REQUESTED:
        return f"the agent asks to run {d.get('call')}"
    if etype == E.TOOL_PERMISSION_DECIDED:
        why = f" ({d['reason']})" if d.get("reason") else ""
        return f"{d.get('call')}: {d.get('decision')} {_by(d)}{why}"
    if etype == E.TASKS_PREVIEWED:
        return f"{len(d.get('tasks') or [])} task(s) shown, nothing run (plan mode)"
    if etype == E.EXPLORE_DIFF:
        files = d.get("files") or []
        return f"{len(files)} file(s) changed, +{d.get('insertions', 0)} -{d.get('deletions', 0)} (explore mode)"
    if etype == E.RUN_APPLIED:
        return f"{len(d.get('files') or [])} file(s) applied to the workspace by {d.get('approver')}"
    if etype == E.RUN_MERGED:
        return f"{d.get('branch')} merged into {d.get('into')} by {d.get('by')}"
    if etype == E.RUN_CLEANED:
        return f"{len(d.get('removed') or [])} worktrees and branches removed by {d.get('by')}"
    if etype == E.EXECUTION_COMPLETE:
        return str(d.get("status")) + (f": {d['reason']}" if d.get("reason") else "")
    if etype.startswith("SERVICE_"):
        text = str(d.get("service") or "")
        if d.get("pid"):
            text += f" pid {d['pid']}"
        if d.get("exit"):
            text += f" {d['exit']}"
        if d.get("reason"):
            text += f": {d['reason']}"
        if d.get("method"):
            text += f" {d['method']}"
        return text
    return ""
