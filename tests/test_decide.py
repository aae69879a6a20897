"""The decision layer, edge by edge: folded state (and the driver's view) in, actions out. No
processes, no files, no clock: each test builds a log as a list of events and folds it."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import Policy, PolicyRule
from harness.events import EventType as E
from harness.recovery import Recovery
from harness.state import RunState, TaskStatus, fold
from harness.supervisor import _decide as d
from harness.vocab import Decision, ExitCode, Question, Source

RUN = "20260101-000000-abcdef"


class Log:
    """A run's events built by hand, folded as they are added."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.add(
            E.RUN_STARTED, {"log_format": 2, "objective": "o", "workspace": "/w", "options": {}, "supervisor_pid": 1}
        )

    def add(self, etype: E, data: dict[str, Any] | None = None, task: str | None = None, unix: float = 100.0) -> Log:
        event = {"seq": len(self.events) + 1, "unix": unix, "type": etype, "run_id": RUN, "data": data or {}}
        if task:
            event["task_id"] = task
        self.events.append(event)
        return self

    def plan(self, *tasks: dict[str, Any]) -> Log:
        packets = [{"commands": ["true"], "depends_on": [], **t} for t in tasks]
        return self.add(E.PLAN_CREATED, {"plan": {"objective": "o", "tasks": packets}, "revision": 1, "report": None})

    def approved(self) -> Log:
        return self.add(E.GATE_APPROVED, {"gate": "plan", "revision": 1, "source": "flag", "approver": "a"})

    def started(self, tid: str, attempt: int = 1) -> Log:
        return self.add(E.TASK_STARTED, {"attempt": attempt, "worker_id": f"w-{tid}-{attempt}"}, tid)

    def completed(self, tid: str, attempt: int = 1) -> Log:
        return self.add(E.TASK_COMPLETED, {"attempt": attempt, "worker_id": f"w-{tid}", "duration_ms": 1.0}, tid)

    def failed(self, tid: str, attempt: int = 1, **failure: Any) -> Log:
        data = {"attempt": attempt, "reason": "command_failed", "summary": "boom", **failure}
        return self.add(E.TASK_FAILED, data, tid)

    def apply(self, actions: list[d.Action]) -> Log:
        """Record what the decider said, as the driver would."""
        for a in actions:
            if isinstance(a, d.Record):
                self.add(a.type, dict(a.data), a.task_id, unix=self.events[-1]["unix"])
        return self

    @property
    def state(self) -> RunState:
        return fold(self.events)


def rules(policy: Policy | None = None, recovery: dict[str, Any] | None = None, approve: bool = False) -> d.Rules:
    return d.Rules(RUN, policy or Policy(), Recovery(recovery), approve=approve, approver="ann", rng=random.Random(1))


def step(
    log: Log, *, launched: set[str] | None = None, now: float = 100.0, parallel: int = 1, r: d.Rules | None = None
):
    return d.execute_step(log.state, d.View(frozenset(launched or ()), now, parallel), r or rules())


def records(actions: list[d.Action]) -> list[tuple[str, str | None]]:
    return [(str(a.type), a.task_id) for a in actions if isinstance(a, d.Record)]


# -- scheduling -------------------------------------------------------------------------------------
def test_ready_tasks_launch_in_plan_order_up_to_the_parallelism() -> None:
    log = Log().plan({"id": "a"}, {"id": "b"}, {"id": "c"}).approved()
    assert step(log, parallel=2) == [d.Launch("a", 1), d.Launch("b", 1)]
    assert step(log, launched={"a"}, parallel=2) == [d.Launch("b", 1)]
    assert step(log, launched={"a", "b"}, parallel=2) == []  # wait for a thread


def test_a_dependent_waits_until_its_dependency_completed() -> None:
    log = Log().plan({"id": "a"}, {"id": "b", "depends_on": ["a"]}).approved().started("a")
    assert step(log, launched={"a"}, parallel=4) == []
    log.completed("a")
    assert step(log, parallel=4) == [d.Launch("b", 1)]


def test_a_gate_order_changes_which_ready_task_goes_first() -> None:
    log = Log().plan({"id": "a"}, {"id": "b"})
    log.add(E.GATE_APPROVED, {"gate": "plan", "revision": 1, "source": "cli", "approver": "a", "order": ["b", "a"]})
    assert step(log) == [d.Launch("b", 1)]


def test_every_task_done_finishes_the_run_ok() -> None:
    log = Log().plan({"id": "a"}).approved().started("a").completed("a")
    actions = step(log)
    assert records(actions) == [("EXECUTION_COMPLETE", None)]
    assert actions[-1] == d.Finish(ExitCode.OK)


