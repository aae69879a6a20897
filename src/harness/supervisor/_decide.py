"""Deciding, apart from doing: what a run does next, as a pure function of its folded state.

Nothing here reads a clock, a file, a terminal or a service. The driver (``_run.Supervisor``)
hands in the state (a fold of the log), a :class:`View` of the few things that are not in the log
(which tasks its threads are running, the time, the parallelism) and the :class:`Rules` (policy,
recovery recipes, flags); it gets back :data:`Action` values and carries them out:

    Record   append these events (then fold them)          Launch   start a task's attempt
    Ask      a question: the driver tries the terminal,     Say      tell the person
             else records that the run waits               Pause    nothing to do until then
    Finish   end the drive with this exit code              Drain    let running tasks end, then finish

Every question (plan approval, trust, a manual step, an escalation) goes through one chain:
:func:`resolve` (a flag, then a policy rule, then a decision already in the log), then the
driver's terminal, then :func:`wait_events` (record the question and wait: gates fail closed).
The events an answer becomes are :func:`answer_events`, the same for every source.
"""

from __future__ import annotations

import fnmatch
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import Policy, PolicyRule, ToolRule
from ..events import EventType as E
from ..plandiff import plan_diff, plan_hash
from ..recovery import (
    DENIED,
    HARNESS_ERROR,
    INTERRUPTED,
    RecipeName,
    Recovery,
    decide_command,
    escalation_reason,
    summarize,
    transitive_dependents,
    was_interrupted,
)
from ..state import TERMINAL_TASK, RunState, TaskState, TaskStatus
from ..vocab import ANSWERS, Decision, ExitCode, Question, Source, WaitReason

__all__ = [
    "Action",
    "Answer",
    "Ask",
    "Drain",
    "Finish",
    "Launch",
    "Pause",
    "Record",
    "Rules",
    "Say",
    "Summary",
    "View",
    "answer_events",
    "approved_commands",
    "command_question",
    "denied_failure",
    "execute_step",
    "finish",
    "gate_step",
    "manual_question",
    "resolve",
    "task_result",
    "trust_question",
    "wait_events",
]


# -- inputs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rules:
    """Everything that shapes decisions and is not in the log."""

    run_id: str
    policy: Policy
    recovery: Recovery
    approve: bool = False  # --approve: the plan gate is answered by the flag
    approver: str = "unknown"
    rng: random.Random = field(default_factory=random.Random)  # backoff jitter


@dataclass(frozen=True)
class View:
    """What the driver knows that the log does not: its own threads, the time, its parallelism."""

    launched: frozenset[str] = frozenset()  # tasks whose attempt a thread of this driver is running
    now: float = 0.0
    parallel: int = 1


# -- actions ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    type: E
    data: Mapping[str, Any]
    task_id: str | None = None
    worker_id: str | None = None
    durable: bool = True


@dataclass(frozen=True)
class Launch:
    task_id: str
    attempt: int


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Pause:
    until: float  # nothing to do before then (a retry's backoff), unless something happens


@dataclass(frozen=True)
class Finish:
    code: ExitCode


@dataclass(frozen=True)
class Drain:
    """An abort: wait for the running attempts to end, then finish as aborted."""


@dataclass(frozen=True)
class Ask:
    """A question and everything needed to put it to a person or to record it."""

    kind: Question
    options: tuple[Decision, ...]
    text: str  # what to show before the prompt
    how: str  # the command that answers it from another terminal
    task_id: str | None = None
    risky: bool = False
    n_tasks: int = 0
    failure_type: str | None = None
    needs_input: bool = False  # an escalation whose retry needs a note saying what was corrected
    payload: Mapping[str, Any] = field(default_factory=dict)  # the base of the events it becomes


@dataclass(frozen=True)
class Answer:
    decision: Decision
    source: Source
    approver: str | None = None
    rule: str | None = None
    note: str | None = None
    feedback: str = ""  # a plan rejection's feedback
    clarify: bool = False  # a plan rejection that asks a question
    skip: tuple[str, ...] = ()  # an approval that leaves these tasks out
    order: tuple[str, ...] = ()  # an approval that runs ties in this order


@dataclass(frozen=True)
class Summary:
    """Show the run's totals and where its log is."""


Action = Record | Launch | Ask | Say | Summary | Pause | Finish | Drain


# -- the one answer chain ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Unanswered:
    """No flag, rule or earlier decision answers the question."""

    policy_exhausted: str | None = None  # a rule would retry, but its retries are spent


