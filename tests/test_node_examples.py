"""The Node.js examples, run for real: the planning service, the client, and the Node planner
swapped into `harness run` through harness.yaml. Node is required: missing Node fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_support import assert_no_processes_left, events, harness, latest_run, write_config, write_plan

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "examples" / "node"
WAIT = 20.0
PYTHON_PLANNING = [sys.executable, "-m", "harness.services.planning"]
PYTHON_WM = [sys.executable, "-m", "harness.services.worker_manager"]


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not on PATH: the Node examples must run here, not be skipped (install Node >= 18)")
    return found


@pytest.fixture(scope="module")
def node_planner(node: str) -> list[str]:
    return [node, str(NODE_DIR / "planning-service.js")]


def exchange(command: list[str], requests: list[dict[str, Any]], cwd: Path | None = None) -> dict[Any, dict[str, Any]]:
    """Send requests (ids 1..n) to a fresh service, close stdin, and return its replies by id."""
    lines = "".join(json.dumps({"jsonrpc": "2.0", "id": i, **r}) + "\n" for i, r in enumerate(requests, start=1))
    proc = subprocess.run(
        command, input=lines, capture_output=True, text=True, timeout=WAIT, cwd=cwd, start_new_session=True
    )
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(r["jsonrpc"] == "2.0" for r in replies)
    return {r["id"]: r for r in replies}


def call(command: list[str], method: str, params: dict[str, Any], cwd: Path | None = None) -> dict[str, Any]:
    return exchange(command, [{"method": method, "params": params}], cwd)[1]


def task(tid: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": tid,
        "title": f"Build the {tid} module",
        "depends_on": list(deps),
        "acceptance_tests": [f"test -f {tid}.txt"],
        **fields,
    }


# -- decompose ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "command"),
    [
        ({"package.json": json.dumps({"scripts": {"test": "node --test"}})}, "npm test"),
        ({"Makefile": "build:\n\tcc -o app app.c\ntest: build\n\t./app --selftest\n"}, "make test"),
        ({"pyproject.toml": "[project]\nname = 'x'\n"}, "python -m pytest -q"),
    ],
)
def test_decompose_finds_the_workspaces_test_command_and_verifies_with_it(
    node_planner: list[str], tmp_path: Path, files: dict[str, str], command: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "src").mkdir()
    result = call(
        node_planner,
        "decompose_plan",
        {"objective": "add a --verbose flag to the CLI", "context": {"workspace": str(tmp_path)}},
    )["result"]
    tasks = result["plan"]["tasks"]
    assert 3 <= len(tasks) <= 7
    assert [t["id"] for t in tasks] == [f"t{i}" for i in range(1, len(tasks) + 1)]
    assert all(t["acceptance_tests"] for t in tasks)
    verify = tasks[-1]
    assert verify["commands"][-1] == command and verify["acceptance_tests"] == [command]
    assert sorted(d for t in tasks for d in t["depends_on"]) and verify["depends_on"]
    assert any(command in note for note in result["notes"])
    assert result["report"]["valid"] is True


def test_decompose_is_deterministic_and_respects_max_tasks(node_planner: list[str], tmp_path: Path) -> None:
    params = {
        "objective": "add dark mode and fix the login redirect",
        "context": {"workspace": str(tmp_path), "max_tasks": 3},
    }
    replies = exchange(node_planner, [{"method": "decompose", "params": params}] * 2)
    assert replies[1]["result"] == replies[2]["result"]
    assert len(replies[1]["result"]) == 3


def test_decompose_answers_the_task_packets_of_the_plan_decompose_plan_answers(
    node_planner: list[str], tmp_path: Path
) -> None:
    params = {"objective": "add dark mode", "context": {"workspace": str(tmp_path)}}
    replies = exchange(
        node_planner, [{"method": "decompose", "params": params}, {"method": "decompose_plan", "params": params}]
    )
    tasks = replies[1]["result"]
    assert isinstance(tasks, list) and tasks[0]["id"] == "t1" and tasks[0]["acceptance_tests"]
    assert tasks == replies[2]["result"]["plan"]["tasks"]
    assert set(replies[2]["result"]) == {"plan", "report", "notes"}


@pytest.mark.parametrize("method", ["decompose", "decompose_plan"])
def test_decompose_refuses_a_vague_objective_with_every_problem(node_planner: list[str], method: str) -> None:
    reply = call(node_planner, method, {"objective": "improve stuff"})
    assert reply["error"]["code"] == -32004
    assert {p["code"] for p in reply["error"]["data"]["problems"]} == {"vague_objective"}
    assert reply["error"]["data"]["notes"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"objective": 5},
        {"objective": "   "},
        {"objective": "add x", "extra": 1},
        {"objective": "add x", "context": {"max_tasks": 2}},
        {"objective": "add x", "context": {"backend": "llm"}},
    ],
)
@pytest.mark.parametrize("method", ["decompose", "decompose_plan"])
def test_decompose_with_bad_params_is_invalid_params(
    node_planner: list[str], method: str, params: dict[str, Any]
) -> None:
    assert call(node_planner, method, params)["error"]["code"] == -32602


# -- validate -----------------------------------------------------------------------------------


def test_validate_reports_every_problem_at_once_and_names_the_cycle_in_order(
    node_planner: list[str], tmp_path: Path
) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "escape").symlink_to(outside)
    packets = [
        task("a", "c"),
        task("b", "a"),
        task("c", "b"),
        task("a"),
        task("d", "ghost", acceptance_tests=[]),
        task("e", scope_path="../elsewhere"),
        task("f", scope_path="escape"),
        task("g", title="Deploy to production"),
    ]
    report = call(node_planner, "validate", {"packets": packets, "workspace": str(tmp_path)})["result"]
    codes = sorted(p["code"] for p in report["problems"] if p["severity"] == "error")
    assert codes == [
        "cycle",
        "duplicate_id",
        "missing_acceptance_tests",
        "scope_outside_workspace",
        "scope_outside_workspace",
        "unknown_dependency",
    ]
    assert report["valid"] is False
    cycle = next(p for p in report["problems"] if p["code"] == "cycle")
    assert cycle["message"] == "dependency cycle: a -> c -> b -> a"
    assert report["risky"] == ["g"]
    assert {p["code"] for p in report["problems"] if p["severity"] == "warning"} == {"plan_size", "risky_task"}


def test_validate_finds_the_same_problems_as_the_python_service(node_planner: list[str], tmp_path: Path) -> None:
    """The reference service is the oracle: same packets, same (code, task, severity) problems."""
    packets = [
        task("a", "b"),
        task("b", "a", "a"),
        task("c", "c"),
        task("d", "zzz", commands=[" "]),
        task("e", acceptance_tests=[]),
        task("f", scope_path="/etc"),
        task("g", title="clean up the code"),
        task("h", title="Drop the users table in prod", commands=["git push --force origin main"]),
    ]
    for strictness in ("file", "generated"):
        params = {"packets": packets, "strictness": strictness}
        found = []
        for command in (node_planner, PYTHON_PLANNING):
            report = call(command, "validate", params)["result"]
            problems = sorted(
                (p["code"], p["task_id"] or "", p["severity"], p["message"] if p["code"] == "cycle" else "")
                for p in report["problems"]
            )
            found.append((report["valid"], problems, report["risky"]))
        assert found[0] == found[1], strictness


# -- refine -------------------------------------------------------------------------------------


def test_refine_skips_a_task_rewires_its_dependents_and_adds_a_task_after_the_last(node_planner: list[str]) -> None:
    plan = call(node_planner, "decompose_plan", {"objective": "add dark mode"})["result"]["plan"]
    before = {t["id"]: t for t in plan["tasks"]}
    assert before["t3"]["depends_on"] == ["t2"]
    result = call(
        node_planner, "refine", {"plan": plan, "feedback": "skip t2; add task: write the dark mode changelog entry"}
    )["result"]
    after = {t["id"]: t for t in result["plan"]["tasks"]}
    last = plan["tasks"][-1]["id"]
    new_id = f"t{len(plan['tasks']) + 1}"
    assert "t2" not in after
    assert after["t3"]["depends_on"] == before["t2"]["depends_on"]
    assert after[new_id]["depends_on"] == [last] and after[new_id]["acceptance_tests"]
    assert result["plan"]["revision"] == 2 and result["plan"]["source"] == "refined"
    assert result["applied"][0].startswith("removed t2") and result["applied"][1].startswith(f"added {new_id}")


def test_refine_that_makes_a_cycle_is_invalid_plan_with_what_was_applied(node_planner: list[str]) -> None:
    plan = call(node_planner, "decompose_plan", {"objective": "add dark mode"})["result"]["plan"]
    reply = call(node_planner, "refine", {"plan": plan, "feedback": "t1 after t3"})
    assert reply["error"]["code"] == -32004
    data = reply["error"]["data"]
    assert data["applied"] == ["t1 now depends on t3"]
    assert any(p["code"] == "cycle" for p in data["problems"])
    assert data["plan"]["revision"] == 2


def test_refine_turns_unknown_feedback_into_a_clarification_of_every_task(node_planner: list[str]) -> None:
    packets = [task("a"), task("b", "a"), task("c", "b")]
    result = call(
        node_planner,
        "refine",
        {"packets": packets, "objective": "build the modules", "feedback": "use tabs, not spaces"},
    )["result"]
    assert all(t["objective"].endswith("Clarification: use tabs, not spaces") for t in result["plan"]["tasks"])
    assert result["applied"] == ["clarification added to a, b, c: 'use tabs, not spaces'"]


# -- the client ---------------------------------------------------------------------------------


@pytest.mark.parametrize("planner", ["python", "node"])
def test_the_node_client_plans_and_runs_one_worker_through_the_trust_gate(
    node: str, node_planner: list[str], tmp_path: Path, planner: str
) -> None:
    env = {
        **os.environ,
        "HARNESS_PLANNING_CMD": json.dumps(PYTHON_PLANNING if planner == "python" else node_planner),
        "HARNESS_WORKER_MANAGER_CMD": json.dumps(PYTHON_WM),
    }
    proc = subprocess.run(
        [node, str(NODE_DIR / "client.js"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=env,
        start_new_session=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    notes = [
        json.loads(line.split(" ", 3)[3])
        for line in lines
        if line.startswith("notification worker-manager worker_event ")
    ]
    assert [n["event"] for n in notes] == ["worker_spawned", "trust_resolved", "worker_started", "worker_finished"]
    assert [n["state"] for n in notes] == ["trust_required", "ready_for_prompt", "running", "finished"]
    result = json.loads(next(line for line in lines if line.startswith("result "))[len("result ") :])
    assert result["state"] == "finished" and result["trust_source"] == "node-client" and result["result"]["ok"] is True
    assert (tmp_path / "hello.txt").read_text() == "hello\n"
    assert any(line.startswith("plan: ") for line in lines)
    assert lines[-2:] == ["stopped planning: exit 0", "stopped worker-manager: exit 0"]


def test_the_node_client_fails_cleanly_when_a_service_cannot_start(node: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HARNESS_PLANNING_CMD": json.dumps(["/nonexistent/harness-planning"]),
        "HARNESS_WORKER_MANAGER_CMD": json.dumps(PYTHON_WM),
    }
    proc = subprocess.run(
        [node, str(NODE_DIR / "client.js"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=env,
        start_new_session=True,
    )
    assert proc.returncode == 1
    assert "error -32007: planning is gone (not started" in proc.stderr
    assert "stopped worker-manager: exit 0" in proc.stdout


# -- swapped into the supervisor ----------------------------------------------------------------


@pytest.fixture
def ws(tmp_path: Path, node_planner: list[str]):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_config(workspace, services={"planning": {"command": node_planner}})
    yield workspace
    assert_no_processes_left(workspace)


def greeting_tasks() -> list[dict[str, Any]]:
    return [
        {
            "id": "greet",
            "title": "Write greeting.txt",
            "commands": ["echo hello > greeting.txt"],
            "acceptance_tests": ["grep -qx hello greeting.txt"],
        },
        {
            "id": "shout",
            "title": "Write shout.txt",
            "depends_on": ["greet"],
            "commands": ["tr a-z A-Z < greeting.txt > shout.txt"],
            "acceptance_tests": ["grep -qx HELLO shout.txt"],
        },
        {
            "id": "count",
            "title": "Count the words",
            "depends_on": ["shout"],
            "commands": ["wc -w < shout.txt > words.txt"],
            "acceptance_tests": ['test "$(cat words.txt)" -eq 1'],
        },
    ]


def test_harness_run_uses_the_node_planning_service_named_in_harness_yaml(ws: Path, node_planner: list[str]) -> None:
    write_plan(ws, greeting_tasks())
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    evts = events(ws)
    started = [e for e in evts if e["type"] == "SERVICE_STARTED"]
    planning = next(e for e in started if e["data"]["service"] == "planning")
    assert planning["data"]["command"] == node_planner
    others = [e["data"]["command"][0] for e in started if e["data"]["service"] != "planning"]
    assert others and all(cmd != node_planner[0] for cmd in others)
    assert (ws / "words.txt").read_text().strip() == "1"
    assert "3/3 tasks completed" in proc.stdout


def test_a_rejection_is_refined_by_the_node_planner_into_a_new_revision(ws: Path) -> None:
    write_plan(ws, greeting_tasks())
    assert harness(ws, "run", "--plan", "plan.yaml", timeout=60).returncode == 3
    run_id = latest_run(ws)
    assert harness(ws, "approve", run_id, "--reject", "skip shout", timeout=60).returncode == 0
    assert harness(ws, "resume", run_id, timeout=60).returncode == 3
    plans = [e for e in events(ws, run_id) if e["type"] == "PLAN_CREATED"]
    assert [p["data"]["revision"] for p in plans] == [1, 2]
    revised = {t["id"]: t for t in plans[1]["data"]["plan"]["tasks"]}
    assert list(revised) == ["greet", "count"] and revised["count"]["depends_on"] == ["greet"]
    assert plans[1]["data"]["applied"][0].startswith("removed shout")
