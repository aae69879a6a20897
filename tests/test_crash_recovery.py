"""Crash recovery: any process of a run killed with SIGKILL at any moment; nothing lost, nothing redone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import (
    alive,
    assert_no_processes_left,
    events,
    finish,
    first,
    harness,
    latest_run,
    start_cli,
    types,
    wait_for_log,
    write_config,
    write_plan,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness import eventlog
from harness.state import TaskStatus, fold
from harness.supervisor._run import DEFER_SECONDS

pytestmark = pytest.mark.slow

SERVICE_RESTART = {"max_restarts": 3, "within_seconds": 30, "backoff": [0.02, 0.05]}


def start_run(ws: Path, *args: str) -> subprocess.Popen[str]:
    return start_cli(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve", *args)


def service_pid(evts: list[dict], name: str) -> int:
    pid = None
    for e in evts:
        if e["type"] in ("SERVICE_STARTED", "SERVICE_RESTARTED") and e["data"].get("service") == name:
            pid = e["data"]["pid"]
    assert pid, f"no pid for {name}"
    return pid


@pytest.fixture
def ws(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    yield workspace
    assert_no_processes_left(workspace)


def test_a_service_that_dies_on_every_start_goes_fatal_and_the_run_waits_naming_it(ws: Path) -> None:
    write_plan(ws, [{"id": "a", "title": "A", "commands": ["true"], "acceptance_tests": ["true"]}])
    write_config(
        ws,
        services={
            "bootstrap": {
                "command": [sys.executable, "-c", "import sys; sys.exit(4)"],
                "restart": {"max_restarts": 2, "within_seconds": 30, "backoff": [0.01]},
            }
        },
    )
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "bootstrap" in proc.stdout + proc.stderr
    evts = events(ws)
    crashes = [e for e in evts if e["type"] == "SERVICE_CRASHED" and e["data"]["service"] == "bootstrap"]
    assert len(crashes) == 3  # the first start and two restarts: more than max_restarts=2 -> fatal
    assert first(evts, "SERVICE_FATAL")["data"]["service"] == "bootstrap"
    assert first(evts, "RUN_WAITING")["data"]["reason"] == "service_fatal"
    assert "TASK_STARTED" not in types(evts)
    # Fixed, the run resumes and finishes (the plan it now makes needs its own approval).
    write_config(ws)
    done = harness(ws, "resume", latest_run(ws), "--approve")
    assert done.returncode == 0, done.stdout + done.stderr


def wait_for_file(path: Path, text: str, timeout: float = 10.0) -> None:
    """Poll (bounded) until ``path`` holds ``text``: the step got that far."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text():
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} never held {text!r}")


def test_killing_the_worker_manager_mid_task_restarts_it_replays_and_reruns_the_task_as_a_new_attempt(ws: Path) -> None:
    hang_first = 'echo "$HARNESS_ATTEMPT" >> side.txt; [ "$HARNESS_ATTEMPT" -gt 1 ] || exec sleep 60'
    write_plan(ws, [{"id": "t", "title": "Hangs on attempt 1", "commands": [hang_first], "acceptance_tests": ["true"]}])
    write_config(ws, services={"worker-manager": {"restart": SERVICE_RESTART}})
    proc = start_run(ws)
    evts = wait_for_log(ws, lambda ev: "WORKER_STARTED" in types(ev))
    sleeper = first(evts, "WORKER_STARTED")["data"]["pid"]
    wait_for_file(ws / "side.txt", "1")  # attempt 1 is inside its step (a sandbox takes a moment to start)
    os.kill(service_pid(evts, "worker-manager"), signal.SIGKILL)
    code, out, err = finish(proc)
    assert code == 0, out + err
    evts = events(ws)
    crashed = first(evts, "SERVICE_CRASHED")
    assert crashed["data"]["service"] == "worker-manager" and "spawn_and_run" in crashed["data"]["in_flight"]
    assert crashed["data"]["exit"] == "signal 9"
    assert first(evts, "SERVICE_RESTARTED")["data"]["attempt"] == 1
    assert first(evts, "WORKER_FAILED", "t")["data"]["reason"] == "interrupted"
    assert first(evts, "FAILURE_CLASSIFIED", "t")["data"]["failure_type"] == "transient"
    started = [e["data"]["attempt"] for e in evts if e["type"] == "TASK_STARTED"]
    assert started == [1, 2]
    assert (ws / "side.txt").read_text().split() == ["1", "2"]
    assert not alive(sleeper)  # the orphaned worker was killed


