"""The worker manager's enums and the params models of its methods.

Only what the service needs to validate requests is defined here, on its start path; the result
models live in :mod:`._results`, loaded for schema generation and by callers that want them.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from harness.models import Budget, TaskPacket, WorkerEvent


class StepKind(StrEnum):
    """Which list of the packet a step comes from: ``commands`` first, then ``acceptance_tests``."""

    command = "command"
    agent = "agent"  # the packet's agent, run before the acceptance tests
    acceptance = "acceptance"


class FailureReason(StrEnum):
    """Why a worker failed; the supervisor's recovery classifies failures starting from this."""

    command_failed = "command_failed"
    acceptance_failed = "acceptance_failed"
    timeout = "timeout"
    signal = "signal"
    cancelled = "cancelled"
    interrupted = "interrupted"
    scope_missing = "scope_missing"
    spawn_error = "spawn_error"
    budget_exceeded = "budget_exceeded"  # a usage cap was reached: the agent was stopped


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpawnWorkerParams(_Params):
    task_packet: TaskPacket
    workspace: str = Field(description="The workspace root; the worker is confined inside it.")
    run_dir: str | None = Field(
        default=None, description="Where output goes; default <workspace>/.harness/workers-adhoc."
    )
    attempt: int = Field(default=1, ge=1, le=100_000)
    idempotency_key: str | None = Field(default=None, description="Same key twice returns the same worker.")
    env_allow: list[str] = Field(
        default_factory=list, description="Extra variable names passed through from the manager's environment."
    )
    trusted_roots: list[str] = Field(
        default_factory=list,
        description="As in check_trust: when given, the trust gate is tried at once (saving a round trip); "
        "a worker it does not resolve stays in trust_required.",
    )
    workdir: str | None = Field(
        default=None,
        description="Run here instead of the workspace (a task's git worktree inside the workspace); "
        "the packet's scope_path is taken relative to it.",
    )
    budget: Budget | None = Field(default=None, description="Caps for this attempt's agent (default: the packet's).")


class CheckTrustParams(_Params):
    worker_id: str
    trusted_roots: list[str] = Field(
        default_factory=list, description="Directories whose workers are trusted (matched by real path)."
    )
    idempotency_key: str | None = None


class MarkTrustedParams(_Params):
    worker_id: str
    approval_source: str = Field(min_length=1, description="Who or what decided: prompt, policy, flag, ...")
    approver: str | None = None
    idempotency_key: str | None = None


class RunWorkerParams(_Params):
    worker_id: str
    idempotency_key: str | None = Field(
        default=None, description="Accepted for symmetry: a worker never runs twice anyway."
    )


class GetWorkerParams(_Params):
    worker_id: str


class CancelWorkerParams(_Params):
    worker_id: str
    reason: str = "cancelled"
    idempotency_key: str | None = None


class WorkerReplayParams(_Params):
    events: list[WorkerEvent]
    idempotency_key: str | None = None
