"""The default planner: a deterministic, workspace-aware decomposition of an objective.

The objective is split into clauses ("add X and fix Y" -> two changes) and each clause gets an
intent (feature, bugfix, refactor, docs, tests). The plan is then a small DAG, ids t1..tn:

    locate -> [regression test] -> change(s) -> [tests] , [docs | changelog] -> verify

* locate      find the code involved (manual), scoped to the source directory.
* regression  bug fixes only: a failing test first, so the fix is proven by the suite.
* change      one per clause (manual; clauses beyond the budget share the last change task).
* tests       features and refactors: add or update tests, scoped to the tests directory.
* docs        features: the docs or README must mention the key phrase of the objective;
              bug fixes get a changelog entry instead when the workspace keeps a changelog.
* verify      the workspace's detected build and test commands, run by the harness itself.

Manual tasks have no ``commands`` but always ``acceptance_tests`` that can fail: the
workspace's build and test commands where they apply, a grep for the objective's key phrase in
the docs, and a check that the task changed something. Verification accepts the test commands,
else the build commands. With neither, the fallback check is, in order of preference:

* ``test -n "$(git status --porcelain -- . ':(top,exclude).harness')"`` when the workspace is in
  a git work tree: the task must have changed something in its scope (``.harness/`` is excluded
  so the harness's own run log cannot satisfy it). It fails on a no-op, which is the point.
* ``test -d .`` otherwise: it only proves the scope is reachable. It is the weakest check there
  is and is used only when neither git nor any build or test command is available.

With fewer than seven tasks allowed (``context.max_tasks``), the docs task goes first, then
separate change tasks (their clauses merge into one), then the locate task; verify, one change
and the testing task always stay, so every plan has 3 to 7 tasks.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from enum import StrEnum

from harness.models import Plan, Requirements, Scope, TaskPacket

from .schemas import PlanningContext
from .text import DOC_VERBS, DOC_WORDS, Intent, intent, key_phrase, sentence, shorten, split_clauses, words
from .workspace import Command, WorkspaceProfile, detect

#: The heuristic never plans more tasks than this, whatever the context allows.
HEURISTIC_MAX_TASKS = 7

CODE_INTENTS = frozenset({Intent.feature, Intent.bugfix, Intent.refactor})
FALLBACK_CHECK = "test -d ."


#: Programs a plan may need that a bare machine may lack (shell built-ins and coreutils are assumed).
KNOWN_TOOLS = ("cargo", "git", "go", "make", "node", "npm", "python", "python3")
_COMMAND_WORD = re.compile(r"(?:^|&&|\|\||;|\$\(|\|)\s*([A-Za-z0-9_.+-]+)")


def tools_of(commands: list[str]) -> list[str]:
    """The known programs ``commands`` call, sorted: what bootstrap must find on PATH."""
    found = {m.group(1) for c in commands for m in _COMMAND_WORD.finditer(c)}
    return [t for t in KNOWN_TOOLS if t in found]


def changed_check() -> str:
    """A check that the task changed something under its working directory (git work trees)."""
    return "test -n \"$(git status --porcelain -- . ':(top,exclude).harness')\""


def _scope(path: str) -> Scope:
    return Scope.workspace if path in (".", "") else Scope.module


def _where(path: str) -> str:
    return "the workspace" if path in (".", "") else f"{path}/"


@dataclass
class _Task:
    """A task before ids are assigned; ``after`` names other drafts by key."""

    key: str
    title: str
    objective: str
    scope_path: str = "."
    commands: list[str] = field(default_factory=list)
    acceptance: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    docs_only: bool = False


class Testing(StrEnum):
    """How a plan proves its change: a failing test first (bug fixes) or tests after."""

    regression = "regression"
    tests = "tests"


class Docs(StrEnum):
    """Where a plan records its change: the docs (features) or the changelog (bug fixes)."""

    docs = "docs"
    changelog = "changelog"


@dataclass(frozen=True)
class Layout:
    """Which optional tasks a plan gets and how the clauses are grouped into change tasks."""

    locate: bool
    testing: Testing | None
    docs: Docs | None
    changes: tuple[tuple[str, ...], ...]


def layout(clauses: list[str], profile: WorkspaceProfile, max_tasks: int) -> Layout:
    """Fit the tasks into ``max_tasks`` (3..7): verify, one change and testing are never dropped."""
    intents = [intent(c) for c in clauses]
    code = [i for i in intents if i in CODE_INTENTS]
    testing: Testing | None = None
    if code:
        testing = Testing.regression if all(i == Intent.bugfix for i in code) else Testing.tests
    docs: Docs | None = None
    if Intent.feature in intents and Intent.docs not in intents:
        docs = Docs.docs
    elif testing == Testing.regression and profile.changelog:
        docs = Docs.changelog
    room = min(max(max_tasks, 3), HEURISTIC_MAX_TASKS) - 2 - (1 if testing else 0)
    use_locate = room >= 1
    room -= 1 if use_locate else 0
    extra_changes = min(len(clauses) - 1, room)
    room -= extra_changes
    use_docs = docs is not None and room >= 1
    n = 1 + extra_changes
    groups = [(c,) for c in clauses[: n - 1]] + [tuple(clauses[n - 1 :])]
    return Layout(locate=use_locate, testing=testing, docs=docs if use_docs else None, changes=tuple(groups))


class _Builder:
    """Writes the drafts of one plan for one workspace profile."""

    def __init__(self, objective: str, profile: WorkspaceProfile) -> None:
        self.objective = " ".join(objective.split())
        self.short = shorten(self.objective, 60)
        self.p = profile
        self.src = profile.source_dir
        self.tests_dir = profile.tests_dir or "."
        self.notes: list[str] = []

    # -- commands ---------------------------------------------------------------------------------
    def _cmds(self, commands: tuple[Command, ...], scope_path: str) -> list[str]:
        return [c.from_dir(scope_path) for c in commands]

    def _changed(self) -> list[str]:
        return [changed_check()] if self.p.git else []

    def _compile_check(self) -> list[str]:
        """Python sources must still compile (real, no extra tools; only with a source directory)."""
        if "python" in self.p.ecosystems and self.src != ".":
            return ["python3 -m compileall -q ."]
        return []

    def _or_fallback(self, checks: list[str]) -> list[str]:
        return list(dict.fromkeys(checks)) or [FALLBACK_CHECK]

    # -- tasks ------------------------------------------------------------------------------------
    def locate(self, intents: set[Intent]) -> _Task:
        """Find what to change: in the sources, the tests or the docs, whichever the work touches."""
        if intents & CODE_INTENTS:
            where, what = self.src, "code"
        elif Intent.tests in intents:
            where, what = self.tests_dir, "tests"
        else:
            where, what = self.p.docs_dir or ".", "documentation"
        return _Task(
            "locate",
            f"Locate the {what} for: {self.short}",
            f"Find the files and sections in {_where(where)} involved in: {self.objective}. "
            "List them for the tasks that follow.",
            where,
            acceptance=['test -n "$(ls -A)"'],
        )

    def regression(self) -> _Task:
        checks = self._changed()
        pytest = next((c.text for c in self.p.test_commands if "-m pytest" in c.text), None)
        if "python" in self.p.ecosystems and pytest is not None:
            interpreter = pytest.split()[0]  # the one the workspace's tests run with
            checks.append(
                Command(f"{interpreter} -m pytest -q --collect-only", "", rooted=True).from_dir(self.tests_dir)
            )
        return _Task(
            "regression",
            f"Reproduce with a failing test: {self.short}",
            f"Write a test in {_where(self.tests_dir)} that reproduces the problem in: {self.objective}. "
            "It must fail before the fix.",
            self.tests_dir,
            acceptance=self._or_fallback(checks),
        )

    def change(self, index: int, group: tuple[str, ...]) -> _Task:
        text = "; ".join(sentence(c) for c in group)
        docs_only = all(intent(c) == Intent.docs for c in group)
        tests_only = all(intent(c) == Intent.tests for c in group)
        if docs_only:
            path = self.p.docs_dir or "."
            phrase = key_phrase(" ".join(w for w in words(text) if w not in DOC_WORDS | DOC_VERBS)) or key_phrase(
                self.objective
            )
            checks = self._changed() + ([self._grep(phrase)] if phrase else [])
        elif tests_only:
            path = self.tests_dir
            checks = self._changed() + self._cmds(self.p.test_commands, path)
        else:
            path = self.src
            checks = (
                self._changed()
                + self._compile_check()
                + self._cmds(self.p.build_commands, path)
                + self._cmds(self.p.test_commands, path)
            )
        return _Task(
            f"change{index}",
            shorten(text, 80),
            text + ".",
            path,
            acceptance=self._or_fallback(checks),
            docs_only=docs_only,
        )

    def tests(self) -> _Task:
        checks = self._changed() + self._cmds(self.p.test_commands, self.tests_dir)
        return _Task(
            "tests",
            f"Add or update tests for: {self.short}",
            f"Add or update tests in {_where(self.tests_dir)} that cover: {self.objective}.",
            self.tests_dir,
            acceptance=self._or_fallback(checks),
        )

    def _doc_target(self) -> str:
        return f"{self.p.docs_dir}/" if self.p.docs_dir else (self.p.readme or "README.md")

    def _grep(self, phrase: str) -> str:
        """A check that the documentation (run from its own scope) mentions ``phrase``."""
        if self.p.docs_dir:
            return f"grep -rqiF -- {shlex.quote(phrase)} ."
        return f"grep -qiF -- {shlex.quote(phrase)} {shlex.quote(self._doc_target())}"

    def docs(self) -> _Task:
        phrase = key_phrase(self.objective)
        checks = [self._grep(phrase)] if phrase else self._changed()
        return _Task(
            "docs",
            f"Document: {self.short}",
            f"Document the change in {self._doc_target()} ({self.objective})"
            + (f"; the text must mention {phrase!r}." if phrase else "."),
            self.p.docs_dir or ".",
            acceptance=self._or_fallback(checks),
        )

    def changelog(self) -> _Task:
        target = self.p.changelog or "CHANGELOG.md"
        phrase = key_phrase(self.objective)
        checks = [f"grep -qiF -- {shlex.quote(phrase)} {shlex.quote(target)}"] if phrase else self._changed()
        return _Task(
            "docs",
            f"Record the fix in {target}",
            f"Add an entry to {target} for: {self.objective}.",
            ".",
            acceptance=self._or_fallback(checks),
        )

    def verify(self) -> _Task:
        builds = self._cmds(self.p.build_commands, ".")
        tests = self._cmds(self.p.test_commands, ".")
        acceptance = tests or builds or self._changed() or [FALLBACK_CHECK]
        if not tests:
            self.notes.append(
                "no test command found: verification accepts "
                + (
                    "the build commands"
                    if builds
                    else ("a change in the git work tree" if self.p.git else "'test -d .' only (no git, no tests)")
                )
            )
        return _Task(
            "verify",
            "Run the full verification",
            f"Run the workspace's build and tests on the finished work for: {self.objective}.",
            ".",
            commands=list(dict.fromkeys(builds + tests)),
            acceptance=list(dict.fromkeys(acceptance)),
        )


def _wire(drafts: list[_Task]) -> None:
    """Set the ``after`` edges of the drafts (keys), so the DAG reads as in the module docstring."""
    keys = [d.key for d in drafts]
    first = ["regression"] if "regression" in keys else (["locate"] if "locate" in keys else [])
    changes = [d.key for d in drafts if d.key.startswith("change")]
    code_changes = [d.key for d in drafts if d.key.startswith("change") and not d.docs_only] or changes
    for d in drafts:
        if d.key == "regression":
            d.after = ["locate"] if "locate" in keys else []
        elif d.key.startswith("change"):
            d.after = list(first)
        elif d.key == "tests":
            d.after = list(code_changes)
        elif d.key == "docs":
            d.after = list(changes)
    depended = {a for d in drafts for a in d.after}
    verify = drafts[-1]
    verify.after = [k for k in keys[:-1] if k not in depended]


def build_plan(
    objective: str, profile: WorkspaceProfile, max_tasks: int = HEURISTIC_MAX_TASKS
) -> tuple[Plan, list[str]]:
    """The plan for ``objective`` in a workspace described by ``profile``, and planning notes."""
    b = _Builder(objective, profile)
    clauses = split_clauses(objective)
    lay = layout(clauses, profile, max_tasks)
    drafts: list[_Task] = [b.locate({intent(c) for c in clauses})] if lay.locate else []
    if lay.testing == Testing.regression:
        drafts.append(b.regression())
    drafts += [b.change(i, g) for i, g in enumerate(lay.changes, start=1)]
    if lay.testing == Testing.tests:
        drafts.append(b.tests())
    if lay.docs == Docs.docs:
        drafts.append(b.docs())
    elif lay.docs == Docs.changelog:
        drafts.append(b.changelog())
    drafts.append(b.verify())
    _wire(drafts)
    ids = {d.key: f"t{i}" for i, d in enumerate(drafts, start=1)}
    tasks = [
        TaskPacket(
            id=ids[d.key],
            title=d.title,
            objective=d.objective,
            scope=_scope(d.scope_path),
            scope_path=d.scope_path,
            depends_on=[ids[k] for k in d.after],
            commands=d.commands,
            acceptance_tests=d.acceptance,
        )
        for d in drafts
    ]
    commands = [c for t in tasks for c in (*t.commands, *t.acceptance_tests)]
    plan = Plan(
        objective=b.objective,
        tasks=tasks,
        revision=1,
        source="generated",
        requires=Requirements(tools=tools_of(commands)),
    )
    return plan, list(profile.notes) + b.notes


class HeuristicBackend:
    """The default :class:`PlannerBackend`: no network, no randomness, same input -> same plan."""

    name = "heuristic"

    def decompose(self, objective: str, context: PlanningContext) -> tuple[Plan, list[str]]:
        return build_plan(objective, detect(context.workspace), context.max_tasks)

    def refine(self, plan: Plan, feedback: str, context: PlanningContext) -> tuple[Plan, list[str]]:
        from .refine import apply_feedback

        profile = detect(context.workspace)
        fallback = [c.text for c in profile.test_commands] or ([changed_check()] if profile.git else [FALLBACK_CHECK])

        def replan(objective: str) -> list[TaskPacket]:
            return build_plan(objective, profile, context.max_tasks)[0].tasks

        # Only a plan this backend made may be made again; a person's tasks are edited, never replaced.
        return apply_feedback(
            plan, feedback, fallback_tests=fallback, replan=replan if plan.source == "generated" else None
        )