def resolve(ask: Ask, state: RunState, rules: Rules) -> Answer | Unanswered:
    """The first of: the flag, a policy rule, a decision already in the log; else Unanswered."""
    if ask.kind is Question.plan and rules.approve:
        return Answer(Decision.approve, Source.flag, rules.approver)
    t = state.tasks.get(ask.task_id or "")
    exhausted = None
    rule = _rule(ask, rules.policy)
    if rule is not None and rule.decision in ask.options:
        retries = t.retries if t is not None else 0
        if (
            ask.kind is Question.escalation
            and rule.decision is Decision.retry
            and not rules.recovery.policy_may_retry(ask.failure_type or "unknown", retries)
        ) or (
            ask.kind is Question.plan
            and rule.decision is Decision.reject
            and any(r.get("rule") == rule.name for r in state.rejections)
        ):
            exhausted = rule.name  # a policy can never loop: past its retries (or one rejection), a person is asked
        else:
            approver = rules.policy.name if ask.kind in (Question.plan, Question.trust) else None
            return Answer(rule.decision, Source.policy, approver, rule=rule.name, feedback=rule.note or "")
    if ask.kind is Question.trust and t is not None and t.confirmed_by:
        source = Source(t.confirmed_by) if t.confirmed_by in Source.__members__ else Source.cli
        return Answer(Decision.trust, source, rules.approver)
    return Unanswered(policy_exhausted=exhausted)


def _rule(ask: Ask, policy: Policy) -> PolicyRule | None:
    if ask.kind is Question.plan:
        return policy.rule_for(Question.plan, n_tasks=ask.n_tasks, risky=ask.risky)
    return policy.rule_for(ask.kind, task_id=ask.task_id or "", risky=ask.risky, failure_type=ask.failure_type)


def answer_events(ask: Ask, answer: Answer, state: RunState) -> list[Action]:
    """What an answer records, whoever gave it."""
    tid = ask.task_id
    who: dict[str, Any] = {"source": answer.source}
    if answer.rule:
        who["rule"] = answer.rule
    if answer.approver:
        who["approver"] = answer.approver
    if ask.kind is Question.plan:
        base = {"gate": Question.plan, "revision": state.revision, **who}
        base.setdefault("approver", "unknown")
        if answer.decision is Decision.approve:
            base["plan_hash"] = plan_hash(state.plan or {})  # the approval names the content it approves
            if answer.skip:
                base["skip"] = list(answer.skip)
            if answer.order:
                base["order"] = list(answer.order)
            return [Record(E.GATE_APPROVED, base)]
        kind = "clarify" if answer.clarify else "reject"
        return [Record(E.GATE_REJECTED, {**base, "feedback": answer.feedback, "kind": kind})]
    if ask.kind is Question.manual and answer.decision is Decision.skip:
        reason = "skipped by a person at the manual step" if answer.source is Source.tty else "skipped by policy"
        return [Record(E.TASK_SKIPPED, {"reason": reason, "source": answer.source}, task_id=tid)]
    decision: dict[str, Any] = {"decision": answer.decision, **who}
    if answer.note:
        decision["note"] = answer.note
    if ask.kind is Question.trust:
        # A rule's or an earlier decision's trust is recorded by the worker's trust event alone.
        return [Record(E.TASK_DECISION, decision, task_id=tid)] if answer.source is Source.tty else []
    if ask.kind is Question.escalation:
        escalation = {**ask.payload, "decision": answer.decision, **{k: v for k, v in who.items() if k != "approver"}}
        return [Record(E.RECOVERY_ESCALATION, escalation, task_id=tid), Record(E.TASK_DECISION, decision, task_id=tid)]
    return [Record(E.TASK_DECISION, decision, task_id=tid)]


