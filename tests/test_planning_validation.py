"""Plan validation and risk flagging, as pure functions (no processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.models import AgentSpec, Plan, Risk, Severity, TaskPacket
from harness.services.planning import (
    Level,
    Strictness,
    ValidationConfig,
    find_cycles,
    flag_risks,
    is_vague,
    risk_reasons,
    topological_order,
    vagueness,
    validate_packets,
    validate_plan,
)
from harness.services.planning.risk import RISK_RULES


def task(id: str, *deps: str, title: str | None = None, tests: list[str] | None = None, **fields) -> TaskPacket:
    return TaskPacket(
        id=id,
        title=title or f"Build the {id} module",
        depends_on=list(deps),
        acceptance_tests=[f"test -f {id}.done"] if tests is None else tests,
        **fields,
    )


def codes(report) -> list[str]:
    return [p.code for p in report.problems]


def errors(report) -> list[str]:
    return [p.code for p in report.problems if p.severity == Severity.error]


# -- cycles and the graph ---------------------------------------------------------------------------


def test_a_three_task_cycle_is_named_in_dependency_order():
    packets = [task("a", "b"), task("b", "c"), task("c", "a"), task("d", "a")]
    report = validate_packets(packets)
    cycles = [p for p in report.problems if p.code == "cycle"]
    assert len(cycles) == 1
    assert cycles[0].message.endswith("a -> b -> c -> a")
    assert cycles[0].task_id == "a"
    assert not report.valid


def test_each_separate_knot_of_dependencies_is_reported_once():
    packets = [task("a", "b"), task("b", "a"), task("x", "y"), task("y", "z"), task("z", "x"), task("free")]
    assert find_cycles(packets) == [["a", "b", "a"], ["x", "y", "z", "x"]]


def test_the_shortest_cycle_through_the_first_task_is_named_when_cycles_overlap():
    packets = [task("a", "b"), task("b", "c", "a"), task("c", "a")]
    assert find_cycles(packets) == [["a", "b", "a"]]


def test_a_long_dependency_chain_is_checked_without_recursion_limits():
    n = 5000
    packets = [task(f"t{i}", *([f"t{i + 1}"] if i + 1 < n else ["t0"])) for i in range(n)]
    [cycle] = find_cycles(packets)
    assert len(cycle) == n + 1 and cycle[0] == cycle[-1] == "t0"


def test_an_acyclic_plan_has_a_topological_order_and_a_cyclic_one_has_none():
    assert topological_order([task("c", "b"), task("b", "a"), task("a")]) == ["a", "b", "c"]
    assert topological_order([task("a", "b"), task("b", "a")]) is None


def test_self_dependency_is_its_own_error_and_not_a_cycle():
    report = validate_packets([task("a", "a"), task("b", "a"), task("c", "b")])
    assert errors(report) == ["self_dependency"]
    assert report.problems[0].path == "packets[0].depends_on[0]"


def test_unknown_and_duplicate_ids_are_errors_with_their_paths():
    report = validate_packets([task("a"), task("b", "a", "ghost"), task("a", "b")])
    found = {(p.code, p.path) for p in report.problems}
    assert ("unknown_dependency", "packets[1].depends_on[1]") in found
    assert ("duplicate_id", "packets[2].id") in found
    assert not report.valid


def test_listing_a_dependency_twice_is_only_a_warning():
    report = validate_packets([task("a"), task("b", "a", "a"), task("c", "b")])
    assert codes(report) == ["duplicate_dependency"]
    assert report.valid


def test_every_problem_of_a_plan_is_reported_at_once():
    packets = [
        task("a", "b"),
        task("b", "a", tests=[]),
        task("a", "ghost"),
        task("s", "s", scope_path="../elsewhere"),
        task("e", commands=["  "]),
    ]
    report = validate_packets(packets)
    assert set(errors(report)) == {
        "cycle",
        "missing_acceptance_tests",
        "duplicate_id",
        "unknown_dependency",
        "self_dependency",
        "scope_outside_workspace",
        "empty_command",
    }


def test_an_empty_plan_is_always_an_error():
    report = validate_packets([], strictness=Strictness.file)
    assert errors(report) == ["empty_plan"]


def test_blank_acceptance_tests_count_as_missing():
    report = validate_packets([task("a", tests=["   "]), task("b"), task("c")])
    assert "missing_acceptance_tests" in errors(report)


# -- size and strictness ------------------------------------------------------------------------------


def test_plan_size_is_an_error_for_generated_plans_and_a_warning_for_files():
    two = [task("a"), task("b", "a")]
    generated = validate_packets(two, strictness=Strictness.generated)
    from_file = validate_packets(two, strictness=Strictness.file)
    assert errors(generated) == ["plan_size"] and not generated.valid
    assert codes(from_file) == ["plan_size"] and from_file.valid


def test_config_overrides_the_size_limits_and_severity():
    eight = [task(f"t{i}") for i in range(8)]
    assert errors(validate_packets(eight, strictness=Strictness.file, config=ValidationConfig(size=Level.error))) == [
        "plan_size"
    ]
    assert codes(validate_packets(eight, strictness=Strictness.generated, config=ValidationConfig(max_tasks=8))) == []
    assert (
        codes(validate_packets(eight, strictness=Strictness.generated, config=ValidationConfig(size=Level.off))) == []
    )


def test_a_config_with_min_above_max_is_refused():
    with pytest.raises(ValueError):
        ValidationConfig(min_tasks=5, max_tasks=4)


# -- vagueness ----------------------------------------------------------------------------------------

VAGUE = [
    "improve",
    "clean up",
    "make it faster",
    "refactor",
    "optimize",
    "fix stuff",
    "update",
    "Improve performance",
    "refactor the code",
    "make the app better",
    "update things",
    "improve the UI",
    "clean up the codebase a bit",
    "",
]

CONCRETE = [
    "add dark mode",
    "fix login bug",
    "refactor parse_config in config.py",
    "optimize the SQL query in reports/daily.py",
    "make test_login pass",
    "update README.md",
    "make the startup 2x faster",
    "Rename the `User` model",
    "add a --verbose flag",
    "clean up the 'legacy' handlers",
    "improve error messages of the CSV importer",
    "Run the tests",
    "Build the package",
]


@pytest.mark.parametrize("text", VAGUE)
def test_objectives_that_name_nothing_are_vague(text):
    assert is_vague(text), text


@pytest.mark.parametrize("text", CONCRETE)
def test_objectives_that_name_something_are_concrete(text):
    assert vagueness(text) is None, text


def test_vague_objectives_are_errors_for_generated_plans_and_warnings_for_files():
    packets = [task("a", title="Clean up"), task("b", "a"), task("c", "b")]
    generated = validate_packets(packets, strictness=Strictness.generated)
    from_file = validate_packets(packets, strictness=Strictness.file)
    assert errors(generated) == ["vague_objective"] and generated.problems[0].path == "packets[0].objective"
    assert codes(from_file) == ["vague_objective"] and from_file.valid
    assert (
        codes(validate_packets(packets, strictness=Strictness.generated, config=ValidationConfig(vague=Level.off)))
        == []
    )


def test_a_vague_plan_objective_is_reported_at_the_objective_path():
    plan = Plan(objective="make it better", tasks=[task("a"), task("b", "a"), task("c", "b")])
    report = validate_plan(plan, strictness=Strictness.generated)
    assert [(p.code, p.path, p.task_id) for p in report.problems] == [("vague_objective", "objective", None)]


# -- scopes -------------------------------------------------------------------------------------------


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "tests").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, ws / "escape")
    os.symlink(ws / "src", ws / "src-link")
    return ws


def scope_codes(scope_path: str, workspace: str | None) -> list[str]:
    report = validate_packets([task("a", scope_path=scope_path), task("b", "a"), task("c", "b")], workspace=workspace)
    return codes(report)


def test_scopes_inside_the_workspace_are_accepted(workspace):
    for path in (".", "src", "tests", "src/../tests", "src-link", str(workspace / "src"), "not-yet-created"):
        assert scope_codes(path, str(workspace)) == [], path


def test_scope_paths_that_climb_out_with_dotdot_are_errors(workspace):
    assert scope_codes("../outside", str(workspace)) == ["scope_outside_workspace"]
    assert scope_codes("src/../../outside", str(workspace)) == ["scope_outside_workspace"]
    assert scope_codes("../outside", None) == ["scope_outside_workspace"]


def test_an_absolute_scope_path_outside_the_workspace_is_an_error(workspace):
    assert scope_codes(str(workspace.parent / "outside"), str(workspace)) == ["scope_outside_workspace"]
    assert scope_codes("/etc", str(workspace)) == ["scope_outside_workspace"]


def test_a_symlink_that_leads_outside_the_workspace_is_an_escape(workspace):
    assert scope_codes("escape", str(workspace)) == ["scope_outside_workspace"]
    assert scope_codes("escape/deeper", str(workspace)) == ["scope_outside_workspace"]


def test_every_task_of_a_shared_scope_gets_its_problem_and_a_later_call_sees_the_disk_again(workspace):
    tasks = [task("a", scope_path="later"), task("b", "a", scope_path="later"), task("c", "b")]
    assert codes(validate_packets(tasks, workspace=str(workspace))) == []
    os.symlink(workspace.parent / "outside", workspace / "later")  # the same scope now leads outside
    report = validate_packets(tasks, workspace=str(workspace))
    assert [(p.code, p.task_id) for p in report.problems] == [
        ("scope_outside_workspace", "a"),
        ("scope_outside_workspace", "b"),
    ]


def test_a_workspace_reached_through_a_symlink_keeps_its_inside_paths_valid(workspace, tmp_path):
    alias = tmp_path / "alias"
    os.symlink(workspace, alias)
    assert scope_codes("src", str(alias)) == []
    assert scope_codes("escape", str(alias)) == ["scope_outside_workspace"]


def test_an_absolute_scope_without_a_workspace_is_a_warning_only():
    report = validate_packets([task("a", scope_path="/srv/app"), task("b", "a"), task("c", "b")])
    assert codes(report) == ["absolute_scope_path"] and report.valid


def test_a_missing_workspace_is_an_error(tmp_path):
    assert "workspace_not_found" in scope_codes("src", str(tmp_path / "nope"))


# -- acceptance tests that cannot fail, commands that leave their scope ---------------------------------


def test_a_vacuous_acceptance_test_is_an_error_for_generated_plans_a_warning_for_files_and_off_by_config():
    packets = [task("a", tests=["test -f a.done", "test -d ."]), task("b", "a"), task("c", "b")]
    generated = validate_packets(packets, strictness=Strictness.generated)
    from_file = validate_packets(packets, strictness=Strictness.file)
    off = validate_packets(packets, strictness=Strictness.generated, config=ValidationConfig(vacuous=Level.off))
    assert errors(generated) == ["vacuous_acceptance_test"] and not generated.valid
    assert generated.problems[0].path == "packets[0].acceptance_tests[1]" and generated.problems[0].task_id == "a"
    assert codes(from_file) == ["vacuous_acceptance_test"] and from_file.valid
    assert from_file.problems[0].severity == Severity.warning
    assert codes(off) == [] and off.valid


def test_config_can_make_a_vacuous_test_an_error_in_a_hand_written_plan():
    packets = [task("a", tests=["true"]), task("b", "a"), task("c", "b")]
    report = validate_packets(packets, strictness=Strictness.file, config=ValidationConfig(vacuous=Level.error))
    assert errors(report) == ["vacuous_acceptance_test"]


def test_a_task_whose_only_tests_are_vacuous_gets_one_problem_per_test_with_its_path():
    plan = Plan(
        objective="add dark mode",
        tasks=[task("a", tests=["true", 'test -n "$(ls -A)"', "pytest -q || true"]), task("b", "a"), task("c", "b")],
    )
    report = validate_plan(plan, strictness=Strictness.generated)
    assert [(p.code, p.path) for p in report.problems] == [
        ("vacuous_acceptance_test", f"tasks[0].acceptance_tests[{j}]") for j in range(3)
    ]


def test_a_command_or_test_that_leaves_the_scope_is_an_error_for_generated_plans_and_a_warning_for_files():
    packets = [
        task("a", commands=["cd .. && make"], tests=["python3 -m pytest ../tests"]),
        task("b", "a"),
        task("c", "b"),
    ]
    generated = validate_packets(packets, strictness=Strictness.generated)
    from_file = validate_packets(packets, strictness=Strictness.file)
    assert [(p.code, p.path) for p in generated.problems if p.severity == Severity.error] == [
        ("command_leaves_scope", "packets[0].commands[0]"),
        ("command_leaves_scope", "packets[0].acceptance_tests[0]"),
    ]
    assert codes(from_file) == ["command_leaves_scope"] * 2 and from_file.valid
    off = validate_packets(packets, strictness=Strictness.generated, config=ValidationConfig(scope_escape=Level.off))
    assert codes(off) == []


def test_a_manual_step_with_a_confirmation_and_no_tests_is_valid():
    packets = [task("a", tests=[], confirmation="The files involved are listed."), task("b", "a"), task("c", "b")]
    report = validate_packets(packets, strictness=Strictness.generated)
    assert report.valid and codes(report) == []


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"confirmation": "   "},
        {"confirmation": "It works.", "commands": ["make"]},
        {"confirmation": "It works.", "agent": AgentSpec(name="claude")},
    ],
    ids=["manual-without-confirmation", "blank-confirmation", "with-commands", "agent"],
)
def test_a_task_without_tests_is_still_an_error_unless_it_is_a_confirmed_manual_step(fields):
    report = validate_packets([task("a", tests=[], **fields), task("b", "a"), task("c", "b")])
    assert errors(report) == ["missing_acceptance_tests"]


# -- risk ---------------------------------------------------------------------------------------------

RISKY = {
    "Deploy the app to staging": "deploys",
    "Delete old user records": "deletes data",
    "Drop the sessions table": "drops a table or database",
    "Migrate production database": "touches production",
    "Truncate the audit log": "truncates data",
}


@pytest.mark.parametrize(("title", "reason"), sorted(RISKY.items()))
def test_risky_words_in_titles_are_flagged_with_a_reason(title, reason):
    reasons = risk_reasons(task("a", title=title))
    assert any(r.startswith(reason) for r in reasons), reasons


@pytest.mark.parametrize(
    "command",
    [
        "git push --force origin main",
        "git push -f",
        "rm -rf build",
        "rm -fr /tmp/x",
        "psql -c 'DROP TABLE users'",
        "kubectl delete pod x",
    ],
)
def test_risky_commands_are_flagged(command):
    assert risk_reasons(task("a", title="Publish the site", commands=[command]))


@pytest.mark.parametrize(
    "title",
    [
        "Add dark mode",
        "Write a migration guide",
        "Drop support for Python 3.8 in docs",
        "Push the branch",
        "Remove the unused import in cli.py",
        "Reproduce the login bug",
    ],
)
def test_ordinary_tasks_are_not_flagged(title):
    assert risk_reasons(task("a", title=title, commands=["git push origin feature", "rm build/x.o"])) == []


_RISK_WORDS = [
    "deploy",
    "Delete",
    "drop the table",
    "prod",
    "push x --force",
    "rm -rf",
    "truncate",
    "reset --hard",
    "npm publish",
    "terraform apply",
    "kubectl drain",
    "force-push",
    "x",
    " ",
    ";",
    "\n",
]


@given(
    title=st.lists(st.sampled_from(_RISK_WORDS) | st.text(max_size=8), max_size=5).map("".join),
    commands=st.lists(st.lists(st.sampled_from(_RISK_WORDS), max_size=4).map(" ".join), max_size=3),
)
def test_risk_reasons_are_what_each_rule_finds_on_its_own(title, commands):
    packet = TaskPacket(id="a", title=title or "t", commands=commands, acceptance_tests=["make check"])
    fields = [("title", packet.title), ("objective", packet.objective)]
    fields += [(f"commands[{i}]", c) for i, c in enumerate(commands)]
    expected = []
    for reason, pattern in RISK_RULES:  # every rule on every field, first match per rule
        for where, text in fields:
            if match := pattern.search(text):
                expected.append(f"{reason}: '{match.group(0)}' in {where}")
                break
    assert risk_reasons(packet) == expected


def test_flag_risks_marks_copies_high_and_leaves_the_inputs_alone():
    original = [task("a", title="Deploy to production"), task("b", "a")]
    flagged = flag_risks(original)
    assert [p.risk for p in flagged] == [Risk.high, Risk.low]
    assert len(flagged[0].risk_reasons) == 2
    assert original[0].risk == Risk.low and original[0].risk_reasons == []


def test_flag_risks_never_lowers_a_risk_set_by_hand_and_is_idempotent():
    manual = task("a", title="Rotate the keys", risk=Risk.high, risk_reasons=["secrets"])
    once = flag_risks([manual, task("b", title="Deploy the docs")])
    twice = flag_risks(once)
    assert once == twice
    assert once[0].risk == Risk.high and once[0].risk_reasons == ["secrets"]


def test_validation_lists_risky_tasks_without_making_the_plan_invalid():
    report = validate_packets(
        [task("a"), task("b", "a", title="Deploy to production"), task("c", "b", commands=["rm -rf dist"])]
    )
    assert report.valid
    assert report.risky == ["b", "c"]
    assert [p.code for p in report.problems] == ["risky_task", "risky_task"]
    assert all(p.severity == Severity.warning for p in report.problems)
