"""Helpers for end-to-end tests that drive the real `harness` command in a temporary workspace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

#: Retry waits long enough to measure in a test (the gap before a retry is asserted), short enough to be quick.
MEASURABLE_BACKOFF = [0.2, 0.4]
MEASURABLE_RECOVERY = {
    "recipes": {
        "transient": {"retries": 2, "backoff": MEASURABLE_BACKOFF},
        "logic_error": {"retries": 1, "backoff": [0.0]},
    }
}
FAST_RECOVERY = {
    "recipes": {"transient": {"retries": 2, "backoff": [0.05, 0.1]}, "logic_error": {"retries": 1, "backoff": [0.0]}}
}


def harness(
    workspace: Path, *args: str, timeout: float = 90, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the harness CLI as a user would, without a terminal (CI=true), bounded."""
    full_env = {**os.environ, "CI": "true", **(env or {})}
    where = [] if args and args[0] in ("validate", "conformance") else ["--workspace", str(workspace)]
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args, *where],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=workspace,
    )


def start_cli(workspace: Path, *args: str) -> subprocess.Popen[str]:
    """The harness CLI started in the background (to be interrupted or killed by the test)."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args, "--workspace", str(workspace)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CI": "true"},
        cwd=workspace,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    """Wait (bounded) for a background CLI; a hang fails the test after killing it."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"the supervisor did not finish:\n{out}\n{err}") from None
    return proc.returncode, out, err


def wait_for_log(
    workspace: Path, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Poll the latest run's log (bounded) until ``predicate(events)`` holds; returns those events."""
    from harness import eventlog

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = workspace / ".harness" / "runs"
        if runs.is_dir() and any(runs.iterdir()):
            log = eventlog.run_dir(workspace, latest_run(workspace)) / "events.jsonl"  # made just after its folder
            if log.is_file():
                evts = eventlog.read_events(log).events
                if predicate(evts):
                    return evts
        time.sleep(0.01)
    raise AssertionError("the run never reached the expected point")


def write_plan(
    workspace: Path, tasks: list[dict[str, Any]], objective: str = "Exercise the harness end to end", **extra: Any
) -> Path:
    path = workspace / "plan.yaml"
    path.write_text(yaml.safe_dump({"objective": objective, "tasks": tasks, **extra}, sort_keys=False))
    return path


def write_config(workspace: Path, **sections: Any) -> Path:
    data = {"recovery": FAST_RECOVERY, **sections}
    path = workspace / "harness.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def latest_run(workspace: Path) -> str:
    runs = sorted(p.name for p in (workspace / ".harness" / "runs").iterdir())
    return runs[-1]


def events(workspace: Path, run_id: str | None = None) -> list[dict[str, Any]]:
    run_id = run_id or latest_run(workspace)
    path = workspace / ".harness" / "runs" / run_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def types(evts: list[dict[str, Any]], task_id: str | None = None) -> list[str]:
    return [e["type"] for e in evts if task_id is None or e.get("task_id") == task_id]


def first(evts: list[dict[str, Any]], etype: str, task_id: str | None = None) -> dict[str, Any]:
    for e in evts:
        if e["type"] == etype and (task_id is None or e.get("task_id") == task_id):
            return e
    raise AssertionError(f"no {etype} for {task_id} in {types(evts)}")


def logged_plan(evts: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's current plan as every reader of its log gets it (whole, from the compact form
    RUN_STARTED or PLAN_CREATED recorded)."""
    from harness.state import fold

    plan = fold(evts).plan
    assert plan is not None, f"no plan in {types(evts)}"
    return plan


def processes_in(workspace: Path) -> list[int]:
    """Live processes whose working directory is inside the workspace (services and workers)."""
    root = os.path.realpath(workspace)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state == b"Z":
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            found.append(int(entry.name))
    return found


def assert_no_processes_left(workspace: Path, grace: float = 3.0) -> None:
    deadline = time.monotonic() + grace
    while True:
        left = processes_in(workspace)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"processes left in {workspace}: {left}"


def alive(pid: int) -> bool:
    """Running (a zombie waiting for an adopting parent to reap it is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False
