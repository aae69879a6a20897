"""Run modes end to end: plan (show what would run, run nothing) and explore (run on a copy, leave
the workspace byte for byte as it was, `harness apply` brings the diff in)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import events, first, harness, latest_run, types

pytestmark = pytest.mark.slow

FAKE = Path(__file__).parent / "agent_programs" / "fake_agent.py"


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True).stdout.strip()


def status(ws: Path) -> list[str]:
    """`git status` of the user's files (the run's own folder, .harness/, left out)."""
    return [line for line in git(ws, "status", "--porcelain").splitlines() if ".harness" not in line]


def files_of(ws: Path) -> dict[str, str]:
    """Every file of the workspace but the harness's own folder and git's, with its digest."""
    out = {}
    for path in sorted(ws.rglob("*")):
        rel = path.relative_to(ws)
        if rel.parts[0] in (".git", ".harness") or not path.is_file():
            continue
        out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    ws = tmp_path / "repo"
    ws.mkdir()
    git(ws, "init", "-q", "-b", "main")
    git(ws, "config", "user.email", "dev@example.com")
    git(ws, "config", "user.name", "Dev")
    (ws / "notes.txt").write_text("first line\n")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "initial")
    (ws / "notes.txt").write_text("first line\nuncommitted line\n")  # work in progress stays as it is
    (ws / "draft.md").write_text("an untracked draft\n")
    return ws


def setup(ws: Path) -> dict[str, Any]:
    tasks = [
        {
            "id": "count",
            "title": "Count the runs",
            "commands": ["echo ran >> counter.txt", "echo more >> notes.txt"],
            "acceptance_tests": ["grep -q ran counter.txt", "grep -q uncommitted notes.txt"],
        },
        {
            "id": "write",
            "title": "Write the guide",
            "depends_on": ["count"],
            "acceptance_tests": ["grep -q guide GUIDE.md", "test -f counter.txt"],
        },
    ]
    (ws.parent / "plan.yaml").write_text(yaml.safe_dump({"objective": "Modes", "tasks": tasks}))
    (ws.parent / "script.json").write_text(json.dumps({"write": [{"write": {"GUIDE.md": "the guide\n"}}]}))
    config = {"agents": {"fake": {"command": [sys.executable, str(FAKE), str(ws.parent / "script.json")]}}}
    (ws.parent / "harness.yaml").write_text(yaml.safe_dump(config))
    return {"plan": str(ws.parent / "plan.yaml"), "config": str(ws.parent / "harness.yaml")}


def run(ws: Path, paths: dict[str, Any], mode: str) -> subprocess.CompletedProcess[str]:
    return harness(
        ws, "run", "--plan", paths["plan"], "--config", paths["config"], "--agent", "fake", "--approve", "--mode", mode
    )


def test_plan_mode_shows_every_command_and_runs_nothing(repo: Path) -> None:
    paths = setup(repo)
    before, was, branches = files_of(repo), status(repo), git(repo, "branch", "-a")
    done = run(repo, paths, "plan")
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert "Mode: plan." in out and "nothing is run" in out
    assert "$ echo ran >> counter.txt" in out and "$ echo more >> notes.txt" in out
    assert f"agent fake: {sys.executable} {FAKE}" in out and "verify: grep -q guide GUIDE.md" in out
    assert ".harness/worktrees/" in out and "harness-task/" in out  # where it would work, not made
    assert files_of(repo) == before and not (repo / "counter.txt").exists()
    assert status(repo) == was and git(repo, "branch", "-a") == branches
    assert not (repo / ".harness" / "worktrees").exists()
    evts = events(repo, latest_run(repo))
    assert "TASK_STARTED" not in types(evts) and "WORKER_SPAWNED" not in types(evts)
    assert first(evts, "RUN_STARTED")["data"]["options"]["mode"] == "plan"
    shown = first(evts, "TASKS_PREVIEWED")["data"]["tasks"]
    assert [t["id"] for t in shown] == ["count", "write"] and shown[1]["argv"][:2] == [sys.executable, str(FAKE)]
    assert first(evts, "EXECUTION_COMPLETE")["data"]["status"] == "planned"
    checks = {c["command"]: c for c in shown[0]["checks"]}
    assert checks["echo ran >> counter.txt"]["decision"] == "allow"  # what the checks would say, hooks not run


def test_explore_mode_leaves_the_workspace_as_it_was_and_apply_brings_the_work_in(repo: Path) -> None:
    paths = setup(repo)
    before, was, head = files_of(repo), status(repo), git(repo, "rev-parse", "HEAD")
    done = run(repo, paths, "explore")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Mode: explore." in done.stdout and "your workspace is as it was" in done.stdout
    assert files_of(repo) == before  # byte for byte, uncommitted and untracked work included
    assert status(repo) == was and git(repo, "rev-parse", "HEAD") == head
    run_id = latest_run(repo)
    evts = events(repo, run_id)
    assert first(evts, "INTEGRATION_CREATED")["data"]["snapshot"] is True
    diff = first(evts, "EXPLORE_DIFF")["data"]
    assert sorted(diff["files"]) == ["GUIDE.md", "counter.txt", "notes.txt"]
    patch = Path(diff["patch"]).read_text()
    assert "+more" in patch and "+uncommitted line" not in patch  # the run's work only, on top of the user's

    refused = harness(repo, "apply", run_id)
    assert refused.returncode == 2 and "--yes" in refused.stderr and files_of(repo) == before
    assert harness(repo, "merge", run_id, "--yes").returncode == 2
    applied = harness(repo, "apply", run_id, "--yes")
    assert applied.returncode == 0, applied.stderr
    assert (repo / "notes.txt").read_text() == "first line\nuncommitted line\nmore\n"
    assert (repo / "GUIDE.md").read_text() == "the guide\n" and (repo / "counter.txt").read_text() == "ran\n"
    assert (repo / "draft.md").read_text() == "an untracked draft\n"
    assert git(repo, "rev-parse", "HEAD") == head  # applied to the files, nothing committed
    assert first(events(repo, run_id), "RUN_APPLIED")["data"]["files"] == diff["files"]
    again = harness(repo, "apply", run_id, "--yes")
    assert again.returncode == 2 and "already applied" in again.stderr


def test_explore_mode_needs_a_git_repository(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(
        yaml.safe_dump(
            {"objective": "x", "tasks": [{"id": "a", "commands": ["true"], "acceptance_tests": ["test -f plan.yaml"]}]}
        )
    )
    done = harness(tmp_path, "run", "--plan", str(tmp_path / "plan.yaml"), "--approve", "--mode", "explore")
    assert done.returncode != 0 and "git" in (done.stdout + done.stderr)
    assert "Traceback" not in done.stderr


def test_explore_mode_in_parallel_keeps_every_task_s_work(repo: Path) -> None:
    tasks = [
        {"id": f"s{i}", "title": f"Write part {i}", "commands": [f"echo part{i} > part{i}.txt"],
         "acceptance_tests": [f"grep -q part{i} part{i}.txt"]}
        for i in (1, 2, 3)
    ] + [{"id": "guide", "title": "Write the guide", "acceptance_tests": ["grep -q guide GUIDE.md"]}]  # fmt: skip
    (repo.parent / "plan.yaml").write_text(yaml.safe_dump({"objective": "Parallel parts", "tasks": tasks}))
    (repo.parent / "script.json").write_text(json.dumps({"guide": [{"write": {"GUIDE.md": "the guide\n"}}]}))
    config = {"agents": {"fake": {"command": [sys.executable, str(FAKE), str(repo.parent / "script.json")]}}}
    (repo.parent / "harness.yaml").write_text(yaml.safe_dump(config))
    before = files_of(repo)
    done = harness(
        repo, "run", "--plan", str(repo.parent / "plan.yaml"), "--config", str(repo.parent / "harness.yaml"),
        "--agent", "fake", "--approve", "--mode", "explore", "--parallel", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert files_of(repo) == before
    diff = first(events(repo, latest_run(repo)), "EXPLORE_DIFF")["data"]
    assert sorted(diff["files"]) == ["GUIDE.md", "part1.txt", "part2.txt", "part3.txt"]
