"""The results of the worker manager's methods, as pydantic models.

With the params models in :mod:`._models` they are the one source of the worker manager's wire
schemas (``schemas/*.json``, generated). The service builds the same shapes as plain dicts (see
``_table.WorkerRecord.info`` and ``_executor.Outcome.as_dict``) and does not import this module
on its start path; the tests validate every reply against the generated schemas, so the two
cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from harness.models import WorkerEvent, WorkerState

from ._models import FailureReason, StepKind


class StepRecord(BaseModel):
    kind: StepKind
    command: str
    exit_code: int | None = Field(description="Null when the step was killed by a signal or never started.")
    duration_ms: float


class FailedStep(BaseModel):
    kind: StepKind
    index: int = Field(ge=0, description="Position in its list (commands or acceptance_tests).")
    command: str


class WorkerResult(BaseModel):
    """How a worker ended.

    The tails hold the last ~2 KiB of the failed step's (or the last step's) output. In
    ``worker_finished``/``worker_failed`` events they are cut to a few hundred bytes to keep the
    log small; the full output is in the files at ``stdout_path``/``stderr_path`` (null when the
    worker printed nothing on that stream: no file is made for it).
    """

    ok: bool
    exit_code: int | None = None
    signal: int | None = Field(default=None, description="The signal that killed the step, e.g. 9.")
    timed_out: bool = False
    reason: FailureReason | None = Field(default=None, description="Null when ok.")
    failed_step: FailedStep | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    duration_ms: float = 0.0
    stdout_tail: str = ""
    stderr_tail: str = ""
    stdout_path: str | None = None
    stderr_path: str | None = None
    interrupted: bool = Field(default=False, description="True when the worker's manager died while it ran.")
    message: str | None = Field(default=None, description="A human explanation, for spawn errors and the like.")
    agent: dict[str, Any] | None = Field(
        default=None,
        description="What the agent step did, read from its output: session_id, model, tools, tokens_in, "
        "tokens_out, cost_usd, turns, final_message, failure (why it failed, whatever its exit code), exit_code.",
    )
    placement: dict[str, Any] | None = Field(
        default=None,
        description="Where a cluster executor ran it (absent for local processes): executor, node_id, task_id, "
        "and the bundles' sha256 and size (bundle_sha256, bundle_bytes, changes_sha256, changes_bytes).",
    )


class WorkerInfo(BaseModel):
    """A worker as the manager sees it now."""

    worker_id: str
    task_id: str
    attempt: int
    state: WorkerState
    idempotency_key: str | None = None
    scope_dir: str
    trusted: bool
    trust_source: str | None = None
    approver: str | None = None
    pid: int | None = Field(default=None, description="Pid of the worker's first step, once it started.")
    result: WorkerResult | None = None


class SpawnAndRunResult(WorkerInfo):
    """spawn_and_run's answer: the worker, and with defer_events the events it held back."""

    events: list[WorkerEvent] | None = Field(
        default=None,
        description="With defer_events: the worker's events not sent as notifications, in order, to be "
        "taken as if they had come just before this answer.",
    )


class CheckTrustResult(BaseModel):
    worker_id: str
    trusted: bool
    state: WorkerState
    reason: str


class ListWorkersResult(BaseModel):
    workers: list[WorkerInfo]


class WorkerReplayResult(BaseModel):
    workers: int = Field(description="Workers in the table after the replay.")
    reaped: list[str] = Field(description="Workers that were running under a dead manager, now failed as interrupted.")
