"""What a person sees and answers: progress lines, the plan, and the prompts at each gate.

Prompts appear only on an interactive terminal; everywhere else a question has no answer, and
the run records that it waits and exits 3 (gates fail closed).
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..events import EventType as E
from ..events import describe
from ..plandiff import describe_changes, plan_diff
from ..state import RunState, short_node
from ..vocab import Decision, Question, Source
from ._decide import Answer, Ask

CHECK, CROSS, SKIP = "✓", "✗", "-"
#: The task events shown as progress lines, with their mark.
_MARKS = {E.TASK_COMPLETED: CHECK, E.TASK_FAILED: CROSS, E.TASK_SKIPPED: SKIP, E.RECOVERY_APPLIED: CROSS}


@dataclass
class PlanDecision:
    kind: str  # approve | reject | clarify | wait
    feedback: str = ""
    skip: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)


def _enc_safe(stream: TextIO, text: str) -> str:
    enc = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(enc)
        return text
    except UnicodeEncodeError:
        return text.replace(CHECK, "ok").replace(CROSS, "x")


class UI:
    """Human output on stdout; prompts on the terminal when there is one."""

    def __init__(self, out: TextIO | None = None, *, interactive: bool = False, stdin: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.interactive = interactive
        self.stdin = stdin or sys.stdin
        self._changes: tuple[int, str] | None = None  # (revision, what changed since the one before)
        self._positions: tuple[list[str] | None, dict[str, int]] = (None, {})  # an order and its 1-based places

    # -- output ---------------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        self.out.write(_enc_safe(self.out, text) + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """Messages that are not results: on stdout for humans, stderr in --json mode."""
        self.say(text)

    def on_event(self, event: dict[str, Any], state: RunState) -> None:
        """Progress lines: one per task outcome, retry and failure of the machinery."""
        etype = event["type"]
        tid = event.get("task_id")
        d = event.get("data") or {}
        mark = _MARKS.get(etype)
        if mark is not None and tid in state.tasks:
            t = state.tasks[tid]
            node = f" [node {short_node(t.node)}]" if t.node else ""
            self.say(f"{self._label(state, tid)} {mark} {describe(event, {tid: t.title})}{node}")
        elif etype == E.BOOTSTRAP_FAILED:
            self.say(f"Bootstrap failed in {d.get('phase')}:")
            for line in d.get("diagnostics", []):
                self.say(f"  - {line}")
        elif etype == E.SERVICE_CRASHED:
            self.note(f"service {d.get('service')} crashed ({d.get('exit')}); restarting")
        elif etype == E.SERVICE_FATAL:
            self.note(f"service {d.get('service')} is down: {d.get('reason')}")
        elif etype == E.PLAN_CREATED and state.previous_plan is not None and state.plan is not None:
            changes = plan_diff(state.previous_plan, state.plan)
            text = describe_changes(changes, state.revision - 1, old=state.previous_plan, new=state.plan)
            self._changes = (state.revision, text)  # shown with the plan at the gate

    def _label(self, state: RunState, tid: str) -> str:
        order = state.order or list(state.tasks)
        if self._positions[0] is not order:  # a new plan or order: positions once, not a search a line
            self._positions = (order, {t: i for i, t in enumerate(order, 1)})
        return f"[Task {self._positions[1].get(tid, 0)}/{len(order)}]"

    def show_plan(
        self,
        plan: dict[str, Any],
        report: dict[str, Any] | None,
        revision: int,
        changes: dict[str, Any] | None = None,
        previous: dict[str, Any] | None = None,
    ) -> None:
        """The plan as the gate shows it; for a revision after the first, what changed first
        (``changes`` as in GATE_APPROVAL_REQUESTED and the ``previous`` revision's plan, for the
        titles of removed tasks; else what this UI saw the revision change)."""
        tasks = plan.get("tasks", [])
        if changes is not None:
            self.say(describe_changes(changes, revision - 1, old=previous, new=plan))
        elif self._changes is not None and self._changes[0] == revision:
            self.say(self._changes[1])
        self.say(f"Plan (revision {revision}): {plan.get('objective')}")
        for i, t in enumerate(tasks, 1):
            deps = f"  after {', '.join(t['depends_on'])}" if t.get("depends_on") else ""
            risk = (
                "  [RISKY: " + "; ".join(t.get("risk_reasons") or ["high risk"]) + "]"
                if t.get("risk") == "high"
                else ""
            )
            agent = t.get("agent") or {}
            if t.get("commands"):
                kind = f"{len(t['commands'])} command(s)"
            elif agent:
                kind = f"agent {agent.get('name') or ' '.join(agent.get('command') or [])}"
            else:
                kind = "manual"
            net = {True: "  [network]", False: "  [no network]"}.get(t.get("network"), "")  # the task's own say
            self.say(f"  {i}. {t['id']}: {t.get('title')} ({kind}){deps}{risk}{net}")
            for cmd in t.get("commands", []):
                self.say(f"       $ {cmd}")
            for test in t.get("acceptance_tests", []):
                self.say(f"       verify: {test}")
            if t.get("confirmation"):
                self.say(f"       a person confirms: {t['confirmation']}")
        for p in (report or {}).get("problems", []):
            where = f" [{p['task_id']}]" if p.get("task_id") else ""
            self.say(f"  {p['severity']}{where}: {p['message']}")

    def show_preview(self, tasks: list[dict[str, Any]]) -> None:
        """Plan mode: each task and exactly what would run."""
        self.say("What would run (plan mode; nothing is run):")
        for t in tasks:
            done = " (already done)" if t.get("status") == "completed" else ""
            self.say(f"  {t['id']}: {t['title']}{done}")
            if t.get("worktree"):
                self.say(f"       in a new worktree {t['worktree']} (branch {t['branch']})")
            self.say(f"       cwd: {t['cwd']}")
            if t.get("argv"):
                self.say(f"       agent {t['agent']}: {shlex.join(t['argv'])}")
            for cmd in t.get("commands") or []:
                self.say(f"       $ {cmd}")
            if t.get("manual"):
                confirms = f"; confirms: {t['confirmation']}" if t.get("confirmation") else ""
                self.say(f"       manual step: a person does it{confirms}")
            for test in t.get("acceptance_tests") or []:
                self.say(f"       verify: {test}")
            for check in t.get("checks") or []:
                if check["decision"] != "allow":
                    why = f": {check['reason']}" if check.get("reason") else ""
                    self.say(f"       check: {check['decision']} `{check['command']}` ({check['rule']}{why})")
            if t.get("sandbox"):
                self.say(f"       sandbox: {t['sandbox']}")

    def show_explore(self, result: dict[str, Any], run_id: str) -> None:
        """Explore mode: what the run changed in its copy, and how to bring it in."""
        files = result.get("files") or []
        if not files:
            self.say("Explore mode: the run changed no file; your workspace is as it was.")
            return
        self.say(
            f"Explore mode: {len(files)} file(s) changed in the run's copy "
            f"(+{result.get('insertions', 0)} -{result.get('deletions', 0)}); your workspace is as it was."
        )
        for name in files[:20]:
            self.say(f"  {name}")
        if len(files) > 20:
            self.say(f"  ... and {len(files) - 20} more")
        self.say(f"Patch: {result.get('patch')}")
        self.say(f"Bring it into your workspace: harness apply {run_id}")

    def summary(self, state: RunState, log_path: str) -> None:
        c = state.counts()
        total = len(state.tasks)
        self.say(f"{c['completed']}/{total} tasks completed, {c['skipped']} skipped, {c['failed']} failed")
        self.say(f"Log: {log_path}")

    # -- prompts --------------------------------------------------------------------------------
    def _ask(self, question: str) -> str | None:
        if not self.interactive:
            return None
        self.out.write(question)
        self.out.flush()
        line = self.stdin.readline()
        if not line:
            return None
        return line.strip()

    def ask(self, ask: Ask, approver: str, task_ids: list[str]) -> Answer | None:
        """Put a question to the person at the terminal; None when there is none, or they wait."""
        if not self.interactive:
            return None
        if ask.kind is Question.plan:
            plan = self.prompt_plan(task_ids)
            if plan is None or plan.kind == "wait":
                return None
            if plan.kind == "approve":
                return Answer(Decision.approve, Source.tty, approver, skip=tuple(plan.skip), order=tuple(plan.order))
            return Answer(Decision.reject, Source.tty, approver, feedback=plan.feedback, clarify=plan.kind == "clarify")
        if ask.text:
            self.say(ask.text)
        tid = ask.task_id
        if ask.kind is Question.trust:
            yes = self.prompt_choice(f"Trust and run {tid}?", ["yes", "no"]) == "yes"
            return Answer(Decision.trust, Source.tty, approver) if yes else None
        question = f"Is {tid} done?" if ask.kind is Question.manual else "What now?"
        choice = self.prompt_choice(question, [*ask.options, "wait"])
        if choice is None or choice == "wait":
            return None
        decision = Decision(choice)
        note = None
        if decision is Decision.retry and ask.needs_input:
            note = self._ask("The correction (what changed): ") or None
        return Answer(decision, Source.tty, approver, note=note)

    def prompt_plan(self, task_ids: list[str]) -> PlanDecision | None:
        while True:
            answer = self._ask(
                "Approve this plan? [a]pprove, [m]odify (skip/reorder), [q]uestion, [r]eject with feedback, [w]ait: "
            )
            if answer is None:
                return None
            choice = answer[:1].lower()
            if choice == "a":
                return PlanDecision("approve")
            if choice == "w":
                return PlanDecision("wait")
            if choice == "r":
                feedback = self._ask("Feedback for the planner: ") or ""
                if feedback:
                    return PlanDecision("reject", feedback=feedback)
            elif choice == "q":
                question = self._ask("Your question (the planner revises the plan to answer it): ") or ""
                if question:
                    return PlanDecision("clarify", feedback=question)
            elif choice == "m":
                skip = (self._ask("Task ids to skip (space separated, empty for none): ") or "").split()
                order = (self._ask("New order of task ids (empty to keep): ") or "").split()
                unknown = [t for t in skip + order if t not in task_ids]
                if unknown:
                    self.say(f"Unknown task id(s): {', '.join(unknown)}")
                    continue
                return PlanDecision("approve", skip=skip, order=order)

    def prompt_choice(self, question: str, choices: list[str]) -> str | None:
        while True:
            answer = self._ask(f"{question} [{'/'.join(choices)}]: ")
            if answer is None:
                return None
            for c in choices:
                if answer.lower() in (c, c[:1]):
                    return c


class JsonUI(UI):
    """``--json``: every event as one NDJSON line on stdout; human notes go to stderr."""

    def __init__(self, out: TextIO | None = None, *, interactive: bool = False, stdin: TextIO | None = None) -> None:
        super().__init__(out, interactive=interactive, stdin=stdin)
        self.err = sys.stderr

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    def say(self, text: str = "") -> None:
        self.note(text)

    def on_event(self, event: dict[str, Any], state: RunState) -> None:
        self.out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.out.flush()

    def show_plan(
        self,
        plan: dict[str, Any],
        report: dict[str, Any] | None,
        revision: int,
        changes: dict[str, Any] | None = None,
        previous: dict[str, Any] | None = None,
    ) -> None:
        pass  # the PLAN_CREATED and GATE_APPROVAL_REQUESTED events carry it

    def show_preview(self, tasks: list[dict[str, Any]]) -> None:
        pass  # TASKS_PREVIEWED carries it

    def show_explore(self, result: dict[str, Any], run_id: str) -> None:
        pass  # EXPLORE_DIFF carries it

    def summary(self, state: RunState, log_path: str) -> None:
        pass
