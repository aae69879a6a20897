"""The plan gate and plan content: a revision's hash, the diff the gate shows between revisions,
approvals bound to the content they approve, and a plan file edited after the run recorded it
refused at resume until the edited file is approved."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from e2e_support import (
    assert_no_processes_left,
    events,
    first,
    harness,
    latest_run,
    logged_plan,
    types,
    write_config,
    write_plan,
)
from test_decide import RUN, Log, rules

from harness import eventlog
from harness.events import EventType as E
from harness.events import describe
from harness.plandiff import describe_changes, plan_diff, plan_hash, resume_refusal
from harness.planlog import full_plan
from harness.resources import load_schema
from harness.state import fold
from harness.supervisor import UI
from harness.supervisor import _decide as d
from harness.vocab import Decision, Source


def task(tid: str, **fields: Any) -> dict[str, Any]:
    return {"id": tid, "title": f"Task {tid}", "commands": [f"echo {tid}"], "depends_on": [], **fields}


def plan(*tasks: dict[str, Any]) -> dict[str, Any]:
    return {"objective": "o", "tasks": list(tasks)}


# -- plan_hash and plan_diff ------------------------------------------------------------------------
def test_plan_hash_is_the_same_whatever_the_order_of_keys_and_differs_for_other_content() -> None:
    one = {"objective": "o", "tasks": [{"id": "a", "title": "A", "commands": ["x"]}]}
    same = {"tasks": [{"commands": ["x"], "title": "A", "id": "a"}], "objective": "o"}
    assert plan_hash(one) == plan_hash(same)
    assert len(plan_hash(one)) == 64 and int(plan_hash(one), 16) >= 0
    assert plan_hash(one) != plan_hash({**one, "objective": "p"})
    assert plan_hash({"objective": "ü"}) == plan_hash(json.loads(json.dumps({"objective": "ü"})))


def test_plan_diff_names_added_removed_and_changed_tasks_with_the_fields_that_differ() -> None:
    old = plan(task("t1"), task("t2", acceptance_tests=["a"]), task("t3"))
    new = plan(task("t1"), task("t2", acceptance_tests=["b"], depends_on=["t1"]), task("t6", title="Write the guide"))
    assert plan_diff(old, new) == {
        "added": ["t6"],
        "removed": ["t3"],
        "changed": {"t2": ["depends_on", "acceptance_tests"]},
    }


def test_plan_diff_ignores_key_order_dependency_order_and_absent_versus_empty_fields() -> None:
    old = plan(task("a"), task("b"), task("c", depends_on=["a", "b"], agent={"name": "claude", "model": "m"}))
    new = plan(
        {"id": "a", "commands": ["echo a"], "title": "Task a"},  # no depends_on at all
        task("b", acceptance_tests=[]),
        task("c", depends_on=["b", "a"], agent={"model": "m", "name": "claude"}),
    )
    assert plan_diff(old, new) == {"added": [], "removed": [], "changed": {}}


def test_plan_diff_against_no_plan_adds_every_task_and_compares_only_the_named_fields() -> None:
    assert plan_diff(None, plan(task("a"), task("b"))) == {"added": ["a", "b"], "removed": [], "changed": {}}
    old = plan(task("a", timeout=60, risk="low", scope_path="src"))
    new = plan(task("a", timeout=90, risk="high", scope_path="lib", risk_reasons=["deploys"]))
    assert plan_diff(old, new)["changed"] == {"a": ["scope_path", "timeout", "risk"]}


def test_the_changes_line_names_each_task_with_its_title() -> None:
    old = plan(task("t2"), task("t3", title="Old step"))
    new = plan(task("t2", acceptance_tests=["x"], depends_on=["t6"]), task("t6", title="Write the guide"))
    text = describe_changes(plan_diff(old, new), 1, old=old, new=new)
    assert text == "Changes since revision 1: + t6 Write the guide; - t3 Old step; ~ t2 (depends_on, acceptance_tests)"
    assert describe_changes({"added": [], "removed": [], "changed": {}}, 3) == "Changes since revision 3: none"


# -- the fold and the decisions ---------------------------------------------------------------------
def revised(log: Log, *tasks: dict[str, Any]) -> Log:
    """A rejection of the current revision and the planner's next one."""
    rev = log.state.revision
    log.add(E.GATE_REJECTED, {"gate": "plan", "revision": rev, "feedback": "f", "kind": "reject"})
    return log.add(E.PLAN_CREATED, {"plan": plan(*tasks), "revision": rev + 1, "report": None})


