"""What a workspace offers a plan: its real test and build commands and its main directories.

Detection reads a handful of well-known files and never runs anything, so it is fast and the same
workspace always gives the same profile. Precedence, documented because it decides the plan:

* A Makefile with a ``test:`` target is the project's own entry point: ``make test`` is then the
  only test command (it usually wraps the others). ``all:`` gives ``make``, else ``build:`` gives
  ``make build``.
* Otherwise every ecosystem found contributes, in this order: Python (pyproject.toml, setup.cfg,
  setup.py, pytest.ini, tox.ini, or a tests directory holding .py files -> ``python3 -m pytest -q``,
  or the workspace's ``.venv/bin/python``),
  Node (package.json ``scripts.test`` -> ``npm test``, ``scripts.build`` -> ``npm run build``; npm's
  placeholder test script is ignored), Rust (Cargo.toml -> ``cargo test`` / ``cargo build``), Go
  (go.mod -> ``go test ./...`` / ``go build ./...``).

Lint commands, for a model planner's map of the workspace: a Makefile ``lint:`` target, package.json
``scripts.lint``, ruff or mypy configured in pyproject.toml, flake8 in setup.cfg or ``.flake8``.

Commands run in a task's ``scope_path``. A command marked ``rooted`` must run at the workspace
root (make, go's ``./...``; pytest too: from ``src/`` it would collect nothing), so a task that
runs one works from the root; it is never prefixed with ``cd ..``, which would leave the task's
directory. npm and cargo find the project root from a subdirectory themselves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

_MAX_READ = 1 << 20

SOURCE_DIRS = ("src", "lib", "app", "pkg", "internal", "cmd")
TEST_DIRS = ("tests", "test", "spec", "__tests__")
DOC_DIRS = ("docs", "doc", "documentation")
READMES = ("README.md", "README.rst", "README.txt", "README")
CHANGELOGS = ("CHANGELOG.md", "CHANGES.md", "HISTORY.md", "CHANGELOG.rst", "CHANGELOG")
MAKEFILES = ("GNUmakefile", "makefile", "Makefile")
PYTHON_MARKERS = ("pyproject.toml", "setup.cfg", "setup.py", "pytest.ini", "tox.ini")
NPM_PLACEHOLDER = "no test specified"

_MAKE_TARGET = re.compile(r"^([A-Za-z0-9_./-]+(?:[ \t]+[A-Za-z0-9_./-]+)*)[ \t]*::?(?![:=])", re.MULTILINE)


@dataclass(frozen=True)
class Command:
    """A shell command found in the workspace, and whether it must run at the workspace root."""

    text: str
    origin: str
    rooted: bool = False


@dataclass(frozen=True)
class WorkspaceProfile:
    """The parts of a workspace a planner cares about; paths are relative to its root."""

    root: str | None = None
    exists: bool = False
    git: bool = False
    ecosystems: tuple[str, ...] = ()
    test_commands: tuple[Command, ...] = ()
    build_commands: tuple[Command, ...] = ()
    lint_commands: tuple[Command, ...] = ()
    source_dir: str = "."
    tests_dir: str | None = None
    docs_dir: str | None = None
    readme: str | None = None
    changelog: str | None = None
    notes: tuple[str, ...] = field(default=())


def _read(path: Path) -> str | None:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return fh.read(_MAX_READ)
    except OSError:
        return None


def _first_dir(root: Path, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if (root / n).is_dir()), None)


def _first_file(root: Path, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if (root / n).is_file()), None)


def _inside_git(root: Path) -> bool:
    """True when ``root`` is in a git work tree and git is installed (checks must be runnable)."""
    if shutil.which("git") is None:
        return False
    return any((d / ".git").exists() for d in (root, *root.parents))


def make_targets(text: str) -> set[str]:
    """Rule targets of a Makefile (``test: deps`` -> {"test"}); variable assignments excluded."""
    targets: set[str] = set()
    for match in _MAKE_TARGET.finditer(text):
        targets.update(match.group(1).split())
    return targets


def _python_packages(root: Path) -> list[str]:
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return []
    return [
        e
        for e in entries
        if not e.startswith((".", "_")) and e not in TEST_DIRS and (root / e / "__init__.py").is_file()
    ]


def _has_python_tests(root: Path, tests_dir: str | None) -> bool:
    if tests_dir is None:
        return False
    try:
        return any(n.endswith(".py") for n in os.listdir(root / tests_dir))
    except OSError:
        return False


class _Finder:
    """Collects commands and notes while reading one workspace."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tests: list[Command] = []
        self.builds: list[Command] = []
        self.lints: list[Command] = []
        self.ecosystems: list[str] = []
        self.notes: list[str] = []

    def makefile(self) -> bool:
        """Read the Makefile; True when its ``test`` target takes over the test commands."""
        name = _first_file(self.root, MAKEFILES)
        text = _read(self.root / name) if name else None
        if text is None:
            return False
        targets = make_targets(text)
        self.ecosystems.append("make")
        if "all" in targets:
            self.builds.append(Command("make", f"{name} target 'all'", rooted=True))
        elif "build" in targets:
            self.builds.append(Command("make build", f"{name} target 'build'", rooted=True))
        if "lint" in targets:
            self.lints.append(Command("make lint", f"{name} target 'lint'", rooted=True))
        if "test" in targets:
            self.tests.append(Command("make test", f"{name} target 'test'", rooted=True))
            return True
        return False

    def python(self, tests_dir: str | None, *, take_tests: bool) -> None:
        marker = _first_file(self.root, PYTHON_MARKERS)
        if marker is None and not _has_python_tests(self.root, tests_dir):
            return
        self.ecosystems.append("python")
        if take_tests:
            self.tests.append(
                Command(f"{self.python_cmd} -m pytest -q", marker or f"the Python files in {tests_dir}/", rooted=True)
            )

    @property
    def python_cmd(self) -> str:
        """The workspace's own virtualenv interpreter when it has one, else ``python3`` (the name
        every Python 3 install has; a bare ``python`` is missing on many systems)."""
        for venv in (".venv", "venv"):
            if (self.root / venv / "bin" / "python").is_file():
                return f"{venv}/bin/python"
        return "python3"

    def node(self, *, take_tests: bool) -> None:
        if not (self.root / "package.json").is_file():
            return
        self.ecosystems.append("node")
        text = _read(self.root / "package.json")
        try:
            scripts = json.loads(text or "").get("scripts") or {}
        except (ValueError, AttributeError):
            self.notes.append("package.json is not valid JSON: its scripts were not read")
            return
        if not isinstance(scripts, dict):
            return
        test = scripts.get("test")
        if take_tests and isinstance(test, str) and test.strip() and NPM_PLACEHOLDER not in test:
            self.tests.append(Command("npm test", "package.json scripts.test"))
        elif take_tests and isinstance(test, str) and NPM_PLACEHOLDER in test:
            self.notes.append("package.json scripts.test is npm's placeholder (always fails): not used")
        if isinstance(scripts.get("build"), str):
            self.builds.append(Command("npm run build", "package.json scripts.build"))
        if isinstance(scripts.get("lint"), str):
            self.lints.append(Command("npm run lint", "package.json scripts.lint"))

    def python_linters(self) -> None:
        """ruff and mypy configured in pyproject.toml, flake8 in setup.cfg or .flake8."""
        pyproject = _read(self.root / "pyproject.toml") or ""
        if "[tool.ruff" in pyproject:
            self.lints.append(Command("ruff check .", "pyproject.toml [tool.ruff]", rooted=True))
        if "[tool.mypy" in pyproject:
            self.lints.append(Command("mypy", "pyproject.toml [tool.mypy]", rooted=True))
        if "[flake8]" in (_read(self.root / "setup.cfg") or "") or (self.root / ".flake8").is_file():
            self.lints.append(Command("flake8", "flake8 configuration", rooted=True))

    def cargo(self, *, take_tests: bool) -> None:
        if (self.root / "Cargo.toml").is_file():
            self.ecosystems.append("rust")
            if take_tests:
                self.tests.append(Command("cargo test", "Cargo.toml"))
            self.builds.append(Command("cargo build", "Cargo.toml"))

    def go(self, *, take_tests: bool) -> None:
        if (self.root / "go.mod").is_file():
            self.ecosystems.append("go")
            if take_tests:
                self.tests.append(Command("go test ./...", "go.mod", rooted=True))
            self.builds.append(Command("go build ./...", "go.mod", rooted=True))


