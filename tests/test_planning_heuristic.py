"""The heuristic planner: workspace detection, plan shape, determinism, and real acceptance checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workspaces import write_files

from harness.models import Risk, Scope
from harness.rpc import INVALID_PARAMS, INVALID_PLAN, InvalidParams, InvalidPlan
from harness.services.planning import (
    HeuristicBackend,
    PlannerBackend,
    PlanningContext,
    build_plan,
    decompose_objective,
    detect,
    topological_order,
)
from harness.services.planning.heuristic import changed_check
from harness.services.planning.text import intent, key_phrase, split_clauses
from harness.services.planning.vacuous import scope_escape, vacuous_reason
from harness.services.planning.workspace import make_targets

HAS_GIT = shutil.which("git") is not None


def python_ws(root: Path) -> Path:
    return write_files(
        root,
        {
            "pyproject.toml": "[project]\nname='app'\n",
            "src/app/__init__.py": "",
            "tests/test_app.py": "def test_ok():\n    pass\n",
            "README.md": "# app\n",
        },
    )


def node_ws(root: Path) -> Path:
    scripts = {"test": "node --test", "build": "tsc -p ."}
    return write_files(
        root,
        {
            "package.json": json.dumps({"name": "web", "scripts": scripts}),
            "lib/index.js": "",
            "test/index.test.js": "",
            "docs/usage.md": "x",
        },
    )


def make_ws(root: Path) -> Path:
    makefile = "CC := gcc\nall: app\n\napp: main.c\n\t$(CC) -o app main.c\n\ntest: app\n\t./run-tests.sh\n"
    return write_files(
        root,
        {
            "Makefile": makefile,
            "pyproject.toml": "",
            "src/main.c": "int main(){}",
            "tests/test_x.py": "",
            "CHANGELOG.md": "# Changes\n",
        },
    )


def ctx(workspace: Path | None = None, **extra) -> PlanningContext:
    return PlanningContext(workspace=str(workspace) if workspace else None, **extra)


def by_title(plan, prefix: str):
    return next(t for t in plan.tasks if t.title.startswith(prefix))


# -- workspace detection ---------------------------------------------------------------------------


def test_a_python_workspace_is_verified_with_pytest_from_its_root(tmp_path):
    profile = detect(python_ws(tmp_path))
    assert [c.text for c in profile.test_commands] == ["python3 -m pytest -q"]
    assert (profile.source_dir, profile.tests_dir, profile.readme) == ("src", "tests", "README.md")


@pytest.mark.parametrize("marker", ["setup.cfg", "pytest.ini", "tox.ini", "setup.py"])
def test_any_python_project_marker_gives_pytest(tmp_path, marker):
    write_files(tmp_path, {marker: ""})
    assert [c.text for c in detect(tmp_path).test_commands] == ["python3 -m pytest -q"]


def test_a_tests_directory_of_python_files_alone_gives_pytest(tmp_path):
    write_files(tmp_path, {"tests/test_a.py": ""})
    assert [c.text for c in detect(tmp_path).test_commands] == ["python3 -m pytest -q"]


def test_a_node_workspace_uses_its_package_scripts(tmp_path):
    profile = detect(node_ws(tmp_path))
    assert [c.text for c in profile.test_commands] == ["npm test"]
    assert [c.text for c in profile.build_commands] == ["npm run build"]
    assert (profile.source_dir, profile.tests_dir, profile.docs_dir) == ("lib", "test", "docs")


def test_npm_placeholder_test_script_is_not_used_because_it_always_fails(tmp_path):
    write_files(
        tmp_path, {"package.json": json.dumps({"scripts": {"test": 'echo "Error: no test specified" && exit 1'}})}
    )
    profile = detect(tmp_path)
    assert profile.test_commands == ()
    assert any("placeholder" in n for n in profile.notes)


def test_a_broken_package_json_is_noted_not_fatal(tmp_path):
    write_files(tmp_path, {"package.json": "{not json"})
    assert any("not valid JSON" in n for n in detect(tmp_path).notes)


def test_a_makefile_test_target_takes_over_and_all_gives_make(tmp_path):
    profile = detect(make_ws(tmp_path))
    assert [c.text for c in profile.test_commands] == ["make test"]
    assert [c.text for c in profile.build_commands] == ["make"]


def test_a_makefile_build_target_without_all_gives_make_build(tmp_path):
    write_files(tmp_path, {"Makefile": "build:\n\tcc main.c\n"})
    profile = detect(tmp_path)
    assert [c.text for c in profile.build_commands] == ["make build"] and profile.test_commands == ()


def test_makefile_targets_exclude_variable_assignments_and_recipe_lines():
    text = "X := 1\nY ::= 2\nall test: deps\n\techo not: a target\nclean::\n"
    assert make_targets(text) == {"all", "test", "clean"}


def test_cargo_and_go_workspaces_get_their_test_and_build_commands(tmp_path):
    write_files(tmp_path, {"Cargo.toml": "[package]\n", "go.mod": "module x\n"})
    profile = detect(tmp_path)
    assert [c.text for c in profile.test_commands] == ["cargo test", "go test ./..."]
    assert [c.text for c in profile.build_commands] == ["cargo build", "go build ./..."]


def test_no_workspace_and_a_missing_one_detect_nothing(tmp_path):
    assert detect(None).test_commands == ()
    missing = detect(tmp_path / "nope")
    assert not missing.exists and missing.notes


# -- plans --------------------------------------------------------------------------------------------


def test_a_feature_in_a_python_workspace_becomes_locate_change_tests_docs_verify(tmp_path):
    plan, notes = build_plan("add dark mode", detect(python_ws(tmp_path)))
    assert [t.id for t in plan.tasks] == ["t1", "t2", "t3", "t4", "t5"]
    assert [t.depends_on for t in plan.tasks] == [[], ["t1"], ["t2"], ["t2"], ["t3", "t4"]]
    locate, change, tests, docs, verify = plan.tasks
    assert (locate.scope, locate.scope_path) == (Scope.module, "src")
    assert locate.acceptance_tests == [] and locate.confirmation, "reading code leaves nothing to check"
    # pytest runs at the root, so the change and its tests work from there and say where they belong
    assert (change.scope, change.scope_path) == (Scope.workspace, ".")
    assert (tests.scope, tests.scope_path) == (Scope.workspace, ".")
    assert change.objective.startswith("Add dark mode. The change belongs in src/")
    assert "add dark mode" in locate.objective and "add dark mode" in tests.objective
    assert "belong in tests/" in tests.objective
    assert change.acceptance_tests == ["python3 -m compileall -q src", "python3 -m pytest -q"]
    assert tests.acceptance_tests == ["python3 -m pytest -q"]
    assert docs.acceptance_tests == ["grep -qiF -- 'dark mode' README.md"]
    assert verify.commands == ["python3 -m pytest -q"] and verify.acceptance_tests == ["python3 -m pytest -q"]
    assert all(not t.commands for t in plan.tasks[:-1]), "only verification runs by itself"
    assert all(t.acceptance_tests for t in plan.tasks[1:])
    assert plan.requires.tools == ["python3"]
    assert any("pytest" in n for n in notes)


def test_a_bug_fix_starts_with_a_regression_test_and_records_the_fix_in_the_changelog(tmp_path):
    plan, _ = build_plan("fix login bug", detect(make_ws(tmp_path)))
    titles = [t.title for t in plan.tasks]
    assert titles[1].startswith("Reproduce with a failing test")
    assert titles[2] == "Fix login bug"
    assert titles[3] == "Record the fix in CHANGELOG.md"
    assert plan.tasks[3].acceptance_tests == ["grep -qiF -- login CHANGELOG.md"]
    assert plan.tasks[2].depends_on == ["t2"]
    assert plan.tasks[-1].commands == ["make", "make test"]
    fix = plan.tasks[2]
    assert fix.scope_path == "." and fix.acceptance_tests[-2:] == ["make", "make test"], "make runs at the root"
    assert "belongs in src/" in fix.objective


def test_a_node_workspace_plan_uses_npm_and_its_docs_directory(tmp_path):
    plan, _ = build_plan("add CSV export to the report page", detect(node_ws(tmp_path)))
    docs = by_title(plan, "Document")
    assert docs.scope_path == "docs" and docs.acceptance_tests == ["grep -rqiF -- 'csv export' ."]
    assert plan.tasks[-1].commands == ["npm run build", "npm test"]
    assert plan.tasks[-1].acceptance_tests == ["npm test"]
    assert "npm run build" in plan.tasks[1].acceptance_tests


def test_several_clauses_become_parallel_change_tasks(tmp_path):
    plan, _ = build_plan(
        "add dark mode, fix the login crash and update README.md with the new flags", detect(python_ws(tmp_path))
    )
    changes = [t for t in plan.tasks if t.depends_on == ["t1"]]
    assert [t.title for t in changes] == ["Add dark mode", "Fix the login crash", "Update README.md with the new flags"]
    assert len(plan.tasks) == 6
    assert topological_order(plan.tasks) is not None


def test_split_clauses_only_splits_before_a_verb():
    assert split_clauses("add search and filters") == ["add search and filters"]
    assert split_clauses("add search and fix the footer; document it.") == [
        "add search",
        "fix the footer",
        "document it",
    ]


def test_intents_and_key_phrases_are_read_from_the_words():
    assert [
        intent(c)
        for c in ("add dark mode", "fix login bug", "update README.md", "add tests for the parser", "rename load_cfg")
    ] == ["feature", "bugfix", "docs", "tests", "refactor"]
    assert key_phrase("add a --top option to the report") == "--top"
    assert key_phrase("add dark mode to settings") == "dark mode"


@pytest.mark.parametrize("max_tasks", [3, 4, 5, 6, 7])
def test_the_plan_fits_max_tasks_and_never_drops_verification(tmp_path, max_tasks):
    objective = "add dark mode, add CSV export and add a --top flag and support the retry option"
    plan, _ = build_plan(objective, detect(python_ws(tmp_path)), max_tasks)
    assert 3 <= len(plan.tasks) <= max_tasks
    assert plan.tasks[-1].title == "Run the full verification"
    every_clause = " ".join(t.objective for t in plan.tasks)
    for clause in ("Add dark mode", "Add CSV export", "Add a --top flag", "Support the retry option"):
        assert clause in every_clause


def test_without_any_test_command_verification_checks_the_git_tree_or_asks_a_person(tmp_path):
    plain = detect(write_files(tmp_path / "plain", {"notes.txt": "x"}))
    plan, notes = build_plan("add dark mode", plain)
    verify = plan.tasks[-1]
    assert verify.commands == [] and verify.title == "Check the finished work"
    if plain.git:
        assert verify.acceptance_tests == [changed_check()] and verify.confirmation is None
    else:
        assert verify.acceptance_tests == [] and verify.confirmation
        assert any(f"{verify.id} has no check that can fail" in n for n in notes)
    assert any("no test command" in n for n in notes)


def test_decompose_is_deterministic_and_flags_risky_plans(tmp_path):
    context = ctx(python_ws(tmp_path))
    first = decompose_objective("deploy the docs site to production", context)
    again = decompose_objective("deploy the docs site to production", context)
    assert first.plan == again.plan
    assert all(t.risk == Risk.high for t in first.plan.tasks)
    assert first.report.risky == [t.id for t in first.plan.tasks]


def test_a_vague_objective_is_refused_with_every_problem(tmp_path):
    with pytest.raises(InvalidPlan) as info:
        decompose_objective("improve stuff", ctx(node_ws(tmp_path)))
    assert info.value.code == INVALID_PLAN
    problems = info.value.data["problems"]
    assert {p["path"] for p in problems} == {"objective", "tasks[1].objective"}
    assert all(p["code"] == "vague_objective" for p in problems)


def test_an_unknown_backend_is_invalid_params():
    with pytest.raises(InvalidParams) as info:
        decompose_objective("add dark mode", ctx(backend="oracle"))
    assert info.value.code == INVALID_PARAMS


def test_a_backend_that_proposes_a_bad_plan_is_still_refused():
    class Careless(HeuristicBackend):
        def decompose(self, objective, context):
            plan, notes = super().decompose(objective, context)
            plan.tasks[0].depends_on.append(plan.tasks[-1].id)
            return plan, notes

    backend = Careless()
    assert isinstance(backend, PlannerBackend)
    with pytest.raises(InvalidPlan) as info:
        decompose_objective("add dark mode", ctx(), backend=backend)
    assert [p["code"] for p in info.value.data["problems"]] == ["cycle"]


# -- acceptance checks are real: they fail before the work and pass after ---------------------------


def sh(command: str, cwd: Path) -> int:
    return subprocess.run(["sh", "-c", command], cwd=cwd, capture_output=True, timeout=20).returncode


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_generated_checks_fail_before_the_work_and_pass_after(tmp_path):
    ws = write_files(tmp_path / "ws", {"src/app.py": "x = 1\n", "README.md": "# app\n", "notes.txt": ""})
    subprocess.run(["git", "init", "-q", str(ws)], check=True, timeout=20)
    subprocess.run(["git", "-C", str(ws), "add", "-A"], check=True, timeout=20)
    subprocess.run(
        ["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "init"],
        check=True,
        timeout=20,
    )
    plan, _ = build_plan("add dark mode", detect(ws))
    change, docs = by_title(plan, "Add dark mode"), by_title(plan, "Document")
    (ws / ".harness").mkdir()
    (ws / ".harness" / "events.jsonl").write_text("{}\n")
    assert [sh(c, ws / change.scope_path) for c in change.acceptance_tests] == [1], "the run log alone is no change"
    assert sh(docs.acceptance_tests[0], ws / docs.scope_path) == 1
    (ws / "src" / "theme.py").write_text("DARK = True\n")
    (ws / "README.md").write_text("# app\n\nDark mode: set THEME=dark.\n")
    assert [sh(c, ws / change.scope_path) for c in change.acceptance_tests] == [0]
    assert sh(docs.acceptance_tests[0], ws / docs.scope_path) == 0


# -- property: concrete objectives always give valid DAGs -------------------------------------------

VERBS = ["add", "fix", "implement", "rename", "document", "write tests for", "support", "remove", "update"]
THINGS = [
    "dark mode",
    "the login form",
    "CSV export",
    "parse_config",
    "the --verbose flag",
    "README.md",
    "the settings page",
    "retry on HTTP 503",
    "`load_user`",
    "the billing module",
]
clause = st.builds(lambda v, t: f"{v} {t}", st.sampled_from(VERBS), st.sampled_from(THINGS))
objectives = st.lists(clause, min_size=1, max_size=5).flatmap(
    lambda cs: st.sampled_from([" and ", ", ", "; "]).map(lambda sep: sep.join(cs))
)


@pytest.fixture(scope="module")
def workspaces():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        yield [None, str(python_ws(root / "py")), str(node_ws(root / "node")), str(make_ws(root / "make"))]


@settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(objective=objectives, max_tasks=st.integers(3, 7), which=st.integers(0, 3))
def test_every_concrete_objective_gives_the_same_valid_dag_of_three_to_max_tasks(
    workspaces, objective, max_tasks, which
):
    context = PlanningContext(workspace=workspaces[which], max_tasks=max_tasks)
    checked = decompose_objective(objective, context)
    assert decompose_objective(objective, context).plan == checked.plan
    tasks = checked.plan.tasks
    assert checked.report.valid
    assert 3 <= len(tasks) <= max_tasks
    assert [t.id for t in tasks] == [f"t{i}" for i in range(1, len(tasks) + 1)]
    assert topological_order(tasks) == [t.id for t in tasks]
    assert all(all(c.strip() for c in t.acceptance_tests) for t in tasks)
    assert all(t.acceptance_tests or (t.is_manual and t.confirmation) for t in tasks)
    assert not [c for t in tasks for c in t.acceptance_tests if vacuous_reason(c)]
    assert not [c for t in tasks for c in (*t.commands, *t.acceptance_tests) if scope_escape(c)]


def test_a_workspace_with_its_own_virtualenv_runs_its_tests_with_that_interpreter(tmp_path):
    ws = python_ws(tmp_path)
    interpreter = ws / ".venv" / "bin" / "python"
    interpreter.parent.mkdir(parents=True)
    interpreter.write_text("#!/bin/sh\n")
    assert [c.text for c in detect(ws).test_commands] == [".venv/bin/python -m pytest -q"]
