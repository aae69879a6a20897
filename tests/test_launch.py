"""The preloaded launcher: the CLI forks the default services (harness._spawn.prespawn).

A forked service must be indistinguishable from an exec'd one to everything that talks to it or
looks at it: same answers, same descriptors (only its pipes and its log: nothing of the parent's),
same signal dispositions, its own session, gone at end of input, reaped. Restarts exec, and
``HARNESS_SERVICE_LAUNCH=exec`` (or a second thread in the CLI) means no fork at all.

The launcher is driven from a fresh interpreter (:data:`DRIVER`), as the CLI drives it: a fork
from the test process would depend on which threads earlier tests left running.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    assert_no_processes_left,
    events,
    finish,
    harness,
    start_cli,
    types,
    wait_for_log,
    write_plan,
)

from harness._spawn import DEFAULT_MODULES, LAUNCH_ENV, PRELOAD, default_command

#: Starts the default services as the CLI does and reports what each looks like from outside,
#: next to an exec'd twin of each; then ends every one (end of input) and reports its exit.
DRIVER = r"""
import json, os, signal, subprocess, sys, threading

from harness._spawn import DEFAULT_MODULES, default_command, prespawn, services_log
from harness.rpc import ServiceProcess

mode, workspace, canary = sys.argv[1:4]

def fds(pid):
    out = {}
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        out[fd] = "pipe" if target.startswith("pipe:") else target
    return out

def signals(pid):
    with open(f"/proc/{pid}/status") as fh:
        fields = dict(line.split(":", 1) for line in fh)
    return {k: fields[k].strip() for k in ("SigBlk", "SigIgn", "SigCgt")}

def describe(proc):
    info = proc.request("initialize", {"client": "test"}, timeout=30)  # set-up is done by now
    pid = proc.pid
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        cmdline = [part.decode() for part in fh.read().split(b"\0")[:-1]]
    return {
        "launch": proc.launch, "pid": pid, "initialize": info, "fds": fds(pid), "signals": signals(pid),
        "sid": os.getsid(pid), "pgid": os.getpgid(pid), "cmdline": cmdline, "cwd": os.readlink(f"/proc/{pid}/cwd"),
    }

# What a CLI may hold when it starts the services: a descriptor anyone could inherit, a Python
# signal handler, buffered output.
held = open(canary, "w")
os.set_inheritable(held.fileno(), True)
signal.signal(signal.SIGUSR1, lambda *_: None)
sys.stdout.write("buffered before the fork; must appear once\n")
idle = threading.Event()
if mode == "thread":
    threading.Thread(target=idle.wait, daemon=True).start()

report = {"driver_cmdline": [sys.executable, "-c"], "services": {}}
early = prespawn(workspace, None)
log = services_log(workspace)
for name in DEFAULT_MODULES:
    proc = ServiceProcess(default_command(name), name=name, started=early[name])
    twin = ServiceProcess(default_command(name), name=name, cwd=workspace, stderr=log)
    entry = {"started": describe(proc), "twin": describe(twin)}
    try:
        proc.proc.wait(0.05)  # alive: its input is open
        entry["wait_timed_out"] = False
    except subprocess.TimeoutExpired:
        entry["wait_timed_out"] = True
    proc.peer.close()  # end of input
    entry["exit"] = proc.proc.wait(10)
    entry["stopped"] = proc.stop(grace=1.0, term_grace=1.0)
    twin.stop(grace=1.0, term_grace=1.0)
    report["services"][name] = entry
