"""Where ``harness run`` keeps its processes (harness._cpus): the supervisor off one CPU, the
worker manager's reader on it, and everything a task starts on every CPU the run had."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_support import events, harness, write_config, write_plan
from hypothesis import given
from hypothesis import strategies as st

from harness import _cpus


class FakeScheduler:
    """os.sched_getaffinity / sched_setaffinity of one thread, recorded."""

    def __init__(self, allowed: set[int], fail: bool = False) -> None:
        self.allowed = set(allowed)
        self.fail = fail
        self.pinned: list[frozenset[int]] = []

    def get(self, pid: int) -> set[int]:
        assert pid == 0
        return set(self.allowed)

    def set(self, pid: int, cpus: Any) -> None:
        assert pid == 0
        if self.fail:
            raise OSError(22, "Invalid argument")
        self.pinned.append(frozenset(cpus))
        self.allowed = set(cpus)


@pytest.fixture
def sched(monkeypatch: pytest.MonkeyPatch) -> FakeScheduler:
    fake = FakeScheduler({0, 1, 2, 3})
    monkeypatch.setattr(os, "sched_getaffinity", fake.get)
    monkeypatch.setattr(os, "sched_setaffinity", fake.set)
    monkeypatch.setattr(_cpus, "_full", None)
    return fake


@given(st.sets(st.integers(min_value=0, max_value=300), min_size=1))
def test_a_set_of_cpus_reads_back_from_its_text(cpus: set[int]) -> None:
    text = _cpus.format_cpus(cpus)
    assert _cpus.parse_cpus(text) == cpus
    assert " " not in text


@pytest.mark.parametrize("text", ["", "a", "3-1", "-1", "1,,2", "0-", "0-99999999999"])
def test_text_that_names_no_cpus_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        _cpus.parse_cpus(text)


def test_the_supervisor_keeps_off_its_highest_cpu_and_names_it_to_the_services(sched: FakeScheduler) -> None:
    env: dict[str, str] = {}
    cpus = _cpus.name_layout(env)
    assert env == {_cpus.ENV: "3/0-3"}
    assert sched.pinned == []  # the services it forks next start on every CPU
    assert cpus == {0, 1, 2}
    assert _cpus.keep_to(cpus, env)
    assert sched.pinned == [frozenset({0, 1, 2})]
    assert env == {_cpus.ENV: "3/0-3"}


def test_one_cpu_or_the_switch_off_confines_nothing_and_drops_an_outer_runs_layout(
    sched: FakeScheduler,
) -> None:
    sched.allowed = {5}
    env = {_cpus.ENV: "1/0-1"}  # inherited from an outer run: not this run's
    assert _cpus.name_layout(env) is None
    assert not _cpus.keep_to(None, env)
    assert env == {} and sched.pinned == []
    sched.allowed = {0, 1}
    for off in ("off", "OFF", "0", "no", "false"):
        env = {_cpus.OFF_ENV: off}
        assert _cpus.name_layout(env) is None
        assert _cpus.ENV not in env and sched.pinned == []


def test_a_scheduler_that_refuses_unnames_the_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeScheduler({0, 1}, fail=True)
    monkeypatch.setattr(os, "sched_getaffinity", fake.get)
    monkeypatch.setattr(os, "sched_setaffinity", fake.set)
    env: dict[str, str] = {}
    cpus = _cpus.name_layout(env)
    assert cpus == {0} and _cpus.ENV in env
    assert not _cpus.keep_to(cpus, env)
    assert env == {}  # a service started from now on confines nothing


def test_the_worker_manager_reader_takes_the_named_cpu_and_its_job_threads_get_every_cpu_back(
    sched: FakeScheduler,
) -> None:
    _cpus.widen()
    assert sched.pinned == []  # nothing was confined: nothing to give back
    assert _cpus.enter_worker_manager({_cpus.ENV: "3/0-3"}) == 3
    assert sched.pinned == [frozenset({3})]
    _cpus.widen()
    assert sched.pinned[-1] == frozenset({0, 1, 2, 3})


@pytest.mark.parametrize("value", ["", "x/0-3", "3", "3/", "4/0-3", "3/0-a", "-1/0-3"])
def test_a_worker_manager_told_nonsense_or_nothing_confines_nothing(sched: FakeScheduler, value: str) -> None:
    assert _cpus.enter_worker_manager({_cpus.ENV: value} if value else {}) is None
    _cpus.widen()
    assert sched.pinned == []


def test_a_worker_manager_of_a_run_switched_off_confines_nothing(sched: FakeScheduler) -> None:
    assert _cpus.enter_worker_manager({_cpus.ENV: "3/0-3", _cpus.OFF_ENV: "off"}) is None
    assert not _cpus.enter_service({_cpus.ENV: "3/0-3", _cpus.OFF_ENV: "off"})
    assert sched.pinned == []


def test_the_other_services_go_back_onto_every_cpu_of_the_run(sched: FakeScheduler) -> None:
    assert not _cpus.enter_service({})
    assert not _cpus.enter_service({_cpus.ENV: "3/x"})
    assert sched.pinned == []
    assert _cpus.enter_service({_cpus.ENV: "3/0-3"})
    assert sched.pinned == [frozenset({0, 1, 2, 3})]


# -- a real run ---------------------------------------------------------------------------------

#: Run as the task's command: where it runs, and where the worker manager (its parent) and the
#: supervisor (the manager's parent) keep each of their threads, while they are all alive.
#: (the services: every child of the supervisor, each as its main thread is kept).
RECORD = r"""
import json, os, sys