def wait_events(ask: Ask, unanswered: Unanswered, state: RunState, rules: Rules) -> list[Action]:
    """Nobody could answer: record the question, say how to answer it, and wait."""
    tid = ask.task_id
    if ask.kind is Question.plan:
        return [
            Say(
                f"The plan is waiting for approval. Approve with `harness approve {rules.run_id}` "
                f'(or `--reject "feedback"`, `--skip TASK`), then `harness resume {rules.run_id}`.'
            ),
            Record(E.RUN_WAITING, {"reason": WaitReason.approval, "revision": state.revision, "how": ask.how}),
            Finish(ExitCode.WAITING),
        ]
    if ask.kind is Question.manual:
        packet = state.packets.get(tid or "", {})
        data = {"kind": Question.manual, "title": packet.get("title") or tid, "objective": packet.get("objective", "")}
        if packet.get("confirmation"):
            data["confirmation"] = packet["confirmation"]
        return [Record(E.TASK_WAITING, {**data, "how": ask.how}, task_id=tid)]
    if ask.kind is Question.trust:
        data = {"reason": ask.payload.get("reason", ""), "risky": ask.risky, "how": ask.how}
        return [Record(E.TRUST_REQUIRED, data, task_id=tid, worker_id=ask.payload.get("worker_id"))]
    escalation = {**ask.payload, "decision": None, "how": ask.how}
    if unanswered.policy_exhausted:
        escalation["policy_exhausted"] = unanswered.policy_exhausted
    return [
        Record(E.RECOVERY_ESCALATION, escalation, task_id=tid),
        Say(f"Task {tid} needs a decision ({ask.payload.get('reason')}): {ask.payload.get('summary')}\n  `{ask.how}`"),
    ]


# -- the questions ----------------------------------------------------------------------------------
def plan_question(state: RunState, rules: Rules) -> Ask:
    tasks = (state.plan or {}).get("tasks", [])
    risky = [t["id"] for t in tasks if t.get("risk") == "high"]
    return Ask(
        Question.plan,
        ANSWERS[Question.plan],
        text="",
        how=f"harness approve {rules.run_id}",
        risky=bool(risky),
        n_tasks=len(tasks),
    )


def manual_question(state: RunState, rules: Rules, tid: str) -> Ask:
    packet = state.packets[tid]
    lines = [f"Manual step {tid}: {packet.get('title')}", f"  {packet.get('objective')}"]
    lines += [f"  verified by: {test}" for test in packet.get("acceptance_tests", [])]
    if packet.get("confirmation"):
        lines.append(f"  confirm: {packet['confirmation']}")
        if not packet.get("acceptance_tests"):
            lines.append("  (no automatic check: your answer is the verdict)")
    return Ask(
        Question.manual,
        ANSWERS[Question.manual],
        text="\n".join(lines),
        how=f"harness decide {rules.run_id} {tid} done",
        task_id=tid,
        risky=packet.get("risk") == "high",
    )


def trust_question(state: RunState, rules: Rules, tid: str, worker_id: str, reason: str) -> Ask:
    return Ask(
        Question.trust,
        ANSWERS[Question.trust],
        text=f"Task {tid} needs trust: {reason}",
        how=f"harness decide {rules.run_id} {tid} trust",
        task_id=tid,
        risky=state.packets.get(tid, {}).get("risk") == "high",
        payload={"reason": reason, "worker_id": worker_id},
    )


#: The packet lists the per-command checks go through, with the step kind each one's commands run as.
CHECKED_LISTS = (("commands", "command"), ("acceptance_tests", "acceptance"))


def approved_commands(state: RunState, tid: str) -> dict[str, list[str]]:
    """The commands and acceptance tests the approved revision holds for a task (empty lists when
    it holds no such task, or the run's approval named other content than its plan)."""
    packet = state.approved_packets.get(tid) or {}
    return {name: list(packet.get(name) or []) for name, _ in CHECKED_LISTS}


def command_question(state: RunState, rules: Rules, tid: str, asked: Sequence[tuple[str, str, str]]) -> Ask:
    """A task whose commands match ask rules (``asked``: command, rule, reason): one trust
    question for all of them, answered like any trust question (a person, a ``gate: trust``
    rule naming the task, an earlier ``harness decide RUN TASK trust``)."""
    lines = [f"`{command}` (rule {rule}: {reason})" for command, rule, reason in asked]
    reason = "commands need a confirmation: " + "; ".join(lines)
    return Ask(
        Question.trust,
        ANSWERS[Question.trust],
        text=f"Task {tid} runs commands that need a confirmation:\n" + "\n".join(f"  {line}" for line in lines),
        how=f"harness decide {rules.run_id} {tid} trust",
        task_id=tid,
        risky=state.packets.get(tid, {}).get("risk") == "high",
        payload={"reason": reason},
    )


