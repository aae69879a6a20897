"""The worker table: a pure fold of worker events.

The manager changes a worker only by emitting an event and applying it here, so the table it
holds is at every moment exactly ``WorkerTable.from_events(events emitted so far)``. A restarted
manager rebuilds the same table from the log (``replay``). Nothing here reads the clock, the
environment or the filesystem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from harness.models import WorkerEvent, WorkerEventType, WorkerState

_ENDED = frozenset({WorkerState.finished, WorkerState.failed})
#: A worker id is also a directory name under the run folder: no separators, no leading dot.
WORKER_ID = re.compile(r"w-[A-Za-z0-9][A-Za-z0-9_.\-]*")
WORKER_ID_MAX = 160


class WorkerRecord:
    """Everything known about one worker; rebuilt from its ``worker_spawned`` event onwards.

    A plain class rather than a dataclass: a dataclass compiles its methods at import time.
    """

    __slots__ = (
        "worker_id", "task_id", "attempt", "state", "idempotency_key", "scope_dir", "workspace", "run_dir",
        "packet", "env_allow", "budget", "sandbox", "executor", "trusted", "trust_source", "approver", "pid",
        "result",
    )  # fmt: skip

    def __init__(
        self,
        *,
        worker_id: str,
        task_id: str,
        attempt: int,
        state: WorkerState,
        idempotency_key: str | None,
        scope_dir: str,
        workspace: str,
        run_dir: str,
        packet: dict[str, Any],
        env_allow: list[str],
        budget: dict[str, Any] | None = None,
        sandbox: dict[str, Any] | None = None,
        executor: dict[str, Any] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.task_id = task_id
        self.attempt = attempt
        self.state = state
        self.idempotency_key = idempotency_key
        self.scope_dir = scope_dir
        self.workspace = workspace
        self.run_dir = run_dir
        self.packet = packet
        self.env_allow = env_allow
        self.budget = budget  # caps on this attempt's agent (None: the packet's own)
        self.sandbox = sandbox  # SandboxParams as sent (None: no sandbox)
        self.executor = executor  # ExecutorParams as sent (None: local processes)
        self.trusted = False
        self.trust_source: str | None = None
        self.approver: str | None = None
        self.pid: int | None = None
        self.result: dict[str, Any] | None = None

    @property
    def ended(self) -> bool:
        return self.state in _ENDED

    @property
    def worker_dir(self) -> str:
        return f"{self.run_dir}/workers/{self.worker_id}"

    def info(self, result: dict[str, Any] | None = None) -> dict[str, Any]:
        """The WorkerInfo wire shape; ``result`` overrides the logged (compact) result."""
        return {
            "worker_id": self.worker_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "state": self.state.value,
            "idempotency_key": self.idempotency_key,
            "scope_dir": self.scope_dir,
            "trusted": self.trusted,
            "trust_source": self.trust_source,
            "approver": self.approver,
            "pid": self.pid,
            "result": result if result is not None else self.result,
        }

    def snapshot(self) -> dict[str, Any]:
        """All of the record as plain data, for comparing tables."""
        snap = self.info()
        snap.update(workspace=self.workspace, run_dir=self.run_dir, packet=self.packet, env_allow=list(self.env_allow))
        snap["sandbox"] = self.sandbox
        snap["executor"] = self.executor
        return snap

    @classmethod
    def from_spawned(cls, event: WorkerEvent) -> WorkerRecord:
        data = event.data
        rec = cls(
            worker_id=event.worker_id,
            task_id=event.task_id,
            attempt=int(data.get("attempt", 1)),
            state=WorkerState(event.state),
            idempotency_key=data.get("idempotency_key"),
            scope_dir=str(data["scope_dir"]),
            workspace=str(data["workspace"]),
            run_dir=str(data["run_dir"]),
            packet=dict(data["packet"]),
            env_allow=list(data.get("env_allow") or []),
            budget=data.get("budget"),
            sandbox=data.get("sandbox"),
            executor=data.get("executor"),
        )
        trust = data.get("trust")
        if trust:  # resolved at the spawn by a trusted root (spawn_worker's trusted_roots)
            rec.trusted = True
            rec.trust_source = trust.get("source")
            rec.approver = trust.get("approver")
        return rec


class WorkerTable:
    """Workers by id and by idempotency key, changed only by :meth:`apply`."""

    __slots__ = ("workers", "by_key", "ignored")

    def __init__(self) -> None:
        self.workers: dict[str, WorkerRecord] = {}
        self.by_key: dict[str, str] = {}
        #: Events that named a worker this table never saw spawned (counted, otherwise ignored).
        self.ignored = 0

    @classmethod
    def from_events(cls, events: Iterable[WorkerEvent | Mapping[str, Any]]) -> WorkerTable:
        """Fold events, in order, into a new table (the pure rebuild behind ``replay``)."""
        table = cls()
        for event in events:
            table.apply(event if isinstance(event, WorkerEvent) else WorkerEvent.model_validate(event))
        return table

    def apply(self, event: WorkerEvent) -> WorkerRecord | None:
        """Apply one event; returns the record it touched (None when it was ignored).

        The event's ``state`` is the worker's state after it: the log is the truth, so the fold
        does not second-guess transitions the manager already checked when it emitted them.
        """
        kind = event.event
        if kind == WorkerEventType.worker_spawned:
            wid = event.worker_id
            if wid in self.workers or len(wid) > WORKER_ID_MAX or not WORKER_ID.fullmatch(wid):
                self.ignored += 1
                return None  # a duplicate spawn (the first one stands) or an unusable id
            spawned = WorkerRecord.from_spawned(event)
            self.add(spawned)
            return spawned
        rec = self.workers.get(event.worker_id)
        if rec is None:
            self.ignored += 1
            return None
        rec.state = WorkerState(event.state)
        data = event.data
        if kind == WorkerEventType.trust_resolved:
            rec.trusted = True
            rec.trust_source = data.get("source")
            rec.approver = data.get("approver")
        elif kind == WorkerEventType.worker_started:
            pid = data.get("pid")
            rec.pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
        elif kind in (WorkerEventType.worker_finished, WorkerEventType.worker_failed):
            rec.result = dict(data)
        return rec

    def add(self, rec: WorkerRecord) -> None:
        self.workers[rec.worker_id] = rec
        if rec.idempotency_key is not None:
            self.by_key.setdefault(rec.idempotency_key, rec.worker_id)

    def next_adhoc_id(self, task_id: str, attempt: int) -> str:
        """A fresh id for a worker spawned without a key; derived from the table, so replayable."""
        n = len(self.workers) + 1
        while (wid := f"w-{task_id}-{attempt}-{n}") in self.workers:
            n += 1
        return wid

    def snapshot(self) -> dict[str, Any]:
        """The whole table as plain data: equal snapshots mean equal tables."""
        return {
            "workers": {wid: rec.snapshot() for wid, rec in sorted(self.workers.items())},
            "by_key": dict(sorted(self.by_key.items())),
        }
