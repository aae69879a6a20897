"""Supervisor pieces that need no processes: what a restarted service is handed back, and how a
worker's notification is logged (flat, its packet referenced by plan revision) and rebuilt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import eventlog
from harness._spawn import start_time
from harness.events import EventType as E
from harness.state import RunState, ServiceInfo, ServiceState
from harness.supervisor._mesh import stale_services
from harness.supervisor._replay import ReplayIndex, RunPaths, from_wire, to_wire

RUN = "20260101-000000-abcdef"
PACKETS = [{"id": t, "title": t.upper(), "commands": ["true"]} for t in "abc"]


def _wire(event: str, wid: str, tid: str, state: str, **data: Any) -> dict[str, Any]:
    return {"event": event, "worker_id": wid, "task_id": tid, "state": state, "time": 5.0, "data": data}


def test_a_spawn_notification_is_logged_flat_with_its_packet_referenced_and_rebuilt_exactly() -> None:
    spawned = _wire("worker_spawned", "w1", "a", "trust_required", packet=PACKETS[0], attempt=1, scope_dir="/w")
    etype, data, tid, wid = from_wire(spawned, revision=2) or (None, None, None, None)
    assert (etype, tid, wid) == (E.WORKER_SPAWNED, "a", "w1")
    assert data == {"attempt": 1, "scope_dir": "/w", "revision": 2}  # the state is the type's, the time the event's
    event = {"type": etype, "task_id": tid, "worker_id": wid, "data": data, "unix": 5.0}
    assert to_wire(event, {2: {"a": PACKETS[0]}}) == spawned
    assert from_wire({**spawned, "event": "worker_teleported"}, 1) is None  # unknown: not a worker event
    odd = _wire("worker_started", "w1", "a", "trust_required", pid=7)  # a state its type does not imply
    logged = from_wire(odd, 1)
    assert logged is not None and logged[1] == {"pid": 7, "state": "trust_required"}


def test_a_spawn_leaves_out_the_runs_defaults_and_gets_them_back() -> None:
    paths = RunPaths(RUN, "/ws", f"/ws/.harness/runs/{RUN}")
    defaults = {"workspace": "/ws", "run_dir": paths.run_dir, "idempotency_key": f"{RUN}:a:2", "env_allow": []}
    spawned = _wire(
        "worker_spawned", "w1", "a", "trust_required", packet=PACKETS[0], attempt=2, scope_dir="/ws", **defaults
    )
    logged = from_wire(spawned, 1, paths)
    assert logged is not None and logged[1] == {"attempt": 2, "revision": 1}
    event = {"type": logged[0], "task_id": "a", "worker_id": "w1", "data": logged[1], "unix": 5.0}
    assert to_wire(event, {1: {"a": PACKETS[0]}}, paths=paths) == spawned
    other = {**defaults, "workspace": "/elsewhere", "idempotency_key": "mine", "env_allow": ["HOME"]}
    kept = _wire(
        "worker_spawned", "w2", "a", "trust_required", packet=PACKETS[0], attempt=2, scope_dir="/elsewhere/x", **other
    )
    logged = from_wire(kept, 1, paths)
    assert logged is not None and set(logged[1]) == {
        "attempt",
        "revision",
        "workspace",
        "idempotency_key",
        "env_allow",
        "scope_dir",
    }
    event = {"type": logged[0], "task_id": "a", "worker_id": "w2", "data": logged[1], "unix": 5.0}
    assert to_wire(event, {1: {"a": PACKETS[0]}}, paths=paths) == kept


def test_a_spawn_trusted_by_the_workspace_itself_leaves_out_its_approver_and_gets_it_back() -> None:
    paths = RunPaths(RUN, "/ws", f"/ws/.harness/runs/{RUN}")
    for root, logged_trust in [
        ("/ws", {"source": "trusted_root"}),
        ("/ws/sub", {"source": "trusted_root", "approver": "/ws/sub"}),  # another root: kept
    ]:
        trust = {"source": "trusted_root", "approver": root}
        spawned = _wire("worker_spawned", "w1", "a", "ready_for_prompt", packet=PACKETS[0], attempt=1, trust=trust)
        logged = from_wire(spawned, 1, paths)
        assert logged is not None and logged[1] == {"attempt": 1, "trust": logged_trust, "revision": 1}
        event = {"type": logged[0], "task_id": "a", "worker_id": "w1", "data": logged[1], "unix": 5.0}
        rebuilt = to_wire(event, {1: {"a": PACKETS[0]}}, paths=paths)
        assert rebuilt["data"]["trust"] == trust and rebuilt["state"] == "ready_for_prompt"
    decided = {"source": "prompt", "approver": "/ws"}  # a person named like the workspace: not a root
    logged = from_wire(_wire("worker_spawned", "w2", "a", "ready_for_prompt", attempt=1, trust=decided), 1, paths)
    assert logged is not None and logged[1]["trust"] == decided


def test_a_result_leaves_out_its_empty_fields_and_names_its_files_in_the_run_folder() -> None:
    paths = RunPaths(RUN, "/ws", f"/ws/.harness/runs/{RUN}")
    result: dict[str, Any] = {
        "ok": False, "exit_code": 1, "signal": None, "timed_out": False, "reason": "acceptance_failed",
        "failed_step": {"kind": "acceptance", "index": 0, "command": "false"}, "steps": [], "duration_ms": 2.5,
        "stdout_tail": "", "stderr_tail": "boom", "stdout_path": None,
        "stderr_path": f"{paths.run_dir}/workers/w1/stderr.log", "interrupted": False, "message": None, "agent": None,
    }  # fmt: skip
    logged = from_wire(_wire("worker_failed", "w1", "a", "failed", **result), 1, paths)
    assert logged is not None
    assert logged[1] == {
        "ok": False, "exit_code": 1, "reason": "acceptance_failed", "failed_step": result["failed_step"],
        "duration_ms": 2.5, "stderr_tail": "boom", "stderr_path": "workers/w1/stderr.log",
    }  # fmt: skip
    event = {"type": logged[0], "task_id": "a", "worker_id": "w1", "data": logged[1], "unix": 5.0}
    assert to_wire(event, {}, paths=paths) == _wire("worker_failed", "w1", "a", "failed", **result)


def test_a_restarted_worker_manager_gets_back_only_the_workers_it_can_still_be_asked_about(tmp_path: Path) -> None:
    log = eventlog.EventLog.open(eventlog.events_path(tmp_path, RUN), RUN)
    index = ReplayIndex()
    index.apply(
        log.append(E.PLAN_CREATED, {"plan": {"objective": "o", "tasks": PACKETS}, "revision": 1, "report": None})
    )
    script = [
        # w1: ran, ended, and its task's outcome is logged: settled for good.
        ("worker_spawned", "w1", "a", "trust_required"),
        ("worker_started", "w1", "a", "running"),
        ("worker_finished", "w1", "a", "finished"),
        (E.TASK_COMPLETED, "w1", "a", None),
        # w2: ended, but the supervisor died before logging the task's outcome.
        ("worker_spawned", "w2", "b", "trust_required"),
        ("worker_failed", "w2", "b", "failed"),
        # w3: still running.
        ("worker_spawned", "w3", "c", "trust_required"),
        ("worker_started", "w3", "c", "running"),
    ]
    for kind, wid, tid, state in script:
        if state is None:
            index.apply(log.append(kind, {"attempt": 1, "worker_id": wid}, task_id=tid, worker_id=wid))
            continue
        logged = from_wire(_wire(kind, wid, tid, state), 1)
        assert logged is not None
        index.apply(log.append(logged[0], logged[1], task_id=tid, worker_id=wid))
    handed = index.worker_events()
    assert [(e["worker_id"], e["event"]) for e in handed] == [
        ("w2", "worker_spawned"),
        ("w2", "worker_failed"),
        ("w3", "worker_spawned"),
        ("w3", "worker_started"),
    ]  # in log order
    assert handed[0]["data"]["packet"] == PACKETS[1]  # the packet comes back from the plan
    # The index is a fold of the log: rebuilding it from the file gives the same hand-back.
    again = ReplayIndex()
    for event in eventlog.read_events(log.path).events:
        again.apply(event)
    assert again.worker_events() == handed
    # A late event of a settled worker does not bring back a partial history.
    late = from_wire(_wire("worker_failed", "w1", "a", "failed"), 1)
    assert late is not None
    index.apply(log.append(late[0], late[1], task_id="a", worker_id="w1"))
    assert "w1" not in {e["worker_id"] for e in index.worker_events()}
    log.close()


def test_a_stale_service_is_recognised_by_pid_and_start_time_never_by_a_reused_pid() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        state = RunState()
        recorded = start_time(child.pid)
        assert recorded is not None
        state.services["planning"] = ServiceInfo("planning", ServiceState.running, child.pid, recorded)
        assert stale_services(state) == [("planning", child.pid)]
        # The same pid with another start time is another process: left alone.
        state.services["planning"].start_time = recorded - 1
        assert stale_services(state) == []
        # A pid whose start time was never recorded cannot be identified: left alone.
        state.services["planning"].start_time = None
        assert stale_services(state) == []
        # Our own pid, recorded as a service with a made-up start time, is never a match.
        state.services["bootstrap"] = ServiceInfo("bootstrap", ServiceState.running, os.getpid(), 1)
        assert stale_services(state) == []
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


class _Manager:
    """A worker manager as the supervisor sees it: a ping restarts it (a new pid) once it died."""

    def __init__(self) -> None:
        self.pid, self.dead, self.info = 100, False, {"methods": ["spawn_worker"]}

    def call(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        assert method == "ping"
        if self.dead:
            self.pid, self.dead = self.pid + 1, False
        return {}


class _Bootstrap:
    """A bootstrap service whose phase fails when it finds the manager dead, or when ``broken``."""

    def __init__(self, manager: _Manager, *, kill_during: int | None = None, broken: bool = False) -> None:
        self.manager, self.kill_during, self.broken = manager, kill_during, broken
        self.seen: list[int] = []  # the manager pid each run of the phase was given

    def call(self, method: str, params: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        self.seen.append(params["context"]["worker_manager"]["pid"])
        if len(self.seen) == self.kill_during:
            self.manager.dead = True  # SIGKILLed while the phase looked at it: the supervisor has not seen it yet
        ok = not self.broken and not self.manager.dead
        return {"success": ok, "diagnostics": [] if ok else ["worker manager is not running"]}


def test_a_phase_that_found_the_worker_manager_dead_runs_again_against_the_restarted_one() -> None:
    from harness.supervisor._run import Supervisor

    for bootstrap_of, expected, success in (
        (lambda m: _Bootstrap(m, kill_during=1), [100, 101], True),  # the manager died during the phase
        (lambda m: _Bootstrap(m, broken=True), [100], False),  # the phase failed on its own: not run again
    ):
        manager = _Manager()
        bootstrap = bootstrap_of(manager)
        sup = Supervisor.__new__(Supervisor)
        sup.run_id = RUN
        services: dict[str, Any] = {"worker-manager": manager, "bootstrap": bootstrap}
        sup.svc = services.__getitem__  # type: ignore[method-assign,assignment]
        result = sup._run_phase("daemon_worker_fastpath", {"workspace": "/w"})
        assert (bootstrap.seen, result["success"]) == (expected, success)
