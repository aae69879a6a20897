"""The Node.js examples, run for real: the planning service, the client, and the Node planner
swapped into `harness run` through harness.yaml. The Node planner's plans are judged by the
Python classifier (no check that cannot fail, no command that leaves its task) and its validator
against the Python service's. Node is required: missing Node fails."""

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
from workspaces import HAS_GIT, make_project, node_project, plain_folder, python_project

from harness.models import TaskPacket
from harness.services.planning import Strictness, ValidationConfig, validate_packets
from harness.services.planning.heuristic import changed_check
from harness.services.planning.vacuous import scope_escape, vacuous_reason

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
        ({"pyproject.toml": "[project]\nname = 'x'\n"}, "python3 -m pytest -q"),
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
    assert all(t["acceptance_tests"] or (not t["commands"] and t["confirmation"]) for t in tasks)
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
    assert isinstance(tasks, list) and tasks[0]["id"] == "t1" and tasks[0]["confirmation"]
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
    assert after[new_id]["depends_on"] == [last]
    assert after[new_id]["acceptance_tests"] == [], "no workspace: nothing to borrow that could fail"
    assert after[new_id]["confirmation"] == "Done as described: Write the dark mode changelog entry"
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


# -- honest plans: no check that cannot fail, no command that leaves its task ---------------------


WORKSPACES = {"python": python_project, "node": node_project, "make": make_project, "plain": plain_folder}
HONEST_OBJECTIVES = [
    "add dark mode to the dashboard",
    "fix the crash in parse_config when the file is empty",
    "add CSV export and fix the login redirect",
    "rename load_cfg to load_config",
]


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("honest")
    return {name: make(root / name) for name, make in WORKSPACES.items()}


def node_plan(node_planner: list[str], ws: Path, objective: str) -> dict[str, Any]:
    reply = call(node_planner, "decompose_plan", {"objective": objective, "context": {"workspace": str(ws)}})
    assert "result" in reply, reply
    return reply["result"]


@pytest.mark.parametrize("objective", HONEST_OBJECTIVES)
@pytest.mark.parametrize("kind", sorted(WORKSPACES))
def test_decompose_plans_only_checks_that_can_fail_and_commands_that_stay_in_their_task(
    node_planner: list[str], workspaces: dict[str, Path], kind: str, objective: str
) -> None:
    """Judged by the Python classifier, and the Python validator accepts the plan as generated."""
    ws = workspaces[kind]
    result = node_plan(node_planner, ws, objective)
    for t in result["plan"]["tasks"]:
        for test in t["acceptance_tests"]:
            assert vacuous_reason(test) is None, (t["id"], test)
        for command in (*t["commands"], *t["acceptance_tests"]):
            assert scope_escape(command) is None, (t["id"], command)
        if not t["acceptance_tests"]:
            assert not t["commands"] and t["confirmation"], t["id"]
            assert any(n.startswith(f"{t['id']} has no check that can fail") for n in result["notes"]), t["id"]
    python = call(
        PYTHON_PLANNING, "validate", {"plan": result["plan"], "workspace": str(ws), "strictness": "generated"}
    )["result"]
    assert python["valid"], python["problems"]
    assert python["problems"] == result["report"]["problems"]


@pytest.mark.parametrize(("kind", "command"), [("python", "python3 -m pytest -q"), ("make", "make test")])
def test_a_rooted_command_runs_from_the_workspace_root_and_the_objective_names_the_directory(
    node_planner: list[str], workspaces: dict[str, Path], kind: str, command: str
) -> None:
    tasks = node_plan(node_planner, workspaces[kind], "add dark mode to the dashboard")["plan"]["tasks"]
    change = tasks[1]
    assert change["scope_path"] == "."
    assert change["objective"].endswith(
        f"The change belongs in src/; the task works from the workspace root, where `{command}` must run."
    )
    assert change["acceptance_tests"][-1] == command
    if kind == "python" and HAS_GIT:
        assert change["acceptance_tests"][0] == changed_check("src"), "the git check names the directory"
    assert not [c for t in tasks for c in (*t["commands"], *t["acceptance_tests"]) if c.startswith("cd ")]


