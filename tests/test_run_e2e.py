"""`harness run` end to end: real services, real worker processes, the real event log."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from e2e_support import assert_no_processes_left, events, first, harness, latest_run, types, write_config, write_plan

pytestmark = pytest.mark.slow


def chain(ids: list[str], **extra) -> list[dict]:
    """Tasks each appending its id to order.txt, each depending on the previous one."""
    tasks = []
    for i, tid in enumerate(ids):
        t = {
            "id": tid,
            "title": f"Task {tid}",
            "commands": [f"echo {tid} >> order.txt"],
            "acceptance_tests": [f"grep -qx {tid} order.txt"],
        }
        if i:
            t["depends_on"] = [ids[i - 1]]
        t.update(extra.get(tid, {}))
        tasks.append(t)
    return tasks


@pytest.fixture
def ws(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_config(workspace)
    yield workspace
    assert_no_processes_left(workspace)


def test_happy_path_runs_every_task_in_dependency_order_and_verifies_the_log(ws: Path) -> None:
    write_plan(ws, chain(["a", "b", "c", "d"]))
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert (ws / "order.txt").read_text().split() == ["a", "b", "c", "d"]
    assert "[Task 2/4] ✓ Task b" in proc.stdout
    assert "4/4 tasks completed, 0 skipped, 0 failed" in proc.stdout
    evts = events(ws)
    run_id = latest_run(ws)
    for tid in "abcd":
        # one call spawns and runs a worker its trusted root covers: TASK_STARTED, durable first,
        # names the worker its key derives, before the manager's events about it
        assert types(evts, tid) == [
            "TASK_STARTED",
            "WORKER_SPAWNED",
            "WORKER_STARTED",
            "WORKER_FINISHED",
            "TASK_COMPLETED",
        ]
        wid = first(evts, "TASK_STARTED", tid)["worker_id"]
        assert wid == "w-" + hashlib.sha256(f"{run_id}:{tid}:1".encode()).hexdigest()[:12]
        assert first(evts, "WORKER_SPAWNED", tid)["worker_id"] == wid
    approved = first(evts, "GATE_APPROVED")
    assert approved["data"]["source"] == "flag" and approved["data"]["approver"]
    assert types(evts)[-4:] == ["EXECUTION_COMPLETE", "SERVICE_STOPPED", "SERVICE_STOPPED", "SERVICE_STOPPED"]
    verify = harness(ws, "log", run_id, "--verify")
    assert verify.returncode == 0 and "hash chain intact" in verify.stdout


def test_without_approval_the_run_waits_with_exit_3_and_starts_nothing(ws: Path) -> None:
    write_plan(ws, chain(["a", "b", "c"]))
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"))
    assert proc.returncode == 3, proc.stderr
    assert "harness approve" in proc.stdout
    evts = events(ws)
    assert "TASK_STARTED" not in types(evts)
    assert "GATE_APPROVED" not in types(evts)
    assert types(evts).index("GATE_APPROVAL_REQUESTED") > types(evts).index("PLAN_CREATED")
    assert first(evts, "RUN_WAITING")["data"]["reason"] == "approval"
    assert not (ws / "order.txt").exists()


def test_approve_then_resume_completes_the_run_and_records_the_approver(ws: Path) -> None:
    write_plan(ws, chain(["a", "b", "c"]))
    assert harness(ws, "run", "--plan", str(ws / "plan.yaml")).returncode == 3
    run_id = latest_run(ws)
    status = harness(ws, "status", run_id)
    assert "awaiting_approval" in status.stdout
    approve = harness(ws, "approve", run_id)
    assert approve.returncode == 0, approve.stderr
    resume = harness(ws, "resume", run_id)
    assert resume.returncode == 0, resume.stderr + resume.stdout
    evts = events(ws, run_id)
    approved = first(evts, "GATE_APPROVED")
    assert approved["data"]["source"] == "cli"
    assert types(evts).index("GATE_APPROVED") < types(evts).index("TASK_STARTED")
    assert (ws / "order.txt").read_text().split() == ["a", "b", "c"]


def test_reject_with_feedback_sends_the_plan_back_to_planning_as_a_new_revision(ws: Path) -> None:
    write_plan(ws, chain(["a", "b", "c", "d"]))
    assert harness(ws, "run", "--plan", str(ws / "plan.yaml")).returncode == 3
    run_id = latest_run(ws)
    assert harness(ws, "approve", run_id, "--reject", "skip c").returncode == 0
    again = harness(ws, "resume", run_id)
    assert again.returncode == 3, again.stderr  # the revised plan waits at the gate again
    evts = events(ws, run_id)
    plans = [e for e in evts if e["type"] == "PLAN_CREATED"]
    assert [p["data"]["revision"] for p in plans] == [1, 2]
    assert [t["id"] for t in plans[1]["data"]["plan"]["tasks"]] == ["a", "b", "d"]
    rejected = first(evts, "GATE_REJECTED")
    assert rejected["data"]["feedback"] == "skip c" and rejected["data"]["revision"] == 1
    assert "TASK_STARTED" not in types(evts)
    assert harness(ws, "approve", run_id).returncode == 0
    done = harness(ws, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (ws / "order.txt").read_text().split() == ["a", "b", "d"]
    assert first(events(ws, run_id), "GATE_APPROVED")["data"]["revision"] == 2


def test_skip_at_the_gate_skips_the_task_and_its_dependents_and_runs_the_rest(ws: Path) -> None:
    tasks = chain(["a", "b", "c"]) + [
        {
            "id": "x",
            "title": "Independent",
            "commands": ["echo x >> other.txt"],
            "acceptance_tests": ["test -s other.txt"],
        }
    ]
    write_plan(ws, tasks)
    assert harness(ws, "run", "--plan", str(ws / "plan.yaml")).returncode == 3
    run_id = latest_run(ws)
    assert harness(ws, "approve", run_id, "--skip", "b").returncode == 0
    proc = harness(ws, "resume", run_id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    evts = events(ws, run_id)
    assert "TASK_STARTED" not in types(evts, "b") and "TASK_STARTED" not in types(evts, "c")
    assert "dependency b" in first(evts, "TASK_SKIPPED", "c")["data"]["reason"]
    assert (ws / "order.txt").read_text().split() == ["a"]
    assert "2/4 tasks completed, 2 skipped, 0 failed" in proc.stdout


def test_parallel_dag_runs_siblings_together_and_never_before_their_dependencies(ws: Path) -> None:
    # b and c each wait (bounded) for the other's marker: they can only pass if they overlap.
    rendezvous = "touch {me}.here; for i in $(seq 200); do [ -e {other}.here ] && exit 0; sleep 0.05; done; exit 1"
    tasks = [
        {"id": "a", "title": "Root", "commands": ["echo a > a.out"], "acceptance_tests": ["test -f a.out"]},
        {
            "id": "b",
            "title": "Left",
            "depends_on": ["a"],
            "commands": [rendezvous.format(me="b", other="c")],
            "acceptance_tests": ["test -f b.here"],
        },
        {
            "id": "c",
            "title": "Right",
            "depends_on": ["a"],
            "commands": [rendezvous.format(me="c", other="b")],
            "acceptance_tests": ["test -f c.here"],
        },
        {
            "id": "d",
            "title": "Join",
            "depends_on": ["b", "c"],
            "commands": ["cat a.out > d.out"],
            "acceptance_tests": ["test -s d.out"],
        },
    ]
    write_plan(ws, tasks)
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve", "--parallel", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    evts = events(ws)
    seq = {(e["type"], e.get("task_id")): e["seq"] for e in evts}
    for task, deps in {"b": ["a"], "c": ["a"], "d": ["b", "c"]}.items():
        for dep in deps:
            assert seq[("TASK_COMPLETED", dep)] < seq[("TASK_STARTED", task)]
    # Both siblings started before either finished.
    assert max(seq[("TASK_STARTED", "b")], seq[("TASK_STARTED", "c")]) < min(
        seq[("TASK_COMPLETED", "b")], seq[("TASK_COMPLETED", "c")]
    )


def test_trust_gate_refuses_a_risky_task_until_a_person_confirms_it(ws: Path) -> None:
    tasks = chain(["build"]) + [
        {
            "id": "deploy",
            "title": "Deploy to production",
            "depends_on": ["build"],
            "commands": ["echo shipped > deployed.txt"],
            "acceptance_tests": ["test -f deployed.txt"],
        }
    ]
    write_plan(ws, tasks)
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert not (ws / "deployed.txt").exists()
    evts = events(ws)
    assert "TRUST_REQUIRED" in types(evts, "deploy")
    assert "TASK_STARTED" not in types(evts, "deploy")
    assert "TASK_COMPLETED" in types(evts, "build")
    run_id = latest_run(ws)
    assert "harness decide" in proc.stdout
    assert harness(ws, "decide", run_id, "deploy", "trust").returncode == 0
    done = harness(ws, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (ws / "deployed.txt").read_text().strip() == "shipped"
    evts = events(ws, run_id)
    resolved = first(evts, "WORKER_TRUST_RESOLVED", "deploy")
    assert resolved["data"]["source"] == "cli"
    assert types(evts, "build").count("TASK_STARTED") == 1  # finished work is not redone


def test_a_policy_rule_naming_a_risky_task_trusts_it_without_asking(ws: Path) -> None:
    tasks = [
        {
            "id": "deploy",
            "title": "Deploy to production",
            "commands": ["echo shipped > deployed.txt"],
            "acceptance_tests": ["test -f deployed.txt"],
        }
    ]
    write_plan(ws, tasks)
    policy = ws / "policy.yaml"
    policy.write_text(
        "name: release\nrules:\n  - {name: ship-it, gate: trust, tasks: [deploy], decision: trust}\n  - {name: tiny-plans, gate: plan, max_tasks: 3, decision: approve}\n"
    )
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--policy", str(policy))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    evts = events(ws)
    assert first(evts, "GATE_APPROVED")["data"]["rule"] == "tiny-plans"
    assert first(evts, "WORKER_TRUST_RESOLVED", "deploy")["data"]["source"] == "policy:ship-it"


def test_a_worker_outside_the_trusted_roots_needs_a_person(ws: Path) -> None:
    (ws / "sub").mkdir()
    write_plan(
        ws,
        [
            {
                "id": "t",
                "title": "Touch",
                "scope": "module",
                "scope_path": "sub",
                "commands": ["touch ok"],
                "acceptance_tests": ["test -f ok"],
            }
        ],
    )
    policy = ws / "policy.yaml"
    policy.write_text("trusted_roots: [elsewhere]\n")
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve", "--policy", str(policy))
    assert proc.returncode == 3
    assert "TRUST_REQUIRED" in types(events(ws), "t")
    assert not (ws / "sub" / "ok").exists()


def test_a_scope_that_leaves_the_trusted_roots_mid_run_is_never_run_on_the_earlier_prediction(ws: Path) -> None:
    # "trusted/x" is a folder under the trusted root when "look" runs in it; then "first" turns it
    # into a link to a folder outside that root. "second" has the same scope: the supervisor
    # predicted it trusted for "look" (and kept that for the run), the worker manager finds it is not.
    (ws / "trusted" / "x").mkdir(parents=True)
    (ws / "untrusted" / "y").mkdir(parents=True)
    relink = "rmdir x && ln -s ../untrusted/y x"
    write_plan(
        ws,
        [
            {
                "id": "first",
                "title": "Relink",
                "scope_path": "trusted",
                "depends_on": ["look"],
                "commands": ["test -d x", relink],
                "acceptance_tests": ["test -L x"],
            },
            {
                "id": "look",
                "title": "Look",
                "scope_path": "trusted/x",
                "commands": ["true"],
                "acceptance_tests": ["true"],
            },
            {
                "id": "second",
                "title": "Touch",
                "scope_path": "trusted/x",
                "depends_on": ["first"],
                "commands": ["touch ran"],
                "acceptance_tests": ["test -f ran"],
            },
        ],
    )
    policy = ws / "policy.yaml"
    policy.write_text("sandbox: 'off'\ntrusted_roots: [trusted]\n")
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve", "--policy", str(policy))
    assert proc.returncode == 3, proc.stdout + proc.stderr  # waits for a person
    evts = events(ws)
    failed = first(evts, "TASK_FAILED", "second")["data"]
    assert "left" in failed["summary"] and "untrusted" in failed["summary"], failed
    assert "WORKER_STARTED" not in types(evts, "second") and "RECOVERY_ESCALATION" in types(evts, "second")
    assert not (ws / "untrusted" / "y" / "ran").exists()


def test_manual_step_waits_for_a_person_then_its_acceptance_tests_decide(ws: Path) -> None:
    tasks = chain(["prep"]) + [
        {
            "id": "review",
            "title": "Review the output by hand",
            "depends_on": ["prep"],
            "acceptance_tests": ["test -f reviewed.txt"],
        },
        {
            "id": "after",
            "title": "After the review",
            "depends_on": ["review"],
            "commands": ["echo after >> order.txt"],
            "acceptance_tests": ["grep -q after order.txt"],
        },
    ]
    write_plan(ws, tasks)
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    run_id = latest_run(ws)
    assert first(events(ws), "TASK_WAITING", "review")["data"]["kind"] == "manual"
    # Said done but not done: the acceptance test fails, so it is not reported done.
    assert harness(ws, "decide", run_id, "review", "done").returncode == 0
    lied = harness(ws, "resume", run_id)
    assert lied.returncode == 3
    evts = events(ws, run_id)
    assert "TASK_COMPLETED" not in types(evts, "review")
    assert first(evts, "TASK_FAILED", "review")["data"]["reason"] == "acceptance_failed"
    assert "TASK_STARTED" not in types(evts, "after")
    # Now really done, then retried: verified, and the rest runs.
    (ws / "reviewed.txt").write_text("looked at it\n")
    assert harness(ws, "decide", run_id, "review", "retry").returncode == 0
    done = harness(ws, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    evts = events(ws, run_id)
    assert "TASK_COMPLETED" in types(evts, "review")
    assert (ws / "order.txt").read_text().split() == ["prep", "after"]


def test_a_failed_bootstrap_phase_stops_the_run_before_any_task(ws: Path) -> None:
    write_plan(
        ws, chain(["a"]), requires={"env": ["HARNESS_TEST_SURELY_UNSET_VAR"], "tools": ["surely-not-a-real-tool"]}
    )
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    evts = events(ws)
    failed = first(evts, "BOOTSTRAP_FAILED")
    text = " ".join(failed["data"]["diagnostics"])
    assert "HARNESS_TEST_SURELY_UNSET_VAR" in text and "surely-not-a-real-tool" in text
    assert "TASK_STARTED" not in types(evts)
    assert first(evts, "EXECUTION_COMPLETE")["data"]["status"] == "failed"


def test_an_invalid_plan_file_lists_every_problem_and_exits_2(ws: Path) -> None:
    tasks = [
        {"id": "a", "title": "A", "depends_on": ["c"], "commands": ["true"], "acceptance_tests": ["true"]},
        {"id": "b", "title": "B", "depends_on": ["a"], "commands": ["true"]},
        {"id": "c", "title": "C", "depends_on": ["b", "ghost"], "commands": ["true"], "acceptance_tests": ["true"]},
    ]
    write_plan(ws, tasks)
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "ghost" in proc.stderr  # unknown dependency
    assert "a -> " in proc.stderr or "-> a" in proc.stderr  # the cycle, named
    assert "acceptance" in proc.stderr  # b has none
    evts = events(ws)
    assert len(first(evts, "PLAN_INVALID")["data"]["problems"]) >= 3
    assert "TASK_STARTED" not in types(evts) and "PLAN_CREATED" not in types(evts)


def test_json_mode_streams_every_event_as_ndjson(ws: Path) -> None:
    write_plan(ws, chain(["a", "b"]))
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve", "--json")
    assert proc.returncode == 0, proc.stderr
    streamed = [json.loads(line) for line in proc.stdout.splitlines()]
    logged = events(ws)
    assert [e["seq"] for e in streamed] == [e["seq"] for e in logged]
    assert [e["hash"] for e in streamed] == [e["hash"] for e in logged]


def test_log_filters_by_type_and_task_in_the_human_format(ws: Path) -> None:
    write_plan(ws, chain(["a", "b"]))
    assert harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve").returncode == 0
    run_id = latest_run(ws)
    out = harness(ws, "log", run_id, "--type", "TASK_COMPLETED", "--task", "b").stdout.splitlines()
    assert len(out) == 1
    assert out[0].split()[2:6] == ["TASK_COMPLETED", "b", "Task", "b"]
    assert re.fullmatch(r"\(\d+\.\d s\)", " ".join(out[0].split()[6:]))  # and how long it took
    runs = harness(ws, "runs")
    assert run_id in runs.stdout and "completed" in runs.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["run", "x", "--parallel", "0"],
        ["resume", "no-such-run"],
        ["approve", "no-such-run"],
        ["decide", "no-such-run", "t", "maybe"],
        ["validate", "missing.json", "--schema", "Plan"],
        ["validate", "x.json", "--schema", "NoSuchSchema"],
        ["frobnicate"],
    ],
)
def test_bad_cli_calls_get_a_message_and_exit_2_never_a_traceback(ws: Path, args: list[str]) -> None:
    proc = harness(ws, *args)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip()


def test_validate_prints_every_schema_error_with_its_json_path(ws: Path) -> None:
    bad = ws / "plan.json"
    bad.write_text(json.dumps({"objective": 3, "tasks": [{"id": "a", "timeout": -1}, {"title": "no id"}]}))
    proc = harness(ws, "validate", str(bad), "--schema", "Plan")
    assert proc.returncode == 2
    assert "$.objective" in proc.stdout
    assert "$.tasks[0].timeout" in proc.stdout
    assert "$.tasks[1]" in proc.stdout


def test_log_follow_streams_a_live_run_to_an_outside_observer_until_it_stops(ws: Path) -> None:
    from e2e_support import finish, start_cli

    write_plan(ws, chain(["a", "b"]))
    assert harness(ws, "run", "--plan", str(ws / "plan.yaml")).returncode == 3
    run_id = latest_run(ws)
    follower = start_cli(ws, "log", run_id, "--follow", "--until-end")
    try:
        assert harness(ws, "approve", run_id).returncode == 0
        assert harness(ws, "resume", run_id).returncode == 0
        code, out, err = finish(follower, timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate(timeout=10)
    assert code == 0, err
    lines = out.splitlines()
    assert any(" TASK_COMPLETED b " in f" {line} " for line in lines)
    assert lines[-1].split()[2] == "EXECUTION_COMPLETE"
    assert len(lines) == len(events(ws, run_id)) - 3  # everything but the services' stop events after the end


def test_without_a_config_file_the_default_services_start_early_and_are_adopted(tmp_path: Path) -> None:
    bare = tmp_path / "bare"  # no harness.yaml: the CLI starts the services before its imports
    bare.mkdir()
    write_plan(bare, chain(["a", "b"]))
    proc = harness(bare, "run", "--plan", str(bare / "plan.yaml"), "--approve")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    started = [e for e in events(bare) if e["type"] == "SERVICE_STARTED"]
    assert sorted(e["data"]["service"] for e in started) == ["bootstrap", "planning", "worker-manager"]
    assert "SERVICE_CRASHED" not in types(events(bare))
    assert_no_processes_left(bare)


def test_services_started_early_are_stopped_when_the_run_never_begins(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "plan.yaml").write_text("objective: broken\ntasks:\n  - {id: a, title: [not, a, string]}\n")
    proc = harness(bare, "run", "--plan", str(bare / "plan.yaml"), "--approve")
    assert proc.returncode == 2 and "tasks[0].title" in proc.stderr
    assert not (bare / ".harness" / "runs").exists()
    assert_no_processes_left(bare, grace=0.5)
