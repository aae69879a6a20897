"""The local executor in process: output through pipes (with a pidfd and without), files created
by the first byte, the run folder's record of process groups, and the job's fds on every path."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wm_support import WAIT, assert_no_worker_left, live_members, wait_until

from harness.services.worker_manager import _local
from harness.services.worker_manager._executor import Job, Outcome, Step
from harness.services.worker_manager._local import LocalExecution, LocalExecutor, began_running, recorded_groups
from harness.services.worker_manager._models import StepKind

WID = "w-local"


@pytest.fixture(autouse=True)
def no_worker_left(tmp_path: Path) -> Iterator[None]:
    """Fail the test if a process of its run directory outlives it."""
    yield
    assert_no_worker_left(tmp_path)


def make_job(
    tmp_path: Path,
    *commands: str,
    acceptance: tuple[str, ...] = (),
    steps: tuple[Step, ...] = (),
    timeout: float = WAIT,
    env: dict[str, str] | None = None,
) -> Job:
    ws = os.path.realpath(tmp_path / "ws")
    os.makedirs(ws, exist_ok=True)
    steps += tuple(Step(StepKind.command, i, c) for i, c in enumerate(commands))
    steps += tuple(Step(StepKind.acceptance, i, c) for i, c in enumerate(acceptance))
    return Job(
        worker_id=WID,
        steps=steps,
        cwd=ws,
        workspace=ws,
        env={
            "PATH": os.environ["PATH"],
            "HARNESS_RUN_DIR": str(tmp_path / "run"),
            "HARNESS_WORKER_ID": WID,
            **(env or {}),
        },
        timeout=timeout,
        out_dir=str(tmp_path / "run" / "workers" / WID),
    )


def execute(job: Job) -> tuple[Outcome, list[int]]:
    """Run ``job``; its outcome and the pid ``on_started`` was given (if any)."""
    started: list[int] = []
    return LocalExecution(job).run(started.append), started


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@pytest.fixture
def fds_kept(tmp_path: Path) -> Iterator[None]:
    """Fail the test if its runs leave an fd open (beyond the run folder's record, kept by design)."""
    _local.record_group("w-fixture", str(tmp_path / "run" / "workers" / "w-fixture"), _local.BEGUN)
    before = open_fds()
    yield
    assert wait_until(lambda: open_fds() <= before, 1.0), open_fds() - before


@pytest.fixture
def no_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a system without pidfds: the fallback reads the pipes between short polls."""
    monkeypatch.setattr(_local, "_open_pidfd", lambda pid: None)


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
def test_output_larger_than_a_pipe_is_read_while_the_step_runs_and_a_background_child_does_not_hold_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fds_kept: None, pidfd: bool
) -> None:
    if not pidfd:
        monkeypatch.setattr(_local, "_open_pidfd", lambda pid: None)
    big = "head -c 300000 /dev/zero | tr '\\0' x; echo; echo err >&2"
    bg = "sleep 30 & echo bg-started"
    t0 = time.monotonic()
    outcome, started = execute(make_job(tmp_path, big, bg))
    assert outcome.ok and time.monotonic() - t0 < 5.0, outcome.as_dict()
    assert len(started) == 1
    out = tmp_path / "run" / "workers" / WID / "stdout.log"
    assert outcome.stdout_path == str(out)
    assert out.read_text() == f"$ {big}\n" + "x" * 300000 + f"\n$ {bg}\nbg-started\n"
    assert Path(str(outcome.stderr_path)).read_text() == "err\n"
    assert (outcome.stdout_tail, outcome.stderr_tail) == ("bg-started\n", "")


def test_without_a_pidfd_a_step_past_the_deadline_is_stopped_and_its_output_kept(
    tmp_path: Path, no_pidfd: None, fds_kept: None
) -> None:
    outcome, _ = execute(make_job(tmp_path, "echo before; sleep 30", timeout=0.3))
    assert (outcome.reason and outcome.reason.value, outcome.timed_out) == ("timeout", True)
    assert outcome.stdout_tail == "before\n"
    [pgid] = recorded_groups(WID, str(tmp_path / "run" / "workers" / WID))
    assert wait_until(lambda: not live_members(pgid))


def test_a_silent_job_leaves_no_folder_only_lines_in_the_run_record(tmp_path: Path, fds_kept: None) -> None:
    outcome, started = execute(make_job(tmp_path, "true", ": quiet", acceptance=("test -d .",)))
    assert outcome.ok and (outcome.stdout_path, outcome.stderr_path) == (None, None)
    assert (outcome.stdout_tail, outcome.stderr_tail) == ("", "")
    workers = tmp_path / "run" / "workers"
    assert os.listdir(workers) == ["pgids"]
    lines = [line for line in (workers / "pgids").read_text().splitlines() if line.startswith(f"{WID} ")]
    assert [line.split()[:2] for line in lines][:2] == [[WID, "0"], [WID, str(started[0])]] and len(lines) == 4
    groups = recorded_groups(WID, str(workers / WID))
    assert list(groups)[0] == started[0] and all(abs(t - time.time()) < 60 for t in groups.values())
    assert began_running(WID, str(workers / WID)) and not began_running("w-other", str(workers / "w-other"))


def test_the_job_is_recorded_as_begun_before_its_first_process_starts(tmp_path: Path, fds_kept: None) -> None:
    """A manager killed between a step's start and the record of its group still left the mark
    that its replacement reads (``began_running``): the job cannot be run a second time unseen."""
    record = tmp_path / "run" / "workers" / "pgids"
    outcome, _ = execute(make_job(tmp_path, f"grep -q '^{WID} 0 ' {record}"))
    assert outcome.ok, (outcome.reason, outcome.stderr_tail)
    assert not began_running("w-never", str(tmp_path / "run" / "workers" / "w-never"))


def test_a_held_job_is_recorded_as_begun_only_after_its_go(tmp_path: Path, fds_kept: None) -> None:
    """A job held for its go (spawn_and_run's hold) has not begun while it waits: a manager that
    dies then leaves no mark, and its replacement may run the worker's key (nothing ran)."""
    workers = tmp_path / "run" / "workers"
    at_the_gate: list[bool] = []
    for go in (False, True):

        def gate(go: bool = go) -> str | None:
            at_the_gate.append(began_running(WID, str(workers / WID)))
            return None if go else "no go"

        job = make_job(tmp_path, "true")
        job.gate = gate
        outcome, started = execute(job)
        assert at_the_gate == [False] and bool(started) is go and outcome.ok is go, go
        assert began_running(WID, str(workers / WID)) is go  # recorded after the go, before the process
        at_the_gate.clear()


def test_a_step_that_cannot_start_fails_as_a_spawn_error_with_its_message_in_stderr(
    tmp_path: Path, fds_kept: None
) -> None:
    outcome, started = execute(make_job(tmp_path, "true", env={"BAD": "a\0b"}))
    assert outcome.reason is not None and outcome.reason.value == "spawn_error" and started == []
    assert "embedded null byte" in outcome.stderr_tail
    assert Path(str(outcome.stdout_path)).read_text() == "$ true\n"
    assert Path(str(outcome.stderr_path)).read_text().startswith("harness: cannot start step: ")


def test_a_step_whose_group_cannot_be_recorded_is_killed_reaped_and_fails_as_a_spawn_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fds_kept: None
) -> None:
    recorded = _local.record_group

    def full(worker_id: str, worker_dir: str, pgid: int) -> None:
        if pgid != _local.BEGUN:  # the job's mark goes in; the step's group cannot
            raise OSError(28, "No space left on device")
        recorded(worker_id, worker_dir, pgid)

    monkeypatch.setattr(_local, "record_group", full)
    t0 = time.monotonic()
    outcome, started = execute(make_job(tmp_path, "echo ran > ran.txt; sleep 30", "touch never"))
    assert outcome.reason is not None and outcome.reason.value == "spawn_error"
    assert "cannot record the step's process group" in str(outcome.message) and started == []
    assert time.monotonic() - t0 < 5.0 and len(outcome.steps) == 1 and outcome.steps[0]["exit_code"] is None
    assert not (tmp_path / "ws" / "never").exists()


def test_a_run_folder_that_cannot_hold_the_record_fails_the_job_before_any_step(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "workers").write_text("")  # a file where the folder should be
    outcome, started = execute(make_job(tmp_path, "touch ran"))
    assert outcome.reason is not None and outcome.reason.value == "spawn_error" and started == []
    assert "record of process groups" in str(outcome.message)
    assert not (tmp_path / "ws" / "ran").exists() and outcome.steps == []


def test_output_that_cannot_be_saved_keeps_the_verdict_and_the_tails_and_says_so(
    tmp_path: Path, fds_kept: None
) -> None:
    (tmp_path / "run" / "workers" / WID).write_text("")  # a file where the worker's folder should be
    outcome, _ = execute(make_job(tmp_path, "echo hi; echo oops >&2"))
    assert outcome.ok and (outcome.stdout_path, outcome.stderr_path) == (None, None)
    assert (outcome.stdout_tail, outcome.stderr_tail) == ("hi\n", "oops\n")
    assert "the worker's output could not be saved" in str(outcome.message)


def test_the_record_is_opened_again_when_its_run_folder_was_deleted(tmp_path: Path) -> None:
    first, started = execute(make_job(tmp_path, "true"))
    shutil.rmtree(tmp_path / "run")
    second, again = execute(make_job(tmp_path, "true"))
    assert first.ok and second.ok
    lines = (tmp_path / "run" / "workers" / "pgids").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [[WID, "0"], [WID, str(again[0])]]


def test_an_agent_steps_output_goes_through_the_same_lazy_writer(tmp_path: Path, fds_kept: None) -> None:
    loud = Step(StepKind.agent, 0, "agent <1 args>", argv=["/bin/sh", "-c", "echo out-line; echo err-line >&2"])
    outcome, _ = execute(make_job(tmp_path, steps=(loud,), acceptance=("true",)))
    assert outcome.ok
    assert Path(str(outcome.stdout_path)).read_text() == "$ agent <1 args>\nout-line\n"
    assert Path(str(outcome.stderr_path)).read_text() == "err-line\n"
    shutil.rmtree(tmp_path / "run")
    quiet = Step(StepKind.agent, 0, "agent <1 args>", argv=["/bin/sh", "-c", "exit 0"])
    outcome, _ = execute(make_job(tmp_path, steps=(quiet,)))
    assert outcome.ok and (outcome.stdout_path, outcome.stderr_path) == (None, None)
    assert os.listdir(tmp_path / "run" / "workers") == ["pgids"]


def test_reap_reads_the_run_record_and_the_previous_versions_pgid_file(tmp_path: Path) -> None:
    workers = tmp_path / "run" / "workers"
    (workers / "w-old").mkdir(parents=True)
    (workers / "w-old" / "pgid").write_text("1234\n0\n1\n")  # 0 and 1 are never groups to signal
    now = time.time()
    (workers / "pgids").write_text(f"w-new 4321 {now:.3f}\nw-new 1 {now:.3f}\nw-newer 999 {now:.3f}\nw-new\n")
    assert list(recorded_groups("w-old", str(workers / "w-old"))) == [1234]
    assert recorded_groups("w-new", str(workers / "w-new")) == {4321: round(now, 3)}
    assert began_running("w-old", str(workers / "w-old")) and began_running("w-new", str(workers / "w-new"))
    assert not began_running("w-ne", str(workers / "w-ne"))
    assert LocalExecutor().reap("w-none", str(workers / "w-none"), []) == []


def test_the_supervisor_splits_the_stdout_file_into_step_tails_with_silent_steps_left_empty(tmp_path: Path) -> None:
    from harness.supervisor._run import _step_tails

    steps = ["true", "echo one", ":", "echo two >&2", "echo three; echo more", "true", "echo last"]
    result = execute(make_job(tmp_path, *steps))[0].as_dict()
    assert _step_tails(result, result["steps"]) == ["", "one\n", "", "", "three\nmore\n", "", "last\n"]
    shutil.rmtree(tmp_path / "run")
    silent = execute(make_job(tmp_path, "true", "true"))[0].as_dict()
    assert silent["stdout_path"] is None and _step_tails(silent, silent["steps"]) == ["", ""]
