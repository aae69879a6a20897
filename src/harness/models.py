"""The data that crosses the wire and lands in the log, as pydantic models.

These models are the one source of the JSON Schemas under ``schemas/`` (generated, drift-checked
by a test). Services import only what their methods need.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class Scope(StrEnum):
    """How much of the workspace a task may touch (the seed's four scopes)."""

    workspace = "workspace"
    module = "module"
    single_file = "single_file"
    custom = "custom"


class Risk(StrEnum):
    low = "low"
    high = "high"


class Budget(BaseModel):
    """Caps on what one task (or a whole run) may spend; the agent is stopped when one is reached."""

    model_config = ConfigDict(extra="forbid")

    usd: float | None = Field(default=None, gt=0, description="Dollars, as the agent reports its cost.")
    tokens: int | None = Field(default=None, gt=0, description="Input plus output tokens.")
    turns: int | None = Field(default=None, gt=0, description="Model turns (tool round trips).")
    minutes: float | None = Field(default=None, gt=0, description="Wall-clock minutes of the agent.")


class Resources(BaseModel):
    """What one attempt of a task needs from the machine that runs it: honoured by a cluster
    executor's scheduler (Ray's ``num_cpus``, ``memory``, custom resources); the local executor
    runs every task on this machine and ignores it."""

    model_config = ConfigDict(extra="forbid")

    cpus: float | None = Field(default=None, ge=0, description="CPUs (fractions allowed; 0: no CPU reserved).")
    memory_mb: int | None = Field(default=None, gt=0, description="Memory, in MiB.")
    custom: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="Custom resources by name, as the cluster's nodes declare them (e.g. {gpu-pool: 1}).",
    )


class AgentSpec(BaseModel):
    """Which agent does a task, and how. A plan file may write just the name (``agent: claude``);
    settings without a name or command apply to the run's agent (``--agent``)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None, description="A named agent: claude, codex, gemini, opencode, aider (or one from the config)."
    )
    command: list[str] | None = Field(
        default=None,
        description="Any other program and its arguments: it gets the prompt on stdin, or in the file "
        "whose path replaces a {prompt_file} argument. With a name: that CLI, run from this path.",
    )
    model: str | None = None
    max_turns: int | None = Field(default=None, gt=0)
    budget: Budget | None = None
    permission: str | None = Field(
        default=None, description="The CLI's own permission mode (default: the narrowest that edits)."
    )
    extra_args: list[str] = Field(default_factory=list)
    allowed_tools: list[str] = Field(
        default_factory=list,
        description="Tool rules the agent may use without asking, as its CLI writes them (e.g. 'Bash(npm test:*)'); "
        "set from the policy's tool rules when the plan is made.",
    )
    denied_tools: list[str] = Field(
        default_factory=list, description="Tool rules the agent may not use (e.g. 'WebFetch'); from the policy."
    )
    channel: bool | None = Field(
        default=None,
        description="Calls its mode and rules do not settle are asked of the harness (CLIs with a two-way "
        "channel: Claude Code); set when the plan is made, false turns it off.",
    )
    env: list[str] = Field(
        default_factory=list,
        description="More environment variables passed to the agent (names only, e.g. an API key).",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value


class TaskPacket(BaseModel):
    """One unit of work in a plan: what to do, where, how to verify it, and what it waits for.

    The seed's fields (objective, scope, scope_path, acceptance_tests, commit_policy,
    escalation_policy) keep their meaning. ``commands`` are run by the shell executor; a packet
    with neither commands nor an agent is a manual step. ``acceptance_tests`` always run last and
    are the verdict; a manual step with none is verified by a person's ``confirmation`` instead.
    Either ``title`` or ``objective`` may be omitted: each defaults to the other.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID, description="Unique within the plan.")
    title: str = Field(default="", description="Short human name; defaults to the objective.")
    objective: str = Field(default="", description="What the task must achieve; defaults to the title.")
    scope: Scope = Scope.workspace
    scope_path: str = Field(default=".", description="Working directory, relative to the workspace.")
    depends_on: list[str] = Field(default_factory=list)
    commands: list[str] = Field(default_factory=list, description="Shell commands run in order.")
    acceptance_tests: list[str] = Field(default_factory=list, description="Commands whose success is the verdict.")
    confirmation: str | None = Field(
        default=None,
        description=(
            "For a manual step: what a person must confirm. A manual step with no acceptance tests "
            "is verified by this confirmation alone."
        ),
    )
    risk: Risk = Risk.low
    risk_reasons: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0, description="Seconds for the whole task.")
    commit_policy: str = Field(default="none", description="What to commit when done (seed field).")
    escalation_policy: str = Field(default="ask", description="Who decides on failure (seed field).")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the worker.")
    agent: AgentSpec | None = Field(
        default=None, description="The agent that does the work when there are no commands (else: a manual step)."
    )
    network: bool | None = Field(
        default=None,
        description="Whether its steps reach the network in the sandbox; default: on for an agent task (its model "
        "endpoint), else the policy's network setting (off unless it says otherwise).",
    )
    resources: Resources | None = Field(
        default=None, description="What an attempt needs from the node that runs it (a cluster executor)."
    )

    @model_validator(mode="after")
    def _title_or_objective(self) -> TaskPacket:
        if not self.title and not self.objective:
            raise ValueError("a task needs a title or an objective")
        if not self.title:
            self.title = self.objective
        if not self.objective:
            self.objective = self.title
        return self

    @property
    def is_manual(self) -> bool:
        return not self.commands and self.agent is None


