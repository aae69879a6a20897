"""The bootstrap service's own wire types: method params and results, and its notifications.

The shared types (PhaseName, PhaseResult, BootstrapPlan) live in :mod:`harness.models`; these are
the ones only this service speaks. The context is open (extra fields are kept and digested) so a
supervisor can pass what it knows, but the fields the phases read are typed.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from harness.models import PhaseName, PhaseResult

PHASE_STARTED = "phase_started"
PHASE_COMPLETED = "phase_completed"
#: Every notification the service sends.
NOTIFICATIONS = (PHASE_STARTED, PHASE_COMPLETED)

#: The methods a worker manager must offer for daemon_worker_fastpath to pass.
WORKER_MANAGER_METHODS = (
    "spawn_worker",
    "check_trust",
    "mark_trusted",
    "run_worker",
    "get_worker",
    "list_workers",
    "cancel_worker",
    "replay",
)


#: Constrained strings are checked to be valid Unicode (no lone surrogates), so whatever the
#: service echoes back in diagnostics and artifacts can always be written to the wire.
Name = Annotated[str, Field(min_length=1, max_length=4096)]
#: A path or argv item: also no NUL byte, which no operating system call accepts.
PathText = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]*$")]


class BootstrapRequires(BaseModel):
    """What the run declares it needs; cli_entry and mcp_fastpath fail early when it is missing."""

    model_config = ConfigDict(extra="allow")

    env: list[Name] = Field(default_factory=list, description="Environment variables that must be set.")
    tools: list[PathText] = Field(default_factory=list, description="Programs that must be on PATH.")
    mcp: bool = Field(
        default=False, description="A bad or missing MCP server fails mcp_fastpath instead of degrading it."
    )
    phases: list[PhaseName] | None = Field(
        default=None,
        description="Earlier phases main_runtime requires to have succeeded; default: all of them.",
    )


class WorkerManagerInfo(BaseModel):
    """How to reach the worker manager: the pid and method list of a running one, or a command."""

    model_config = ConfigDict(extra="allow")

    pid: int | None = Field(default=None, gt=0)
    methods: list[Name] = Field(default_factory=list, description="Methods it announced in initialize.")
    command: list[PathText] | None = Field(
        default=None, description="Alternative to pid: argv of a manager to start, initialize and stop."
    )


class BootstrapContext(BaseModel):
    """Everything a phase may look at. Two calls with equal contexts share cached results."""

    model_config = ConfigDict(extra="allow")

    workspace: PathText = Field(description="The workspace directory (relative: to the service's cwd).")
    objective: Annotated[str, Field(max_length=100_000)] | None = None
    run_id: Name | None = None
    run_dir: PathText | None = Field(
        default=None, description="Where artifacts are written (relative: to the workspace)."
    )
    requires: BootstrapRequires = Field(default_factory=BootstrapRequires)
    mcp_config: PathText | None = Field(
        default=None, description="MCP config path (relative: to the workspace); default .mcp.json or mcp.json there."
    )
    mcp_probe: bool = Field(default=False, description="Start each stdio MCP server and send initialize.")
    mcp_timeout: float = Field(default=2.0, gt=0, le=60, description="Seconds each probe waits for initialize.")
    worker_manager: WorkerManagerInfo | None = None
    services: dict[str, Any] = Field(default_factory=dict)
    prompt_file_max_chars: int = Field(default=16_000, ge=1, description="Per instruction file, before truncation.")
    prompt_max_chars: int = Field(default=64_000, ge=1, description="Whole system prompt, before truncation.")


class BootstrapPlanParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    context: BootstrapContext


class ExecutePhaseParams(BaseModel):
    """One phase to run. ``phase`` is checked by the service so an unknown name lists the valid ones."""

    model_config = ConfigDict(extra="forbid")

    phase: Name = Field(description="One of the names in the plan.")
    context: BootstrapContext
    idempotency_key: Name | None = Field(
        default=None, description="Names this request; reusing it for another phase is refused."
    )


class BootstrapReplayParams(BaseModel):
    """Earlier events: phase_completed notifications (bare params, {method, params} or log events)."""

    model_config = ConfigDict(extra="forbid")

    events: list[dict[str, Any]]
    idempotency_key: Name | None = Field(
        default=None, description="Accepted like on every state-changing method; replaying twice is harmless."
    )


class BootstrapReplayResult(BaseModel):
    phases: int = Field(description="Phase results restored into the cache.")
    ignored: int = Field(default=0, description="Events that were not phase results.")


class PhaseStartedParams(BaseModel):
    """Notification ``phase_started``: sent before a phase runs (or is answered from the cache)."""

    phase: PhaseName
    context_digest: str
    idempotency_key: str | None = None


class PhaseCompletedParams(PhaseResult):
    """Notification ``phase_completed``: the whole result plus what ``replay`` needs to restore it."""

    context_digest: str
    input_digest: str = Field(description="Digest of the context and of everything the phase read.")
    idempotency_key: str | None = None


SCHEMAS: dict[str, type[BaseModel]] = {
    "BootstrapContext": BootstrapContext,
    "BootstrapPlanParams": BootstrapPlanParams,
    "ExecutePhaseParams": ExecutePhaseParams,
    "BootstrapReplayParams": BootstrapReplayParams,
    "BootstrapReplayResult": BootstrapReplayResult,
    "PhaseStartedParams": PhaseStartedParams,
    "PhaseCompletedParams": PhaseCompletedParams,
}