def test_a_task_running_without_a_thread_of_this_driver_is_failed_as_interrupted() -> None:
    log = Log().plan({"id": "a"}).approved().started("a")
    [failed] = step(log)
    assert isinstance(failed, d.Record) and failed.type is E.TASK_FAILED
    assert failed.data["reason"] == "interrupted" and failed.data["attempt"] == 1
    assert step(log, launched={"a"}) == []  # its own thread runs it: nothing to do


# -- recovery ---------------------------------------------------------------------------------------
def test_a_transient_failure_is_classified_and_retried_after_its_backoff() -> None:
    log = Log().plan({"id": "a"}).approved().started("a").failed("a", stderr_tail="connection refused")
    actions = step(log)
    assert records(actions) == [("FAILURE_DETECTED", "a"), ("FAILURE_CLASSIFIED", "a"), ("RECOVERY_APPLIED", "a")]
    retry = actions[-1]
    assert isinstance(retry, d.Record)
    assert retry.data["failure_type"] == "transient" and retry.data["retry"] == 1 and retry.data["limit"] == 2
    assert retry.data["delay"] == 5.0 and retry.data["next_attempt"] == 2
    log.apply(actions)
    assert step(log, now=101.0) == [d.Pause(105.0)]  # nothing runs: wait out the backoff
    assert step(log, now=105.0) == [d.Launch("a", 2)]


def test_a_failure_is_handed_to_recovery_exactly_once() -> None:
    log = Log().plan({"id": "a"}).approved().started("a").failed("a", stderr_tail="connection refused")
    log.apply(step(log))
    assert "a" not in log.state.unhandled
    assert all(not isinstance(a, d.Record) or a.type is not E.FAILURE_DETECTED for a in step(log, now=200.0))


def test_retries_spent_escalate_with_the_recipe_options_and_hold_new_starts() -> None:
    recovery = {"recipes": {"logic_error": {"retries": 0}}}
    log = Log().plan({"id": "a"}, {"id": "b"}).approved().started("a").failed("a", reason="acceptance_failed")
    actions = step(log, r=rules(recovery=recovery))
    ask = actions[-1]
    assert isinstance(ask, d.Ask) and ask.kind is Question.escalation and ask.task_id == "a"
    assert ask.options == (Decision.retry, Decision.skip, Decision.abort)
    assert ask.how == f"harness decide {RUN} a retry|skip|abort"
    log.apply(actions).apply(d.wait_events(ask, d.Unanswered(), log.state, rules()))
    assert log.state.tasks["a"].waiting_for is Question.escalation
    assert log.state.halted()
    finish = step(log, r=rules(recovery=recovery))  # b is ready but held: stop on error
    assert finish[-1] == d.Finish(ExitCode.WAITING)


def test_a_permission_failure_records_what_was_denied_before_it_escalates() -> None:
    log = Log().plan({"id": "a"}).approved().started("a").failed("a", stderr_tail="HTTP 403 Forbidden")
    actions = step(log)
    assert [t for t, _ in records(actions)][-1] == "PERMISSION_REQUIRED"
    assert isinstance(actions[-1], d.Ask)


# -- decisions --------------------------------------------------------------------------------------
def _escalated(decision: str, **extra: Any) -> Log:
    log = Log().plan({"id": "a"}, {"id": "b", "depends_on": ["a"]}, {"id": "c", "depends_on": ["b"]}).approved()
    log.started("a").failed("a", stderr_tail="weird")
    ask = step(log)[-1]
    assert isinstance(ask, d.Ask)
    log.apply(step(log)).apply(d.wait_events(ask, d.Unanswered(), log.state, rules()))
    return log.add(E.TASK_DECISION, {"decision": decision, "source": "cli", "approver": "bo", **extra}, "a")


def test_a_skip_decision_skips_the_task_and_then_its_dependents_one_by_one() -> None:
    log = _escalated("skip")
    [skip] = step(log)
    assert isinstance(skip, d.Record) and skip.type is E.TASK_SKIPPED
    assert skip.data["dependents"] == ["b", "c"] and skip.data["keep_dependents"] is False
    log.apply([skip])
    assert records(step(log)) == [("TASK_SKIPPED", "b")]
    log.apply(step(log))
    assert records(step(log)) == [("TASK_SKIPPED", "c")]
    log.apply(step(log))
    assert step(log)[-1] == d.Finish(ExitCode.OK)


def test_a_skip_that_keeps_dependents_lets_them_run() -> None:
    log = _escalated("skip", keep_dependents=True)
    log.apply(step(log))
    assert step(log) == [d.Launch("b", 1)]


