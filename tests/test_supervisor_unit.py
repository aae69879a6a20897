"""Supervisor pieces that need no processes: what a restarted service is handed back."""

from __future__ import annotations

import io
from pathlib import Path

from harness import eventlog
from harness.config import Config
from harness.supervisor import UI, Supervisor


def _worker_event(event: str, wid: str, tid: str, state: str) -> dict:
    return {"event": event, "worker_id": wid, "task_id": tid, "state": state, "time": 0.0, "data": {}}


def test_a_restarted_worker_manager_gets_back_only_the_workers_it_can_still_be_asked_about(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, Config(), UI(io.StringIO()))
    sup.run_id = "20260101-000000-abcdef"
    log = eventlog.EventLog.open(sup.log_path, sup.run_id)
    sup.log = log
    script = [
        # w1: ran, ended, and its task's outcome is logged: settled for good.
        ("WORKER_SPAWNED", "w1", "a", "trust_required"),
        ("WORKER_STARTED", "w1", "a", "running"),
        ("WORKER_FINISHED", "w1", "a", "finished"),
        ("TASK_COMPLETED", "w1", "a", None),
        # w2: ended, but the supervisor died before logging the task's outcome.
        ("WORKER_SPAWNED", "w2", "b", "trust_required"),
        ("WORKER_FAILED", "w2", "b", "failed"),
        # w3: still running.
        ("WORKER_SPAWNED", "w3", "c", "trust_required"),
        ("WORKER_STARTED", "w3", "c", "running"),
    ]
    for etype, wid, tid, state in script:
        data = {} if state is None else _worker_event(etype.lower(), wid, tid, state)
        sup._index(log.append(etype, data, task_id=tid, worker_id=wid))
    handed = sup._replay_source("worker-manager")()
    assert sorted({e["worker_id"] for e in handed}) == ["w2", "w3"]
    assert [e["worker_id"] for e in handed] == ["w2", "w2", "w3", "w3"]  # in log order
    # The index is a fold of the log: rebuilding it from the file gives the same hand-back.
    again = Supervisor(tmp_path, Config(), UI(io.StringIO()))
    for event in eventlog.read_events(sup.log_path).events:
        again._index(event)
    assert again._replay_source("worker-manager")() == handed
    # A late event of a settled worker does not bring back a partial history.
    sup._index(
        log.append("WORKER_FAILED", _worker_event("worker_failed", "w1", "a", "failed"), task_id="a", worker_id="w1")
    )
    assert "w1" not in {e["worker_id"] for e in sup._replay_source("worker-manager")()}
    log.close()
