"""Agent tasks end to end, with a stand-in agent program (tests/agent_programs/fake_agent.py): a
worktree per task, the prompt saved and hashed, the verdict from our own tests, the failure fed
back on a retry, commits merged into the run's branch, conflicts, budgets, crashes, secrets."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import events, first, harness, latest_run, types, wait_for_log

pytestmark = pytest.mark.slow

FAKE = Path(__file__).parent / "agent_programs" / "fake_agent.py"
SECRET = "sk-test-4f1c9e-do-not-log"


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    ws = tmp_path / "repo"
    ws.mkdir()
    git(ws, "init", "-q", "-b", "main")
    git(ws, "config", "user.email", "dev@example.com")
    git(ws, "config", "user.name", "Dev")
    (ws / "README.md").write_text("a project\n")
    (ws / ".gitignore").write_text("*.pyc\n")  # .harness/ is excluded by the harness itself
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "initial")
    return ws


def setup(ws: Path, tasks: list[dict[str, Any]], script: dict[str, Any], **plan: Any) -> None:
    (ws.parent / "plan.yaml").write_text(yaml.safe_dump({"objective": "Agent work", "tasks": tasks, **plan}))
    (ws.parent / "script.json").write_text(json.dumps(script))
    config = {
        "agents": {
            "fake": {
                "command": [sys.executable, str(FAKE), str(ws.parent / "script.json")],
                "env": ["FAKE_API_KEY", "FAKE_AGENT_KEY_VAR"],
            }
        },
        "recovery": {
            "recipes": {"logic_error": {"retries": 1, "backoff": [0.0]}, "transient": {"retries": 2, "backoff": [0.1]}}
        },
    }
    (ws.parent / "harness.yaml").write_text(yaml.safe_dump(config))


ENV = {"FAKE_API_KEY": SECRET, "FAKE_AGENT_KEY_VAR": "FAKE_API_KEY"}


def run(ws: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    plan, config = str(ws.parent / "plan.yaml"), str(ws.parent / "harness.yaml")
    return harness(ws, "run", "--plan", plan, "--approve", "--agent", "fake", "--config", config, *extra, env=ENV)


def worktrees(ws: Path) -> list[str]:
    return [
        line.split()[1]
        for line in git(ws, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


def harness_branches(ws: Path) -> list[str]:
    refs = ("refs/heads/harness/", "refs/heads/harness-task/")
    return sorted(git(ws, "for-each-ref", "--format=%(refname:short)", *refs).split())


def test_a_failed_attempt_is_retried_with_its_test_output_and_lands_on_the_run_branch(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    tasks = [{"id": "feat", "title": "Add the feature", "acceptance_tests": ["grep -q ready feature.txt"]}]
    script = {
        "feat": [
            {"write": {"feature.txt": "not yet\n"}, "say": "I think it works"},
            {"write": {"feature.txt": "ready\n"}},
        ]
    }
    setup(repo, tasks, script)
    proc = run(repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = latest_run(repo)
    evts = events(repo, run_id)
    assert [e["data"]["attempt"] for e in evts if e["type"] == "TASK_STARTED"] == [1, 2]
    assert first(evts, "FAILURE_CLASSIFIED", "feat")["data"]["failure_type"] == "logic_error"
    # The retry's prompt carries what failed: the test, its output and the agent's last message.
    seen = repo / ".harness" / "runs" / run_id / "seen"
    retry = (seen / "feat-2.md").read_text()
    assert "previous attempt (1) was not accepted" in retry and "grep -q ready feature.txt" in retry
    assert "I think it works" in retry
    assert "previous attempt" not in (seen / "feat-1.md").read_text()
    # The prompt the agent got is the one saved in the worker's folder, hashed in TASK_STARTED.
    started = [e for e in evts if e["type"] == "TASK_STARTED"][1]
    saved = repo / ".harness" / "runs" / run_id / "workers" / started["worker_id"] / "prompt.md"
    assert saved.read_text() == retry
    assert started["data"]["prompt_sha256"] == hashlib.sha256(retry.encode()).hexdigest()
    # The work is committed with trailers and merged into harness/RUN; the user's branch is untouched.
    assert git(repo, "show", f"harness/{run_id}:feature.txt") == "ready"
    message = git(repo, "log", "-1", "--format=%B", f"harness/{run_id}^2")
    assert f"Harness-Run: {run_id}" in message and "Harness-Task: feat" in message and "Harness-Attempt: 2" in message
    assert "Harness-Tests: grep -q ready feature.txt" in message
    assert git(repo, "rev-parse", "HEAD") == head and not (repo / "feature.txt").exists()
    assert git(repo, "status", "--porcelain") == ""
    # Nothing is left but what the log explains: no worktree, only the run's branch.
    assert worktrees(repo) == [str(repo)]
    assert harness_branches(repo) == [f"harness/{run_id}"]
    failed = [e for e in evts if e["type"] == "WORKTREE_REMOVED" and e["data"]["attempt"] == 1]
    assert failed and "not yet" in Path(failed[0]["data"]["diff"]).read_text()
    # `harness merge` brings it into the user's branch, behind a confirmation.
    refused = harness(repo, "merge", run_id)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    merged = harness(repo, "merge", run_id, "--yes")
    assert merged.returncode == 0, merged.stderr
    assert (repo / "feature.txt").read_text() == "ready\n"
    assert first(events(repo, run_id), "RUN_MERGED")["data"]["into"] == "main"
    cleaned = harness(repo, "clean", run_id)
    assert cleaned.returncode == 0 and harness_branches(repo) == []


def test_parallel_tasks_work_in_their_own_worktrees_and_both_land(repo: Path) -> None:
    tasks = [
        {"id": "left", "title": "Left", "acceptance_tests": ["test -f left.txt"]},
        {"id": "right", "title": "Right", "acceptance_tests": ["test -f right.txt"]},
        {
            "id": "both",
            "title": "Both",
            "depends_on": ["left", "right"],
            "acceptance_tests": ["test -f left.txt -a -f right.txt"],
        },
    ]
    script = {
        "left": [{"write": {"left.txt": "L\n"}, "sleep": 0.5}],
        "right": [{"write": {"right.txt": "R\n"}, "sleep": 0.5}],
        "both": [{}],
    }
    setup(repo, tasks, script)
    proc = run(repo, "--parallel", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = latest_run(repo)
    evts = events(repo, run_id)
    paths = {e["task_id"]: e["data"]["path"] for e in evts if e["type"] == "WORKTREE_CREATED"}
    assert len(set(paths.values())) == 3  # never a shared directory
    assert (
        git(repo, "show", f"harness/{run_id}:left.txt") == "L"
        and git(repo, "show", f"harness/{run_id}:right.txt") == "R"
    )
    assert "left (Left)" in (repo / ".harness" / "runs" / run_id / "seen" / "both-1.md").read_text()
    assert worktrees(repo) == [str(repo)]


def test_conflicting_tasks_escalate_as_a_conflict_and_a_retry_redoes_the_work_on_top(repo: Path) -> None:
    tasks = [
        {"id": "one", "title": "One", "acceptance_tests": ["test -f shared.txt"]},
        {"id": "two", "title": "Two", "acceptance_tests": ["test -f shared.txt"]},
    ]
    script = {
        "one": [{"write": {"shared.txt": "one\n"}, "sleep": 0.3}],
        "two": [{"write": {"shared.txt": "two\n"}, "sleep": 0.6}, {"write": {"shared.txt": "one\ntwo\n"}}],
    }
    setup(repo, tasks, script)
    proc = run(repo, "--parallel", "2")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    run_id = latest_run(repo)
    evts = events(repo, run_id)
    failed = first(evts, "TASK_FAILED", "two")["data"]
    assert failed["reason"] == "merge_conflict" and failed["conflict"] == ["shared.txt"]
    assert first(evts, "FAILURE_CLASSIFIED", "two")["data"]["failure_type"] == "conflict"
    assert first(evts, "RECOVERY_ESCALATION", "two")["data"]["options"] == ["retry", "skip", "abort"]
    assert harness(repo, "decide", run_id, "two", "retry").returncode == 0
    done = harness(repo, "resume", run_id, "--config", str(repo.parent / "harness.yaml"), env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shared.txt" in (repo / ".harness" / "runs" / run_id / "seen" / "two-2.md").read_text()
    assert git(repo, "show", f"harness/{run_id}:shared.txt") == "one\ntwo"
    assert worktrees(repo) == [str(repo)]


def test_a_budget_cap_stops_the_agent_and_escalates_with_the_figures(repo: Path) -> None:
    tasks = [
        {
            "id": "slow",
            "title": "Slow",
            "acceptance_tests": ["true"],
            "agent": {"name": "fake", "budget": {"minutes": 0.02}},
        }
    ]
    setup(repo, tasks, {"slow": [{"sleep": 30}]})
    proc = run(repo)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    evts = events(repo, latest_run(repo))
    failed = first(evts, "TASK_FAILED", "slow")["data"]
    assert failed["reason"] == "budget_exceeded" and "0.02 minutes" in failed["message"]
    assert first(evts, "FAILURE_CLASSIFIED", "slow")["data"]["failure_type"] == "budget"
    assert first(evts, "AGENT_USAGE", "slow")["data"]["failure"] == "budget"
    assert "budget" in first(evts, "RECOVERY_ESCALATION", "slow")["data"]["reason"]


def test_the_api_key_reaches_the_agent_and_no_file_under_harness(repo: Path) -> None:
    setup(repo, [{"id": "t", "title": "T", "acceptance_tests": ["test -f t.txt"]}], {"t": [{"write": {"t.txt": "x"}}]})
    proc = run(repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = latest_run(repo)
    seen = (repo / ".harness" / "runs" / run_id / "seen" / "t-1.key").read_text()
    assert seen == hashlib.sha256(SECRET.encode()).hexdigest()  # it was passed through to the agent
    leaks = [p for p in (repo / ".harness").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []
    assert SECRET not in proc.stdout + proc.stderr


def test_killing_the_supervisor_while_an_agent_works_resumes_in_a_fresh_worktree_and_does_the_task_once(
    repo: Path,
) -> None:
    setup(
        repo,
        [{"id": "t", "title": "T", "acceptance_tests": ["test -f t.txt"]}],
        {"t": [{"sleep": 60}, {"write": {"t.txt": "x"}}]},
    )
    args = ["run", "--plan", str(repo.parent / "plan.yaml"), "--approve", "--agent", "fake"]
    args += ["--config", str(repo.parent / "harness.yaml")]
    env = {**os.environ, **ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args, "--workspace", str(repo)],
        cwd=repo, env={**env, "CI": "true"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_log(repo, lambda ev: "WORKER_STARTED" in types(ev))
    proc.kill()
    proc.communicate(timeout=30)
    run_id = latest_run(repo)
    done = harness(repo, "resume", run_id, "--config", str(repo.parent / "harness.yaml"), env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    evts = events(repo, run_id)
    assert [e["type"] for e in evts].count("TASK_COMPLETED") == 1
    assert [e["data"]["attempt"] for e in evts if e["type"] == "TASK_STARTED"] == [1, 2]
    assert any(e["type"] == "WORKTREE_REMOVED" and "earlier supervisor" in e["data"]["reason"] for e in evts)
    assert worktrees(repo) == [str(repo)]
    assert harness_branches(repo) == [f"harness/{run_id}"]
    assert git(repo, "show", f"harness/{run_id}:t.txt") == "x"


def test_an_agent_that_exits_non_zero_with_passing_tests_completes_and_its_exit_is_noted(repo: Path) -> None:
    setup(
        repo,
        [{"id": "t", "title": "T", "acceptance_tests": ["test -f t.txt"]}],
        {"t": [{"write": {"t.txt": "x"}, "exit": 3}]},
    )
    proc = run(repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    evts = events(repo, latest_run(repo))
    assert first(evts, "AGENT_USAGE", "t")["data"]["exit_code"] == 3
    assert "TASK_FAILED" not in types(evts) and first(evts, "TASK_COMPLETED", "t")["data"]["commit"]


def test_an_agent_that_exits_0_with_failing_tests_is_a_logic_error_with_the_test_output(repo: Path) -> None:
    setup(
        repo,
        [{"id": "t", "title": "T", "acceptance_tests": ["grep -q yes t.txt"]}],
        {"t": [{"write": {"t.txt": "no"}}]},
    )
    proc = run(repo)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    evts = events(repo, latest_run(repo))
    failures = [e["data"] for e in evts if e["type"] == "TASK_FAILED"]
    assert [f["reason"] for f in failures] == ["acceptance_failed", "acceptance_failed"]  # then one retry
    assert first(evts, "FAILURE_CLASSIFIED", "t")["data"]["failure_type"] == "logic_error"
    assert "grep -q yes t.txt" in failures[0]["summary"]


def test_an_agent_killed_by_a_signal_is_retried_in_a_fresh_worktree_and_lands_once(repo: Path) -> None:
    setup(
        repo,
        [{"id": "t", "title": "T", "acceptance_tests": ["test -f t.txt"]}],
        {"t": [{"sleep": 60}, {"write": {"t.txt": "x"}}]},
    )
    plan, config = str(repo.parent / "plan.yaml"), str(repo.parent / "harness.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "--plan", plan, "--approve", "--agent", "fake", "--config", config,
         "--workspace", str(repo)],
        cwd=repo, env={**os.environ, **ENV, "CI": "true"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    started = wait_for_log(repo, lambda ev: "WORKER_STARTED" in types(ev))
    os.killpg(first(started, "WORKER_STARTED")["data"]["pid"], 9)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    evts = events(repo, latest_run(repo))
    assert first(evts, "FAILURE_CLASSIFIED", "t")["data"]["failure_type"] == "transient"
    assert [e["type"] for e in evts].count("TASK_COMPLETED") == 1
    created = [e["data"]["path"] for e in evts if e["type"] == "WORKTREE_CREATED"]
    assert len(created) == 2 and worktrees(repo) == [str(repo)]


def test_agent_tasks_in_a_workspace_that_is_not_a_repository_get_a_clear_error(tmp_path: Path) -> None:
    ws = tmp_path / "plain"
    ws.mkdir()
    setup(ws, [{"id": "t", "title": "T", "acceptance_tests": ["true"]}], {})
    proc = run(ws)
    assert proc.returncode == 2
    assert "not a git repository" in proc.stderr and "git init" in proc.stderr and "Traceback" not in proc.stderr