def test_the_fold_keeps_the_revision_a_new_plan_replaced() -> None:
    log = Log().plan({"id": "a"}, {"id": "b"})
    first_plan = log.state.plan
    assert log.state.previous_plan is None
    revised(log, task("a"))
    state = log.state
    assert state.revision == 2 and state.previous_plan == first_plan
    assert [t["id"] for t in state.plan["tasks"]] == ["a"]


def test_the_gate_request_of_a_revision_carries_what_changed_since_the_previous_one() -> None:
    log = Log().plan({"id": "a"}, {"id": "b"})
    [request] = d.gate_step(log.state, rules())
    assert isinstance(request, d.Record) and "changes" not in request.data  # revision 1: nothing before it
    log.apply([request])
    revised(log, {"id": "a", "commands": ["true"], "depends_on": [], "timeout": 30}, task("c"))
    [request] = d.gate_step(log.state, rules())
    assert isinstance(request, d.Record) and request.type is E.GATE_APPROVAL_REQUESTED
    assert request.data["revision"] == 2
    assert request.data["changes"] == {"added": ["c"], "removed": ["b"], "changed": {"a": ["timeout"]}}
    event = {"type": E.GATE_APPROVAL_REQUESTED, "data": dict(request.data)}
    assert describe(event) == "revision 2: 2 tasks (1 added, 1 removed, 1 changed)"


def test_an_approval_names_the_content_it_approves_and_a_rejection_does_not() -> None:
    log = Log().plan({"id": "a"})
    ask = d.plan_question(log.state, rules())
    [approved] = d.answer_events(ask, d.Answer(Decision.approve, Source.tty, "ann"), log.state)
    assert isinstance(approved, d.Record) and approved.type is E.GATE_APPROVED
    assert approved.data["plan_hash"] == plan_hash(log.state.plan or {})
    flag = d.resolve(ask, log.state, rules(approve=True))
    assert isinstance(flag, d.Answer)
    [flagged] = d.answer_events(ask, flag, log.state)
    assert isinstance(flagged, d.Record) and flagged.data["plan_hash"] == approved.data["plan_hash"]
    [rejected] = d.answer_events(ask, d.Answer(Decision.reject, Source.tty, "ann", feedback="no"), log.state)
    assert isinstance(rejected, d.Record) and "plan_hash" not in rejected.data


def test_gate_events_with_changes_and_plan_hash_match_the_log_schema() -> None:
    log = Log().plan({"id": "a"})
    revised(log, task("a"), task("b"))
    [request] = d.gate_step(log.state, rules())
    log.apply([request])
    ask = d.plan_question(log.state, rules())
    log.apply(d.answer_events(ask, d.Answer(Decision.approve, Source.cli, "ann"), log.state))
    validator = jsonschema.Draft202012Validator(load_schema("LogEvent"))
    for event in log.events[-2:]:
        full = {"v": 1, "time": "2026-01-01T00:00:00Z", **event, "prev": "0" * 64, "hash": "0" * 64}
        problems = [e.message for e in validator.iter_errors(full) if "data" in list(e.absolute_path)]
        assert not problems, (event["type"], problems)


def test_the_terminal_shows_what_changed_before_the_revised_plan() -> None:
    out = io.StringIO()
    ui = UI(out)
    log = Log().plan({"id": "t2", "title": "Build"}, {"id": "t3", "title": "Old step"})
    revised(log, task("t2", title="Build", acceptance_tests=["pytest"]), task("t6", title="Write the guide"))
    ui.on_event(log.events[-1], log.state)  # the driver shows each event it appends
    state = log.state
    ui.show_plan(state.plan or {}, state.report, state.revision)
    lines = out.getvalue().splitlines()
    assert (
        lines[0] == "Changes since revision 1: + t6 Write the guide; - t3 Old step; ~ t2 (commands, acceptance_tests)"
    )
    assert lines[1].startswith("Plan (revision 2)")
    quiet = io.StringIO()
    UI(quiet).show_plan(Log().plan({"id": "a"}).state.plan or {}, None, 1)
    assert quiet.getvalue().startswith("Plan (revision 1)")


# -- resume_refusal -------------------------------------------------------------------------------
FILE = "/w/plan.yaml"
FILE_PLAN = plan(task("a"))


def started_from_file(*, approved: bool) -> Log:
    log = Log()
    log.events[0]["data"].update(plan_file=FILE_PLAN, plan_path=FILE, plan_file_hash=plan_hash(FILE_PLAN))
    log.add(E.PLAN_CREATED, {"plan": {**FILE_PLAN, "revision": 1}, "revision": 1, "report": None})
    if approved:
        data = {"gate": "plan", "revision": 1, "source": "cli", "approver": "a"}
        log.add(E.GATE_APPROVED, {**data, "plan_hash": plan_hash(log.state.plan or {})})
    return log


