"""Recovery end to end: real failing processes, one per failure class, through the real CLI.

Every task appends a line to its own ``<id>.runs`` file each time it really runs, so the tests
count executions by side effect, not by trusting the log. Backoff is configured short (0.2 s,
0.4 s) so waits are measurable but quick.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    MEASURABLE_BACKOFF,
    MEASURABLE_RECOVERY,
    assert_no_processes_left,
    events,
    finish,
    first,
    harness,
    latest_run,
    start_cli,
    types,
    wait_for_log,
    write_config,
    write_plan,
)

pytestmark = pytest.mark.slow

BACKOFF = MEASURABLE_BACKOFF
RECOVERY = MEASURABLE_RECOVERY
#: The recovery trail of a task: what the tests compare, in order.
TRAIL = (
    "TASK_STARTED", "TASK_FAILED", "FAILURE_DETECTED", "FAILURE_CLASSIFIED", "PERMISSION_REQUIRED",
    "RECOVERY_APPLIED", "RECOVERY_ESCALATION", "TASK_DECISION", "TASK_SKIPPED", "TASK_COMPLETED",
)  # fmt: skip
#: A bounded wait for a marker file, inside a task (10 s at most, then the task fails).
WAIT_FOR = "for i in $(seq 200); do [ -e {path} ] && break; sleep 0.05; done; [ -e {path} ]"


def task(tid: str, command: str = "true", *, accept: str = "true", **extra: Any) -> dict[str, Any]:
    """A task whose every real run appends a line to ``<tid>.runs`` before doing ``command``."""
    return {
        "id": tid,
        "title": f"Task {tid}",
        "commands": [f"echo run >> {tid}.runs; {command}"],
        "acceptance_tests": [accept],
        **extra,
    }


def runs(ws: Path, tid: str) -> int:
    path = ws / f"{tid}.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def trail(evts: list[dict], tid: str) -> list[str]:
    return [e["type"] for e in evts if e.get("task_id") == tid and e["type"] in TRAIL]


def of(evts: list[dict], etype: str, tid: str) -> list[dict]:
    return [e for e in evts if e["type"] == etype and e.get("task_id") == tid]


def run_plan(ws: Path, tasks: list[dict], *args: str) -> subprocess.CompletedProcess[str]:
    write_plan(ws, tasks)
    return harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve", *args)


def ok(proc: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == code, f"exit {proc.returncode}, wanted {code}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def ws(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_config(workspace, recovery=RECOVERY)
    yield workspace
    assert_no_processes_left(workspace)


# -- one real failing process per class ------------------------------------------------------------


def test_transient_failure_is_retried_twice_after_the_configured_waits_then_completes(ws: Path) -> None:
    flaky = "[ $(wc -l < flaky.runs) -ge 3 ] || { echo 'curl: (28) Connection timed out after 5000 ms' >&2; exit 1; }"
    ok(run_plan(ws, [task("flaky", flaky), task("after", depends_on=["flaky"])]))
    evts = events(ws)
    assert trail(evts, "flaky") == [
        "TASK_STARTED", "TASK_FAILED", "FAILURE_DETECTED", "FAILURE_CLASSIFIED", "RECOVERY_APPLIED",
        "TASK_STARTED", "TASK_FAILED", "FAILURE_DETECTED", "FAILURE_CLASSIFIED", "RECOVERY_APPLIED",
        "TASK_STARTED", "TASK_COMPLETED",
    ]  # fmt: skip
    assert [e["data"]["attempt"] for e in of(evts, "TASK_STARTED", "flaky")] == [1, 2, 3]
    for classified in of(evts, "FAILURE_CLASSIFIED", "flaky"):
        assert (classified["data"]["failure_type"], classified["data"]["rule"]) == ("transient", "network-transient")
        assert "Connection timed out" in classified["data"]["evidence"]
    applied = of(evts, "RECOVERY_APPLIED", "flaky")
    assert [a["data"]["delay"] for a in applied] == BACKOFF
    assert [(a["data"]["recipe"], a["data"]["retry"], a["data"]["limit"]) for a in applied] == [
        ("retry_with_backoff", 1, 2),
        ("retry_with_backoff", 2, 2),
    ]
    failures, starts = of(evts, "TASK_FAILED", "flaky"), of(evts, "TASK_STARTED", "flaky")[1:]
    for failure, retry, delay in zip(failures, starts, BACKOFF, strict=True):
        assert retry["unix"] - failure["unix"] >= delay
    assert "RECOVERY_ESCALATION" not in types(evts)
    assert (runs(ws, "flaky"), runs(ws, "after")) == (3, 1)


def test_a_user_rule_from_the_config_classifies_a_new_error_and_is_recorded(ws: Path) -> None:
    recovery = {
        **RECOVERY,
        "rules": [{"name": "busy-registry", "output": r"registry \S+ busy", "failure_type": "transient"}],
    }
    write_config(ws, recovery=recovery)
    ok(run_plan(ws, [task("push", "[ $(wc -l < push.runs) -ge 2 ] || { echo 'registry eu-1 busy' >&2; exit 1; }")]))
    evts = events(ws)
    classified = first(evts, "FAILURE_CLASSIFIED", "push")["data"]
    assert (classified["failure_type"], classified["rule"], classified["evidence"]) == (
        "transient",
        "busy-registry",
        "registry eu-1 busy",
    )
    assert first(evts, "RECOVERY_APPLIED", "push")["data"]["delay"] == BACKOFF[0]
    assert runs(ws, "push") == 2


def test_a_task_killed_by_its_timeout_is_transient_and_a_policy_rule_skips_it_after_its_retries(ws: Path) -> None:
    policy = ws / "policy.yaml"
    policy.write_text(
        "rules:\n  - {name: give-up-on-flaky, gate: escalation, failure_types: [transient], decision: skip}\n"
    )
    tasks = [task("slow", "sleep 5", timeout=0.3), task("child", depends_on=["slow"]), task("free")]
    ok(run_plan(ws, tasks, "--policy", str(policy)))
    evts = events(ws)
    assert [e["data"]["rule"] for e in of(evts, "FAILURE_CLASSIFIED", "slow")] == ["timed-out"] * 3
    assert [e["data"]["delay"] for e in of(evts, "RECOVERY_APPLIED", "slow")] == BACKOFF
    escalation = first(evts, "RECOVERY_ESCALATION", "slow")["data"]
    assert (escalation["decision"], escalation["source"], escalation["rule"]) == ("skip", "policy", "give-up-on-flaky")
    assert escalation["reason"].startswith("transient failure after 2 retries")
    assert trail(evts, "slow")[-4:] == ["FAILURE_CLASSIFIED", "RECOVERY_ESCALATION", "TASK_DECISION", "TASK_SKIPPED"]
    assert first(evts, "TASK_SKIPPED", "slow")["data"]["dependents"] == ["child"]
    assert first(evts, "TASK_SKIPPED", "child")["data"]["reason"] == "dependency slow was skipped"
    assert (runs(ws, "slow"), runs(ws, "child"), runs(ws, "free")) == (3, 0, 1)
    assert first(evts, "EXECUTION_COMPLETE")["data"]["status"] == "completed"


def test_a_policy_that_always_answers_retry_is_bounded_and_then_a_person_is_asked(ws: Path) -> None:
    policy = ws / "policy.yaml"
    policy.write_text("rules:\n  - {name: always-retry, gate: escalation, decision: retry}\n")
    ok(run_plan(ws, [task("odd", "echo 'gremlins' >&2; exit 5")], "--policy", str(policy)), 3)
    evts = events(ws)
    escalations = [e["data"] for e in of(evts, "RECOVERY_ESCALATION", "odd")]
    assert [(e["decision"], e.get("source")) for e in escalations] == [("retry", "policy"), (None, None)]
    assert escalations[1]["policy_exhausted"] == "always-retry"
    assert [e["data"]["recipe"] for e in of(evts, "RECOVERY_APPLIED", "odd")] == ["retry_after_decision"]
    assert runs(ws, "odd") == 2


def test_permission_denied_asks_for_access_and_each_retry_decision_buys_exactly_one_attempt(ws: Path) -> None:
    guarded = "test -f granted || { echo 'HTTP/1.1 403 Forbidden' >&2; exit 1; }"
    ok(run_plan(ws, [task("fetch", guarded), task("use", depends_on=["fetch"])]), 3)
    run_id = latest_run(ws)
    evts = events(ws, run_id)
    assert trail(evts, "fetch") == [
        "TASK_STARTED",
        "TASK_FAILED",
        "FAILURE_DETECTED",
        "FAILURE_CLASSIFIED",
        "PERMISSION_REQUIRED",
        "RECOVERY_ESCALATION",
    ]
    assert first(evts, "FAILURE_CLASSIFIED", "fetch")["data"]["failure_type"] == "permission"
    required = first(evts, "PERMISSION_REQUIRED", "fetch")["data"]
    assert required["what"] == "HTTP/1.1 403 Forbidden" and "test -f granted" in required["command"]
    escalation = first(evts, "RECOVERY_ESCALATION", "fetch")["data"]
    assert escalation["decision"] is None and escalation["options"] == ["retry", "skip", "abort"]
    assert first(evts, "RUN_WAITING")["data"]["reason"] == "decision"
    # No answer: resuming retries nothing.
    ok(harness(ws, "resume", run_id), 3)
    assert runs(ws, "fetch") == 1
    # A retry without the access granted: one attempt, then a new question (never an automatic retry).
    ok(harness(ws, "decide", run_id, "fetch", "retry"))
    ok(harness(ws, "resume", run_id), 3)
    assert runs(ws, "fetch") == 2
    assert len(of(events(ws, run_id), "RECOVERY_ESCALATION", "fetch")) == 2
    # Access granted, then retry: it completes and its dependent runs.
    (ws / "granted").touch()
    ok(harness(ws, "decide", run_id, "fetch", "retry", "--note", "token rotated"))
    ok(harness(ws, "resume", run_id))
    evts = events(ws, run_id)
    applied = of(evts, "RECOVERY_APPLIED", "fetch")
    assert [(a["data"]["recipe"], a["data"]["retry"]) for a in applied] == [
        ("retry_after_decision", 1),
        ("retry_after_decision", 2),
    ]
    assert applied[-1]["data"]["note"] == "token rotated"
    assert [e["data"]["attempt"] for e in of(evts, "TASK_STARTED", "fetch")] == [1, 2, 3]
    assert (runs(ws, "fetch"), runs(ws, "use")) == (3, 1)


def test_malformed_input_escalates_for_a_correction_and_the_retry_after_the_fix_completes(ws: Path) -> None:
    (ws / "in.json").write_text('{"name": "demo", ')
    parse = f"{shlex.quote(sys.executable)} -c 'import json; json.load(open(\"in.json\"))'"
    ok(run_plan(ws, [task("parse", parse), task("after", depends_on=["parse"])]), 3)
    run_id = latest_run(ws)
    evts = events(ws, run_id)
    assert trail(evts, "parse") == [
        "TASK_STARTED",
        "TASK_FAILED",
        "FAILURE_DETECTED",
        "FAILURE_CLASSIFIED",
        "RECOVERY_ESCALATION",
    ]
    classified = first(evts, "FAILURE_CLASSIFIED", "parse")["data"]
    assert (classified["failure_type"], classified["rule"]) == ("invalid_input", "invalid-input")
    escalation = first(evts, "RECOVERY_ESCALATION", "parse")["data"]
    assert escalation["needs_input"] is True and "--note" in escalation["how"]
    assert runs(ws, "parse") == 1 and runs(ws, "after") == 0
    (ws / "in.json").write_text('{"name": "demo"}')
    ok(harness(ws, "decide", run_id, "parse", "retry", "--note", "closed the object in in.json"))
    ok(harness(ws, "resume", run_id))
    evts = events(ws, run_id)
    applied = first(evts, "RECOVERY_APPLIED", "parse")["data"]
    assert (applied["recipe"], applied["note"], applied["next_attempt"]) == (
        "retry_after_decision",
        "closed the object in in.json",
        2,
    )
    assert trail(evts, "parse")[-4:] == ["TASK_DECISION", "RECOVERY_APPLIED", "TASK_STARTED", "TASK_COMPLETED"]
    assert (runs(ws, "parse"), runs(ws, "after")) == (2, 1)


def test_failed_acceptance_is_retried_once_then_skip_skips_the_task_and_its_dependents(ws: Path) -> None:
    tasks = [
        task("build", accept="test -f fixed.txt"),
        task("pack", depends_on=["build"]),
        task("ship", depends_on=["pack"]),
        task("docs"),
    ]
    ok(run_plan(ws, tasks), 3)
    run_id = latest_run(ws)
    evts = events(ws, run_id)
    assert trail(evts, "build") == [
        "TASK_STARTED", "TASK_FAILED", "FAILURE_DETECTED", "FAILURE_CLASSIFIED", "RECOVERY_APPLIED",
        "TASK_STARTED", "TASK_FAILED", "FAILURE_DETECTED", "FAILURE_CLASSIFIED", "RECOVERY_ESCALATION",
    ]  # fmt: skip
    assert {e["data"]["failure_type"] for e in of(evts, "FAILURE_CLASSIFIED", "build")} == {"logic_error"}
    assert first(evts, "RECOVERY_ESCALATION", "build")["data"]["reason"].startswith("logic_error failure after 1 retry")
    assert runs(ws, "build") == 2
    assert runs(ws, "docs") == 0  # stop on error: nothing new starts while build waits for a decision
    ok(harness(ws, "decide", run_id, "build", "skip"))
    proc = ok(harness(ws, "resume", run_id))
    evts = events(ws, run_id)
    skipped = first(evts, "TASK_SKIPPED", "build")["data"]
    assert (skipped["keep_dependents"], skipped["dependents"], skipped["source"]) == (False, ["pack", "ship"], "cli")
    assert first(evts, "TASK_SKIPPED", "pack")["data"]["reason"] == "dependency build was skipped"
    assert first(evts, "TASK_SKIPPED", "ship")["data"]["reason"] == "dependency pack was skipped"
    assert (runs(ws, "build"), runs(ws, "pack"), runs(ws, "ship"), runs(ws, "docs")) == (2, 0, 0, 1)
    assert "1/4 tasks completed, 3 skipped, 0 failed" in proc.stdout


def test_an_unknown_error_is_never_retried_blindly_and_keep_dependents_lets_them_run(ws: Path) -> None:
    novel = "echo 'the flux capacitor hiccupped' >&2; exit 7"
    ok(
        run_plan(ws, [task("odd", novel), task("child", depends_on=["odd"]), task("grandchild", depends_on=["child"])]),
        3,
    )
    run_id = latest_run(ws)
    evts = events(ws, run_id)
    assert trail(evts, "odd") == [
        "TASK_STARTED",
        "TASK_FAILED",
        "FAILURE_DETECTED",
        "FAILURE_CLASSIFIED",
        "RECOVERY_ESCALATION",
    ]
    classified = first(evts, "FAILURE_CLASSIFIED", "odd")["data"]
    assert (classified["failure_type"], classified["rule"]) == ("unknown", "no-rule-matched")
    assert runs(ws, "odd") == 1
    ok(harness(ws, "decide", run_id, "odd", "skip", "--keep-dependents"))
    ok(harness(ws, "resume", run_id))
    evts = events(ws, run_id)
    skipped = first(evts, "TASK_SKIPPED", "odd")["data"]
    assert (skipped["keep_dependents"], skipped["dependents"]) == (True, ["child", "grandchild"])
    assert "still run" in skipped["reason"]
    assert "TASK_SKIPPED" not in types(evts, "child") and "TASK_COMPLETED" in types(evts, "grandchild")
    assert (runs(ws, "odd"), runs(ws, "child"), runs(ws, "grandchild")) == (1, 1, 1)


def test_a_vanished_scope_is_unrecoverable_retry_is_refused_and_abort_ends_the_run(ws: Path) -> None:
    tasks = [task("first"), task("gone", scope="module", scope_path="vanished"), task("later")]
    ok(run_plan(ws, tasks), 3)
    run_id = latest_run(ws)
    evts = events(ws, run_id)
    assert trail(evts, "gone") == [
        "TASK_STARTED",
        "TASK_FAILED",
        "FAILURE_DETECTED",
        "FAILURE_CLASSIFIED",
        "RECOVERY_ESCALATION",
    ]
    classified = first(evts, "FAILURE_CLASSIFIED", "gone")["data"]
    assert (classified["failure_type"], classified["rule"]) == ("unrecoverable", "scope-missing")
    escalation = first(evts, "RECOVERY_ESCALATION", "gone")["data"]
    assert escalation["options"] == ["skip", "abort"] and escalation["how"].endswith("gone skip|abort")
    # retry is not on offer: the CLI refuses it, naming the options, and records nothing
    refused = harness(ws, "decide", run_id, "gone", "retry")
    assert refused.returncode == 2 and "skip, abort" in refused.stderr
    assert "TASK_DECISION" not in types(events(ws, run_id), "gone")
    # abort: exit 1, RUN_ABORTED, nothing else started
    ok(harness(ws, "decide", run_id, "gone", "abort", "--note", "the module was removed upstream"))
    ok(harness(ws, "resume", run_id), 1)
    evts = events(ws, run_id)
    aborted = first(evts, "RUN_ABORTED")["data"]
    assert (aborted["task_id"], aborted["note"]) == ("gone", "the module was removed upstream")
    assert first(evts, "EXECUTION_COMPLETE")["data"]["status"] == "aborted"
    assert "TASK_STARTED" not in types(evts, "later")
    # A resume after the abort asks again instead of aborting again; skip then finishes the run.
    ok(harness(ws, "resume", run_id), 3)
    ok(harness(ws, "decide", run_id, "gone", "skip"))
    ok(harness(ws, "resume", run_id))
    assert (runs(ws, "first"), runs(ws, "later")) == (1, 1)
    assert types(events(ws, run_id)).count("RUN_ABORTED") == 1


def test_a_bad_recovery_section_in_the_config_is_a_usage_error(ws: Path) -> None:
    write_config(
        ws,
        recovery={
            "recipes": {"transiant": {"retries": 1}},
            "rules": [{"name": "x", "output": "(", "failure_type": "transient"}],
        },
    )
    write_plan(ws, [task("a")])
    proc = ok(harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve"), 2)
    assert "recovery.recipes.transiant" in proc.stderr and "recovery.rules[0]" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- stop on error, mid-run changes ----------------------------------------------------------------


def test_stop_on_error_holds_new_starts_while_a_running_sibling_finishes_and_is_logged(ws: Path) -> None:
    # `broken` fails only once `sibling` runs, and `sibling` finishes only once `broken`'s
    # escalation is in the log: the sibling is surely running while the failure is decided.
    broken = WAIT_FOR.format(path="sibling.up") + "; echo 'inexplicable' >&2; exit 9"
    # (the pattern with bare quotes matches an event's type, never this command quoted in the plan)
    pattern = shlex.quote('"type":"RECOVERY_ESCALATION"')
    escalated = f'grep -qF {pattern} "$HARNESS_RUN_DIR/events.jsonl"'
    sibling = f"touch sibling.up; for i in $(seq 200); do {escalated} && exit 0; sleep 0.05; done; exit 1"
    tasks = [task("broken", broken), task("sibling", sibling), task("queued")]
    ok(run_plan(ws, tasks, "--parallel", "2"), 3)
    run_id = latest_run(ws)
    evts = events(ws, run_id)
    seq = {(e["type"], e.get("task_id")): e["seq"] for e in evts}
    assert (
        seq[("TASK_STARTED", "sibling")] < seq[("RECOVERY_ESCALATION", "broken")] < seq[("TASK_COMPLETED", "sibling")]
    )
    assert "TASK_STARTED" not in types(evts, "queued")
    ok(harness(ws, "decide", run_id, "broken", "skip"))
    ok(harness(ws, "resume", run_id, "--parallel", "2"))
    assert (runs(ws, "broken"), runs(ws, "sibling"), runs(ws, "queued")) == (1, 1, 1)


def started(tid: str, attempt: int = 1) -> Callable[[list[dict]], bool]:
    return lambda evts: any(
        e["type"] == "TASK_STARTED" and e.get("task_id") == tid and e["data"]["attempt"] == attempt for e in evts
    )


def test_amend_skip_while_the_run_is_running_is_confirmed_and_logged_as_requested_by_the_user(ws: Path) -> None:
    write_plan(
        ws,
        [
            task("first", WAIT_FOR.format(path="go")),
            task("second", depends_on=["first"]),
            task("third", depends_on=["second"]),
        ],
    )
    proc = start_cli(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve")
    try:
        wait_for_log(ws, started("first"))
        run_id = latest_run(ws)
        unconfirmed = harness(ws, "amend", run_id, "--skip", "second")
        assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
        ok(harness(ws, "amend", run_id, "--skip", "second", "--yes"))
        (ws / "go").touch()
        code, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert code == 0, out + err
    evts = events(ws, run_id)
    amended = first(evts, "PLAN_AMENDED")["data"]
    assert amended["skip"] == ["second"] and amended["confirmed"] is True and amended["requested_by"]
    assert first(evts, "PLAN_AMENDED")["seq"] < first(evts, "TASK_COMPLETED", "first")["seq"]
    assert first(evts, "TASK_SKIPPED", "third")["data"]["reason"] == "dependency second was skipped"
    assert (runs(ws, "first"), runs(ws, "second"), runs(ws, "third")) == (1, 0, 0)


# -- resume after every kind of stop ---------------------------------------------------------------


def test_resume_after_exit_3_ctrl_c_and_sigkill_never_reruns_finished_tasks(ws: Path) -> None:
    tasks = [
        task("a"),
        task("b", "test -f granted || { echo '403 Forbidden' >&2; exit 1; }", depends_on=["a"]),
        task("c", WAIT_FOR.format(path="go-c"), depends_on=["b"]),
        task("d", WAIT_FOR.format(path="go-d"), depends_on=["c"]),
        task("e", depends_on=["d"]),
    ]
    # Stop 1: exit 3, b waits for a decision.
    ok(run_plan(ws, tasks), 3)
    run_id = latest_run(ws)
    (ws / "granted").touch()
    ok(harness(ws, "decide", run_id, "b", "retry"))
    # Stop 2: Ctrl-C while c runs.
    proc = start_cli(ws, "resume", run_id)
    try:
        wait_for_log(ws, started("c"))
        proc.send_signal(signal.SIGINT)
        code, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert code == 130, out + err
    assert [e["data"]["reason"] for e in events(ws, run_id) if e["type"] == "RUN_WAITING"] == [
        "decision",
        "interrupted",
    ]
    (ws / "go-c").touch()
    # Stop 3: the supervisor is SIGKILLed while d runs; its services and d's worker are left behind.
    proc = start_cli(ws, "resume", run_id)
    try:
        # d's process has started (not only its TASK_STARTED), so the SIGKILL cuts a real run off
        wait_for_log(ws, lambda evts: any(e["type"] == "WORKER_STARTED" and e.get("task_id") == "d" for e in evts))
        proc.kill()
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    (ws / "go-d").touch()
    ok(harness(ws, "resume", run_id))
    evts = events(ws, run_id)
    # d was cut off by SIGKILL: the resume finds it started without an outcome.
    interrupted = of(evts, "TASK_FAILED", "d")
    assert [(e["data"]["reason"], e["data"]["attempt"]) for e in interrupted] == [("interrupted", 1)]
    for tid in ("c", "d"):
        # c was cut off by Ctrl-C: the supervisor closing its own connection counts as an interruption.
        (classified,) = of(evts, "FAILURE_CLASSIFIED", tid)
        assert classified["data"]["failure_type"] == "transient"
        assert classified["data"]["rule"] in ("interrupted", "supervisor-stopped")
        rerun = first(evts, "RECOVERY_APPLIED", tid)["data"]
        assert (rerun["recipe"], rerun["next_attempt"], rerun["delay"]) == ("rerun_interrupted", 2, 0.0)
        assert [e["data"]["attempt"] for e in of(evts, "TASK_STARTED", tid)] == [1, 2]
        assert types(evts, tid).count("TASK_COMPLETED") == 1
    for tid in "abcde":
        assert types(evts, tid).count("TASK_COMPLETED") == 1
    # a and e ran once; b ran twice (denied, then retried); c and d twice (interrupted, re-run).
    assert [runs(ws, t) for t in "abcde"] == [1, 2, 2, 2, 1]
    # Once more: the run is complete and nothing runs again.
    again = ok(harness(ws, "resume", run_id))
    assert "already complete" in again.stdout
    assert [runs(ws, t) for t in "abcde"] == [1, 2, 2, 2, 1]