def test_a_worker_manager_killed_before_its_workers_later_events_reach_the_log_never_reruns_that_attempt(
    ws: Path,
) -> None:
    # The manager holds a short run's events after worker_spawned for its answer; killed while
    # it holds them, the log knows the worker only by worker_spawned. That one names its key, so
    # the restarted manager, replayed, reaps the worker instead of running attempt 1 again.
    hang_first = (
        'echo "$HARNESS_ATTEMPT" >> side.txt; [ "$HARNESS_ATTEMPT" -gt 1 ] || { echo $$ > pid.txt; exec sleep 60; }'
    )
    write_plan(ws, [{"id": "t", "title": "Hangs on attempt 1", "commands": [hang_first], "acceptance_tests": ["true"]}])
    write_config(ws, services={"worker-manager": {"restart": SERVICE_RESTART}})
    proc = start_run(ws)
    evts = wait_for_log(ws, lambda ev: "TASK_STARTED" in types(ev))
    wait_for_file(ws / "side.txt", "1")  # attempt 1 is in its step, within the deferral as a rule
    os.kill(service_pid(evts, "worker-manager"), signal.SIGKILL)
    code, out, err = finish(proc)
    assert code == 0, out + err
    evts = events(ws)
    assert first(evts, "WORKER_FAILED", "t")["data"]["reason"] == "interrupted"
    assert [e["data"]["attempt"] for e in evts if e["type"] == "TASK_STARTED"] == [1, 2]
    assert (ws / "side.txt").read_text().split() == ["1", "2"]  # attempt 1 ran once (its process: see ws)


def test_a_worker_killed_by_a_signal_is_classified_and_retried(ws: Path) -> None:
    hang_first = 'echo "$HARNESS_ATTEMPT" >> side.txt; [ "$HARNESS_ATTEMPT" -gt 1 ] || exec sleep 60'
    write_plan(ws, [{"id": "t", "title": "Killed once", "commands": [hang_first], "acceptance_tests": ["true"]}])
    write_config(ws)
    proc = start_run(ws)
    evts = wait_for_log(ws, lambda ev: "WORKER_STARTED" in types(ev))
    os.killpg(first(evts, "WORKER_STARTED")["data"]["pid"], signal.SIGKILL)
    code, out, err = finish(proc)
    assert code == 0, out + err
    evts = events(ws)
    failed = first(evts, "TASK_FAILED", "t")
    assert failed["data"]["signal"] == 9
    classified = first(evts, "FAILURE_CLASSIFIED", "t")["data"]
    assert (classified["failure_type"], classified["rule"]) == ("transient", "killed-by-signal")
    assert types(evts, "t").count("TASK_COMPLETED") == 1