def test_a_command_that_finds_its_root_itself_runs_in_the_tasks_own_directory(
    node_planner: list[str], workspaces: dict[str, Path]
) -> None:
    tasks = node_plan(node_planner, workspaces["node"], "add dark mode to the dashboard")["plan"]["tasks"]
    assert [(t["scope_path"], t["acceptance_tests"]) for t in tasks[1:3]] == [
        ("lib", ["npm test"]),
        ("test", ["npm test"]),
    ]


def test_a_plain_folder_gets_manual_steps_a_person_confirms_where_nothing_can_be_checked(
    node_planner: list[str], workspaces: dict[str, Path]
) -> None:
    ws = workspaces["plain"]
    if any((d / ".git").exists() for d in (ws, *ws.parents)):
        pytest.skip("the temporary directory is inside a git work tree")
    result = node_plan(node_planner, ws, "add dark mode to the dashboard")
    tasks = result["plan"]["tasks"]
    assert [t["id"] for t in tasks if t["confirmation"]] == ["t1", "t2", "t3", "t5"]
    assert tasks[3]["acceptance_tests"] == ["grep -qiF -- 'dark mode' README.md"], "README.md must mention it"
    assert (
        "no test command found: verification accepts a person's confirmation only (no git, no build, no tests)"
        in (result["notes"])
    )


def test_a_task_added_to_a_python_plan_borrows_the_verification(
    node_planner: list[str], workspaces: dict[str, Path]
) -> None:
    context = {"workspace": str(workspaces["python"])}
    plan = node_plan(node_planner, workspaces["python"], "add dark mode to the dashboard")["plan"]
    result = call(
        node_planner, "refine", {"plan": plan, "feedback": "add task: announce dark mode", "context": context}
    )
    added = result["result"]["plan"]["tasks"][-1]
    assert added["acceptance_tests"] == ["python3 -m pytest -q"] and added["confirmation"] is None


CANNOT_FAIL = [
    "true",
    ":",
    "exit 0",
    "echo done",
    "printf 'ok\\n'",
    "pwd",
    "ls",
    "ls .",
    "ls -A",
    "test -d .",
    "test -e .",
    "[ -d . ]",
    'test -n "$(ls -A)"',
    '[ -n "$(ls .)" ]',
    "make test || true",
    "make test || :",
    "make test || exit 0",
    "npm test; true",
    "npm test; exit 0",
    "cd src && test -d .",
    "cd src && ls",
]
CAN_FAIL = [
    "test -f dist/app.whl",
    "grep -q x README.md",
    "ls src",
    "ls dist/*.whl",
    'test -n "$(git status --porcelain)"',
    "cd src && make test",
    "make test && true",
    "true && false",
    "grep -q 'a || true' notes.txt",
    "echo 'unterminated",
]
LEAVES = [
    "cd .. && make test",
    "cd /tmp && make",
    "cd ~ && make",
    "cat ../secret.txt",
    "pytest ../tests",
    "(cd .. && make)",
]
STAYS = [
    "cd src && make",
    "cat src/../README.md",
    "make test",
    "test -n \"$(git status --porcelain -- . ':(exclude).harness')\"",
]


