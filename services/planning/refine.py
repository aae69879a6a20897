"""Refinement: apply free-text feedback to a plan through small, deterministic directives.

Feedback may hold several directives, separated by new lines, ";", "," or "and"/"then" followed
by a directive ("skip t3, t5 after t2 and timeout t5 300"). Directives:

    skip|remove|drop|delete [task] <ids>          remove tasks; dependents inherit their dependencies
    add [a] [new] task|step[:] <text>              append a manual task after the current last one
    rename <id> to|as <title>                      new title (and objective, if it was the title)
    <id> after|depends on|requires <ids>           add dependencies
    <id> before <id2>                              <id2> depends on <id>
    <id> no longer depends on|does not depend on <ids>   remove dependencies
    timeout <id> [to] <n> [s|min|h]                also "set timeout of <id> to <n>", "<id> timeout <n>"
    scope <id> [to] <path>                         the task works in <path>
    make it|this|the plan about <text>             new objective: the plan is made again for it (generated
                                                   plans) or restated in the tasks that quoted it (others)

Feedback that is none of these is not dropped: it is attached to every remaining task's objective
as a clarification, and ``applied`` says so. Directives naming tasks that do not exist are
reported in ``applied`` as not applied. Task ids never change, so events that name them stay true.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from harness.models import Plan, Scope, TaskPacket, slug

from .text import sentence

Replan = Callable[[str], list[TaskPacket]]

_ID = r"[A-Za-z0-9][\w.\-]*"
_ID_SEP = r"\s*(?:,|\band\b|&)\s*|\s+"
_IDS = rf"{_ID}(?:(?:{_ID_SEP}){_ID})*"
_UNITS = {
    "": 1,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
}
_UNIT = r"(?P<unit>s|secs?|seconds?|m|mins?|minutes?|h|hours?)?"
_NUM = r"(?P<n>\d+(?:\.\d+)?)"


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


REMOVE = _rx(rf"^(?:skip|remove|drop|delete)\s+(?:the\s+)?(?:tasks?\s+)?(?P<ids>{_IDS})$")
ADD = _rx(r"^add\s+(?:a\s+)?(?:new\s+)?(?:task|step)\s*(?:[:\-\u2014]\s*|\s)(?P<text>.+)$")
RENAME = _rx(rf"^rename\s+(?:task\s+)?(?P<id>{_ID})\s+(?:to|as)\s+(?P<title>.+)$")
AFTER = _rx(
    rf"^(?:task\s+)?(?P<id>{_ID})\s+(?:(?:should\s+)?(?:run\s+)?after|depends\s+on|requires|waits\s+for)\s+(?P<ids>{_IDS})$"
)
BEFORE = _rx(rf"^(?:task\s+)?(?P<id>{_ID})\s+(?:(?:should\s+)?(?:run\s+)?before)\s+(?P<other>{_ID})$")
UNLINK = _rx(
    rf"^(?:task\s+)?(?P<id>{_ID})\s+(?:no\s+longer\s+depends|does\s*n[o']t\s+depend|doesn't\s+depend|is\s+independent)\s+(?:on|of)\s+(?P<ids>{_IDS})$"
)
TIMEOUT = (
    _rx(
        rf"^(?:set\s+)?(?:the\s+)?timeout\s+(?:of\s+|for\s+)?(?:task\s+)?(?P<id>{_ID})\s+(?:to\s+|=\s*|at\s+)?{_NUM}\s*{_UNIT}$"
    ),
    _rx(rf"^(?:task\s+)?(?P<id>{_ID})\s+timeout\s+(?:to\s+|=\s*|of\s+)?{_NUM}\s*{_UNIT}$"),
)
SCOPE = _rx(rf"^(?:scope|limit|restrict)\s+(?:task\s+)?(?P<id>{_ID})\s+(?:to\s+|in\s+)?(?P<path>\S+)$")
ABOUT = _rx(r"^(?:make\s+(?:it|this|the\s+plan)\s+about|focus\s+on|change\s+the\s+objective\s+to)\s+(?P<text>.+)$")

_START_WORDS = (
    r"skip|remove|drop|delete|add\s+(?:a\s+)?(?:new\s+)?(?:task|step)|rename|(?:set\s+)?(?:the\s+)?timeout|"
    r"scope|limit|restrict|make\s+(?:it|this|the\s+plan)\s+about|focus\s+on|change\s+the\s+objective"
)
_SEPARATORS = re.compile(r"(\s*(?:\n|;|,|\.\s+|\s\band\b\s|\s\bthen\b\s|\s\balso\b\s)\s*)", re.IGNORECASE)


def _split_ids(text: str) -> list[str]:
    return [t for t in re.split(_ID_SEP, text.strip()) if t]


def _looks_like_id(token: str, ids: set[str]) -> bool:
    return token in ids or re.fullmatch(r"t\d+", token, re.IGNORECASE) is not None


def segments(feedback: str, ids: set[str]) -> list[str]:
    """Cut feedback into directive-sized pieces.

    New lines, ";" and full stops always end a piece. After a comma, "and", "then" or "also" a
    new piece begins only where a directive begins, so "rename t2 to Build, test and ship" and
    "skip t3 and t4" stay whole.
    """
    id_start = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True)) or r"(?!)"
    starts = re.compile(
        rf"^(?:{_START_WORDS})\b|^(?:task\s+)?(?:{id_start}|t\d+)\s+(?:should\s+|run\s+)*(?:after|before|depends|requires|waits|no\s+longer|does|doesn't|is\s+independent|timeout)\b",
        re.IGNORECASE,
    )
    pieces = _SEPARATORS.split(feedback.strip())
    out: list[str] = []
    pending_sep = ""
    for k, piece in enumerate(pieces):
        if k % 2 == 1:
            pending_sep = piece
            continue
        if not piece:
            continue
        hard = any(ch in pending_sep for ch in "\n;.")
        if out and not hard and not starts.match(piece):
            out[-1] += pending_sep + piece
        else:
            out.append(piece)
    return [s.strip().rstrip(".!").strip() for s in out if s.strip().rstrip(".!").strip()]


class _Editor:
    """Applies directives to a working copy of the tasks and records what happened."""

    def __init__(self, plan: Plan, fallback_tests: list[str], replan: Replan | None) -> None:
        self.objective = plan.objective
        self.replan = replan
        self.tasks: list[TaskPacket] = [t.model_copy(deep=True) for t in plan.tasks]
        self.fallback_tests = fallback_tests
        self.applied: list[str] = []
        self.unclear: list[str] = []

    # -- lookup ---------------------------------------------------------------------------------
    @property
    def ids(self) -> set[str]:
        return {t.id for t in self.tasks}

    def find(self, task_id: str) -> TaskPacket | None:
        exact = next((t for t in self.tasks if t.id == task_id), None)
        return exact or next((t for t in self.tasks if t.id.lower() == task_id.lower()), None)

    def replace(self, task: TaskPacket, **changes: object) -> TaskPacket:
        new = task.model_copy(update=changes, deep=True)
        self.tasks = [new if t.id == task.id else t for t in self.tasks]
        return new

    def missing(self, segment: str, names: list[str]) -> None:
        self.applied.append(f"not applied {segment!r}: no task {', '.join(repr(n) for n in names)}")

    # -- directives -----------------------------------------------------------------------------
    def remove(self, segment: str, m: re.Match[str]) -> bool:
        names = _split_ids(m.group("ids"))
        if not all(_looks_like_id(n, self.ids) for n in names):
            return False
        unknown = [n for n in names if self.find(n) is None]
        if unknown:
            self.missing(segment, unknown)
        for name in names:
            task = self.find(name)
            if task is None:
                continue
            self.tasks = [t for t in self.tasks if t.id != task.id]
            rewired = []
            for t in list(self.tasks):
                if task.id in t.depends_on:
                    deps = [d for d in t.depends_on if d != task.id]
                    deps += [d for d in task.depends_on if d not in deps and d != t.id]
                    self.replace(t, depends_on=deps)
                    rewired.append(t.id)
            verb = "depends" if len(rewired) == 1 else "depend"
            note = (
                f"; {', '.join(rewired)} now {verb} on {', '.join(task.depends_on) or 'nothing'} instead"
                if rewired
                else ""
            )
            self.applied.append(f"removed {task.id} ({task.title}){note}")
        return True

    def add(self, segment: str, m: re.Match[str]) -> bool:
        text = sentence(m.group("text").strip().strip("\"'`"))
        if not text:
            return False
        last = self.tasks[-1] if self.tasks else None
        new_id = self.next_id(text)
        tests = list(last.acceptance_tests) if last and last.acceptance_tests else list(self.fallback_tests)
        packet = TaskPacket(
            id=new_id, title=text, objective=text, depends_on=[last.id] if last else [], acceptance_tests=tests
        )
        self.tasks.append(packet)
        self.applied.append(f"added {new_id} ({text})" + (f" after {last.id}" if last else ""))
        return True

    def next_id(self, text: str) -> str:
        numbered = [int(t.id[1:]) for t in self.tasks if re.fullmatch(r"t\d+", t.id)]
        if numbered or not self.tasks:
            return f"t{max(numbered, default=0) + 1}"
        base, n = slug(text), 1
        candidate = base
        while candidate in self.ids:
            n += 1
            candidate = f"{base[:60]}-{n}"
        return candidate

    def rename(self, segment: str, m: re.Match[str]) -> bool:
        task = self.find(m.group("id"))
        if task is None:
            return self._unknown(segment, m.group("id"))
        title = m.group("title").strip().strip("\"'`").strip()
        changes: dict[str, object] = {"title": title}
        if task.objective == task.title:
            changes["objective"] = title
        self.replace(task, **changes)
        self.applied.append(f"renamed {task.id} to {title!r}")
        return True

    def _unknown(self, segment: str, name: str) -> bool:
        if not _looks_like_id(name, self.ids):
            return False
        self.missing(segment, [name])
        return True

    def link(self, segment: str, task_id: str, deps: list[str]) -> bool:
        task = self.find(task_id)
        unknown = [d for d in deps if self.find(d) is None]
        if task is None or unknown:
            names = ([task_id] if task is None else []) + unknown
            if not all(_looks_like_id(n, self.ids) for n in names):
                return False
            self.missing(segment, names)
            return True
        real = [self.find(d).id for d in deps]  # type: ignore[union-attr]
        added = [d for d in real if d not in task.depends_on]
        self.replace(task, depends_on=task.depends_on + added)
        self.applied.append(f"{task.id} now depends on {', '.join(real)}")
        return True

    def after(self, segment: str, m: re.Match[str]) -> bool:
        return self.link(segment, m.group("id"), _split_ids(m.group("ids")))

    def before(self, segment: str, m: re.Match[str]) -> bool:
        return self.link(segment, m.group("other"), [m.group("id")])

    def unlink(self, segment: str, m: re.Match[str]) -> bool:
        task = self.find(m.group("id"))
        if task is None:
            return self._unknown(segment, m.group("id"))
        names = _split_ids(m.group("ids"))
        gone = [n for n in names if n in task.depends_on]
        self.replace(task, depends_on=[d for d in task.depends_on if d not in gone])
        self.applied.append(
            f"{task.id} no longer depends on {', '.join(gone)}"
            if gone
            else f"{task.id} did not depend on {', '.join(names)}"
        )
        return True

    def timeout(self, segment: str, m: re.Match[str]) -> bool:
        task = self.find(m.group("id"))
        if task is None:
            return self._unknown(segment, m.group("id"))
        seconds = float(m.group("n")) * _UNITS[(m.group("unit") or "").lower()]
        if seconds <= 0:
            self.applied.append(f"not applied {segment!r}: a timeout must be more than 0 seconds")
            return True
        self.replace(task, timeout=seconds)
        self.applied.append(f"timeout of {task.id} set to {seconds:g} s")
        return True

    def scope(self, segment: str, m: re.Match[str]) -> bool:
        task = self.find(m.group("id"))
        if task is None:
            return self._unknown(segment, m.group("id"))
        path = m.group("path").strip("\"'`").rstrip("/") or "."
        self.replace(task, scope_path=path, scope=Scope.workspace if path == "." else Scope.module)
        self.applied.append(f"{task.id} now works in {path}")
        return True

    def about(self, segment: str, m: re.Match[str]) -> bool:
        new = m.group("text").strip().strip("\"'`").strip()
        old = self.objective
        self.objective = new
        if self.replan is not None:
            self.tasks = self.replan(new)
            self.applied.append(
                f"objective changed from {old!r} to {new!r}; the plan was made again for it ({len(self.tasks)} tasks)"
            )
            return True
        pattern = re.compile(re.escape(old), re.IGNORECASE) if old.strip() else None

        def restate(text: str) -> str:
            return pattern.sub(lambda hit: sentence(new) if hit.start() == 0 else new, text) if pattern else text

        restated: list[str] = []
        for task in list(self.tasks):
            title, objective = restate(task.title), restate(task.objective)
            if (title, objective) != (task.title, task.objective):
                self.replace(task, title=title, objective=objective)
                restated.append(task.id)
        kept = [t.id for t in self.tasks if t.id not in restated]
        note = f"; restated in {', '.join(restated)}" if restated else ""
        note += f"; {', '.join(kept)} did not quote the old objective and kept theirs" if kept else ""
        self.applied.append(f"objective changed from {old!r} to {new!r}{note}")
        return True

    def clarify(self) -> None:
        if not self.unclear:
            return
        text = "; ".join(self.unclear)
        for task in list(self.tasks):
            self.replace(task, objective=f"{task.objective.rstrip()} Clarification: {text}")
        targets = ", ".join(t.id for t in self.tasks) or "no task (the plan is empty)"
        self.applied.append(f"clarification added to {targets}: {text!r}")

    # -- dispatch -------------------------------------------------------------------------------
    def apply(self, segment: str) -> None:
        rules: list[tuple[re.Pattern[str], Callable[[str, re.Match[str]], bool]]] = [
            (REMOVE, self.remove),
            (ADD, self.add),
            (RENAME, self.rename),
            (UNLINK, self.unlink),
            (BEFORE, self.before),
            (AFTER, self.after),
            *((p, self.timeout) for p in TIMEOUT),
            (SCOPE, self.scope),
            (ABOUT, self.about),
        ]
        for pattern, handler in rules:
            m = pattern.match(segment)
            if m and handler(segment, m):
                return
        self.unclear.append(segment)


def apply_feedback(
    plan: Plan, feedback: str, *, fallback_tests: list[str], replan: Replan | None = None
) -> tuple[Plan, list[str]]:
    """The refined plan (revision + 1, source "refined") and what each directive did, in order.

    "make it about ..." directives are applied first, since the other directives edit the plan
    that results: with ``replan`` (new objective -> new tasks) the tasks are made again for the
    new objective; without it the new objective replaces the old one wherever a task quoted it.
    ``fallback_tests`` are the acceptance tests of an added task when the plan has no last task
    to borrow them from. Pure: ``plan`` is not modified.
    """
    editor = _Editor(plan, fallback_tests, replan)
    found = segments(feedback, editor.ids)
    for segment in sorted(found, key=lambda seg: ABOUT.match(seg) is None):
        editor.apply(segment)
    editor.clarify()
    if not feedback.strip():
        editor.applied.append("no feedback given: the tasks are unchanged")
    refined = Plan(
        objective=editor.objective,
        tasks=editor.tasks,
        revision=plan.revision + 1,
        source="refined",
        defaults=dict(plan.defaults),
    )
    return refined, editor.applied
