"""Refinement directives, as pure functions, and the checks around a refined plan."""

from __future__ import annotations

import pytest

from harness.models import Plan, Risk, TaskPacket
from harness.rpc import INVALID_PLAN, InvalidPlan
from harness.services.planning import PlanningContext, apply_feedback, build_plan, detect, refine_plan
from harness.services.planning.refine import segments


@pytest.fixture()
def plan() -> Plan:
    """t1 locate -> t2 change -> (t3 tests, t4 docs) -> t5 verify, with no workspace."""
    generated, _ = build_plan("add dark mode", detect(None))
    return generated


def hand_plan() -> Plan:
    tasks = [
        TaskPacket(id="build", title="Build the wheel", acceptance_tests=["ls dist/*.whl"]),
        TaskPacket(id="test", title="Run the unit tests", depends_on=["build"], acceptance_tests=["pytest -q"]),
        TaskPacket(
            id="publish",
            title="Upload to the index",
            depends_on=["test"],
            acceptance_tests=["pip download --no-deps demo-app==1.2 --dest dist/check"],
        ),
    ]
    return Plan(objective="Release demo-app 1.2", tasks=tasks, source="file")


def apply(plan: Plan, feedback: str) -> tuple[Plan, list[str]]:
    return apply_feedback(plan, feedback, fallback_tests=["make test"])


def deps(plan: Plan) -> dict[str, list[str]]:
    return {t.id: t.depends_on for t in plan.tasks}


def test_skipping_a_task_rewires_its_dependents_to_its_dependencies(plan):
    refined, applied = apply(plan, "skip t2")
    assert deps(refined) == {"t1": [], "t3": ["t1"], "t4": ["t1"], "t5": ["t3", "t4"]}
    assert applied == ["removed t2 (Add dark mode); t3, t4 now depend on t1 instead"]
    assert (refined.revision, refined.source) == (2, "refined")


@pytest.mark.parametrize("verb", ["skip", "remove", "drop", "delete"])
def test_every_removal_verb_removes(plan, verb):
    refined, _ = apply(plan, f"{verb} t4")
    assert [t.id for t in refined.tasks] == ["t1", "t2", "t3", "t5"]


def test_several_directives_in_one_feedback_apply_in_order(plan):
    refined, applied = apply(plan, "skip t3, t4 after t1 and timeout t5 300\nrename t2 to Add a dark theme toggle")
    assert len(applied) == 4
    assert deps(refined) == {"t1": [], "t2": ["t1"], "t4": ["t2", "t1"], "t5": ["t4", "t2"]}
    t2 = next(t for t in refined.tasks if t.id == "t2")
    assert t2.title == "Add a dark theme toggle" and t2.objective == "Add dark mode."
    assert next(t for t in refined.tasks if t.id == "t5").timeout == 300


def test_removing_a_list_of_tasks_removes_each(plan):
    refined, applied = apply(plan, "remove t3 and t4")
    assert deps(refined) == {"t1": [], "t2": ["t1"], "t5": ["t2"]}
    assert len(applied) == 2


def test_an_added_task_goes_last_after_the_previous_last_task(plan):
    refined, applied = apply(plan, "add task: write a migration guide")
    added = refined.tasks[-1]
    assert (added.id, added.title, added.depends_on) == ("t6", "Write a migration guide", ["t5"])
    assert plan.tasks[-1].acceptance_tests == [], "without a workspace the plan ends in a confirmed manual check"
    assert added.acceptance_tests == ["make test"], "nothing to borrow from the last task: the fallback"
    assert applied == ["added t6 (Write a migration guide) after t5"]


def test_an_added_task_borrows_the_acceptance_tests_of_the_last_task():
    refined, _ = apply(hand_plan(), "add task: announce the release")
    assert refined.tasks[-1].acceptance_tests == hand_plan().tasks[-1].acceptance_tests


def test_an_added_task_in_a_plan_with_named_ids_gets_a_slug_id():
    refined, _ = apply(hand_plan(), "add a new step - announce the release on the mailing list")
    assert refined.tasks[-1].id == "announce-the-release-on-the-mailing-list"
    assert refined.tasks[-1].depends_on == ["publish"]


def test_ordering_directives_add_and_remove_edges(plan):
    refined, _ = apply(plan, "t4 depends on t3; t1 before t5")
    assert deps(refined)["t4"] == ["t2", "t3"] and deps(refined)["t5"] == ["t3", "t4", "t1"]
    unlinked, applied = apply(refined, "t4 no longer depends on t2")
    assert deps(unlinked)["t4"] == ["t3"] and applied == ["t4 no longer depends on t2"]


@pytest.mark.parametrize(
    ("feedback", "seconds"),
    [("timeout t5 300", 300), ("timeout t5 5 min", 300), ("set timeout of t5 to 2h", 7200), ("t5 timeout 90s", 90)],
)
def test_timeouts_accept_units(plan, feedback, seconds):
    refined, _ = apply(plan, feedback)
    assert refined.tasks[-1].timeout == seconds