def honesty_problems(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    return sorted(
        (p["code"], p["task_id"], p["severity"], p["path"], p["message"])
        for p in report["problems"]
        if p["code"] in ("vacuous_acceptance_test", "command_leaves_scope", "missing_acceptance_tests")
    )


@pytest.mark.parametrize("strictness", ["generated", "file"])
def test_validate_names_every_check_that_cannot_fail_and_every_command_that_leaves_as_python_does(
    node_planner: list[str], strictness: str
) -> None:
    tests = CANNOT_FAIL + CAN_FAIL
    packets = [task(f"v{i}", acceptance_tests=[c]) for i, c in enumerate(tests)]
    packets += [task(f"s{i}", commands=[c]) for i, c in enumerate(LEAVES + STAYS)]
    params = {"packets": packets, "strictness": strictness}
    node_report = call(node_planner, "validate", params)["result"]
    found = honesty_problems(node_report)
    severity = "error" if strictness == "generated" else "warning"
    assert [(code, tid, sev) for code, tid, sev, _, _ in found] == sorted(
        [("vacuous_acceptance_test", f"v{i}", severity) for i in range(len(CANNOT_FAIL))]
        + [("command_leaves_scope", f"s{i}", severity) for i in range(len(LEAVES))]
    )
    assert found == honesty_problems(call(PYTHON_PLANNING, "validate", params)["result"])


@pytest.mark.parametrize(
    ("strictness", "severity", "valid"), [("generated", "error", False), ("file", "warning", True)]
)
def test_validate_flags_test_d_dot_by_strictness_like_the_python_service(
    node_planner: list[str], strictness: str, severity: str, valid: bool
) -> None:
    tasks = [task("a"), task("b", "a", acceptance_tests=["test -d ."]), task("c", "b")]
    params = {"plan": {"objective": "build the a, b and c modules", "tasks": tasks}, "strictness": strictness}
    reports = [call(command, "validate", params)["result"] for command in (node_planner, PYTHON_PLANNING)]
    problems = [p for p in reports[0]["problems"] if p["code"] == "vacuous_acceptance_test"]
    assert [(p["task_id"], p["severity"], p["path"]) for p in problems] == [
        ("b", severity, "tasks[1].acceptance_tests[0]")
    ]
    assert reports[0]["valid"] is valid
    assert reports[0] == reports[1]


def test_a_manual_step_with_a_confirmation_needs_no_acceptance_tests_as_in_python(node_planner: list[str]) -> None:
    packets = [
        task("a", acceptance_tests=[], confirmation="The release notes read well."),
        task("b", "a", acceptance_tests=[], confirmation="  "),
        task("c", "b", acceptance_tests=[], commands=["make dist"], confirmation="The wheel is built."),
    ]
    reports = [call(command, "validate", {"packets": packets})["result"] for command in (node_planner, PYTHON_PLANNING)]
    missing = [p for p in reports[0]["problems"] if p["code"] == "missing_acceptance_tests"]
    assert [(p["task_id"], p["severity"]) for p in missing] == [("b", "error"), ("c", "error")]
    assert "no acceptance tests and no confirmation" in missing[0]["message"], "b is manual: it says what is missing"
    assert honesty_problems(reports[0]) == honesty_problems(reports[1])


@pytest.mark.parametrize(
    ("strictness", "config"),
    [
        ("generated", {"vacuous": "off", "scope_escape": "warning"}),
        ("file", {"vacuous": "error", "scope_escape": "off"}),
    ],
)
def test_the_validation_config_sets_the_level_of_both_rules_whatever_the_strictness(
    node: str, strictness: str, config: dict[str, str]
) -> None:
    """planner.validate itself: shapes.js does not take the two levels over the wire yet."""
    packets = [
        TaskPacket(id="a", title="Build a", commands=["cd .. && make"], acceptance_tests=["test -d ."]),
        TaskPacket(id="b", title="Build b", depends_on=["a"], acceptance_tests=["test -f b.txt"]),
        TaskPacket(id="c", title="Build c", depends_on=["b"], acceptance_tests=["test -f c.txt"]),
    ]
    script = (
        "const { validate } = require(process.argv[1]);"
        "const [tasks, options] = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(validate(tasks, options)));"
    )
    options = {"strictness": strictness, "config": config}
    proc = subprocess.run(
        [node, "-e", script, str(NODE_DIR / "planner.js")],
        input=json.dumps([[p.model_dump(mode="json") for p in packets], options]),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    found = {(p["code"], p["severity"]) for p in json.loads(proc.stdout)["problems"]}
    expected = validate_packets(packets, strictness=Strictness(strictness), config=ValidationConfig(**config))
    assert found == {(p.code, p.severity.value) for p in expected.problems}
    assert {code for code, _ in found} & {"vacuous_acceptance_test", "command_leaves_scope"}, "one rule is on"


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