class Requirements(BaseModel):
    """What a plan needs from the machine; bootstrap's cli_entry fails early naming what is missing."""

    model_config = ConfigDict(extra="forbid")

    env: list[str] = Field(default_factory=list, description="Environment variables that must be set.")
    tools: list[str] = Field(default_factory=list, description="Programs that must be on PATH.")
    mcp: bool = Field(default=False, description="MCP servers must all answer, not just some.")


class Plan(BaseModel):
    """An objective and its tasks, a DAG through ``depends_on``."""

    model_config = ConfigDict(extra="forbid")

    objective: str
    tasks: list[TaskPacket]
    revision: int = 1
    source: str = Field(default="generated", description="generated | file | refined")
    defaults: dict[str, Any] = Field(default_factory=dict)
    requires: Requirements = Field(default_factory=Requirements)
    budget: Budget | None = Field(default=None, description="Caps on what all the run's agents may spend together.")


class Severity(StrEnum):
    error = "error"
    warning = "warning"


class Problem(BaseModel):
    """One thing wrong with a plan; ``validate`` lists all of them at once."""

    severity: Severity
    code: str = Field(description="Stable machine name, e.g. cycle, unknown_dependency.")
    message: str
    task_id: str | None = None
    path: str | None = Field(default=None, description="JSON path of the offending field.")


class ValidationReport(BaseModel):
    valid: bool
    problems: list[Problem] = Field(default_factory=list)
    risky: list[str] = Field(default_factory=list, description="Ids of tasks flagged risky.")


# -- worker manager -----------------------------------------------------------------------------


class WorkerState(StrEnum):
    spawning = "spawning"
    trust_required = "trust_required"
    ready_for_prompt = "ready_for_prompt"
    running = "running"
    finished = "finished"
    failed = "failed"


class WorkerEventType(StrEnum):
    worker_spawned = "worker_spawned"
    trust_required = "trust_required"
    trust_resolved = "trust_resolved"
    worker_started = "worker_started"
    step_finished = "step_finished"
    worker_finished = "worker_finished"
    worker_failed = "worker_failed"


class WorkerEvent(BaseModel):
    """A worker's state change, sent as the ``worker_event`` notification and logged.

    Replaying a manager's worker events in order rebuilds its worker table exactly.
    """

    event: WorkerEventType
    worker_id: str
    task_id: str
    state: WorkerState = Field(description="The worker's state after this event.")
    time: float = Field(description="Unix seconds.")
    data: dict[str, Any] = Field(default_factory=dict)


# -- bootstrap ----------------------------------------------------------------------------------


class PhaseName(StrEnum):
    cli_entry = "cli_entry"
    system_prompt_fastpath = "system_prompt_fastpath"
    mcp_fastpath = "mcp_fastpath"
    daemon_worker_fastpath = "daemon_worker_fastpath"
    main_runtime = "main_runtime"


class PhaseStatus(StrEnum):
    ok = "ok"
    degraded = "degraded"
    failed = "failed"


class PhaseSpec(BaseModel):
    name: PhaseName
    description: str


class BootstrapPlan(BaseModel):
    phases: list[PhaseSpec]


class PhaseResult(BaseModel):
    phase: PhaseName
    success: bool
    status: PhaseStatus
    diagnostics: list[str] = Field(default_factory=list)
    artifacts: dict[str, Any] = Field(default_factory=dict)
    cached: bool = False
    duration_ms: float = 0.0


# -- the event log ------------------------------------------------------------------------------


class Event(BaseModel):
    """One line of a run's event log. ``hash`` chains it to the line before (see
    :mod:`harness.eventlog`)."""

    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=1)
    time: str | None = Field(default=None, description="RFC 3339, UTC (log format 2 only; else from unix).")
    unix: float
    type: str
    run_id: str | None = Field(default=None, description="The run: on the first line (every line in log format 2).")
    task_id: str | None = None
    worker_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    prev: str | None = Field(
        default=None, description="Log format 2 only: the hash of the previous event, or 64 zeros for the first."
    )
    hash: str = Field(
        description="base64url (unpadded) of the first 16 bytes of sha256(the previous line's hash + this line without its "
        "hash field); log format 2: the sha256 hex of this line without its hash field."
    )


def slug(text: str, limit: int = 40) -> str:
    """A task-id-safe slug of free text."""
    s = re.sub(r"[^A-Za-z0-9]+", "-", text.lower()).strip("-")
    return (s[:limit].rstrip("-")) or "task"


# -- the lifecycle methods every service has ----------------------------------------------------


class InitializeResult(BaseModel):
    """What ``initialize`` answers: who the service is and what it speaks."""

    name: str
    version: str
    protocol_version: str
    jsonrpc: str
    contract: str
    methods: list[str]
    notifications: list[str] = Field(default_factory=list)
    pid: int


class Empty(BaseModel):
    """No params, or an empty result (``ping``, ``shutdown``)."""

    model_config = ConfigDict(extra="forbid")