def denied_failure(
    attempt: int, rule: str, summary: str, reason: str = "", step: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """TASK_FAILED data for a task refused before anything ran (a check or a pre_task hook) or
    after its commands (a post_command hook): a permission failure naming what refused it."""
    failure: dict[str, Any] = {"attempt": attempt, "reason": DENIED, "summary": summary, "denied_by": rule}
    if reason:
        failure["message"] = reason[-300:]
    if step is not None:
        failure["failed_step"] = dict(step)
    return failure


# -- GATE -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Refine:
    """Ask the planner for a new revision that answers this rejection."""

    rejection: Mapping[str, Any]


def gate_step(state: RunState, rules: Rules) -> list[Action | Refine]:
    """The next thing the plan gate needs; empty once the current revision is approved."""
    if state.is_approved():
        return []
    last = state.rejections[-1] if state.rejections else None
    if last is not None and int(last.get("revision", -1)) == state.revision and "refine_failed" not in last:
        return [Refine(last)]
    ask = plan_question(state, rules)
    if state.gate_requested_revision != state.revision:
        risky = [t["id"] for t in (state.plan or {}).get("tasks", []) if t.get("risk") == "high"]
        data: dict[str, Any] = {"gate": Question.plan, "revision": state.revision, "tasks": ask.n_tasks, "risky": risky}
        if state.revision > 1 and state.previous_plan is not None:
            data["changes"] = plan_diff(state.previous_plan, state.plan or {})
        return [Record(E.GATE_APPROVAL_REQUESTED, data)]
    return [ask]


# -- EXECUTE ----------------------------------------------------------------------------------------
def execute_step(state: RunState, view: View, rules: Rules) -> list[Action]:
    """What to do next while executing. The driver carries the actions out and asks again; an
    empty answer never happens (the last resort is :func:`finish`)."""
    for tid in state.in_order(state.running - view.launched):
        return [_interrupted(state.tasks[tid])]  # its supervisor died while it ran
    for tid in state.in_order(state.unhandled):
        return recover(state, rules, tid)
    for tid in state.in_order(state.decided):
        actions = apply_decision(state, rules, tid)
        if actions:
            return actions
    for tid in state.in_order(state.doomed):
        dep = next(d for d in state.tasks[tid].depends_on if _skipped_hard(state, d))
        return [Record(E.TASK_SKIPPED, {"reason": f"dependency {dep} was skipped", "dependency": dep}, task_id=tid)]
    if not state.halted():
        free = view.parallel - len(view.launched)
        if free > 0:
            ready = state.ready.first(free, skip=lambda t: t in view.launched or state.tasks[t].retry_at > view.now)
            for tid in ready:
                t = state.tasks[tid]
                packet = state.packets[tid]
                if not packet.get("commands") and not packet.get("agent") and not t.manual_done:
                    return [manual_question(state, rules, tid)]
            if ready:
                return [Launch(tid, state.tasks[tid].attempts + 1) for tid in ready]
    if view.launched:
        return []  # wait for a running attempt to end
    if not state.halted():
        delayed = [state.tasks[t].retry_at for t in state.ready.ordered() if state.tasks[t].retry_at > view.now]
        if delayed:
            return [Pause(min(delayed))]
    return finish(state, rules)


def _skipped_hard(state: RunState, dep: str) -> bool:
    d = state.tasks.get(dep)
    return d is not None and d.status is TaskStatus.skipped and not d.keep_dependents


def _interrupted(t: TaskState) -> Record:
    failure = {
        "attempt": t.attempts,
        "reason": INTERRUPTED,
        "interrupted": True,
        "summary": "interrupted: the supervisor stopped while it ran",
    }
    return Record(E.TASK_FAILED, failure, task_id=t.id, worker_id=t.worker_id)


def task_result(attempt: int, worker_id: str, final: Mapping[str, Any]) -> Record:
    """TASK_COMPLETED or TASK_FAILED for what ``run_worker`` answered: the acceptance tests'
    verdict as the worker manager saw it, never a claim of the task itself."""
    result = final.get("result") or {}
    if final.get("state") == "finished" and result.get("ok", True):
        done = {"attempt": attempt, "duration_ms": result.get("duration_ms")}
        return Record(E.TASK_COMPLETED, done, worker_id=worker_id)  # the worker: the event's worker_id
    failure: dict[str, Any] = {
        "attempt": attempt,
        "reason": result.get("reason") or "failed",
        "exit_code": result.get("exit_code"),
        "signal": result.get("signal"),
        "timed_out": bool(result.get("timed_out")),
        "failed_step": result.get("failed_step"),
        "duration_ms": result.get("duration_ms"),
        "stderr_tail": (result.get("stderr_tail") or "")[-600:],
        "stdout_tail": (result.get("stdout_tail") or "")[-600:],
        "message": (result.get("message") or "")[-300:],
    }
    agent = result.get("agent") or {}
    if agent:
        failure["agent_failure"] = agent.get("failure")
        failure["agent_detail"] = (agent.get("failure_detail") or "")[-300:] or None
        failure["agent_message"] = (agent.get("final_message") or "")[-600:]
    failure["summary"] = summarize(failure)
    return Record(E.TASK_FAILED, failure, worker_id=worker_id)


def conflict_failure(attempt: int, worker_id: str, conflict: Any) -> dict[str, Any]:
    """TASK_FAILED data for a task whose tests passed but whose work does not merge."""
    files = list(getattr(conflict, "files", []) or [])
    summary = f"merge conflict in {', '.join(files) or 'the integration branch'}"
    return {
        "attempt": attempt,
        "reason": "merge_conflict",
        "summary": summary,
        "message": str(conflict)[-300:],
        "conflict": files,
    }


def agent_usage(attempt: int, report: Mapping[str, Any], model: str | None = None) -> dict[str, Any]:
    """AGENT_USAGE data from the agent's report (the final message bounded); ``model`` is the one
    the task asked for, for agents whose output does not name it."""
    usage = {
        key: report.get(key)
        for key in ("agent", "model", "session_id", "cost_usd", "duration_ms", "exit_code", "failure")
    }
    usage.update(
        attempt=attempt,
        tokens_in=int(report.get("tokens_in") or 0),
        tokens_out=int(report.get("tokens_out") or 0),
        turns=int(report.get("turns") or 0),
        tools=dict(report.get("tools") or {}),
        final_message=str(report.get("final_message") or "")[-1500:],
    )
    usage["model"] = usage["model"] or model
    if report.get("failure_detail"):
        usage["failure_detail"] = str(report["failure_detail"])[-300:]
    if report.get("denied_tools"):
        usage["denied_tools"] = list(report["denied_tools"])
    return usage


def attempt_budget(state: RunState, tid: str, run_cap: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The caps for the next attempt of an agent task: its own budget, tightened by what is left of
    the run's (``run_cap``: the plan's budget, else the policy's) after every earlier attempt."""
    own = dict(((state.packets.get(tid) or {}).get("agent") or {}).get("budget") or {})
    if not run_cap:
        return {k: v for k, v in own.items() if v is not None} or None
    usage = state.usage()
    used = {"usd": usage["cost_usd"], "tokens": usage["tokens"], "turns": usage["turns"]}
    left: dict[str, Any] = {"minutes": run_cap.get("minutes")}
    for key, spent in used.items():
        cap = run_cap.get(key)
        left[key] = cap - spent if cap is not None else None
    out = {}
    for key in ("usd", "tokens", "turns", "minutes"):
        caps = [v for v in (own.get(key), left[key]) if v is not None]
        if caps:
            out[key] = max(min(caps), 0.000001 if key == "usd" else 1)
    return out or None


def harness_failure(attempt: int, error: str) -> dict[str, Any]:
    """TASK_FAILED data when a call to the worker manager itself failed."""
    return {"attempt": attempt, "reason": HARNESS_ERROR, "message": error, "summary": error}


# -- RECOVER ----------------------------------------------------------------------------------------
def recover(state: RunState, rules: Rules, tid: str) -> list[Action]:
    """FAILURE_DETECTED -> FAILURE_CLASSIFIED -> RECOVERY_APPLIED (a retry) or an escalation.

    Retries are counted per task across attempts; the wait before automatic retry n is the
    recipe's backoff[n-1]. An interrupted task is re-run at once: there is nothing to wait out,
    but the re-run still counts, so a task that keeps taking its supervisor down ends up in front
    of a person.
    """
    t = state.tasks[tid]
    failure = t.failure or {}
    attempt = int(failure.get("attempt") or t.attempts)
    detected = {
        "attempt": attempt,
        "reason": str(failure.get("reason") or "failed"),
        "summary": str(failure.get("summary") or failure.get("reason") or "failed"),
        "exit_code": failure.get("exit_code"),
        "signal": failure.get("signal"),
        "timed_out": bool(failure.get("timed_out")),
    }
    cls = rules.recovery.classify(failure)
    recipe = rules.recovery.recipe(cls.failure_type)
    out: list[Action] = [
        Record(E.FAILURE_DETECTED, detected, task_id=tid, durable=False),
        Record(E.FAILURE_CLASSIFIED, {**cls.as_event(), "attempt": attempt}, task_id=tid, durable=False),
    ]
    if t.retries < recipe.retries:
        interrupted = was_interrupted(failure, cls)
        retry = {
            "recipe": RecipeName.rerun_interrupted if interrupted else RecipeName.retry_with_backoff,
            "failure_type": cls.failure_type.value,
            "retry": t.retries + 1,
            "limit": recipe.retries,
            "next_attempt": t.attempts + 1,
            "delay": 0.0 if interrupted else recipe.delay(t.retries + 1, rules.rng),
        }
        return [*out, Record(E.RECOVERY_APPLIED, retry, task_id=tid)]
    if recipe.permission_required:
        step = failure.get("failed_step") or None
        what = cls.evidence or failure.get("summary")
        data = {"attempt": attempt, "what": what, "command": (step or {}).get("command"), "failed_step": step}
        out.append(Record(E.PERMISSION_REQUIRED, data, task_id=tid))
    options = tuple(recipe.options)
    reason = escalation_reason(cls.failure_type, recipe, t.retries)
    payload = {
        "attempt": attempt,
        "failure_type": cls.failure_type.value,
        "reason": reason,
        "summary": detected["summary"],
        "options": list(options),
        "needs_input": recipe.needs_input,
    }
    ask = Ask(
        Question.escalation,
        options,
        text=f"Task {tid} failed ({reason}): {detected['summary']}",
        how=decide_command(rules.run_id, tid, options, needs_input=recipe.needs_input),
        task_id=tid,
        risky=state.packets.get(tid, {}).get("risk") == "high",
        failure_type=cls.failure_type.value,
        needs_input=recipe.needs_input,
        payload=payload,
    )
    return [*out, ask]


def apply_decision(state: RunState, rules: Rules, tid: str) -> list[Action]:
    """Act on a decision recorded for a waiting or failed task; empty when it is not actionable.

    Each decision is consumed by the event that acts on it (RUN_ABORTED, TASK_SKIPPED,
    RECOVERY_APPLIED, TASK_READY). A decision the failure's recipe does not offer (a retry of an
    unrecoverable failure) is refused, in the log, and the task keeps waiting.
    """
    t = state.tasks[tid]
    decision = t.decision
    if decision is None or t.status in (TaskStatus.completed, TaskStatus.running, TaskStatus.skipped):
        return []
    escalated = t.status is TaskStatus.failed or t.waiting_for is Question.escalation
    if escalated and t.failure_type and decision in (Decision.retry, Decision.skip):
        offered = rules.recovery.recipe(t.failure_type).options
        if decision not in offered:  # abort is always possible: a run can always be stopped
            why = f"{t.failure_type} failures offer {' | '.join(offered)}, not {decision}"
            refusal = {"decision": None, "refused": decision, "source": Source.supervisor, "reason": why}
            return [Record(E.TASK_DECISION, refusal, task_id=tid), Say(f"Refused '{decision}' for {tid}: {why}.")]
    if decision is Decision.abort:
        aborted = {"task_id": tid, "reason": f"abort decided for {tid}", "note": t.decision_note}
        return [Record(E.RUN_ABORTED, aborted), Drain()]
    if decision is Decision.skip:
        keep = t.decision_keep_dependents
        graph = {x: state.tasks[x].depends_on for x in state.order}
        waiting = [d for d in transitive_dependents(graph, tid) if state.tasks[d].status not in TERMINAL_TASK]
        what = "" if not waiting else f"; dependents {'still run' if keep else 'skipped too'}: {', '.join(waiting)}"
        skipped = {
            "reason": f"skipped by decision{what}",
            "source": t.decision_source,
            "note": t.decision_note,
            "keep_dependents": keep,
            "dependents": waiting,
        }
        return [Record(E.TASK_SKIPPED, skipped, task_id=tid)]
    if decision is Decision.retry and t.status in (TaskStatus.failed, TaskStatus.waiting):
        retry = {
            "recipe": RecipeName.retry_after_decision,
            "failure_type": t.failure_type,
            "retry": t.retries + 1,
            "limit": rules.recovery.recipe(t.failure_type).retries if t.failure_type else 0,
            "next_attempt": t.attempts + 1,
            "delay": 0.0,
            "note": t.decision_note,
        }
        return [Record(E.RECOVERY_APPLIED, retry, task_id=tid)]
    if decision in (Decision.done, Decision.trust) and t.status is TaskStatus.waiting:
        return [Record(E.TASK_READY, {"after": decision}, task_id=tid, durable=False)]
    return []


# -- LOG: the end of a drive ------------------------------------------------------------------------
def finish(state: RunState, rules: Rules, *, aborted: bool = False) -> list[Action]:
    """How a drive ends: completed, aborted, waiting on decisions (exit 3), or stuck (failed)."""
    counts: dict[str, Any] = dict(state.counts())
    usage = state.usage()
    if usage["tokens"] or usage["cost_usd"]:
        counts["usage"] = usage
    if aborted:
        return [Record(E.EXECUTION_COMPLETE, {"status": "aborted", **counts}), Summary(), Finish(ExitCode.FAILED)]
    tasks = state.task_list()
    if all(t.status in (TaskStatus.completed, TaskStatus.skipped) for t in tasks):
        return [Record(E.EXECUTION_COMPLETE, {"status": "completed", **counts}), Summary(), Finish(ExitCode.OK)]
    waiting = [t for t in tasks if t.status in (TaskStatus.waiting, TaskStatus.failed)]
    if waiting:
        asks = [_waiting_task(t, rules) for t in waiting]
        out: list[Action] = [Summary()]
        out += [Say(f"Waiting on {a['task_id']} ({a['kind']}): `{a['how']}`") for a in asks]
        out.append(Say(f"Then continue with `harness resume {rules.run_id}`."))
        out.append(Record(E.RUN_WAITING, {"reason": WaitReason.decision, "tasks": asks}))
        return [*out, Finish(ExitCode.WAITING)]
    stuck = [t.id for t in tasks if t.status not in TERMINAL_TASK]
    reason = f"tasks could not run: {', '.join(stuck)}"
    failed = {"status": "failed", "reason": reason, **counts}
    return [Record(E.EXECUTION_COMPLETE, failed), Summary(), Finish(ExitCode.FAILED)]


def _waiting_task(t: TaskState, rules: Rules) -> dict[str, Any]:
    kind = t.waiting_for or Question.escalation
    if kind is Question.escalation:
        options: Sequence[str] = rules.recovery.recipe(t.failure_type).options if t.failure_type else ANSWERS[kind]
        what = "|".join(options)
    else:
        what = ANSWERS[kind][0]
    return {"task_id": t.id, "kind": kind, "how": f"harness decide {rules.run_id} {t.id} {what}"}


def tool_rule_for(rules: Sequence[ToolRule], task_id: str, tool: str, call: str) -> ToolRule | None:
    """The first allow or deny tool rule of the policy that covers an agent's call, written as its
    CLI writes rules: ``Write`` (any call of the tool), ``Bash(npm test:*)`` (a prefix),
    ``Write(src/*)`` (a glob on the argument). Deny rules are tried first."""
    argument = call[len(tool) + 1 : -1] if call.startswith(tool + "(") and call.endswith(")") else ""
    for wanted in ("deny", "allow"):
        for rule in rules:
            pattern = getattr(rule, wanted)
            if not pattern or not rule.applies_to(task_id):
                continue
            name, _, rest = pattern.partition("(")
            if name != tool:
                continue
            if not rest:
                return rule
            inner = rest[:-1] if rest.endswith(")") else rest
            if inner.endswith(":*") and argument.startswith(inner[:-2]):
                return rule
            if fnmatch.fnmatchcase(argument, inner):
                return rule
    return None


#: The tools that change files, and the argument that names the file.
EDIT_TOOLS = {"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path", "NotebookEdit": "notebook_path"}


def edit_in_scope(tool: str, call_input: Mapping[str, Any], workdir: str) -> bool:
    """An agent's edit of a file inside the directory it works in (its worktree or scope): what
    its task allows without asking anyone. Real paths are compared, so a symlink out is not in."""
    key = EDIT_TOOLS.get(tool)
    target = call_input.get(key) if key else None
    if not isinstance(target, str) or not target or not workdir:
        return False
    root = os.path.realpath(workdir)
    path = os.path.realpath(os.path.join(root, target))
    return os.path.commonpath([root, path]) == root