def test_a_scope_directive_moves_a_task(plan):
    refined, applied = apply(plan, "scope t2 to src/ui")
    t2 = refined.tasks[1]
    assert (t2.scope, t2.scope_path) == ("module", "src/ui") and applied == ["t2 now works in src/ui"]


def test_make_it_about_replans_a_generated_plan_before_the_other_directives(plan):
    context = PlanningContext()
    checked, applied = refine_plan(plan, "skip t4 and make it about add a light theme", context)
    assert checked.plan.objective == "add a light theme"
    assert [t.id for t in checked.plan.tasks] == ["t1", "t2", "t3", "t5"]
    assert checked.plan.tasks[1].title == "Add a light theme"
    assert applied[0].startswith("objective changed") and applied[1].startswith("removed t4")


def test_make_it_about_restates_the_objective_in_a_hand_written_plan():
    refined, applied = apply(hand_plan(), "make it about Release demo-app 2.0")
    assert refined.objective == "Release demo-app 2.0"
    assert [t.title for t in refined.tasks] == ["Build the wheel", "Run the unit tests", "Upload to the index"]
    assert "did not quote the old objective" in applied[0]


def test_unrecognised_feedback_becomes_a_clarification_on_every_remaining_task(plan):
    refined, applied = apply(plan, "please use CSS variables. skip t4")
    assert [t.id for t in refined.tasks] == ["t1", "t2", "t3", "t5"]
    assert all(t.objective.endswith("Clarification: please use CSS variables") for t in refined.tasks)
    assert applied[-1] == "clarification added to t1, t2, t3, t5: 'please use CSS variables'"


def test_directives_naming_missing_tasks_are_reported_not_applied(plan):
    refined, applied = apply(plan, "drop t9; t9 after t1; rename t42 to x")
    assert refined.tasks == plan.tasks
    assert len(applied) == 3 and all(a.startswith("not applied") for a in applied)


def test_dropping_a_table_is_not_mistaken_for_removing_a_task(plan):
    refined, applied = apply(plan, "drop the users table")
    assert [t.id for t in refined.tasks] == [t.id for t in plan.tasks]
    assert applied == ["clarification added to t1, t2, t3, t4, t5: 'drop the users table'"]


def test_empty_feedback_changes_nothing_but_the_revision(plan):
    refined, applied = apply(plan, "  ")
    assert refined.tasks == plan.tasks and refined.revision == 2
    assert applied == ["no feedback given: the tasks are unchanged"]


def test_refinement_does_not_modify_its_input(plan):
    before = plan.model_copy(deep=True)
    apply(plan, "skip t2, t4 after t1, rename t3 to x, timeout t5 9, add task: write the changelog entry")
    assert plan == before


def test_segments_split_only_where_a_directive_starts():
    ids = {"t1", "t2", "t3"}
    assert segments("rename t2 to Build, test and ship", ids) == ["rename t2 to Build, test and ship"]
    assert segments("skip t3, t2 after t1 then timeout t1 5", ids) == ["skip t3", "t2 after t1", "timeout t1 5"]
    assert segments("timeout t1 5\nuse the system theme. keep it small; and tidy", ids) == [
        "timeout t1 5",
        "use the system theme",
        "keep it small",
        "and tidy",
    ]


def test_a_refinement_that_makes_a_cycle_is_refused_with_what_was_applied(plan):
    with pytest.raises(InvalidPlan) as info:
        refine_plan(plan, "t1 after t5", PlanningContext())
    assert info.value.code == INVALID_PLAN
    assert [p["code"] for p in info.value.data["problems"]] == ["cycle"]
    assert info.value.data["applied"] == ["t1 now depends on t5"]


def test_a_refined_plan_may_shrink_below_three_tasks_with_a_warning(plan):
    checked, _ = refine_plan(plan, "skip t1, t3 and t4", PlanningContext())
    assert [t.id for t in checked.plan.tasks] == ["t2", "t5"]
    assert [p.code for p in checked.report.problems] == ["plan_size"] and checked.report.valid


def test_a_vague_added_task_is_refused_for_generated_plans_but_warned_for_files(plan):
    with pytest.raises(InvalidPlan):
        refine_plan(plan, "add task: clean up", PlanningContext())
    checked, _ = refine_plan(hand_plan(), "add task: clean up", PlanningContext())
    assert "vague_objective" in [p.code for p in checked.report.problems] and checked.report.valid


def test_refined_tasks_are_risk_flagged(plan):
    checked, _ = refine_plan(plan, "add task: deploy to staging", PlanningContext())
    assert checked.plan.tasks[-1].risk == Risk.high
    assert checked.report.risky == ["t6"]
