"""The worker-manager service: real OS processes behind a trust gate, as a JSON-RPC program.

    python -m harness.services.worker_manager      (or harness-worker-manager)

A worker runs its packet's commands, then its acceptance tests (the verdict), each step as
``/bin/sh -c`` in its own process group, confined to its scope directory inside the workspace,
with a whitelisted environment, one deadline and its output appended to files in the run folder.
Each state change is a ``worker_event`` notification; :meth:`WorkerTable.from_events` folds them
back into the same table, which is how ``replay`` restores a manager after a crash. Execution
goes through the small :class:`Executor` interface; :class:`LocalExecutor` is the one backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._executor import Execution, Executor, Job, Outcome, Step
from ._local import LocalExecutor
from ._manager import BASE_ENV, DEFAULT_TIMEOUT, WorkerManager, confine, is_inside
from ._models import (
    CancelWorkerParams,
    CheckTrustParams,
    FailureReason,
    GetWorkerParams,
    MarkTrustedParams,
    ReleaseWorkerParams,
    RunWorkerParams,
    SandboxParams,
    SpawnWorkerParams,
    StepKind,
    WorkerReplayParams,
)
from ._service import build_server, main
from ._table import WorkerRecord, WorkerTable

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ._results import (
        CheckTrustResult,
        FailedStep,
        ListWorkersResult,
        SpawnAndRunResult,
        StepRecord,
        WorkerInfo,
        WorkerReplayResult,
        WorkerResult,
    )

    SCHEMAS: dict[str, type[BaseModel]]

#: Loaded on first use: the service itself never needs the result models (start-up time).
_LAZY = frozenset(
    {
        "CheckTrustResult",
        "FailedStep",
        "ListWorkersResult",
        "SpawnAndRunResult",
        "StepRecord",
        "WorkerInfo",
        "WorkerReplayResult",
        "WorkerResult",
    }
)


def _schemas() -> dict[str, type[BaseModel]]:
    """Schema name -> model, for ``python -m harness.schemagen``."""
    from . import _models as p
    from . import _results as r

    return {
        "SpawnWorkerParams": p.SpawnWorkerParams,
        "CheckTrustParams": p.CheckTrustParams,
        "CheckTrustResult": r.CheckTrustResult,
        "MarkTrustedParams": p.MarkTrustedParams,
        "RunWorkerParams": p.RunWorkerParams,
        "ReleaseWorkerParams": p.ReleaseWorkerParams,
        "GetWorkerParams": p.GetWorkerParams,
        "ListWorkersResult": r.ListWorkersResult,
        "CancelWorkerParams": p.CancelWorkerParams,
        "WorkerReplayParams": p.WorkerReplayParams,
        "WorkerReplayResult": r.WorkerReplayResult,
        "WorkerInfo": r.WorkerInfo,
        "SpawnAndRunResult": r.SpawnAndRunResult,
        "WorkerResult": r.WorkerResult,
        "AnswerToolParams": p.AnswerToolParams,
        "AnswerToolResult": p.AnswerToolResult,
        "ToolPermissionRequest": p.ToolPermissionRequest,
    }


def __getattr__(name: str) -> Any:
    if name == "SCHEMAS":
        value: Any = _schemas()
    elif name in _LAZY:
        from . import _results

        value = getattr(_results, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "BASE_ENV",
    "DEFAULT_TIMEOUT",
    "SCHEMAS",
    "CancelWorkerParams",
    "CheckTrustParams",
    "CheckTrustResult",
    "Execution",
    "Executor",
    "FailedStep",
    "FailureReason",
    "GetWorkerParams",
    "Job",
    "ListWorkersResult",
    "LocalExecutor",
    "MarkTrustedParams",
    "Outcome",
    "ReleaseWorkerParams",
    "RunWorkerParams",
    "SandboxParams",
    "SpawnAndRunResult",
    "SpawnWorkerParams",
    "Step",
    "StepKind",
    "StepRecord",
    "WorkerInfo",
    "WorkerManager",
    "WorkerRecord",
    "WorkerReplayParams",
    "WorkerReplayResult",
    "WorkerResult",
    "WorkerTable",
    "build_server",
    "confine",
    "is_inside",
    "main",
]
