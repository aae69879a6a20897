"""Loading hand-written plan files: every problem at once, with its location."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.models import Scope
from harness.planfile import PlanFileError, load_plan_file, parse_plan
from harness.services.planning import Strictness, validate_plan

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "plans"

RELEASE = """\
objective: Release demo-app
tasks:
  - id: build
    title: Build the package
    commands: ["python -m build"]
    acceptance_tests: ["ls dist/*.whl"]
  - id: test
    title: Run the tests
    depends_on: [build]
    scope: module
    scope_path: tests
    acceptance_tests: ["pytest -q"]
    timeout: 300
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(PlanFileError) as info:
        load_plan_file(path)
    return [str(p) for p in info.value.problems]


def test_the_documented_yaml_example_loads_as_a_file_plan(tmp_path):
    plan = load_plan_file(write(tmp_path, "plan.yaml", RELEASE))
    assert plan.source == "file" and plan.revision == 1
    assert [t.id for t in plan.tasks] == ["build", "test"]
    assert plan.tasks[0].objective == "Build the package", "objective defaults to the title"
    assert (plan.tasks[1].scope, plan.tasks[1].scope_path, plan.tasks[1].timeout) == (Scope.module, "tests", 300)


def test_the_same_plan_in_json_loads_the_same(tmp_path):
    import yaml

    data = yaml.safe_load(RELEASE)
    from_yaml = load_plan_file(write(tmp_path, "plan.yml", RELEASE))
    from_json = load_plan_file(write(tmp_path, "plan.json", json.dumps(data)))
    assert from_yaml == from_json


def test_defaults_apply_to_every_task_unless_the_task_says_otherwise(tmp_path):
    text = (
        "objective: Lint and test the src tree\ndefaults: {timeout: 60, scope: module, scope_path: src}\n"
        + RELEASE.split("\n", 1)[1]
    )
    plan = load_plan_file(write(tmp_path, "plan.yaml", text))
    assert [(t.timeout, t.scope_path) for t in plan.tasks] == [(60, "src"), (300, "tests")]
    assert plan.defaults == {"timeout": 60, "scope": "module", "scope_path": "src"}


def test_every_problem_in_a_file_is_listed_with_its_location_and_line(tmp_path):
    text = """\
objective: Ship it
colour: blue
defaults:
  timeout: 0
  depends_on: [x]
tasks:
  - id: build
    title: Build
    acceptance_tests: ["true"]
    flavour: vanilla
  - id: test
    title: Test
    timeout: -1
    acceptance_tests: ["true"]
  - acceptance_tests: ["true"]
  - just text
"""
    found = problems(write(tmp_path, "plan.yaml", text))
    assert found == [
        "colour: unknown field (allowed: objective, tasks, defaults, requires, budget) (line 2)",
        "defaults.timeout: Input should be greater than 0 (line 4)",
        "defaults.depends_on: cannot be a default: it belongs to one task (line 5)",
        "tasks[0].flavour: unknown field (line 10)",
        "tasks[1].timeout: Input should be greater than 0 (line 13)",
        "tasks[2].id: required field is missing (line 15)",
        "tasks[2]: a task needs a title or an objective (line 15)",
        "tasks[3]: a task must be a mapping, not str (line 16)",
    ]


def test_json_problems_have_locations_too(tmp_path):
    data = {"objective": "Ship it", "tasks": [{"id": "a", "title": "A", "timeout": 0}, {"id": "b"}]}
    assert problems(write(tmp_path, "plan.json", json.dumps(data))) == [
        "tasks[0].timeout: Input should be greater than 0",
        "tasks[1]: a task needs a title or an objective",
    ]


def test_a_yaml_syntax_error_names_its_line(tmp_path):
    [found] = problems(write(tmp_path, "plan.yaml", "objective: x\ntasks:\n  - id: a\n   title: b\n"))
    assert found.startswith("YAML syntax error") and found.endswith("(line 4)")


def test_a_json_syntax_error_names_its_line(tmp_path):
    [found] = problems(write(tmp_path, "plan.json", '{"objective": "x",\n "tasks": [,]}'))
    assert found.startswith("JSON syntax error") and found.endswith("(line 2)")


def test_a_key_given_twice_is_a_problem_not_a_silent_overwrite(tmp_path):
    text = "objective: x\ntasks:\n  - id: a\n    title: A\n    acceptance_tests: ['true']\n    title: B\n"
    assert problems(write(tmp_path, "plan.yaml", text)) == ["tasks[0].title: this key is given twice (line 6)"]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("plan.yaml", "", "the file is empty: it needs objective and tasks"),
        ("plan.yaml", "- a\n- b\n", "the file must hold a mapping with objective, tasks, not list"),
        ("plan.yaml", "objective: x\ntasks: []\n", "tasks: must be a non-empty list of tasks (line 2)"),
        ("plan.yaml", "tasks: [{id: a, title: A}]\n", "objective: required field is missing"),
        ("plan.txt", "objective: x", "unsupported file type '.txt': use .yaml, .yml or .json"),
    ],
)
def test_files_of_the_wrong_shape_say_what_is_wrong(tmp_path, name, text, expected):
    assert any(p.startswith(expected) for p in problems(write(tmp_path, name, text)))


def test_a_missing_file_is_a_plan_file_error(tmp_path):
    assert problems(tmp_path / "nope.yaml") == ["file not found"]


def test_the_error_message_lists_every_problem(tmp_path):
    path = write(tmp_path, "plan.json", json.dumps({"objective": "x", "tasks": [{"id": "a"}, {"id": "b"}]}))
    with pytest.raises(PlanFileError) as info:
        load_plan_file(path)
    assert str(path) in str(info.value) and str(info.value).count("a task needs a title") == 2


def test_parse_plan_works_on_data_already_read():
    plan, found = parse_plan({"objective": "x", "tasks": [{"id": "a", "title": "A", "acceptance_tests": ["true"]}]})
    assert plan is not None and found == []


# -- the example plan files ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["release.yaml", "docs-site.json"])
def test_the_good_example_plans_load_and_validate(name):
    plan = load_plan_file(EXAMPLES / name)
    report = validate_plan(plan, workspace=str(EXAMPLES.parents[1]), strictness=Strictness.file)
    assert report.valid, report.problems


def test_the_release_example_flags_its_publish_step_as_risky():
    report = validate_plan(load_plan_file(EXAMPLES / "release.yaml"))
    assert report.risky == ["publish"]


def test_the_bad_structure_example_loads_but_reports_every_structural_error():
    report = validate_plan(load_plan_file(EXAMPLES / "bad-structure.yaml"), workspace=str(EXAMPLES.parents[1]))
    codes = {p.code for p in report.problems if p.severity == "error"}
    assert codes == {"cycle", "unknown_dependency", "missing_acceptance_tests", "scope_outside_workspace"}
    [cycle] = [p for p in report.problems if p.code == "cycle"]
    assert cycle.message.endswith("schema -> copy -> verify -> schema")


@pytest.mark.parametrize(("name", "count"), [("bad-fields.yaml", 6), ("bad-syntax.yaml", 1)])
def test_the_bad_field_examples_fail_to_load_listing_everything(name, count):
    found = problems(EXAMPLES / name)
    assert len(found) == count and all("(line " in p for p in found)