def test_a_torn_last_line_is_reported_truncated_and_the_chain_still_verifies(ws: Path) -> None:
    write_plan(
        ws,
        [
            {"id": "a", "title": "A", "commands": ["true"], "acceptance_tests": ["true"]},
            {"id": "b", "title": "B", "depends_on": ["a"], "acceptance_tests": ["true"]},
        ],
    )
    write_config(ws)
    assert harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve").returncode == 3  # b is manual
    run_id = latest_run(ws)
    log = eventlog.run_dir(ws, run_id) / "events.jsonl"
    with open(log, "ab") as fh:
        fh.write(b'{"seq":999,"time":"2026-')  # a crash in the middle of an append
    status = harness(ws, "status", run_id)
    assert "torn" in status.stdout
    assert harness(ws, "decide", run_id, "b", "done").returncode == 0
    done = harness(ws, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "torn" in done.stdout + done.stderr
    assert harness(ws, "log", run_id, "--verify").returncode == 0


# -- chaos ------------------------------------------------------------------------------------------

TARGETS = ["planning", "bootstrap", "worker-manager", "worker", "supervisor"]
#: The stages, and how many times a run of the chaos plan (4 tasks, 5 bootstrap phases) reaches each.
TRIGGER_COUNTS = {
    "GATE_APPROVED": 1,
    "BOOTSTRAP_PHASE_STARTED": 5,
    "TASK_STARTED": 4,
    "WORKER_STARTED": 4,
    "TASK_COMPLETED": 4,
}
TRIGGERS = list(TRIGGER_COUNTS)


#: Each chaos task's step lasts this long: past the manager's deferral of its events, so that a
#: kill at WORKER_STARTED finds the worker still running.
CHAOS_STEP_SECONDS = DEFER_SECONDS + 0.2


def chaos_plan(ws: Path) -> list[str]:
    ids = ["a", "b", "c", "d"]
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    tasks = [
        {
            "id": t,
            "title": f"Task {t}",
            "depends_on": deps[t],
            "commands": [f'echo "$HARNESS_ATTEMPT" >> side_{t}.txt; sleep {CHAOS_STEP_SECONDS:g}'],
            "acceptance_tests": [f"test -s side_{t}.txt"],
        }
        for t in ids
    ]
    write_plan(ws, tasks)
    write_config(ws, services={n: {"restart": SERVICE_RESTART} for n in ("planning", "bootstrap", "worker-manager")})
    return ids


def kill_target(target: str, evts: list[dict], supervisor: subprocess.Popen[str], ws: Path) -> list[dict]:
    if target == "supervisor":
        supervisor.kill()
        return evts
    if target == "worker":
        evts = wait_for_log(
            ws,
            lambda ev: (
                len([e for e in ev if e["type"] == "WORKER_STARTED"])
                > len([e for e in evts if e["type"] == "WORKER_STARTED"])
                or "EXECUTION_COMPLETE" in types(ev)
            ),
        )
        started = [e for e in evts if e["type"] == "WORKER_STARTED"]
        if started:
            try:
                os.killpg(started[-1]["data"]["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass  # it finished first: a kill of nothing
        return evts
    try:
        os.kill(service_pid(evts, target), signal.SIGKILL)
    except ProcessLookupError:
        pass
    return evts


@pytest.mark.parametrize("target", TARGETS)
@given(trigger=st.sampled_from(TRIGGERS), occurrence=st.integers(1, 3))
# Every stage for every process, then a couple of drawn ones.
@example(trigger="GATE_APPROVED", occurrence=1)
@example(trigger="BOOTSTRAP_PHASE_STARTED", occurrence=3)
@example(trigger="TASK_STARTED", occurrence=2)
@example(trigger="WORKER_STARTED", occurrence=3)
@example(trigger="TASK_COMPLETED", occurrence=2)
@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_chaos_a_run_survives_sigkill_of_any_process_at_any_stage(
    tmp_path_factory, target: str, trigger: str, occurrence: int
) -> None:
    ws = tmp_path_factory.mktemp("chaos")
    ids = chaos_plan(ws)
    proc = start_run(ws, "--parallel", "2")
    try:
        wanted = min(occurrence, TRIGGER_COUNTS[trigger])  # the n-th time the run reaches that stage
        at_kill = wait_for_log(ws, lambda ev: types(ev).count(trigger) >= wanted or "EXECUTION_COMPLETE" in types(ev))
        at_kill = kill_target(target, at_kill, proc, ws)
        done_before = {e["task_id"] for e in at_kill if e["type"] == "TASK_COMPLETED"}
        code, out, err = finish(proc)
        if target == "supervisor":
            assert code == -signal.SIGKILL
            resumed = harness(ws, "resume", latest_run(ws))
            code, out, err = resumed.returncode, resumed.stdout, resumed.stderr
        assert code == 0, out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    evts = events(ws)
    state = fold(evts)
    assert all(state.tasks[t].status is TaskStatus.completed for t in ids), {t: state.tasks[t].status for t in ids}
    for t in ids:
        attempts = [e["data"]["attempt"] for e in evts if e["type"] == "TASK_STARTED" and e["task_id"] == t]
        side = (ws / f"side_{t}.txt").read_text().split()
        assert attempts == list(range(1, len(attempts) + 1)), (t, attempts)  # each attempt started once
        assert 1 <= len(side) <= len(attempts), (t, side, attempts)  # no side effect without a recorded attempt
        assert set(side) <= {str(a) for a in attempts}
        if t in done_before:
            assert side == ["1"] and attempts == [1], (t, side, attempts)  # finished work is never redone
    assert eventlog.verify(eventlog.run_dir(ws, latest_run(ws)) / "events.jsonl").ok
    assert_no_processes_left(ws)
