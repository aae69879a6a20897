"""The outcome report of a run, in Markdown, built from its event log alone.

Every task lands in exactly one section: completed (no failure on the way), recovered
(completed after at least one failure), failed (failed for good or waiting for a decision on a
failure), skipped, or not finished (never got an outcome: pending, waiting for a manual step or
for trust, or cut off). Each failure is listed with its attempt, its class and the rule that
classified it, what was seen, and every recovery step that followed, in log order: automatic
retries with their waits, escalations, decisions and who took them, refusals, skips, aborts.

The task statuses come from the fold (:func:`harness.state.fold`), the same one `harness status`
and `harness resume` use; the histories come from walking the events.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from . import eventlog
from .events import EventType as E
from .events import describe, upgrade
from .state import RunState, TaskState, TaskStatus, fold, short_node


class Section(StrEnum):
    completed = "Completed"
    recovered = "Recovered"
    failed = "Failed"
    skipped = "Skipped"
    not_finished = "Not finished"


@dataclass
class FailureRecord:
    """One TASK_FAILED and what recovery did about it."""

    attempt: int | None
    summary: str
    failure_type: str | None = None
    rule: str | None = None
    evidence: str | None = None
    recovery: list[str] = field(default_factory=list)
    node: str | None = None  # the cluster node the attempt ran on (None: this machine)


@dataclass
class TaskReport:
    id: str
    title: str
    section: Section
    status: str
    attempts: int
    duration_ms: float | None
    detail: str
    ask: str | None = None  # for a failed task waiting on a decision: the command that answers
    nodes: dict[int, str] = field(default_factory=dict)  # attempt -> the cluster node it ran on
    failures: list[FailureRecord] = field(default_factory=list)


# -- from the log to task reports -------------------------------------------------------------------
def _section(t: TaskState, failures: list[FailureRecord]) -> Section:
    if t.status is TaskStatus.completed:
        return Section.recovered if failures else Section.completed
    if t.status is TaskStatus.skipped:
        return Section.skipped
    if t.status is TaskStatus.failed or (t.status is TaskStatus.waiting and t.waiting_for == "escalation"):
        return Section.failed
    return Section.not_finished


_STORY = frozenset(
    {
        E.RECOVERY_APPLIED,
        E.PERMISSION_REQUIRED,
        E.RECOVERY_ESCALATION,
        E.TASK_DECISION,
        E.TASK_SKIPPED,
        E.RUN_ABORTED,
    }
)


def _step(event: dict[str, Any]) -> str | None:
    """One recovery step in words (the catalogue's description), or None for events that add
    nothing to the story: a refusal is told, a consumed or a policy's decision is in its escalation."""
    etype = event.get("type")
    if etype not in _STORY:
        return None
    d = event.get("data") or {}
    if etype == E.TASK_DECISION and not d.get("refused") and (not d.get("decision") or d.get("source") == "policy"):
        return None
    if etype == E.TASK_SKIPPED:
        return "skipped" + (" (dependents still run)" if d.get("keep_dependents") else "")
    return describe(event)


def _histories(events: Iterable[dict[str, Any]]) -> dict[str, list[FailureRecord]]:
    """Failures per task, each with the recovery steps that followed it, in log order."""
    out: dict[str, list[FailureRecord]] = {}
    for event in events:
        etype = event.get("type")
        d = event.get("data") or {}
        tid = d.get("task_id") if etype == E.RUN_ABORTED else event.get("task_id")
        if not tid:
            continue
        records = out.setdefault(tid, [])
        if etype == E.TASK_FAILED:
            records.append(
                FailureRecord(attempt=d.get("attempt"), summary=str(d.get("summary") or d.get("reason") or "failed"))
            )
            continue
        if not records:
            continue  # decisions about manual steps or trust, before any failure
        current = records[-1]
        if etype == E.FAILURE_CLASSIFIED:
            current.failure_type, current.rule, current.evidence = (
                d.get("failure_type"),
                d.get("rule"),
                d.get("evidence"),
            )
        elif (step := _step(event)) is not None:
            current.recovery.append(step)
    return {tid: records for tid, records in out.items() if records}


def _detail(t: TaskState, section: Section, failures: list[FailureRecord], asks: dict[str, str]) -> str:
    if section is Section.completed:
        return f"attempt {t.attempts}" + (f", {t.duration_ms / 1000:.1f} s" if t.duration_ms is not None else "")
    if section is Section.recovered:
        n = len(failures)
        return f"completed on attempt {t.attempts} after {n} failure{'s' if n != 1 else ''}"
    if section is Section.skipped:
        return t.skip_reason or "skipped"
    if section is Section.failed:
        return "waiting for a decision" if t.id in asks and t.status is TaskStatus.waiting else "failed"
    if t.status is TaskStatus.running:
        return f"attempt {t.attempts} started, no outcome recorded (cut off)"
    if t.status is TaskStatus.waiting:
        return f"waiting for {t.waiting_for or 'a decision'}"
    if failures:
        return f"a retry is pending (attempt {t.attempts} failed)"
    return "not started"


def task_reports(events: list[dict[str, Any]], state: RunState | None = None) -> list[TaskReport]:
    """One report per task of the run's current plan, in plan order."""
    state = state or fold(events)
    histories = _histories(events)
    asks: dict[str, str] = {}
    for event in events:
        if event.get("type") == E.RECOVERY_ESCALATION and event.get("task_id"):
            how = (event.get("data") or {}).get("how")
            if how:
                asks[event["task_id"]] = how
    out = []
    for t in state.task_list():
        failures = histories.get(t.id, [])
        for f in failures:
            f.node = t.nodes.get(f.attempt) if f.attempt is not None else None
        section = _section(t, failures)
        out.append(
            TaskReport(
                id=t.id,
                title=t.title,
                section=section,
                status=t.status.value,
                attempts=t.attempts,
                duration_ms=t.duration_ms,
                detail=_detail(t, section, failures, asks),
                ask=asks.get(t.id) if section is Section.failed else None,
                failures=failures,
                nodes=dict(t.nodes),
            )
        )
    return out


# -- Markdown ---------------------------------------------------------------------------------------
#: Characters with a meaning in Markdown; an underscore only where it could open or close emphasis.
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>#|]|(?<!\w)_|_(?!\w))")


def _md(text: Any) -> str:
    """Plain text safe inside a Markdown line: one line, Markdown characters escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _code(text: Any) -> str:
    """An inline code span holding ``text`` verbatim (on one line), whatever backticks it holds."""
    body = " ".join(str(text).split())
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or not body.strip() else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _failure_line(f: FailureRecord) -> str:
    cls = f"{_code(f.failure_type)} (rule {_code(f.rule)})" if f.failure_type else "not classified"
    seen = f"; seen: {_code(f.evidence)}" if f.evidence and f.evidence not in f.summary else ""
    steps = " → ".join(_md(s) for s in f.recovery) or "no recovery recorded"
    node = f" (node `{short_node(f.node)}`)" if f.node else ""
    attempt = f.attempt if f.attempt is not None else "?"
    return f"  - attempt {attempt}{node}: {cls}: {_code(f.summary)}{seen} → {steps}"


def render(events: list[dict[str, Any]], *, run_id: str, log_path: str | None = None, torn: str | None = None) -> str:
    """The report of a run as Markdown text (a log of an older format is read through the upgrade)."""
    events = upgrade(events)
    state = fold(events)
    reports = task_reports(events, state)
    by_section: dict[Section, list[TaskReport]] = {s: [] for s in Section}
    for r in reports:
        by_section[r.section].append(r)
    n = {s: len(v) for s, v in by_section.items()}
    done = n[Section.completed] + n[Section.recovered]
    lines = [f"# Run report: {run_id}", ""]
    lines.append(f"- Objective: {_md(state.objective or '(none)')}")
    lines.append(f"- Status: {state.status.value}")
    lines.append(
        f"- Tasks: {len(reports)} — {done} completed ({n[Section.recovered]} after recovery), "
        f"{n[Section.failed]} failed, {n[Section.skipped]} skipped, {n[Section.not_finished]} not finished"
    )
    if events:
        first, last = eventlog.event_time(events[0]) or "?", eventlog.event_time(events[-1]) or "?"
        lines.append(f"- Events: {len(events)}, from {first} to {last}")
    usage = state.usage()
    if usage["tokens"] or usage["cost_usd"]:
        lines.append(f"- Agents: {int(usage['tokens'])} tokens, ${usage['cost_usd']:.4f}, {int(usage['turns'])} turns")
    planning = state.planner_usage
    if planning.get("calls"):
        backend = (state.options.get("planner") or {}).get("backend", "a model")
        tokens = int(planning.get("tokens_in", 0) + planning.get("tokens_out", 0))
        cost = f", ${planning['cost_usd']:.4f}" if planning.get("cost_usd") else ""
        lines.append(f"- Planning ({backend}): {int(planning['calls'])} call(s), {tokens} tokens{cost}")
    if state.outcome and state.outcome.get("reason"):
        lines.append(f"- Outcome: {_md(state.outcome['reason'])}")
    if log_path:
        lines.append(f"- Log: `{log_path}`")
    if torn:
        lines.append(f"- Note: {_md(torn)}")
    for section in Section:
        lines += ["", f"## {section.value} ({n[section]})", ""]
        if not by_section[section]:
            lines.append("None.")
            continue
        for r in by_section[section]:
            ask = f": `{r.ask}`" if r.ask else ""
            t = state.tasks[r.id]
            spent = f" ({t.tokens} tokens, ${t.cost_usd:.4f})" if t.tokens or t.cost_usd else ""
            node = t.nodes.get(t.attempts) if r.section in (Section.completed, Section.recovered) else None
            where = f", on node `{short_node(node)}`" if node else ""
            lines.append(f"- `{r.id}` {_md(r.title)}: {_md(r.detail)}{where}{spent}{ask}")
            lines += [_failure_line(f) for f in r.failures]
    return "\n".join(lines) + "\n"


def write_report(workspace: str | os.PathLike[str], run_id: str, output: str | None = None) -> str:
    """Write the report of ``run_id`` to ``output`` (default ``<run_dir>/report.md``); return it.

    Raises FileNotFoundError when the workspace has no such run.
    """
    log_path = eventlog.run_dir(Path(workspace).resolve(), run_id) / "events.jsonl"
    if not log_path.is_file():
        raise FileNotFoundError(f"no run {run_id} in {Path(workspace) / '.harness' / 'runs'}")
    result = eventlog.read_events(log_path)
    text = render(
        result.events, run_id=run_id, log_path=str(log_path), torn=result.torn.describe() if result.torn else None
    )
    target = Path(output) if output else log_path.parent / "report.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return text
