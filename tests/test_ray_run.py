"""`harness run --executor ray` end to end: the real CLI, its services, and a two-node Ray cluster
on this machine, bound to loopback (tests/ray_support.py). Each attempt is a Ray task; the log
says which node ran it, and stays the truth when a node is lost or the supervisor dies."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (the ray extra)")

from e2e_support import (
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
from ray_support import HEAD_POOL, POOL, LocalCluster, running_cluster, wait_for

from harness.state import short_node

pytestmark = pytest.mark.slow

WAIT = 60.0
#: Steps write where the test can see them while they run on a node: no sandbox (the node's copy of
#: the scope is the only writable folder under one).
UNCONFINED = {"sandbox": "off"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    yield from running_cluster()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_config(workspace, policy=UNCONFINED)
    return workspace


def ray_args(cluster: LocalCluster) -> list[str]:
    return ["--executor", "ray", "--ray-address", cluster.address]


def run(ws: Path, cluster: LocalCluster, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve", *ray_args(cluster), *extra, timeout=timeout)


def placements(evts: list[dict[str, Any]], tid: str) -> list[dict[str, Any]]:
    return [e["data"]["placement"] for e in evts if e["type"] == "WORKER_STARTED" and e.get("task_id") == tid]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


class Blocker:
    """A Ray task of this test process holding the head's only CPU until released, so that a task
    asking for a CPU can only be placed on the second node."""

    def __init__(self, cluster: LocalCluster, folder: Path) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.running, self.go = folder / "blocker-running", folder / "blocker-go"

        def hold(running: str, go: str) -> None:
            Path(running).touch()
            deadline = time.monotonic() + 120
            while not Path(go).exists() and time.monotonic() < deadline:
                time.sleep(0.02)

        strategy = NodeAffinitySchedulingStrategy(cluster.head.node_id, soft=False)
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": 0, "scheduling_strategy": strategy}
        remote = ray.remote(**options)(hold)
        self.ref = remote.remote(str(self.running), str(self.go))
        wait_for(self.running.exists, WAIT, "the blocker to hold the head's CPU")

    def release(self) -> None:
        import ray

        self.go.touch()
        ray.get(self.ref, timeout=WAIT)


def test_a_task_pinned_to_the_second_node_runs_there_and_its_changes_come_back(ws: Path, cluster: LocalCluster) -> None:
    (ws / "old.txt").write_text("to be removed\n")
    write_plan(
        ws,
        [
            {
                "id": "remote",
                "title": "Write on the second node",
                "commands": ["echo made on the node > made.txt", "rm old.txt"],
                "acceptance_tests": ["grep -q 'made on the node' made.txt", "test ! -e old.txt"],
                "resources": {"cpus": 0.5, "custom": {POOL: 1}},
            },
            {"id": "after", "title": "Sees it", "commands": ["cat made.txt"], "depends_on": ["remote"],
             "acceptance_tests": ["test -f made.txt"]},
        ],
    )  # fmt: skip
    proc = run(ws, cluster)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    evts = events(ws)
    executor = first(evts, "RUN_STARTED")["data"]["executor"]
    assert executor == {"kind": "ray", "address": cluster.address, "shared_fs": False, "bundle_cap_mb": 256}
    [where] = placements(evts, "remote")
    assert where["executor"] == "ray" and where["node_id"] == cluster.second.node_id and where["task_id"]
    ended = first(evts, "WORKER_FINISHED", "remote")["data"]
    assert ended["placement"]["node_id"] == cluster.second.node_id and len(ended["placement"]["bundle_sha256"]) == 64
    # the changes came back into the workspace once the attempt was accepted, deletion included
    assert (ws / "made.txt").read_text() == "made on the node\n"
    assert not (ws / "old.txt").exists()
    short = short_node(cluster.second.node_id)
    assert f"[node {short}]" in proc.stdout
    status = harness(ws, "status", latest_run(ws))
    assert f"node={short}" in status.stdout
    report = harness(ws, "report", latest_run(ws))
    assert report.returncode == 0, report.stderr
    text = (ws / ".harness" / "runs" / latest_run(ws) / "report.md").read_text()
    assert f"on node `{short}`" in text
    assert harness(ws, "log", latest_run(ws), "--verify").returncode == 0


def test_losing_the_node_mid_task_fails_the_attempt_as_interrupted_and_attempt_2_runs_on_the_head(
    ws: Path, cluster: LocalCluster, tmp_path: Path
) -> None:
    mark = tmp_path / "attempt-1-running"
    hang_first = f'[ "$HARNESS_ATTEMPT" -gt 1 ] || {{ touch {mark}; exec sleep 120; }}'
    write_plan(ws, [{"id": "t", "title": "Loses its node once", "commands": [hang_first, "echo done > done.txt"],
                     "acceptance_tests": ["test -f done.txt"], "resources": {"cpus": 1}}])  # fmt: skip
    doomed = cluster.second
    blocker = Blocker(cluster, tmp_path)  # the head's CPU is held: attempt 1 can only go to the second node
    proc = start_cli(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve", *ray_args(cluster))
    try:
        evts = wait_for_log(ws, lambda ev: bool(placements(ev, "t")), timeout=WAIT)
        wait_for(mark.exists, WAIT, "attempt 1 to be inside its step")
        pid = first(evts, "WORKER_STARTED", "t")["data"]["pid"]
        cluster.cluster.remove_node(doomed, allow_graceful=False)
        wait_for_log(ws, lambda ev: "WORKER_FAILED" in types(ev, "t"), timeout=WAIT)
        blocker.release()  # now the head is the one node with a free CPU: attempt 2 goes there
        code, out, err = finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        if not blocker.go.exists():
            blocker.release()
        cluster.second = cluster.add_node(num_cpus=1, resources={POOL: 1})  # for the tests after this one
    assert code == 0, out + err
    evts = events(ws)
    failed = first(evts, "WORKER_FAILED", "t")["data"]
    assert failed["reason"] == "interrupted" and failed["interrupted"] is True
    assert doomed.node_id in failed["message"]
    assert first(evts, "FAILURE_CLASSIFIED", "t")["data"]["failure_type"] == "transient"
    assert [e["data"]["attempt"] for e in evts if e["type"] == "TASK_STARTED"] == [1, 2]
    assert [p["node_id"] for p in placements(evts, "t")] == [doomed.node_id, cluster.head.node_id]
    assert (ws / "done.txt").read_text() == "done\n"  # attempt 2's changes, accepted
    wait_for(lambda: not alive(pid), WAIT, "attempt 1's step to end with its node")


def test_ctrl_c_cancels_the_remote_attempt_and_leaves_no_process(
    ws: Path, cluster: LocalCluster, tmp_path: Path
) -> None:
    mark = tmp_path / "running"
    write_plan(ws, [{"id": "t", "title": "Runs until cancelled", "commands": [f"touch {mark}; exec sleep 120"], "acceptance_tests": ["true"],
                     "resources": {"cpus": 0.5, "custom": {POOL: 1}}}])  # fmt: skip
    proc = start_cli(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve", *ray_args(cluster))
    try:
        evts = wait_for_log(ws, lambda ev: bool(placements(ev, "t")), timeout=WAIT)
        wait_for(mark.exists, WAIT, "the step to run")
        pid = first(evts, "WORKER_STARTED", "t")["data"]["pid"]  # this machine's pid: the node is here
        assert alive(pid)
        proc.send_signal(signal.SIGINT)
        code, out, err = finish(proc, timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert code == 130, out + err
    wait_for(lambda: not alive(pid), WAIT, "the remote step to end")
    evts = events(ws)
    assert first(evts, "RUN_WAITING")["data"]["reason"] == "interrupted"


def test_a_supervisor_killed_mid_task_ends_its_ray_driver_and_resume_reruns_the_attempt(
    ws: Path, cluster: LocalCluster, tmp_path: Path
) -> None:
    mark = tmp_path / "attempt-1-running"
    hang_first = f'[ "$HARNESS_ATTEMPT" -gt 1 ] || {{ touch {mark}; exec sleep 120; }}'
    write_plan(ws, [{"id": "t", "title": "Cut off once", "commands": [hang_first, "echo ok > ok.txt"],
                     "acceptance_tests": ["test -f ok.txt"], "resources": {"cpus": 0.5, "custom": {POOL: 1}}}])  # fmt: skip
    proc = start_cli(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve", *ray_args(cluster))
    try:
        evts = wait_for_log(ws, lambda ev: bool(placements(ev, "t")), timeout=WAIT)
        wait_for(mark.exists, WAIT, "attempt 1 to be inside its step")
        pid = first(evts, "WORKER_STARTED", "t")["data"]["pid"]
        proc.kill()  # the supervisor dies; its services are left behind until the resume stops them
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    resumed = harness(ws, "resume", latest_run(ws), *ray_args(cluster), timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    wait_for(lambda: not alive(pid), WAIT, "the cut-off attempt to end with its driver")
    evts = events(ws)
    interrupted = [e for e in evts if e["type"] == "TASK_FAILED" and e.get("task_id") == "t"]
    assert [(e["data"]["reason"], e["data"]["attempt"]) for e in interrupted] == [("interrupted", 1)]
    assert [e["data"]["attempt"] for e in evts if e["type"] == "TASK_STARTED"] == [1, 2]
    assert first(evts, "RUN_RESUMED")["data"]["executor"]["kind"] == "ray"
    assert (ws / "ok.txt").read_text() == "ok\n"


def test_a_hundred_task_plan_runs_over_both_nodes(ws: Path, cluster: LocalCluster) -> None:
    tasks = [
        {"id": f"t{i:03d}", "title": f"task {i}", "commands": [f"echo {i} > out-{i:03d}.txt"],
         "acceptance_tests": [f"grep -qx {i} out-{i:03d}.txt"],
         "resources": {"cpus": 0.25, "custom": {(HEAD_POOL if i % 2 else POOL): 0.01}}}
        for i in range(100)
    ]  # fmt: skip
    write_plan(ws, tasks)
    proc = run(ws, cluster, "--parallel", "4", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    evts = events(ws)
    assert types(evts).count("TASK_COMPLETED") == 100
    nodes = {e["task_id"]: e["data"]["placement"]["node_id"] for e in evts if e["type"] == "WORKER_STARTED"}
    assert {nodes[f"t{i:03d}"] for i in range(1, 100, 2)} == {cluster.head.node_id}
    assert {nodes[f"t{i:03d}"] for i in range(0, 100, 2)} == {cluster.second.node_id}
    assert sorted(p.name for p in ws.glob("out-*.txt")) == [f"out-{i:03d}.txt" for i in range(100)]


def test_the_ray_executor_is_refused_clearly_when_it_cannot_be_used(ws: Path) -> None:
    write_plan(ws, [{"id": "t", "title": "x", "commands": ["true"]}])
    both = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--executor", "local", "--ray-address", "127.0.0.1:1")
    assert both.returncode == 2 and "--ray-address" in both.stderr and "Traceback" not in both.stderr
    assert not (ws / ".harness" / "runs").exists()


def test_an_agent_task_on_the_second_node_brings_its_changes_back_into_its_worktree(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    from agent_clis import ENVIRONMENTS, find_cli
    from fake_models import fake_model

    cli = find_cli("claude")
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "a@b"], ["config", "user.name", "a"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "README.md").write_text("x\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True)
    plan = tmp_path / "plan.yaml"
    write_plan(tmp_path, [{"id": "hello", "title": "Write hello.txt", "agent": {"name": "claude"},
                           "acceptance_tests": ["grep -q hello hello.txt"],
                           "resources": {"cpus": 0.5, "custom": {POOL: 1}}}], objective="Say hello")  # fmt: skip
    write_config(tmp_path, agents={"claude": {"command": [cli]}}, recovery={"recipes": {"transient": {"retries": 0}}})
    with fake_model() as model:
        env = ENVIRONMENTS["claude"](tmp_path / "home", model.url)
        proc = harness(repo, "run", "--plan", str(plan), "--approve", "--config", str(tmp_path / "harness.yaml"),
                       *ray_args(cluster), env=env, timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = latest_run(repo)
    evts = events(repo, run_id)
    [where] = placements(evts, "hello")
    assert where["node_id"] == cluster.second.node_id
    # its write was asked about by the path in its worktree, where it lands: in scope, allowed
    decided = first(evts, "TOOL_PERMISSION_DECIDED", "hello")["data"]
    assert decided["decision"] == "allow" and decided["rule"] == "scope"
    assert first(evts, "AGENT_USAGE", "hello")["data"]["tokens_in"] > 0
    show = subprocess.run(["git", "show", f"harness/{run_id}:hello.txt"], cwd=repo, capture_output=True, text=True)
    assert show.stdout.strip() == "hello from the agent"
