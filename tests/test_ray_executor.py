"""The Ray executor against a two-node cluster on this machine (loopback only, see ray_support):
placement by resources, output and changes back from the node, fencing until promote, cancel,
kill and a node lost mid-task, bundle caps, agents with their parser and tool channel.

One cluster serves the module; each test runs its own jobs under its own worker ids and checks
that no process of theirs outlives it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="the Ray executor needs ray (pip install 'harness[ray]')")

from ray_support import POOL, LocalCluster, foreign_sockets, running_cluster  # noqa: E402
from wm_support import WAIT, live_members, processes_with_env, wait_until  # noqa: E402

from harness.services.worker_manager._executor import Job, Outcome, Step, ToolChannel  # noqa: E402
from harness.services.worker_manager._models import FailureReason, StepKind  # noqa: E402
from harness.services.worker_manager._ray import (  # noqa: E402
    CHANGES_JSON,
    CHANGES_TAR,
    RayExecution,
    RayExecutor,
    make_bundle,
    promote_changes,
    ray_options,
)

CHANNEL_AGENT = Path(__file__).parent / "agent_programs" / "channel_agent.py"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    yield from running_cluster()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("scratch"))


@pytest.fixture(scope="module")
def executor(cluster: LocalCluster, scratch: str) -> Iterator[RayExecutor]:
    ex = RayExecutor(cluster.address, scratch=scratch)
    yield ex
    ex.shutdown()


def make_job(
    tmp_path: Path,
    worker_id: str,
    *commands: str,
    acceptance: tuple[str, ...] = (),
    steps: tuple[Step, ...] = (),
    timeout: float = WAIT,
    resources: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
    sandbox: Any = None,
) -> Job:
    ws = os.path.realpath(tmp_path / "ws")
    os.makedirs(ws, exist_ok=True)
    for name, text in (files or {}).items():
        path = Path(ws, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    steps += tuple(Step(StepKind.command, i, c) for i, c in enumerate(commands))
    steps += tuple(Step(StepKind.acceptance, i, c) for i, c in enumerate(acceptance))
    run_dir = str(tmp_path / "run")
    return Job(
        worker_id=worker_id,
        steps=steps,
        cwd=ws,
        workspace=ws,
        env={
            "PATH": os.environ["PATH"],
            "HARNESS_WORKER_ID": worker_id,
            "HARNESS_WORKSPACE": ws,
            "HARNESS_RUN_DIR": run_dir,
        },
        timeout=timeout,
        out_dir=f"{run_dir}/workers/{worker_id}",
        resources=resources,
        sandbox=sandbox,
    )


class Running:
    """An execution run in a thread, with its on_started calls."""

    def __init__(self, execution: RayExecution) -> None:
        self.execution = execution
        self.pids: list[int] = []
        self.node_at_start: list[str | None] = []
        self.started = threading.Event()
        self.outcome: Outcome | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _on_started(self, pid: int) -> None:
        self.node_at_start.append(self.execution.node_id)
        self.pids.append(pid)
        self.started.set()

    def _run(self) -> None:
        self.outcome = self.execution.run(self._on_started)

    def result(self, timeout: float = WAIT) -> Outcome:
        self._thread.join(timeout)
        assert self.outcome is not None, "run did not end in time"
        return self.outcome


def no_process_of(worker_id: str) -> bool:
    return not processes_with_env(f"HARNESS_WORKER_ID={worker_id}".encode())


def run_job(executor: RayExecutor, job: Job) -> tuple[Outcome, RayExecution, list[int]]:
    execution = executor.prepare(job)
    pids: list[int] = []
    outcome = execution.run(pids.append)
    assert wait_until(lambda: no_process_of(job.worker_id), WAIT)
    return outcome, execution, pids


# -- the cluster itself ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_cluster_listens_and_connects_on_loopback_only(cluster: LocalCluster) -> None:
    pids = cluster.pids()
    assert pids
    assert foreign_sockets([*pids, os.getpid()]) == []


# -- placement, output, changes --------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_pinned_to_the_second_node_runs_there_and_its_work_comes_back(
    cluster: LocalCluster, executor: RayExecutor, scratch: str, tmp_path: Path
) -> None:
    job = make_job(
        tmp_path,
        "w-pinned",
        "echo hello from $HARNESS_WORKER_ID; echo made > made.txt",
        acceptance=("test -f made.txt",),
        resources={"cpus": None, "memory_mb": None, "custom": {POOL: 1}},
    )
    run = Running(executor.prepare(job))
    outcome = run.result()

    assert outcome.ok, outcome.as_dict()
    second = cluster.second.node_id
    assert run.execution.node_id == second
    assert run.node_at_start == [second]  # known before on_started was called
    assert len(run.pids) == 1
    placement = outcome.as_dict()["placement"]
    assert placement["executor"] == "ray"
    assert placement["node_id"] == second
    assert placement["task_id"] == run.execution.ray_task_id
    assert len(placement["bundle_sha256"]) == 64 and placement["bundle_bytes"] > 0
    assert outcome.stdout_path == f"{job.out_dir}/stdout.log"
    assert "hello from w-pinned" in Path(outcome.stdout_path).read_text()
    assert outcome.stderr_path is None  # nothing printed there
    assert not (Path(job.cwd) / "made.txt").exists()  # fenced: not applied by run
    assert run.execution.promote()["files"] == 1
    assert (Path(job.cwd) / "made.txt").read_text() == "made\n"
    # the node removes its scratch folder after it answered
    assert wait_until(lambda: not os.path.exists(f"{scratch}/harness-ray/w-pinned"), WAIT)
    assert wait_until(lambda: no_process_of("w-pinned"), WAIT)


@pytest.mark.slow
def test_a_failing_acceptance_test_fails_the_attempt_as_acceptance_failed(
    executor: RayExecutor, tmp_path: Path
) -> None:
    job = make_job(tmp_path, "w-accept", "true", acceptance=("echo not there >&2; test -f missing.txt",))
    outcome, _, pids = run_job(executor, job)

    assert outcome.reason is FailureReason.acceptance_failed
    assert outcome.failed_step is job.steps[1]
    assert outcome.exit_code == 1
    assert outcome.stderr_tail == "not there\n"
    assert outcome.stderr_path is not None and "not there" in Path(outcome.stderr_path).read_text()
    assert len(pids) == 1


@pytest.mark.slow
def test_a_gated_job_is_submitted_only_on_its_go_and_a_refused_one_runs_nothing(
    executor: RayExecutor, tmp_path: Path
) -> None:
    asked: list[bool] = []

    def go() -> str | None:
        asked.append(not (Path(tmp_path, "ws", "ran").exists()))  # nothing ran before the go
        return None

    job = make_job(tmp_path, "w-gate-go", "touch ran")
    job.gate = go
    outcome, execution, pids = run_job(executor, job)
    assert outcome.ok and asked == [True] and len(pids) == 1
    execution.promote()
    assert (tmp_path / "ws" / "ran").exists()

    refused = make_job(tmp_path / "refused", "w-gate-no", "touch ran")
    refused.gate = lambda: "not released"
    outcome, _, pids = run_job(executor, refused)
    assert (outcome.ok, outcome.reason, outcome.message) == (False, FailureReason.cancelled, "not released")
    assert pids == [] and outcome.as_dict().get("placement") is None  # never submitted


@pytest.mark.slow
def test_a_resource_request_is_asked_of_ray_and_honoured(
    cluster: LocalCluster, executor: RayExecutor, tmp_path: Path
) -> None:
    resources = {"cpus": 0.5, "memory_mb": 64, "custom": {POOL: 0.5}}
    assert ray_options(resources, 1.0) == {"num_cpus": 0.5, "memory": 64 * 1024 * 1024, "resources": {POOL: 0.5}}
    outcome, execution, _ = run_job(executor, make_job(tmp_path, "w-resources", "true", resources=resources))

    assert outcome.ok, outcome.as_dict()
    assert execution.node_id == cluster.second.node_id
    assert outcome.placement is not None
    assert outcome.placement["resources"] == {"CPU": 0.5, "memory": 64 * 1024 * 1024, POOL: 0.5}


@pytest.mark.slow
def test_a_request_no_node_can_meet_ends_as_a_timeout_not_a_hang(
    cluster: LocalCluster, scratch: str, tmp_path: Path
) -> None:
    executor = RayExecutor(cluster.address, scratch=scratch, grace=0.5)
    job = make_job(tmp_path, "w-nowhere", "true", timeout=0.5, resources={"custom": {"nowhere": 1}})
    outcome, execution, pids = run_job(executor, job)

    assert outcome.reason is FailureReason.timeout and outcome.timed_out
    assert outcome.message is not None and "before any node started it" in outcome.message
    assert pids == [] and execution.node_id is None


@pytest.mark.slow
def test_promote_applies_changes_with_deletions_and_modes_and_is_idempotent(
    executor: RayExecutor, tmp_path: Path
) -> None:
    files = {"keep.txt": "keep\n", "edit.txt": "old\n", "gone.txt": "bye\n", "sub/old.txt": "x\n", "run.sh": "echo\n"}
    script = "echo new > edit.txt; rm gone.txt; rm -r sub; mkdir -p d/e; echo deep > d/e/f.txt; chmod 755 run.sh"
    job = make_job(tmp_path, "w-promote", script, files=files)
    ws = Path(job.cwd)
    (ws / ".git").mkdir()
    (ws / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    outcome, execution, _ = run_job(executor, job)
    assert outcome.ok, outcome.as_dict()

    # nothing reaches the scope before promote
    assert sorted(p.name for p in ws.iterdir()) == [".git", "edit.txt", "gone.txt", "keep.txt", "run.sh", "sub"]
    assert (ws / "edit.txt").read_text() == "old\n"
    manifest = json.loads(Path(job.out_dir, CHANGES_JSON).read_text())
    assert manifest["sha256"] == hashlib.sha256(Path(job.out_dir, CHANGES_TAR).read_bytes()).hexdigest()
    assert manifest["sha256"] == outcome.as_dict()["placement"]["changes_sha256"]

    summary = execution.promote()
    assert summary["already"] is False and summary["refused"] == []
    assert (ws / "edit.txt").read_text() == "new\n"
    assert not (ws / "gone.txt").exists() and not (ws / "sub").exists()
    assert (ws / "d" / "e" / "f.txt").read_text() == "deep\n"
    assert os.stat(ws / "run.sh").st_mode & 0o111
    assert (ws / "keep.txt").read_text() == "keep\n"
    assert (ws / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"  # never bundled, never touched

    (ws / "edit.txt").write_text("edited after\n")
    again = execution.promote()
    assert again["already"] is True
    assert (ws / "edit.txt").read_text() == "edited after\n"  # the second call applied nothing


@pytest.mark.slow
def test_a_scope_over_the_bundle_cap_is_a_spawn_error_before_anything_is_submitted(
    cluster: LocalCluster, scratch: str, tmp_path: Path
) -> None:
    executor = RayExecutor(cluster.address, scratch=scratch, bundle_cap=1000)
    job = make_job(tmp_path, "w-cap", "true", files={"big.bin": "x" * 2000})
    outcome, execution, pids = run_job(executor, job)

    assert outcome.reason is FailureReason.spawn_error
    assert outcome.message is not None and "2000 bytes" in outcome.message and "1000 bytes" in outcome.message
    assert pids == [] and execution.node_id is None and outcome.placement is None


@pytest.mark.slow
def test_with_a_shared_file_system_steps_run_in_place_and_promote_has_nothing_to_do(
    cluster: LocalCluster, scratch: str, tmp_path: Path
) -> None:
    executor = RayExecutor(cluster.address, scratch=scratch, shared_fs=True)
    job = make_job(tmp_path, "w-shared", "pwd; echo here > inplace.txt")
    outcome, execution, _ = run_job(executor, job)

    assert outcome.ok, outcome.as_dict()
    assert (Path(job.cwd) / "inplace.txt").read_text() == "here\n"
    assert outcome.stdout_path is not None and job.cwd in Path(outcome.stdout_path).read_text()
    assert outcome.placement is not None and "bundle_sha256" not in outcome.placement
    assert execution.promote()["files"] == 0


@pytest.mark.slow
def test_a_failure_on_the_node_before_any_step_is_a_spawn_error_naming_it(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    executor = RayExecutor(cluster.address, scratch="/proc/harness-no-such-folder")
    outcome, _, pids = run_job(executor, make_job(tmp_path, "w-broken", "true"))

    assert outcome.reason is FailureReason.spawn_error
    assert outcome.message is not None and outcome.message.startswith("the Ray task failed: ")
    assert "/proc/harness-no-such-folder" in outcome.message
    assert pids == []


# -- stopping -------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["cancel", "kill_now"])
def test_a_running_job_is_stopped_promptly_and_leaves_no_process(
    executor: RayExecutor, tmp_path: Path, how: str
) -> None:
    wid = f"w-{how}"
    job = make_job(tmp_path, wid, "sleep 60 & sleep 60", timeout=120)
    run = Running(executor.prepare(job))
    assert run.started.wait(WAIT)
    (pgid,) = run.pids
    assert live_members(pgid)

    if how == "cancel":
        run.execution.cancel("stop it")
    else:
        run.execution.kill_now()
    outcome = run.result(timeout=5.0)

    assert outcome.reason is FailureReason.cancelled
    assert outcome.message == ("stop it" if how == "cancel" else "killed")
    assert wait_until(lambda: not live_members(pgid), WAIT), live_members(pgid)  # the whole group
    assert wait_until(lambda: no_process_of(wid), WAIT)


# -- agents -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_agent_step_runs_on_the_node_with_its_parser_and_its_tool_channel(
    executor: RayExecutor, tmp_path: Path
) -> None:
    from harness.agents import adapter_for

    adapter = adapter_for("claude", None)
    asked: list[Any] = []

    def ask(request: Any) -> tuple[bool, str]:
        asked.append(request)
        return True, ""

    argv = [sys.executable, str(CHANNEL_AGENT), "notes.txt", "written on the node"]
    step = Step(
        StepKind.agent,
        0,
        "channel_agent <3 args>",
        argv=argv,
        stdin=adapter.channel_input("write the notes"),
        parser=adapter.parser(),
        channel=ToolChannel(adapter, ask),
    )
    job = make_job(tmp_path, "w-agent", steps=(step,), acceptance=("test -f notes.txt",))
    outcome, execution, _ = run_job(executor, job)

    assert outcome.ok, outcome.as_dict()
    assert [r.tool for r in asked] == ["Write"]
    # the agent wrote in the node's copy; the question names the file the change lands in
    assert asked[0].input["file_path"] == str(Path(job.cwd) / "notes.txt")
    assert outcome.agent is not None and outcome.agent["session_id"] == "s-1"
    assert outcome.agent["final_message"] == "wrote the file"
    execution.promote()
    assert (Path(job.cwd) / "notes.txt").read_text() == "written on the node"


@pytest.mark.slow
def test_a_sandboxed_job_is_confined_on_the_node(executor: RayExecutor, tmp_path: Path) -> None:
    from harness.sandbox import Confinement, choose

    if choose("auto")["mode"] != "bwrap":
        pytest.skip("bubblewrap cannot make its namespaces here")
    ws = os.path.realpath(tmp_path / "ws")
    os.makedirs(ws)
    sandbox = Confinement(writable=[ws], protected=[os.path.dirname(ws)], private_tmp=f"{tmp_path}/tmp")
    job = make_job(tmp_path, "w-sandbox", "echo inside > in.txt && ! touch /etc/harness-ray-probe", sandbox=sandbox)
    outcome, execution, _ = run_job(executor, job)

    assert outcome.ok, outcome.as_dict()
    assert not os.path.exists("/etc/harness-ray-probe")
    execution.promote()
    assert (Path(ws) / "in.txt").read_text() == "inside\n"


@pytest.mark.slow
def test_a_file_of_the_worker_folder_named_by_an_agent_argv_goes_with_the_job(
    executor: RayExecutor, tmp_path: Path
) -> None:
    job = make_job(tmp_path, "w-argfile", "true")
    prompt = Path(job.out_dir, "prompt.md")
    prompt.parent.mkdir(parents=True)
    prompt.write_text("the prompt\n")
    argv = [sys.executable, "-c", "import sys; print(open(sys.argv[1]).read(), sys.argv[1])", str(prompt)]
    job.steps = (Step(StepKind.agent, 0, "reader", argv=argv),)
    outcome, _, _ = run_job(executor, job)

    assert outcome.ok, outcome.as_dict()
    assert outcome.stdout_path is not None
    printed = Path(outcome.stdout_path).read_text()
    assert "the prompt" in printed and "/harness-ray/w-argfile/run/workers/w-argfile/prompt.md" in printed


@pytest.mark.slow
def test_output_longer_than_the_cap_comes_back_as_its_end(cluster: LocalCluster, scratch: str, tmp_path: Path) -> None:
    executor = RayExecutor(cluster.address, scratch=scratch, log_cap=100)
    outcome, _, _ = run_job(executor, make_job(tmp_path, "w-logcap", "seq 1 1000"))

    assert outcome.ok and outcome.stdout_path is not None
    saved = Path(outcome.stdout_path).read_text()
    assert saved.startswith("[harness: the first ") and "stayed on Ray node" in saved
    assert saved.endswith("999\n1000\n") and len(saved.splitlines()[-1]) < 100


@pytest.mark.slow
def test_changes_over_the_cap_fail_the_attempt(cluster: LocalCluster, scratch: str, tmp_path: Path) -> None:
    executor = RayExecutor(cluster.address, scratch=scratch, bundle_cap=1000)
    job = make_job(tmp_path, "w-bigchange", "head -c 2000 /dev/zero > big.bin")
    outcome, execution, _ = run_job(executor, job)

    assert outcome.reason is FailureReason.spawn_error
    assert outcome.message == "the attempt changed 2000 bytes of files, over the Ray bundle cap of 1000 bytes"
    assert execution.promote()["files"] == 0 and not (Path(job.cwd) / "big.bin").exists()


# -- last: a lost node stays counted alive by the cluster for a while -------------------------------


@pytest.mark.slow
def test_losing_the_node_mid_task_interrupts_the_attempt(
    cluster: LocalCluster, executor: RayExecutor, tmp_path: Path
) -> None:
    node = cluster.add_node(num_cpus=1, resources={"doomed": 1})
    job = make_job(tmp_path, "w-lost", "sleep 60 & sleep 60", timeout=120, resources={"custom": {"doomed": 1}})
    run = Running(executor.prepare(job))
    assert run.started.wait(WAIT)
    (pgid,) = run.pids

    cluster.cluster.remove_node(node, allow_graceful=False)
    outcome = run.result(timeout=30.0)

    assert outcome.reason is FailureReason.interrupted and outcome.interrupted and not outcome.ok
    assert outcome.message is not None
    assert node.node_id in outcome.message and "NodeDiedError" in outcome.message
    assert outcome.placement is not None and outcome.placement["node_id"] == node.node_id
    # the steps' group dies with the node's worker: parent-death signal and watcher
    assert wait_until(lambda: not live_members(pgid), WAIT), live_members(pgid)
    assert wait_until(lambda: no_process_of("w-lost"), WAIT)


# -- without the cluster ----------------------------------------------------------------------------------


def test_placement_is_in_the_result_only_when_set() -> None:
    local = Outcome(ok=True)
    assert "placement" not in local.as_dict()
    local.placement = {"executor": "ray", "node_id": "n", "task_id": "t"}
    assert local.as_dict()["placement"] == {"executor": "ray", "node_id": "n", "task_id": "t"}


def test_unknown_resources_are_refused() -> None:
    with pytest.raises(ValueError, match="gpus"):
        ray_options({"gpus": 1}, 1.0)
    assert ray_options(None, 0.25) == {"num_cpus": 0.25}


def test_changes_that_do_not_match_their_hash_are_not_applied(tmp_path: Path) -> None:
    out_dir, target = tmp_path / "out", tmp_path / "scope"
    out_dir.mkdir()
    target.mkdir()
    (target / "a.txt").write_text("a")
    (out_dir / CHANGES_TAR).write_bytes(b"")
    (out_dir / CHANGES_JSON).write_text(json.dumps({"sha256": "0" * 64, "deleted": ["a.txt"]}))
    with pytest.raises(ValueError, match="does not match"):
        promote_changes(str(out_dir), str(target))
    assert (target / "a.txt").exists()


def test_deletions_that_leave_the_scope_are_refused(tmp_path: Path) -> None:
    out_dir, target = tmp_path / "out", tmp_path / "scope"
    out_dir.mkdir()
    target.mkdir()
    (tmp_path / "outside.txt").write_text("keep")
    (out_dir / CHANGES_TAR).write_bytes(b"")
    digest = hashlib.sha256(b"").hexdigest()
    (out_dir / CHANGES_JSON).write_text(json.dumps({"sha256": digest, "deleted": ["../outside.txt", "/etc/x"]}))
    summary = promote_changes(str(out_dir), str(target))
    assert sorted(summary["refused"]) == ["../outside.txt", "/etc/x"]
    assert (tmp_path / "outside.txt").read_text() == "keep"


def test_the_harness_folder_is_never_bundled_nor_changed_by_an_attempt(tmp_path: Path) -> None:
    scope = tmp_path / "ws"
    (scope / ".harness" / "runs" / "r1").mkdir(parents=True)
    (scope / ".harness" / "runs" / "r1" / "events.jsonl").write_text("{}\n")
    (scope / "src" / ".harness").mkdir(parents=True)  # a folder of that name below the top is the user's
    (scope / "src" / ".harness" / "kept.txt").write_text("k")
    (scope / "a.txt").write_text("a")
    data, _ = make_bundle(str(scope), 1 << 20)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(tar.getnames())
    assert names == ["a.txt", "src", "src/.harness", "src/.harness/kept.txt"]
    # changes that name the run's log are refused, whatever the node sent
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        forged = b"forged\n"
        info = tarfile.TarInfo(".harness/runs/r1/events.jsonl")
        info.size = len(forged)
        tar.addfile(info, io.BytesIO(forged))
    (out_dir / CHANGES_TAR).write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    (out_dir / CHANGES_JSON).write_text(json.dumps({"sha256": digest, "deleted": [".harness/runs/r1"]}))
    summary = promote_changes(str(out_dir), str(scope))
    assert sorted(summary["refused"]) == [".harness/runs/r1", ".harness/runs/r1/events.jsonl"]
    assert (scope / ".harness" / "runs" / "r1" / "events.jsonl").read_text() == "{}\n"


def test_reap_without_recorded_groups_signals_nothing(tmp_path: Path) -> None:
    assert RayExecutor().reap("w-none", str(tmp_path / "run" / "workers" / "w-none"), []) == []


@pytest.mark.parametrize("way", ["launcher", "preexec"])
def test_a_step_dies_with_the_thread_that_started_it(way: str) -> None:
    import subprocess

    from harness.services.worker_manager import _ray

    launcher, preexec = _ray._parent_death()
    if way == "preexec":
        launcher, preexec = (), _ray._prctl_death_signal(9)
    elif not launcher:
        pytest.skip("setpriv --pdeathsig is not available here")
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        proc = subprocess.Popen([*launcher, "sleep", "30"], preexec_fn=preexec)
        procs.append(proc)
        # setpriv arms the signal after the spawn returned: the thread lives until it did (its exec of sleep)
        wait_until(lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep", WAIT)

    starter = threading.Thread(target=start)
    starter.start()
    starter.join()  # the thread that started it ended: the kernel sends the signal
    try:
        assert procs[0].wait(WAIT) == -9
    finally:
        procs[0].kill()
        procs[0].wait()


def test_a_node_without_bubblewrap_refuses_a_sandboxed_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.sandbox
    from harness.services.worker_manager import _ray

    monkeypatch.setattr(harness.sandbox, "locate", lambda path_env=None: None)
    ws = str(tmp_path)
    spec = {
        "worker_id": "w-nobwrap",
        "cwd": ws,
        "workspace": ws,
        "out_dir": f"{ws}/run/workers/w-nobwrap",
        "env": {},
        "timeout": 1.0,
        "steps": [],
        "files": {},
        "sandbox": {"writable": [ws], "protected": [], "network": False, "private_tmp": True},
        "scratch": str(tmp_path / "scratch"),
    }
    job, refused = _ray._NodeAttempt(spec, "node-x", "task-y", {})._job(None, None)

    assert job is None and refused is not None and refused.reason is FailureReason.spawn_error
    assert refused.message is not None and refused.message.startswith("on Ray node node-x: ")
    assert "bubblewrap" in refused.message