def test_resume_goes_on_when_the_file_is_unchanged_or_gone() -> None:
    state = started_from_file(approved=True).state
    assert state.plan_path == FILE and state.plan_file_hash == plan_hash(FILE_PLAN)
    assert resume_refusal(state, plan_hash(FILE_PLAN)) is None
    assert resume_refusal(state, None) is None


def test_an_edited_file_is_refused_naming_the_revision_the_run_holds_and_how_to_approve_it() -> None:
    edited = plan_hash(plan(task("a"), task("b")))
    approved = resume_refusal(started_from_file(approved=True).state, edited)
    assert approved == (
        f"{FILE} changed after run {RUN} was approved (the run still holds the approved revision 1): "
        f'approve the edited file with "harness approve {RUN} --plan {FILE}", or start a new run'
    )
    waiting = resume_refusal(started_from_file(approved=False).state, edited)
    assert waiting is not None and f"after run {RUN} was started (the run still holds revision 1)" in waiting


def test_an_edited_file_after_tasks_started_cannot_be_approved_so_the_refusal_says_to_restore_it() -> None:
    log = started_from_file(approved=True).started("a")
    refusal = resume_refusal(log.state, plan_hash(plan(task("b"))))
    assert refusal is not None and "started its tasks (a;" in refusal and "restore the file" in refusal


def test_a_plan_replaced_in_the_log_after_its_approval_is_refused() -> None:
    log = started_from_file(approved=True)
    log.add(E.PLAN_CREATED, {"plan": plan(task("a"), task("evil")), "revision": 1, "report": None})
    refusal = resume_refusal(log.state, plan_hash(FILE_PLAN))
    assert refusal is not None and "replaced without an approval" in refusal
    assert resume_refusal(Log().plan({"id": "a"}).approved().state, None) is None  # older logs: no hash, no check


def test_a_revision_approved_from_a_file_becomes_the_content_the_file_is_checked_against() -> None:
    log = started_from_file(approved=True)
    new_file = plan(task("a"), task("b"))
    new_plan = {**new_file, "revision": 2}
    data = {"plan": new_plan, "revision": 2, "report": None, "plan_path": "/w/other.yaml"}
    log.add(E.PLAN_CREATED, {**data, "plan_file_hash": plan_hash(new_file)})
    log.add(
        E.GATE_APPROVED,
        {"gate": "plan", "revision": 2, "source": "cli", "approver": "a", "plan_hash": plan_hash(new_plan)},
    )
    state = fold(log.events)
    assert state.is_approved() and state.plan_path == "/w/other.yaml"
    assert resume_refusal(state, plan_hash(new_file)) is None
    assert resume_refusal(state, plan_hash(FILE_PLAN)) is not None


