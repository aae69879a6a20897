"""The default planner: a deterministic, workspace-aware decomposition of an objective.

The objective is split into clauses ("add X and fix Y" -> two changes) and each clause gets an
intent (feature, bugfix, refactor, docs, tests). The plan is then a small DAG, ids t1..tn:

    locate -> [regression test] -> change(s) -> [tests] , [docs | changelog] -> verify

* locate      find the code involved (manual, confirmed by a person), in the source directory.
* regression  bug fixes only: a failing test first, so the fix is proven by the suite.
* change      one per clause (manual; clauses beyond the budget share the last change task).
* tests       features and refactors: add or update tests in the tests directory.
* docs        features: the docs or README must mention the key phrase of the objective;
              bug fixes get a changelog entry instead when the workspace keeps a changelog.
* verify      the workspace's detected build and test commands, run by the harness itself;
              without any, a check by hand of the finished work.

Every acceptance test can fail; the planner never writes one that cannot (``test -d .``,
``ls -A``: see :mod:`.vacuous`). The checks are the workspace's build and test commands where
they apply, a grep for the objective's key phrase in the docs, ``python3 -m compileall`` of
Python sources, and, in a git work tree, a check that the task changed something in its
directory, ``test -n "$(git status --porcelain -- src ':(exclude)*.pyc')"``, which fails on a
no-op (bytecode the checks leave behind and, from the workspace root, the run log under
``.harness/`` do not count). Verification accepts the test commands, else the build commands,
else that check.

Where a step has no check that can fail (locating code is reading; without git, tests or a
build a change leaves nothing to run), the step is a manual step with no acceptance tests and a
``confirmation`` saying what the person confirms, and the notes say so.

No command leaves its task's directory: the planner never writes ``cd ..``. A task that needs a
rooted command (pytest, make, go's ``./...``; see :mod:`.workspace`) works from the workspace
root, its objective names the directory the change belongs in, and its git check names that
directory. Other tasks work in their directory (``scope_path``).

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


#: Programs a plan may need that a bare machine may lack (shell built-ins and coreutils are assumed).
KNOWN_TOOLS = ("cargo", "git", "go", "make", "node", "npm", "python", "python3")
_COMMAND_WORD = re.compile(r"(?:^|&&|\|\||;|\$\(|\|)\s*([A-Za-z0-9_.+-]+)")


def tools_of(commands: list[str]) -> list[str]:
    """The known programs ``commands`` call, sorted: what bootstrap must find on PATH."""
    found = {m.group(1) for c in commands for m in _COMMAND_WORD.finditer(c)}
    return [t for t in KNOWN_TOOLS if t in found]


def changed_check(path: str = ".") -> str:
    """A check that something changed under ``path``, relative to where it runs (git work trees).

    It fails on a no-op, which is the point. What the harness and the other checks write is not
    a change: Python bytecode (``compileall`` and pytest leave ``__pycache__/`` behind, which
    would make the check pass on a retry) and, for ``.``, the run log under ``.harness/``.
    """
    spec = ". ':(exclude).harness'" if path in (".", "") else shlex.quote(path)
    return f"test -n \"$(git status --porcelain -- {spec} ':(exclude)*.pyc')\""


def _scope(path: str) -> Scope:
    return Scope.workspace if path in (".", "") else Scope.module


def _where(path: str) -> str:
    return "the workspace" if path in (".", "") else f"{path}/"


@dataclass
class _Task:
    """A task before ids are assigned; ``after`` names other drafts by key.

    A task without ``acceptance`` is a manual step verified by its ``confirmation`` alone.
    """

    key: str
    title: str
    objective: str
    scope_path: str = "."
    commands: list[str] = field(default_factory=list)
    acceptance: list[str] = field(default_factory=list)
    confirmation: str | None = None
    after: list[str] = field(default_factory=list)
    docs_only: bool = False


@dataclass(frozen=True)
class _Placed:
    """Where a task about one directory works, the checks it gets there, and what its objective
    must add when the two differ."""

    scope_path: str
    checks: list[str]
    remark: str = ""


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

    # -- checks -----------------------------------------------------------------------------------
    def _place(
        self,
        target: str,
        runs: tuple[Command, ...] = (),
        *,
        what: str = "The work belongs",
        compile_check: bool = False,
    ) -> _Placed:
        """The checks of a task about directory ``target`` that runs ``runs`` as acceptance tests.

        A rooted command must run at the workspace root, so the task works from there, its git
        check names ``target`` and its objective says "{what} in {target}/"; otherwise the task
        works in ``target`` itself. Never ``cd``.
        """
        rooted = next((c for c in runs if c.rooted), None)
        scope_path = "." if rooted is not None else target
        here = target if scope_path == "." else "."  # target, seen from where the checks run
        checks = [changed_check(here)] if self.p.git else []
        if compile_check and "python" in self.p.ecosystems and target not in (".", ""):
            checks.append(f"python3 -m compileall -q {shlex.quote(here)}")
        checks += [c.text for c in runs]
        remark = ""
        if rooted is not None and target not in (".", ""):
            remark = f" {what} in {target}/; the task works from the workspace root, where `{rooted.text}` must run."
        return _Placed(scope_path, list(dict.fromkeys(checks)), remark)

    def _pytest_collect(self) -> tuple[Command, ...]:
        """``pytest --collect-only`` with the workspace's interpreter: the new test must load."""
        pytest = next((c.text for c in self.p.test_commands if "-m pytest" in c.text), None)
        if "python" not in self.p.ecosystems or pytest is None:
            return ()
        interpreter = pytest.split()[0]  # the one the workspace's tests run with
        return (Command(f"{interpreter} -m pytest -q --collect-only", "pytest", rooted=True),)

    def _grep(self, phrase: str) -> str:
        """A check that the documentation (run from its own scope) mentions ``phrase``."""
        if self.p.docs_dir:
            return f"grep -rqiF -- {shlex.quote(phrase)} ."
        return f"grep -qiF -- {shlex.quote(phrase)} {shlex.quote(self._doc_target())}"

    def _doc_target(self) -> str:
        return f"{self.p.docs_dir}/" if self.p.docs_dir else (self.p.readme or "README.md")

    # -- tasks ------------------------------------------------------------------------------------
    def locate(self, intents: set[Intent]) -> _Task:
        """Find what to change: in the sources, the tests or the docs, whichever the work touches.

        Reading leaves nothing a command could check, so a person confirms the list.
        """
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
            confirmation=f"The files and sections in {_where(where)} involved in this work are listed "
            "for the tasks that follow.",
        )

    def regression(self) -> _Task:
        placed = self._place(self.tests_dir, self._pytest_collect(), what="The test belongs")
        return _Task(
            "regression",
            f"Reproduce with a failing test: {self.short}",
            f"Write a test in {_where(self.tests_dir)} that reproduces the problem in: {self.objective}. "
            "It must fail before the fix." + placed.remark,
            placed.scope_path,
            acceptance=placed.checks,
            confirmation=None
            if placed.checks
            else f"A test in {_where(self.tests_dir)} reproduces the problem and fails before the fix.",
        )

    def change(self, index: int, group: tuple[str, ...]) -> _Task:
        text = "; ".join(sentence(c) for c in group)
        docs_only = all(intent(c) == Intent.docs for c in group)
        tests_only = all(intent(c) == Intent.tests for c in group)
        if docs_only:
            target = self.p.docs_dir or "."
            placed = self._place(target)
            phrase = key_phrase(" ".join(w for w in words(text) if w not in DOC_WORDS | DOC_VERBS)) or key_phrase(
                self.objective
            )
            checks = placed.checks + ([self._grep(phrase)] if phrase else [])
        elif tests_only:
            target = self.tests_dir
            placed = self._place(target, self.p.test_commands, what="The change belongs")
            checks = placed.checks
        else:
            target = self.src
            placed = self._place(
                target, self.p.build_commands + self.p.test_commands, what="The change belongs", compile_check=True
            )
            checks = placed.checks
        return _Task(
            f"change{index}",
            shorten(text, 80),
            text + "." + placed.remark,
            placed.scope_path,
            acceptance=checks,
            confirmation=None if checks else f"The change is made in {_where(target)}: {text}.",
            docs_only=docs_only,
        )

    def tests(self) -> _Task:
        placed = self._place(self.tests_dir, self.p.test_commands, what="The tests belong")
        return _Task(
            "tests",
            f"Add or update tests for: {self.short}",
            f"Add or update tests in {_where(self.tests_dir)} that cover: {self.objective}." + placed.remark,
            placed.scope_path,
            acceptance=placed.checks,
            confirmation=None
            if placed.checks
            else f"Tests in {_where(self.tests_dir)} cover the change, and they pass when run by hand.",
        )

    def docs(self) -> _Task:
        phrase = key_phrase(self.objective)
        target = self.p.docs_dir or "."
        checks = [self._grep(phrase)] if phrase else self._place(target).checks
        return _Task(
            "docs",
            f"Document: {self.short}",
            f"Document the change in {self._doc_target()} ({self.objective})"
            + (f"; the text must mention {phrase!r}." if phrase else "."),
            target,
            acceptance=checks,
            confirmation=None if checks else f"{self._doc_target()} documents the change.",
        )

    def changelog(self) -> _Task:
        target = self.p.changelog or "CHANGELOG.md"
        phrase = key_phrase(self.objective)
        checks = [f"grep -qiF -- {shlex.quote(phrase)} {shlex.quote(target)}"] if phrase else self._place(".").checks
        return _Task(
            "docs",
            f"Record the fix in {target}",
            f"Add an entry to {target} for: {self.objective}.",
            ".",
            acceptance=checks,
            confirmation=None if checks else f"{target} has an entry for the fix.",
        )

    def verify(self) -> _Task:
        builds = [c.text for c in self.p.build_commands]
        tests = [c.text for c in self.p.test_commands]
        commands = list(dict.fromkeys(builds + tests))
        if not tests:
            if builds:
                accepts = "the build commands"
            elif self.p.git:
                accepts = "a change in the git work tree"
            else:
                accepts = "a person's confirmation only (no git, no build, no tests)"
            self.notes.append(f"no test command found: verification accepts {accepts}")
        if commands:
            return _Task(
                "verify",
                "Run the full verification",
                f"Run the workspace's build and tests on the finished work for: {self.objective}.",
                ".",
                commands=commands,
                acceptance=tests or builds,
            )
        changed = [changed_check()] if self.p.git else []
        return _Task(
            "verify",
            "Check the finished work",
            f"Check by hand that the finished work does what was asked: {self.objective}. The workspace has no "
            + (
                "build or test command; the check is that the work changed something."
                if changed
                else "build or test command and no git history to compare with."
            ),
            ".",
            acceptance=changed,
            confirmation=None if changed else f"The finished work does what was asked: {self.objective}.",
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
            confirmation=d.confirmation,
        )
        for d in drafts
    ]
    confirmed = [
        f"{t.id} has no check that can fail here: it is a manual step a person confirms ({t.confirmation})"
        for t in tasks
        if t.confirmation
    ]
    commands = [c for t in tasks for c in (*t.commands, *t.acceptance_tests)]
    plan = Plan(
        objective=b.objective,
        tasks=tasks,
        revision=1,
        source="generated",
        requires=Requirements(tools=tools_of(commands)),
    )
    return plan, list(profile.notes) + b.notes + confirmed


