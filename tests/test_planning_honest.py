"""Honest plans: no acceptance test that cannot fail, no command that leaves its task's directory.

The classifier (``vacuous``) is checked on lists of commands, and the heuristic planner on three
real-looking workspaces built here: a Python project under git, a Node project, a plain folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from workspaces import HAS_GIT, node_project, plain_folder, python_project

from harness.models import Plan, TaskPacket
from harness.services.planning import (
    HeuristicBackend,
    PlanningContext,
    Strictness,
    build_plan,
    decompose_objective,
    detect,
    refine_plan,
    validate_plan,
)
from harness.services.planning.heuristic import changed_check
from harness.services.planning.vacuous import is_vacuous, scope_escape, vacuous_reason

# -- the classifier -------------------------------------------------------------------------------

VACUOUS = [
    "true",
    ":",
    "exit 0",
    "test -d .",
    "[ -d . ]",
    "test -e .",
    "[ -e ./ ]",
    "echo done",
    "printf 'ok\\n'",
    "pwd",
    "ls",
    "ls .",
    "ls -A",
    "ls -la .",
    'test -n "$(ls -A)"',
    'test -n "$(ls)"',
    '[ -n "$(ls -A .)" ]',
    'test -n "$(pwd)"',
    "test -n yes",
    "[ a = a ]",
    "python3 -m pytest -q || true",
    "make test || :",
    "make test || exit 0",
    "npm test; true",
    "npm test; exit 0",
    "python3 -m pytest -q >/dev/null 2>&1 || true",
    "grep -q dark README.md || echo 'not there yet'",
    "true; echo checked; pwd",
    "cd src && test -d .",
    "cd src && true",
    "cd src\ntrue",
    "! false",
    "(true)",
    "exit 0; false",
    "X=1",
    "sleep 1 &",
    "true # nothing else",
    "# only a comment",
]

REAL = [
    "test -f dist/app.whl",
    "grep -q x README.md",
    "python3 -m pytest -q",
    "ls dist/*.whl",
    "ls src",
    "test -d build",
    'test -n "$(git status --porcelain)"',
    'test -n "$(git status --porcelain -- src)"',
    'test -n "$(ls dist)"',
    'test -z "$(git status --porcelain)"',
    'test -n "$VERSION"',
    "cd src && python3 -m pytest -q",
    "true && false",
    "true; false",
    "false",
    "exit 1",
    "exit",
    "! true",
    "test",
    "echo x | grep -q y",
    "test -f a || test -f b",
    "grep -q 'a; true' notes.txt",
    "grep -q 'x || true' notes.txt",
    "if true; then true; fi",
    "true < missing.txt",
    "echo x > out/missing-dir/file",
    "echo 'unterminated",
    "[ -d . ",
    "true &&",
    "; true",
    "npm test",
    "make test",
    "git diff --quiet HEAD~1..HEAD",
]


@pytest.mark.parametrize("command", VACUOUS)
def test_a_check_that_cannot_fail_is_vacuous_with_a_reason(command):
    reason = vacuous_reason(command)
    assert reason and isinstance(reason, str)


@pytest.mark.parametrize("command", REAL)
def test_a_check_that_can_fail_or_cannot_be_read_is_real(command):
    assert vacuous_reason(command) is None


@pytest.mark.parametrize("command", REAL[:12])
def test_moving_into_a_directory_first_keeps_a_real_check_real(command):
    assert not is_vacuous(f"cd src && {command}")


LEAVING = [
    "cd ..",
    "cd .. && python3 -m pytest -q",
    "cd ../x",
    "cd /abs",
    "cd ~",
    "cd",
    "cd -",
    "cd $HOME/work",
    "pushd ..",
    "python3 -m pytest ../tests",
    "cat a/../../b",
    "ls ..",
    "make --directory=..",
    "PYTHONPATH=src:../lib python3 -m app",
    'test -n "$(cd .. && ls)"',
    "(cd .. && make)",
    "true && cd /tmp && rm -f x",
]

STAYING = [
    "cd src",
    "cd src && make",
    "cd ./src/..",
    "cat src/../README.md",
    "git diff HEAD..main",
    "python3 -m pytest -q",
    "ls dist/*.whl",
    "test -n \"$(git status --porcelain -- . ':(exclude).harness')\"",
    "echo x > /dev/null 2>&1",
    "curl -fsS http://localhost/../x",
]


@pytest.mark.parametrize("command", LEAVING)
def test_a_command_that_leaves_its_directory_is_named(command):
    assert scope_escape(command)


@pytest.mark.parametrize("command", STAYING)
def test_a_command_that_stays_in_its_directory_is_not_named(command):
    assert scope_escape(command) is None


WORDS = st.sampled_from(
    ["make", "test", "-f", "x.txt", "pytest", "-q", "grep", "'a b'", '"$(git status)"', "false", "ls", "src", "1"]
)
COMMANDS = st.lists(WORDS, min_size=1, max_size=4).map(" ".join)
SCRIPTS = st.lists(st.tuples(st.sampled_from(["&&", "||", ";", "|", "\n"]), COMMANDS), max_size=4).flatmap(
    lambda rest: COMMANDS.map(lambda first: first + "".join(f" {op} {c}" for op, c in rest))
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(script=SCRIPTS, tail=st.sampled_from(["|| true", "|| :", "|| exit 0", "; true", "; exit 0"]))
def test_any_command_followed_by_a_fallback_that_always_succeeds_is_vacuous(script, tail):
    assert is_vacuous(f"{script} {tail}")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text(alphabet=st.sampled_from(list("ab .-/|&;()$`'\"\\#\n<>!~=:")), max_size=40))
def test_the_classifiers_never_raise_on_any_text(text):
    assert vacuous_reason(text) is None or isinstance(vacuous_reason(text), str)
    assert scope_escape(text) is None or isinstance(scope_escape(text), str)


# -- the heuristic on real-looking workspaces -----------------------------------------------------


WORKSPACES = {"python": python_project, "node": node_project, "plain": plain_folder}
OBJECTIVES = [
    "add dark mode to the dashboard",
    "fix the crash in parse_config when the file is empty",
    "document the --verbose flag in README.md",
    "add CSV export and fix the login redirect",
    "write tests for the parser",
    "rename load_cfg to load_config",
]


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("honest")
    return {name: make(root / name) for name, make in WORKSPACES.items()}


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("kind", sorted(WORKSPACES))
def test_every_heuristic_plan_checks_only_what_can_fail_and_stays_in_scope(workspaces, kind, objective):
    ws = workspaces[kind]
    plan, notes = build_plan(objective, detect(ws))
    for t in plan.tasks:
        for test in t.acceptance_tests:
            assert vacuous_reason(test) is None, (t.id, test)
        for command in (*t.commands, *t.acceptance_tests):
            assert scope_escape(command) is None, (t.id, command)
        assert t.acceptance_tests or (t.is_manual and t.confirmation), t.id
        if not t.acceptance_tests:
            assert any(n.startswith(f"{t.id} has no check that can fail") for n in notes), t.id
    report = validate_plan(plan, workspace=str(ws), strictness=Strictness.generated)
    assert report.valid, report.problems
    assert not [p for p in report.problems if p.code in ("vacuous_acceptance_test", "command_leaves_scope")]
    assert 3 <= len(plan.tasks) <= 7
    assert build_plan(objective, detect(ws)) == (plan, notes), "deterministic"
    checked = decompose_objective(objective, PlanningContext(workspace=str(ws)))
    assert checked.report.valid and [t.id for t in checked.plan.tasks] == [t.id for t in plan.tasks]


def test_the_locate_step_is_a_person_confirming_the_list_of_files(workspaces):
    plan, notes = build_plan("add dark mode to the dashboard", detect(workspaces["python"]))
    locate = plan.tasks[0]
    assert locate.is_manual and locate.acceptance_tests == []
    assert locate.confirmation and "listed" in locate.confirmation
    assert any(n.startswith("t1 has no check that can fail") for n in notes)


def test_a_plain_folder_gets_manual_steps_with_confirmations_where_nothing_can_be_checked(workspaces):
    plan, notes = build_plan("add dark mode to the dashboard", detect(workspaces["plain"]))
    if detect(workspaces["plain"]).git:
        pytest.skip("the temporary directory is inside a git work tree")
    confirmed = [t.id for t in plan.tasks if t.confirmation]
    assert confirmed == ["t1", "t2", "t3", "t5"], "the docs task keeps its grep: README.md must mention it"
    assert plan.tasks[3].acceptance_tests == ["grep -qiF -- 'dark mode' README.md"]
    assert any("a person's confirmation only" in n for n in notes)


def test_rooted_commands_make_the_task_work_from_the_root_and_name_its_directory(workspaces):
    plan, _ = build_plan("add dark mode to the dashboard", detect(workspaces["python"]))
    change = plan.tasks[1]
    assert change.scope_path == "."
    assert "The change belongs in src/" in change.objective
    if HAS_GIT:
        assert change.acceptance_tests[0] == changed_check("src")
    assert not any(c.startswith("cd ") for t in plan.tasks for c in (*t.commands, *t.acceptance_tests))


def run_checks(checks: list[str], cwd: Path) -> list[int]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return [
        subprocess.run(["sh", "-c", c], cwd=cwd, env=env, capture_output=True, timeout=120).returncode for c in checks
    ]


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_the_change_tasks_checks_fail_before_the_change_and_pass_after_it(tmp_path):
    ws = python_project(tmp_path / "py")
    plan, _ = build_plan("add dark mode to the dashboard", detect(ws))
    change = plan.tasks[1]
    where = ws / change.scope_path
    (ws / ".harness").mkdir()
    (ws / ".harness" / "events.jsonl").write_text("{}\n")  # the harness's own log is no change
    before = run_checks(change.acceptance_tests, where)
    assert before[0] != 0, "nothing changed in src/ yet: the git check must fail"
    again = run_checks(change.acceptance_tests, where)
    assert again[0] != 0, "the bytecode the first run left behind is no change either (a retry stays honest)"
    (ws / "tests" / "test_dark.py").write_text("def test_dark():\n    assert True\n")
    assert run_checks(change.acceptance_tests[:1], where) != [0], "a change elsewhere is not a change in src/"
    (ws / "src" / "pkg" / "theme.py").write_text("DARK = True\n")
    assert run_checks(change.acceptance_tests, where) == [0] * len(change.acceptance_tests)


# -- refinement keeps plans honest ------------------------------------------------------------------


def test_a_task_added_to_a_plan_for_a_plain_folder_is_a_confirmed_manual_step(workspaces):
    context = PlanningContext(workspace=str(workspaces["plain"]))
    plan, _ = HeuristicBackend().decompose("add dark mode to the dashboard", context)
    checked, applied = refine_plan(plan, "add task: announce dark mode on the mailing list", context)
    added = checked.plan.tasks[-1]
    assert applied[0].startswith(f"added {added.id}")
    assert checked.report.valid
    assert added.acceptance_tests or added.confirmation
    assert not [c for c in added.acceptance_tests if is_vacuous(c)]


def test_a_task_added_to_a_python_plan_borrows_the_verification(workspaces):
    context = PlanningContext(workspace=str(workspaces["python"]))
    plan, _ = HeuristicBackend().decompose("add dark mode to the dashboard", context)
    refined, _ = HeuristicBackend().refine(plan, "add task: announce dark mode", context)
    assert refined.tasks[-1].acceptance_tests == ["python3 -m pytest -q"]
    assert refined.tasks[-1].confirmation is None


def test_a_hand_written_manual_step_without_tests_is_not_given_a_confirmation_by_refinement():
    tasks = [
        TaskPacket(id="a", title="Build the wheel", acceptance_tests=["ls dist/*.whl"]),
        TaskPacket(id="b", title="Check the release notes", depends_on=["a"]),
        TaskPacket(id="c", title="Upload the wheel", depends_on=["b"], acceptance_tests=["twine check dist/*"]),
    ]
    plan = Plan(objective="release pkg 1.0", tasks=tasks, source="file")
    refined, _ = HeuristicBackend().refine(plan, "timeout c 60", PlanningContext())
    assert refined.tasks[1].confirmation is None, "a person's missing check is reported, never papered over"
