"""The worker manager's enums and the params models of its methods.

Only what the service needs to validate requests is defined here, on its start path; the result
models live in :mod:`._results`, loaded for schema generation and by callers that want them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

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


#: The prefix of the ids :func:`content_task_id` derives.
DERIVED_ID_PREFIX = "task-"


def content_task_id(packet: Mapping[str, Any]) -> str:
    """The id of a packet sent without one: ``task-`` + 12 hex digits of the sha256 of its
    canonical JSON (the fields other than ``id`` whose values are not their defaults, keys
    sorted), so the same packet always gets the same id however it was spelled, and a field
    added to TaskPacket later does not change it. A packet that is invalid anyway is hashed as
    given; validation then reports what is wrong with it."""
    try:
        checked = TaskPacket.model_validate({**packet, "id": "x"})
        body: Any = checked.model_dump(mode="json", exclude={"id"}, exclude_defaults=True)
    except ValidationError:
        body = {k: v for k, v in packet.items() if k != "id"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return DERIVED_ID_PREFIX + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:12]


class _IdOptional:
    """The JSON Schema of a packet whose ``id`` may be left out: TaskPacket's own schema, inlined,
    with ``id`` no longer required (pydantic still validates a full TaskPacket)."""

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        body = copy.deepcopy(handler.resolve_ref_schema(handler(core_schema)))
        body["required"] = [name for name in body.get("required", []) if name != "id"]
        if not body["required"]:
            del body["required"]
        body["properties"]["id"] = {
            **body["properties"]["id"],
            "description": "Unique within the plan; when left out, task- and 12 hex digits of the sha256 of "
            "the packet's canonical JSON (the same packet always gets the same id).",
        }
        return body


class SandboxParams(_Params):
    """How a worker's steps are confined. With ``mode: bwrap`` every step runs under bubblewrap:
    the machine read-only except the scope directory, ``writable`` and a private /tmp, and no
    network unless ``network``; a manager that finds no bubblewrap fails the worker rather than
    run it unconfined."""

    mode: Literal["bwrap", "off"] = "off"
    network: bool = Field(default=False, description="False: the steps see only a loopback of their own.")
    writable: list[str] = Field(
        default_factory=list,
        description="Absolute paths the steps may write besides the scope directory (a worktree, the run folder).",
    )
    readonly: list[str] = Field(
        default_factory=list,
        description="Absolute paths kept read-only even inside writable ones (the run's event log); the "
        "workspace always is.",
    )


class ExecutorParams(_Params):
    """Where a worker runs: ``local`` processes of the manager's machine (the default), or one Ray
    task per attempt on a cluster (the manager needs ``harness[ray]``)."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(
        default=None, description="ray: the cluster to join; default: a local Ray the manager starts."
    )
    shared_fs: bool = Field(
        default=False,
        description="ray: the workspace is on a file system every node shares, so steps run in place; "
        "otherwise the scope is bundled to the node and the changes bundled back.",
    )
    bundle_cap_mb: int = Field(default=256, gt=0, description="ray: the largest bundle either way, in MiB.")


class SpawnWorkerParams(_Params):
    task_packet: Annotated[TaskPacket, _IdOptional()] = Field(
        description="The task to run: a TaskPacket whose id may be left out (then derived from its content)."
    )
    workspace: str | None = Field(
        default=None,
        description="The workspace root; the worker is confined inside it. Default: the manager's working directory.",
    )
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
    sandbox: SandboxParams | None = Field(
        default=None, description="Run every step of the worker in the OS sandbox (default: no sandbox)."
    )
    executor: ExecutorParams | None = Field(
        default=None, description="Where the worker runs (default: local processes); kept in worker_spawned."
    )
    hold: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="spawn_and_run only: get the worker ready, then start its first process only once "
        "release_worker names it, waiting at most this many seconds (never released: it fails cancelled, "
        "unrun). The caller makes its own record of the start durable meanwhile.",
    )
    defer_events: float | None = Field(
        default=None,
        gt=0,
        le=60,
        description="spawn_and_run with an idempotency_key only: the worker's events after worker_spawned may "
        "come in the answer's events list instead of as worker_event notifications, when the call ends within "
        "this many seconds; those held longer are then sent as notifications, in order, and the rest flow live.",
    )
    _derived_id: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _packet_id_from_content(
        cls, data: Any, handler: ModelWrapValidatorHandler[SpawnWorkerParams]
    ) -> SpawnWorkerParams:
        """Give a packet sent without an id (or with a null one) the id its content derives."""
        derived = False
        if isinstance(data, Mapping):
            raw = data.get("task_packet")
            if isinstance(raw, Mapping) and raw.get("id") is None:
                data = {**data, "task_packet": {**raw, "id": content_task_id(raw)}}
                derived = True
        params = handler(data)
        params._derived_id = derived
        return params

    @property
    def derived_id(self) -> bool:
        """True when the packet came without an id and :func:`content_task_id` named it."""
        return self._derived_id


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


class ReleaseWorkerParams(_Params):
    worker_id: str = Field(description="The worker a spawn_and_run with hold got ready (or is getting ready).")


class GetWorkerParams(_Params):
    worker_id: str


class CancelWorkerParams(_Params):
    worker_id: str
    reason: str = "cancelled"
    idempotency_key: str | None = None


class AnswerToolParams(_Params):
    """The answer to an agent's tool-permission request (a ``tool_permission`` notification)."""

    worker_id: str
    request_id: str
    allow: bool
    message: str = Field(default="", description="Why (shown to the agent when denied).")


class AnswerToolResult(BaseModel):
    worker_id: str
    request_id: str
    allow: bool
    delivered: bool = Field(description="False when no such request waits (answered already, or too late).")


class ToolPermissionRequest(BaseModel):
    """The ``tool_permission`` notification: a running agent asks whether it may run a tool and
    waits for ``answer_tool_permission`` (no answer in time: denied)."""

    worker_id: str
    task_id: str
    attempt: int
    request_id: str
    tool: str = Field(description="The tool, as the agent names it (Bash, Write, WebFetch, ...).")
    call: str = Field(description="The call in one line, e.g. 'Bash(npm test)' or 'Write(/path/file)'.")
    description: str = ""
    workdir: str = Field(description="The directory the agent works in (its worktree or scope).")
    input: dict[str, Any] = Field(
        default_factory=dict, description="The call's path, command or URL (file contents are left out)."
    )


class WorkerReplayParams(_Params):
    events: list[WorkerEvent]
    idempotency_key: str | None = None