def detect(workspace: str | os.PathLike[str] | None) -> WorkspaceProfile:
    """Read ``workspace`` (None: nothing known) into a :class:`WorkspaceProfile`."""
    if workspace is None:
        return WorkspaceProfile(notes=("no workspace given: commands and directories were not detected",))
    root = Path(workspace)
    if not root.is_dir():
        return WorkspaceProfile(root=str(root), notes=(f"workspace {str(root)!r} is not a directory",))
    tests_dir = _first_dir(root, TEST_DIRS)
    finder = _Finder(root)
    make_owns_tests = finder.makefile()
    finder.python(tests_dir, take_tests=not make_owns_tests)
    finder.node(take_tests=not make_owns_tests)
    finder.cargo(take_tests=not make_owns_tests)
    finder.go(take_tests=not make_owns_tests)
    finder.python_linters()
    if make_owns_tests and len(finder.ecosystems) > 1:
        finder.notes.append("the Makefile's test target is used instead of the per-language test commands")
    source = _first_dir(root, SOURCE_DIRS) or next(iter(_python_packages(root)), None) or "."
    notes = [f"test command from {c.origin}: {c.text}" for c in finder.tests]
    notes += [f"build command from {c.origin}: {c.text}" for c in finder.builds]
    return WorkspaceProfile(
        root=str(root),
        exists=True,
        git=_inside_git(root.resolve()),
        ecosystems=tuple(finder.ecosystems),
        test_commands=tuple(finder.tests),
        build_commands=tuple(finder.builds),
        lint_commands=tuple(finder.lints),
        source_dir=source,
        tests_dir=tests_dir,
        docs_dir=_first_dir(root, DOC_DIRS),
        readme=_first_file(root, READMES),
        changelog=_first_file(root, CHANGELOGS),
        notes=tuple(notes + finder.notes),
    )