def _confirmed(task: TaskPacket) -> TaskPacket:
    """``task`` with a confirmation when it is a manual step that nothing else could verify."""
    if not task.is_manual or task.confirmation or any(t.strip() for t in task.acceptance_tests):
        return task
    return task.model_copy(update={"confirmation": f"Done as described: {task.objective}"})


class HeuristicBackend:
    """The default :class:`PlannerBackend`: no network, no randomness, same input -> same plan."""

    name = "heuristic"

    def decompose(self, objective: str, context: PlanningContext) -> tuple[Plan, list[str]]:
        return build_plan(objective, detect(context.workspace), context.max_tasks)

    def refine(self, plan: Plan, feedback: str, context: PlanningContext) -> tuple[Plan, list[str]]:
        from .refine import apply_feedback

        profile = detect(context.workspace)
        # An added task borrows the last task's tests; with none to borrow, these (never a check
        # that cannot fail), or with nothing real at all, a person's confirmation.
        fallback = [c.text for c in profile.test_commands] or ([changed_check()] if profile.git else [])

        def replan(objective: str) -> list[TaskPacket]:
            return build_plan(objective, profile, context.max_tasks)[0].tasks

        # Only a plan this backend made may be made again; a person's tasks are edited, never replaced.
        refined, applied = apply_feedback(
            plan, feedback, fallback_tests=fallback, replan=replan if plan.source == "generated" else None
        )
        before = {t.id for t in plan.tasks}
        tasks = [t if t.id in before else _confirmed(t) for t in refined.tasks]
        return refined.model_copy(update={"tasks": tasks}), applied