def test_an_abort_decision_ends_the_run_after_the_running_tasks() -> None:
    log = _escalated("abort", note="not today")
    actions = step(log)
    assert records(actions) == [("RUN_ABORTED", None)] and isinstance(actions[-1], d.Drain)
    log.apply(actions)
    assert records(d.finish(log.state, rules(), aborted=True)) == [("EXECUTION_COMPLETE", None)]


def test_a_retry_decision_schedules_a_new_attempt_at_once() -> None:
    log = _escalated("retry", note="fixed the config")
    [retry] = step(log)
    assert isinstance(retry, d.Record) and retry.type is E.RECOVERY_APPLIED
    assert retry.data["recipe"] == "retry_after_decision" and retry.data["delay"] == 0.0
    log.apply([retry])
    assert step(log) == [d.Launch("a", 2)]


def test_a_decision_the_recipe_does_not_offer_is_refused_and_the_task_keeps_waiting() -> None:
    log = Log().plan({"id": "a"}).approved().started("a").failed("a", reason="scope_missing")
    ask = step(log)[-1]
    assert isinstance(ask, d.Ask) and ask.options == (Decision.skip, Decision.abort)
    log.apply(step(log)).apply(d.wait_events(ask, d.Unanswered(), log.state, rules()))
    log.add(E.TASK_DECISION, {"decision": "retry", "source": "cli"}, "a")
    actions = step(log)
    assert records(actions) == [("TASK_DECISION", "a")]
    refusal = actions[0]
    assert isinstance(refusal, d.Record) and refusal.data["refused"] == "retry" and refusal.data["decision"] is None
    log.apply(actions)
    assert log.state.tasks["a"].status is TaskStatus.waiting and step(log)[-1] == d.Finish(ExitCode.WAITING)


# -- questions and the one answer chain -------------------------------------------------------------
def test_a_manual_step_is_asked_and_launched_once_done() -> None:
    log = Log().plan({"id": "m", "commands": [], "acceptance_tests": ["test -f done"]}).approved()
    [ask] = step(log)
    assert isinstance(ask, d.Ask) and ask.kind is Question.manual and ask.how == f"harness decide {RUN} m done"
    log.apply(d.wait_events(ask, d.Unanswered(), log.state, rules()))
    assert log.state.tasks["m"].status is TaskStatus.waiting
    log.add(E.TASK_DECISION, {"decision": "done", "source": "cli"}, "m")
    log.apply(step(log))  # TASK_READY
    assert step(log) == [d.Launch("m", 1)]


def test_the_flag_answers_the_plan_gate_before_any_policy() -> None:
    log = Log().plan({"id": "a"})
    reject = Policy(rules=[PolicyRule(name="no", gate=Question.plan, decision=Decision.reject)])
    ask = d.plan_question(log.state, rules())
    answer = d.resolve(ask, log.state, rules(policy=reject, approve=True))
    assert answer == d.Answer(Decision.approve, Source.flag, "ann")
    policy = d.resolve(ask, log.state, rules(policy=reject))
    assert isinstance(policy, d.Answer) and policy.source is Source.policy and policy.rule == "no"
    assert isinstance(d.resolve(ask, log.state, rules()), d.Unanswered)


def test_a_policy_rejects_a_plan_once_then_a_person_is_asked() -> None:
    reject = Policy(rules=[PolicyRule(name="too-big", gate=Question.plan, decision=Decision.reject, note="split")])
    log = Log().plan({"id": "a"})
    ask = d.plan_question(log.state, rules())
    first = d.resolve(ask, log.state, rules(policy=reject))
    assert isinstance(first, d.Answer) and first.decision is Decision.reject and first.feedback == "split"
    log.apply(d.answer_events(ask, first, log.state))
    log.add(E.PLAN_CREATED, {"plan": {"objective": "o", "tasks": [{"id": "a"}]}, "revision": 2, "report": None})
    again = d.plan_question(log.state, rules())
    assert d.resolve(again, log.state, rules(policy=reject)) == d.Unanswered(policy_exhausted="too-big")


def test_the_gate_requests_approval_once_per_revision_then_asks() -> None:
    log = Log().plan({"id": "a"})
    [request] = d.gate_step(log.state, rules())
    assert isinstance(request, d.Record) and request.type is E.GATE_APPROVAL_REQUESTED
    log.apply([request])
    [ask] = d.gate_step(log.state, rules())
    assert isinstance(ask, d.Ask) and ask.kind is Question.plan
    log.add(E.GATE_REJECTED, {"gate": "plan", "revision": 1, "feedback": "smaller", "kind": "reject"})
    [refine] = d.gate_step(log.state, rules())
    assert isinstance(refine, d.Refine) and refine.rejection["feedback"] == "smaller"
    assert d.gate_step(Log().plan({"id": "a"}).approved().state, rules()) == []