# -- the real command -------------------------------------------------------------------------------
@pytest.fixture
def ws(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_config(workspace)
    yield workspace
    assert_no_processes_left(workspace)


def marker(tid: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": tid,
        "title": f"Task {tid}",
        "commands": [f"echo {tid} >> order.txt"],
        "acceptance_tests": [f"grep -qx {tid} order.txt"],
        **extra,
    }


@pytest.mark.slow
def test_an_edited_plan_file_is_refused_at_resume_until_the_edited_file_is_approved(ws: Path) -> None:
    write_plan(ws, [marker("a"), marker("b", depends_on=["a"])])
    assert harness(ws, "run", "--plan", "plan.yaml").returncode == 3
    run_id = latest_run(ws)
    started = first(events(ws, run_id), "RUN_STARTED")["data"]
    assert started["plan_path"] == str(ws / "plan.yaml")
    assert started["plan_file_hash"] == plan_hash(full_plan(started["plan_file"]))  # logged compact
    approve = harness(ws, "approve", run_id)
    assert approve.returncode == 0, approve.stderr
    approved = first(events(ws, run_id), "GATE_APPROVED")["data"]
    assert approved["plan_hash"] == plan_hash(logged_plan(events(ws, run_id)))

    write_plan(ws, [marker("a"), marker("c", depends_on=["a"])])  # b becomes c after the approval
    before = events(ws, run_id)
    refused = harness(ws, "resume", run_id)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip() == (
        f"harness: plan.yaml changed after run {run_id} was approved (the run still holds the approved revision 1): "
        f'approve the edited file with "harness approve {run_id} --plan plan.yaml", or start a new run'
    )
    assert events(ws, run_id) == before  # nothing appended, no service started
    assert not (ws / "order.txt").exists()
    assert "Resume refuses it: plan.yaml changed" in harness(ws, "status", run_id).stdout

    again = harness(ws, "approve", run_id, "--plan", "plan.yaml")
    assert again.returncode == 0, again.stderr
    assert "Changes since revision 1: + c Task c; - b Task b" in again.stdout
    evts = events(ws, run_id)
    assert types(evts)[-2:] == ["PLAN_CREATED", "GATE_APPROVED"]
    created, approval = evts[-2]["data"], evts[-1]["data"]
    assert created["revision"] == 2 and created["plan"]["source"] == "file" and created["report"]["valid"]
    assert created["plan_path"] == str(ws / "plan.yaml")
    assert approval["revision"] == 2 and approval["source"] == "cli" and approval["approver"]
    assert approval["plan_hash"] == plan_hash(full_plan(created["plan"]))  # logged compact: hashed whole

    done = harness(ws, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (ws / "order.txt").read_text().split() == ["a", "c"]
    assert harness(ws, "log", run_id, "--verify").returncode == 0


@pytest.mark.slow
def test_an_unedited_plan_file_resumes_even_with_an_objective_given_on_the_command_line(ws: Path) -> None:
    write_plan(ws, [marker("a")])
    assert harness(ws, "run", "Say it differently", "--plan", "plan.yaml").returncode == 3
    run_id = latest_run(ws)
    assert first(events(ws, run_id), "RUN_STARTED")["data"]["objective"] == "Say it differently"
    assert harness(ws, "approve", run_id).returncode == 0
    done = harness(ws, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (ws / "order.txt").read_text().split() == ["a"]


@pytest.mark.slow
def test_approving_a_plan_file_is_refused_when_it_is_invalid_or_a_task_already_started(ws: Path) -> None:
    write_plan(ws, [marker("a"), {"id": "b", "title": "Hand", "acceptance_tests": ["true"], "depends_on": ["a"]}])
    assert harness(ws, "run", "--plan", "plan.yaml").returncode == 3
    run_id = latest_run(ws)
    (ws / "bad.yaml").write_text(
        "objective: Broken\ntasks:\n  - {id: x, title: X, depends_on: [y]}\n  - {id: y, title: Y, depends_on: [x]}\n"
    )
    before = events(ws, run_id)
    bad = harness(ws, "approve", run_id, "--plan", "bad.yaml")
    assert bad.returncode == 2 and "cycle" in bad.stderr, bad.stderr
    assert events(ws, run_id) == before
    assert harness(ws, "approve", run_id).returncode == 0
    assert harness(ws, "resume", run_id).returncode == 3  # a ran; b waits as a manual step
    late = harness(ws, "approve", run_id, "--plan", "plan.yaml")
    assert late.returncode == 2 and "already started tasks" in late.stderr, late.stderr


@pytest.mark.slow
def test_a_plan_replaced_in_the_log_without_an_approval_is_refused_at_resume(ws: Path) -> None:
    write_plan(ws, [marker("a")])
    assert harness(ws, "run", "--plan", "plan.yaml", "--approve").returncode == 0
    run_id = latest_run(ws)
    log = eventlog.EventLog.open(eventlog.run_dir(ws, run_id) / "events.jsonl", run_id, create=False)
    try:
        forged = {"plan": plan(marker("a"), marker("z")), "revision": 1, "report": None}
        log.append(E.PLAN_CREATED, forged, durable=True)
    finally:
        log.close()
    refused = harness(ws, "resume", run_id)
    assert refused.returncode == 2 and "replaced without an approval" in refused.stderr, refused.stderr
    assert not (ws / "order.txt").read_text().count("z")


@pytest.mark.slow
def test_a_revised_plan_shows_what_changed_at_the_gate(ws: Path) -> None:
    write_plan(ws, [marker("a"), marker("b", depends_on=["a"]), marker("c", depends_on=["b"])])
    assert harness(ws, "run", "--plan", "plan.yaml").returncode == 3
    run_id = latest_run(ws)
    assert harness(ws, "approve", run_id, "--reject", "skip b").returncode == 0
    again = harness(ws, "resume", run_id)
    assert again.returncode == 3, again.stderr
    lines = again.stdout.splitlines()
    shown = next(i for i, line in enumerate(lines) if line.startswith("Changes since revision 1:"))
    assert lines[shown] == "Changes since revision 1: - b Task b; ~ c (depends_on)"
    assert lines[shown + 1].startswith("Plan (revision 2)")
    requests = [e for e in events(ws, run_id) if e["type"] == "GATE_APPROVAL_REQUESTED"]
    assert "changes" not in requests[0]["data"]
    assert requests[1]["data"]["changes"] == {"added": [], "removed": ["b"], "changed": {"c": ["depends_on"]}}
    status = harness(ws, "status", run_id).stdout
    assert "Changes since revision 1: - b Task b; ~ c (depends_on)" in status
