"""What a restarted service is handed back, kept as a fold of the log, and the mapping between the
worker manager's notifications and the worker events of the log.

The log records a worker event flat (the event's own fields) and leaves out what it can say
again (log format 3): the state the event's type implies, the manager's clock (the event's own
time stands for it), a spawn's workspace, run folder, idempotency key, scope and environment
allow-list where they are the run's defaults, the approver of its trust when that is a trusted
root which is the workspace itself, and a result's empty fields; output files are
named relative to the run folder. A spawned worker's packet is not copied but referenced by the
plan revision it came from, since PLAN_CREATED recorded it already, with the commands pre_command
hooks replaced for that attempt (COMMAND_CHECKED ``replaced_by``). :func:`to_wire` rebuilds the
notification the worker manager sent, packet included, so that its ``replay`` rebuilds exactly
the table it had.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..events import WORKER_STATE, worker_event_name, worker_event_type
from ..events import EventType as E
from ..planlog import COMPACT_SINCE, created_plan
from ..trust import TRUSTED_ROOT

__all__ = ["ReplayIndex", "RunPaths", "from_wire", "to_wire"]

_ENDED = frozenset({E.WORKER_FINISHED, E.WORKER_FAILED})
_OUTCOMES = frozenset({E.TASK_COMPLETED, E.TASK_FAILED})
#: A worker result's fields as the manager sends them when empty (schemas/WorkerResult.json).
_RESULT_DEFAULTS: dict[str, Any] = {
    "exit_code": None,
    "signal": None,
    "timed_out": False,
    "reason": None,
    "failed_step": None,
    "steps": [],
    "duration_ms": None,
    "stdout_tail": "",
    "stderr_tail": "",
    "stdout_path": None,
    "stderr_path": None,
    "interrupted": False,
    "message": None,
    "agent": None,
}
_OUTPUT_PATHS = ("stdout_path", "stderr_path")


def _implied_state(etype: str, data: Mapping[str, Any]) -> str | None:
    """The state a worker event leaves its worker in; a spawn that carries its trust (resolved by
    a trusted root at once) leaves it ready."""
    if etype == E.WORKER_SPAWNED and data.get("trust"):
        return "ready_for_prompt"
    return WORKER_STATE.get(etype)


@dataclass(frozen=True, slots=True)
class RunPaths:
    """What a run's worker spawns share: its id, its workspace as the manager resolves it (real
    path) and its run folder."""

    run_id: str
    workspace: str
    run_dir: str

    @classmethod
    def of(cls, run_id: str, workspace: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> RunPaths:
        return cls(run_id, os.path.realpath(workspace), os.path.abspath(run_dir))


def _spawn_defaults(paths: RunPaths, task_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    workspace = data.get("workspace", paths.workspace)
    return {
        "workspace": paths.workspace,
        "run_dir": paths.run_dir,
        "idempotency_key": f"{paths.run_id}:{task_id}:{data.get('attempt')}",
        "env_allow": [],
        "scope_dir": workspace,
    }


def from_wire(
    params: Mapping[str, Any], revision: int, paths: RunPaths | None = None
) -> tuple[E, dict[str, Any], str | None, str | None] | None:
    """(type, data, task_id, worker_id) to log for a ``worker_event`` notification; None when the
    event kind is unknown to this version (it is then logged as a SERVICE_NOTIFICATION)."""
    etype = worker_event_type(str(params.get("event", "")))
    if etype is None:
        return None
    inner = params.get("data") or {}
    data: dict[str, Any] = {k: v for k, v in inner.items() if k not in ("packet", "state", "at")}
    state = params.get("state")
    if state != _implied_state(etype, data):
        data["state"] = state
    tid = params.get("task_id")
    if etype is E.WORKER_SPAWNED:
        data["revision"] = revision
        if paths is not None:
            for key, value in _spawn_defaults(paths, str(tid or ""), data).items():
                if key in data and data[key] == value:
                    del data[key]
            if data.get("trust") == {"source": TRUSTED_ROOT, "approver": paths.workspace}:
                data["trust"] = {"source": TRUSTED_ROOT}  # the workspace is the root: said again
    elif etype in _ENDED:
        for key, empty in _RESULT_DEFAULTS.items():
            if key in data and data[key] == empty:
                del data[key]
        if paths is not None:
            for key in _OUTPUT_PATHS:
                path = data.get(key)
                if isinstance(path, str) and path.startswith(paths.run_dir + os.sep):
                    data[key] = path[len(paths.run_dir) + 1 :]
    return etype, data, tid, params.get("worker_id")


#: A task attempt's replaced commands: (task_id, attempt) -> {(packet list, index): command}.
Rewrites = Mapping[tuple[str, int], Mapping[tuple[str, int], str]]
_LISTS = {"command": "commands", "acceptance": "acceptance_tests"}


def to_wire(
    event: Mapping[str, Any],
    packets: Mapping[int, Mapping[str, Any]],
    rewrites: Rewrites | None = None,
    paths: RunPaths | None = None,
) -> dict[str, Any]:
    """The ``worker_event`` notification a logged worker event came from."""
    d = dict(event.get("data") or {})
    etype = event["type"]
    state = d.pop("state", _implied_state(etype, d))
    at = d.pop("at", event.get("unix"))
    tid = event.get("task_id")
    if etype == E.WORKER_SPAWNED:
        if paths is not None:
            for key, value in _spawn_defaults(paths, str(tid or ""), d).items():
                d.setdefault(key, value)
            trust = d.get("trust")
            if trust == {"source": TRUSTED_ROOT}:
                d["trust"] = {**trust, "approver": paths.workspace}
        revision = d.pop("revision", None)
        d["packet"] = (packets.get(revision) or {}).get(tid or "") if revision is not None else None
        replaced = (rewrites or {}).get((tid or "", int(d.get("attempt") or 0)))
        if replaced and d["packet"] is not None:
            packet = dict(d["packet"])
            for (name, index), command in replaced.items():
                packet[name] = [command if i == index else c for i, c in enumerate(packet.get(name) or [])]
            d["packet"] = packet
    elif etype in _ENDED:
        for key, empty in _RESULT_DEFAULTS.items():
            if key not in d:
                d[key] = list(empty) if isinstance(empty, list) else empty
        if paths is not None:
            for key in _OUTPUT_PATHS:
                path = d.get(key)
                if isinstance(path, str) and not os.path.isabs(path):
                    d[key] = os.path.join(paths.run_dir, path)
    return {
        "event": worker_event_name(etype),
        "worker_id": event.get("worker_id"),
        "task_id": tid,
        "state": state,
        "time": at,
        "data": d,
    }


class ReplayIndex:
    """The events each service gets back after a restart, folded from the log as it grows.

    The worker manager gets the workers it can still be asked about: a worker that ended and whose
    task outcome is logged is settled for good (retries use new attempts and keys), so its events
    are dropped and a replay stays small however long the run grows. Bootstrap gets its completed
    phases. Packets are kept per plan revision to rebuild the spawn events.
    """

    def __init__(self, paths: RunPaths | None = None) -> None:
        self.paths = paths
        self._plan_file: dict[str, Any] | None = None  # RUN_STARTED's, which a PLAN_CREATED may name
        self._compact = False  # its plans are compact (RUN_STARTED's log_format)
        self._workers: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._ended: set[str] = set()
        self._outcome: set[str] = set()
        self._settled: set[str] = set()
        self._phases: list[dict[str, Any]] = []
        self._packets: dict[int, dict[str, Any]] = {}
        self._rewrites: dict[tuple[str, int], dict[tuple[str, int], str]] = {}

    def apply(self, event: dict[str, Any]) -> None:
        etype = event["type"]
        if etype == E.RUN_STARTED:
            self._plan_file = event["data"].get("plan_file")
            self._compact = int(event["data"].get("log_format", 1)) >= COMPACT_SINCE
            return
        if etype == E.PLAN_CREATED:
            d = event["data"]
            tasks = created_plan(d, self._plan_file, self._compact).get("tasks", [])
            self._packets[int(d.get("revision", 1))] = {p["id"]: p for p in tasks}
            return
        if etype == E.BOOTSTRAP_PHASE_COMPLETED:
            self._phases.append(event["data"])
            return
        if etype == E.COMMAND_CHECKED:
            d = event["data"]
            if d.get("replaced_by") and d.get("decision") == "allow" and d.get("kind") in _LISTS:
                where = (_LISTS[d["kind"]], int(d.get("index", 0)))
                self._rewrites.setdefault((event.get("task_id") or "", int(d.get("attempt", 0))), {})[where] = d[
                    "replaced_by"
                ]
            return
        wid = event.get("worker_id")
        if not wid or wid in self._settled:
            return
        if etype.startswith("WORKER_"):
            self._workers.setdefault(wid, []).append((event["seq"], event))
            if etype in _ENDED:
                self._ended.add(wid)
        elif etype in _OUTCOMES:
            self._outcome.add(wid)
        if wid in self._ended and wid in self._outcome:
            self._settled.add(wid)
            self._workers.pop(wid, None)

    def worker_events(self) -> list[dict[str, Any]]:
        """The unsettled workers' notifications, in log order, packets included."""
        logged = sorted((e for evs in self._workers.values() for e in evs), key=lambda pair: pair[0])
        return [to_wire(event, self._packets, self._rewrites, self.paths) for _, event in logged]

    def phase_events(self) -> list[dict[str, Any]]:
        return list(self._phases)