def cpus(path):
    with open(path) as fh:
        for line in fh:
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()

def parent(pid):
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line for line in fh if line.startswith("PPid:")).split()[1])

def threads(pid):
    return {tid: cpus(f"/proc/{pid}/task/{tid}/status") for tid in os.listdir(f"/proc/{pid}/task")}

def children(pid):
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if parent(int(entry)) == pid:
                    found[entry] = cpus(f"/proc/{entry}/status")
            except (OSError, StopIteration):
                pass  # gone meanwhile
    return found

manager = os.getppid()
supervisor = parent(manager)
json.dump({"step": cpus("/proc/self/status"), "manager": manager, "manager_threads": threads(manager),
           "supervisor_threads": threads(supervisor), "services": children(supervisor)}, open(sys.argv[1], "w"))
"""


def _record_a_run(tmp_path: Path, services: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A run whose step records where everything runs; ``services`` "forked" (the CLI forks them
    before it keeps to its CPUs) or "exec'd" (a config file: the supervisor starts them later)."""
    (tmp_path / "record.py").write_text(RECORD)
    sandbox_off = {"policy": {"sandbox": "off"}}  # the step must see its real parents
    if services == "forked":
        policy = tmp_path / "policy.yaml"
        policy.write_text("sandbox: 'off'\n")
        options = ["--policy", str(policy)]  # no config file: nothing keeps the CLI from forking
    else:
        write_config(tmp_path, **sandbox_off)
        options = []
    command = f"exec {sys.executable} record.py where.json"  # no shell between the step and the manager
    plan = write_plan(tmp_path, [{"id": "t1", "title": "Record", "commands": [command], "acceptance_tests": ["true"]}])
    proc = harness(tmp_path, "run", "--plan", str(plan), "--approve", *options, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    launches = {e["data"].get("launch") for e in events(tmp_path) if e["type"] == "SERVICE_STARTED"}
    assert launches == ({"fork"} if services == "forked" else {None})
    return dict(json.loads((tmp_path / "where.json").read_text()))


def _cpus_here() -> frozenset[int]:
    if not hasattr(os, "sched_getaffinity") or not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux's sched_getaffinity and /proc")
    here = frozenset(os.sched_getaffinity(0))
    if len(here) < 2:
        pytest.skip("this process may use one CPU only: there is no layout to make")
    return here


@pytest.mark.parametrize("services", ["forked", "exec'd"])
def test_a_run_keeps_the_supervisor_off_the_readers_cpu_and_confines_no_task(tmp_path: Path, services: str) -> None:
    here = _cpus_here()
    seen = _record_a_run(tmp_path, services, env={_cpus.OFF_ENV: ""})
    reader = max(here)
    assert _cpus.parse_cpus(seen["step"]) == here  # what a task runs has every CPU
    manager = {int(tid): _cpus.parse_cpus(c) for tid, c in seen["manager_threads"].items()}
    assert manager[seen["manager"]] == {reader}  # its main thread reads the wire
    assert here in manager.values()  # the job thread that started the step
    supervisor = {_cpus.parse_cpus(c) for c in seen["supervisor_threads"].values()}
    assert supervisor == {here - {reader}}
    children = {int(pid): _cpus.parse_cpus(c) for pid, c in seen["services"].items()}
    assert len(children) == 3 and children.pop(seen["manager"]) == {reader}
    assert set(children.values()) == {here}  # planning and bootstrap: every CPU for what they start


@pytest.mark.parametrize("services", ["forked", "exec'd"])
def test_HARNESS_CPU_LAYOUT_off_leaves_every_thread_where_it_was(tmp_path: Path, services: str) -> None:
    here = _cpus_here()
    seen = _record_a_run(tmp_path, services, env={_cpus.OFF_ENV: "off"})
    every = [
        seen["step"],
        *seen["manager_threads"].values(),
        *seen["supervisor_threads"].values(),
        *seen["services"].values(),
    ]
    assert {_cpus.parse_cpus(c) for c in every} == {here}