def test_a_policy_retry_is_bounded_then_a_person_is_asked() -> None:
    retry = Policy(rules=[PolicyRule(name="again", gate=Question.escalation, decision=Decision.retry)])
    log = Log().plan({"id": "a"}).approved().started("a").failed("a", stderr_tail="weird")
    ask = step(log)[-1]
    assert isinstance(ask, d.Ask)
    first = d.resolve(ask, log.state, rules(policy=retry))
    assert isinstance(first, d.Answer) and first.decision is Decision.retry and first.rule == "again"
    log.add(
        E.RECOVERY_APPLIED,
        {"recipe": "retry_after_decision", "retry": 1, "limit": 0, "next_attempt": 2, "delay": 0},
        "a",
    )
    spent = d.resolve(ask, log.state, rules(policy=retry))
    assert spent == d.Unanswered(policy_exhausted="again")
    [escalation, _] = d.wait_events(ask, spent, log.state, rules())
    assert isinstance(escalation, d.Record) and escalation.data["policy_exhausted"] == "again"


def test_trust_confirmed_earlier_in_the_log_answers_the_trust_gate() -> None:
    log = Log().plan({"id": "a"}).approved()
    ask = d.trust_question(log.state, rules(), "a", "w-1", "outside the trusted roots")
    assert isinstance(d.resolve(ask, log.state, rules()), d.Unanswered)
    log.add(E.TASK_DECISION, {"decision": "trust", "source": "cli", "approver": "bo"}, "a")
    answer = d.resolve(ask, log.state, rules())
    assert isinstance(answer, d.Answer) and answer.decision is Decision.trust and answer.source is Source.cli
    assert d.answer_events(ask, answer, log.state) == []  # the worker's trust event records it


def test_an_escalation_answered_at_the_terminal_records_the_escalation_and_the_decision() -> None:
    log = Log().plan({"id": "a"}).approved().started("a").failed("a", stderr_tail="weird")
    ask = step(log)[-1]
    assert isinstance(ask, d.Ask)
    answer = d.Answer(Decision.retry, Source.tty, "ann", note="fixed")
    escalation, decision = d.answer_events(ask, answer, log.state)
    assert isinstance(escalation, d.Record) and escalation.data["decision"] == "retry"
    assert isinstance(decision, d.Record) and decision.data == {
        "decision": Decision.retry,
        "source": Source.tty,
        "approver": "ann",
        "note": "fixed",
    }


# -- the incremental scheduler against the obvious one ----------------------------------------------
@st.composite
def dags(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    n = draw(st.integers(1, 12))
    tasks = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        tasks.append({"id": f"t{i}", "depends_on": [f"t{j}" for j in deps]})
    moves = draw(st.lists(st.tuples(st.sampled_from(["done", "skip", "keep"]), st.integers(0, n - 1)), max_size=3 * n))
    return tasks, [(m, f"t{i}") for m, i in moves]


@settings(max_examples=150, deadline=None)
@given(dags())
def test_the_ready_queue_is_always_what_a_full_scan_finds(
    case: tuple[list[dict[str, Any]], list[tuple[str, str]]],
) -> None:
    tasks, moves = case
    log = Log().plan(*tasks).approved()
    state = log.state
    for move, tid in moves:
        t = state.tasks[tid]
        if t.status is not TaskStatus.pending:
            continue
        if move == "done":
            event = {"seq": 0, "type": E.TASK_COMPLETED, "task_id": tid, "data": {"attempt": 1, "duration_ms": 1}}
        else:
            event = {
                "seq": 0,
                "type": E.TASK_SKIPPED,
                "task_id": tid,
                "data": {"reason": "x", "keep_dependents": move == "keep"},
            }
        state.apply(event)

        def satisfied(dep: str) -> bool:
            s = state.tasks[dep]
            return s.status is TaskStatus.completed or (s.status is TaskStatus.skipped and s.keep_dependents)

        def doomed(x: str) -> bool:
            return any(
                state.tasks[dp].status is TaskStatus.skipped and not state.tasks[dp].keep_dependents
                for dp in state.tasks[x].depends_on
            )

        pending = [x for x in state.order if state.tasks[x].status is TaskStatus.pending]
        assert state.ready.ordered() == [x for x in pending if all(satisfied(dp) for dp in state.tasks[x].depends_on)]
        assert state.in_order(state.doomed) == [x for x in pending if doomed(x)]
        assert state.ready.first(len(tasks)) == state.ready.ordered()