log.close()
idle.set()
print(json.dumps(report))
"""


def drive(tmp_path: Path, mode: str = "plain", env: dict[str, str] | None = None) -> dict[str, Any]:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    canary = tmp_path / "canary"
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, mode, str(workspace), str(canary)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**{k: v for k, v in os.environ.items() if k != LAUNCH_ENV}, **(env or {})},
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines.count("buffered before the fork; must appear once") == 1, proc.stdout
    report: dict[str, Any] = json.loads(lines[-1])
    report["canary"] = str(canary)
    report["workspace"] = str(workspace)
    report["log"] = (workspace / ".harness" / "logs" / "services.log").read_text()
    assert_no_processes_left(workspace)
    return report


def test_a_forked_service_answers_and_looks_exactly_like_an_exec_d_one(tmp_path: Path) -> None:
    report = drive(tmp_path)
    assert set(report["services"]) == set(DEFAULT_MODULES)
    for name, entry in report["services"].items():
        forked, twin = entry["started"], entry["twin"]
        assert (forked["launch"], twin["launch"]) == ("fork", "exec"), name
        # A fork of the driver (same command line), not a new interpreter; the twin is the command.
        assert forked["cmdline"][:2] == report["driver_cmdline"] and twin["cmdline"] == default_command(name)
        assert forked["initialize"]["pid"] == forked["pid"]
        assert {**forked["initialize"], "pid": 0} == {**twin["initialize"], "pid": 0}, name
        # Descriptors: its wire (0, and the duplicate the server writes on), its log on 1 and 2:
        # the same table as the exec'd twin's, nothing of the parent's (the canary, other pipes).
        assert forked["fds"] == twin["fds"], name
        assert report["canary"] not in forked["fds"].values()
        assert forked["fds"]["0"] == "pipe" and forked["fds"]["2"].endswith("services.log")
        # Signals: the dispositions of a freshly exec'd service (the driver's SIGUSR1 handler is gone).
        assert forked["signals"] == twin["signals"], name
        assert forked["sid"] == forked["pgid"] == forked["pid"]  # its own session: a group to kill
        assert forked["cwd"] == twin["cwd"] == report["workspace"]


def test_a_forked_service_ends_at_end_of_input_and_is_reaped(tmp_path: Path) -> None:
    report = drive(tmp_path)
    for name, entry in report["services"].items():
        assert entry["wait_timed_out"], f"{name}: wait(timeout) returned while the service was alive"
        assert entry["exit"] == 0 and entry["stopped"] == 0, name
    assert "Traceback" not in report["log"]


def test_what_a_forked_service_imports_before_it_serves_exists() -> None:
    assert set(PRELOAD) == set(DEFAULT_MODULES)
    for name, modules in PRELOAD.items():
        for module in modules:
            assert module.startswith(DEFAULT_MODULES[name] + "."), (name, module)
            assert importlib.util.find_spec(module) is not None, module


def test_HARNESS_SERVICE_LAUNCH_exec_starts_a_new_interpreter_for_every_service(tmp_path: Path) -> None:
    report = drive(tmp_path, env={LAUNCH_ENV: "exec"})
    for name, entry in report["services"].items():
        assert entry["started"]["launch"] == "exec"
        assert entry["started"]["cmdline"] == default_command(name)
        assert entry["exit"] == 0


def test_a_cli_that_already_runs_a_thread_execs_instead_of_forking(tmp_path: Path) -> None:
    report = drive(tmp_path, mode="thread")
    for name, entry in report["services"].items():
        assert entry["started"]["launch"] == "exec" and entry["started"]["cmdline"] == default_command(name)


def started_events(workspace: Path) -> dict[str, dict[str, Any]]:
    return {e["data"]["service"]: e["data"] for e in events(workspace) if e["type"] == "SERVICE_STARTED"}


@pytest.mark.parametrize("launch", ["fork", "exec"])
def test_a_run_starts_its_default_services_as_told_and_the_log_says_how(tmp_path: Path, launch: str) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()  # no harness.yaml: the CLI starts the default services itself
    write_plan(ws, [{"id": "a", "title": "A", "commands": ["true"], "acceptance_tests": ["test -d ."]}])
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve", env={LAUNCH_ENV: launch})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    started = started_events(ws)
    assert set(started) == set(DEFAULT_MODULES)
    for name, data in started.items():
        assert data["command"] == default_command(name)
        assert data.get("launch") == ("fork" if launch == "fork" else None)  # exec'd: recorded as before
    assert_no_processes_left(ws)


def test_the_log_of_a_run_with_forked_services_matches_the_catalogue(tmp_path: Path) -> None:
    import jsonschema

    from harness.resources import load_schema

    ws = tmp_path / "ws"
    ws.mkdir()
    write_plan(ws, [{"id": "a", "title": "A", "commands": ["true"], "acceptance_tests": ["test -d ."]}])
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve", env={LAUNCH_ENV: "fork"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    validator = jsonschema.Draft202012Validator(load_schema("LogEvent"))
    problems = [(e["type"], err.message) for e in events(ws) for err in validator.iter_errors(e)]
    assert problems == []


@pytest.mark.slow
def test_a_forked_service_killed_mid_run_is_restarted_from_its_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LAUNCH_ENV, raising=False)
    ws = tmp_path / "ws"
    ws.mkdir()
    # The task holds the run open until the test lets it go (bounded: 60 s).
    hold = "i=0; while [ ! -e go ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done; [ -e go ]"
    write_plan(ws, [{"id": "t", "title": "Held", "commands": [hold], "acceptance_tests": ["true"]}])
    proc = start_cli(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve")
    try:
        wait_for_log(ws, lambda ev: "WORKER_STARTED" in types(ev))
        first = started_events(ws)["planning"]
        assert first["launch"] == "fork"
        os.kill(first["pid"], signal.SIGKILL)
        evts = wait_for_log(
            ws, lambda ev: any(e["type"] == "SERVICE_RESTARTED" and e["data"]["service"] == "planning" for e in ev)
        )
        restarted = next(e["data"] for e in evts if e["type"] == "SERVICE_RESTARTED")
        with open(f"/proc/{restarted['pid']}/cmdline", "rb") as fh:
            assert fh.read().split(b"\0")[:-1] == [part.encode() for part in default_command("planning")]
    finally:
        (ws / "go").touch()
        code, out, err = finish(proc)
    assert code == 0, out + err
    evts = events(ws)
    crashed = [e["data"] for e in evts if e["type"] == "SERVICE_CRASHED"]
    assert [(c["service"], c["exit"], c["pid"]) for c in crashed] == [("planning", "signal 9", first["pid"])]
    assert types(evts).count("TASK_COMPLETED") == 1
    assert_no_processes_left(ws)
