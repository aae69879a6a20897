"""Plan files: hand-written plans in YAML (.yaml, .yml) or JSON (.json).

    objective: Release demo-app
    defaults: {timeout: 600, scope: module, scope_path: src}   # optional, for every task
    requires: {tools: [python]}                                   # optional
    tasks:
      - id: build
        title: Build the package
        commands: ["python -m build"]
        acceptance_tests: ["ls dist/*.whl"]

A task needs an ``id`` and a ``title`` or an ``objective``; every TaskPacket field is allowed.
Loading reports every problem of the file at once — syntax errors with their line, unknown
fields, wrong types, bad values — each with its location (``tasks[1].timeout``, and the line for
YAML), so a person fixes the file in one pass. Loading checks the file's shape only; the plan's
structure (cycles, unknown dependencies, scopes, vagueness) is the planning service's
``validate`` with strictness ``file``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .models import Budget, Plan, Requirements, TaskPacket

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

__all__ = ["PlanFileError", "PlanFileProblem", "load_plan_file", "parse_plan"]

SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
TOP_LEVEL = ("objective", "tasks", "defaults", "requires", "budget")
#: Task fields a ``defaults`` mapping may not set: they identify or connect one task.
NOT_DEFAULTABLE = ("id", "title", "objective", "depends_on")
NEEDS_A_NAME = "a task needs a title or an objective"


@dataclass(frozen=True)
class PlanFileProblem:
    """One problem: where (``tasks[1].timeout``, empty for the whole file), what, and the line."""

    location: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return where + self.message + (f" (line {self.line})" if self.line else "")


class PlanFileError(ValueError):
    """A plan file that cannot be loaded; ``problems`` lists every reason at once."""

    def __init__(self, path: str | os.PathLike[str], problems: list[PlanFileProblem]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{self.path}: {len(problems)} problem(s) in the plan file:\n{lines}")


# -- reading ----------------------------------------------------------------------------------------


class _Lines:
    """Line numbers of the values of a YAML document, by path (("tasks", 1, "timeout") -> 12)."""

    def __init__(self, node: Any = None) -> None:
        self.node = node

    def of(self, path: tuple[Any, ...]) -> int | None:
        node, line = self.node, None
        for key in path:
            if node is None:
                break
            line = node.start_mark.line + 1
            node = self._child(node, key)
        if node is not None:
            line = node.start_mark.line + 1
        return line

    @staticmethod
    def _child(node: Any, key: Any) -> Any:
        import yaml

        if isinstance(node, yaml.MappingNode):
            return next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            return node.value[key]
        return None


def _duplicate_keys(node: Any, path: str = "") -> list[PlanFileProblem]:
    """YAML silently keeps the last of repeated keys; a plan file must not say a thing twice."""
    import yaml

    found: list[PlanFileProblem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            key = getattr(k, "value", None)
            where = f"{path}.{key}" if path else str(key)
            if key in seen:
                found.append(PlanFileProblem(where, "this key is given twice", k.start_mark.line + 1))
            seen.add(key)
            found += _duplicate_keys(v, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += _duplicate_keys(item, f"{path}[{i}]")
    return found


def _read_yaml(text: str) -> tuple[Any, _Lines, list[PlanFileProblem]]:
    import yaml

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~15x faster
    try:
        node = yaml.compose(text, Loader=loader_cls)
        data = loader_cls(text).construct_document(node) if node is not None else None  # parse once
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        column = f", column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, _Lines(), [PlanFileProblem("", f"YAML syntax error: {problem}{column}", line)]
    return data, _Lines(node), _duplicate_keys(node)


def _read_json(text: str) -> tuple[Any, _Lines, list[PlanFileProblem]]:
    try:
        return json.loads(text), _Lines(), []
    except json.JSONDecodeError as exc:
        return None, _Lines(), [PlanFileProblem("", f"JSON syntax error: {exc.msg}, column {exc.colno}", exc.lineno)]


# -- checking -----------------------------------------------------------------------------------------


def _loc(prefix: str, loc: tuple[Any, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required field is missing"
    return error["msg"].removeprefix("Value error, ")


class _Checker:
    """Validates a parsed document piece by piece, so one bad task does not hide the others."""

    def __init__(self, lines: _Lines) -> None:
        self.lines = lines
        self.problems: list[PlanFileProblem] = []

    def add(self, path: tuple[Any, ...], message: str) -> None:
        self.problems.append(PlanFileProblem(_loc("", path), message, self.lines.of(path)))

    def pydantic(self, base: tuple[Any, ...], exc: ValidationError) -> None:
        for error in exc.errors(include_url=False):
            self.add(base + tuple(error.get("loc", ())), _message(error))

    def top(self, data: Any) -> dict[str, Any] | None:
        if data is None:
            self.add((), "the file is empty: it needs objective and tasks")
            return None
        if not isinstance(data, dict):
            self.add((), f"the file must hold a mapping with {', '.join(TOP_LEVEL[:2])}, not {type(data).__name__}")
            return None
        for key in data:
            if key not in TOP_LEVEL:
                self.add((key,), f"unknown field (allowed: {', '.join(TOP_LEVEL)})")
        objective = data.get("objective")
        if objective is None:
            self.add(("objective",), "required field is missing")
        elif not isinstance(objective, str) or not objective.strip():
            self.add(("objective",), "must be a non-empty string")
        return data

    def defaults(self, raw: Any) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.add(("defaults",), "must be a mapping of task fields")
            return {}
        good: dict[str, Any] = {}
        for key, value in raw.items():
            if key in NOT_DEFAULTABLE:
                self.add(("defaults", key), "cannot be a default: it belongs to one task")
            elif key not in TaskPacket.model_fields:
                self.add(("defaults", key), "unknown field")
            else:
                try:
                    TaskPacket.model_validate({"id": "defaults", "title": "defaults", key: value})
                except ValidationError as exc:
                    self.pydantic(("defaults",), exc)
                else:
                    good[key] = value
        return good

    def requires(self, raw: Any) -> Requirements:
        if raw is None:
            return Requirements()
        try:
            return Requirements.model_validate(raw)
        except ValidationError as exc:
            self.pydantic(("requires",), exc)
            return Requirements()

    def budget(self, raw: Any) -> Budget | None:
        if raw is None:
            return None
        try:
            return Budget.model_validate(raw)
        except ValidationError as exc:
            self.pydantic(("budget",), exc)
            return None

    def tasks(self, raw: Any, defaults: dict[str, Any]) -> list[TaskPacket]:
        if raw is None:
            self.add(("tasks",), "required field is missing")
            return []
        if not isinstance(raw, list) or not raw:
            self.add(("tasks",), "must be a non-empty list of tasks")
            return []
        tasks: list[TaskPacket] = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                self.add(("tasks", i), f"a task must be a mapping, not {type(item).__name__}")
                continue
            # Checked here as well as by the model, whose own check only runs once the fields parse.
            if "id" not in item:
                self.add(("tasks", i, "id"), "required field is missing")
            named = any(isinstance(item.get(k), str) and item[k].strip() for k in ("title", "objective"))
            if not named:
                self.add(("tasks", i), NEEDS_A_NAME)
            try:
                tasks.append(TaskPacket.model_validate({**defaults, **item}))
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    loc = tuple(error.get("loc", ()))
                    if (loc == ("id",) and error.get("type") == "missing") or (not named and loc == ()):
                        continue  # reported above, in file order
                    self.add(("tasks", i) + loc, _message(error))
        return tasks


def parse_plan(data: Any, *, lines: Any = None, source: str = "file") -> tuple[Plan | None, list[PlanFileProblem]]:
    """A plan from already parsed data, or None and every problem found."""
    checker = _Checker(lines if isinstance(lines, _Lines) else _Lines())
    doc = checker.top(data)
    if doc is None:
        return None, checker.problems
    defaults = checker.defaults(doc.get("defaults"))
    requires = checker.requires(doc.get("requires"))
    tasks = checker.tasks(doc.get("tasks"), defaults)
    budget = checker.budget(doc.get("budget"))
    if checker.problems:
        return None, checker.problems
    plan = Plan(
        objective=" ".join(str(doc["objective"]).split()),
        tasks=tasks,
        revision=1,
        source=source,
        defaults=defaults,
        requires=requires,
        budget=budget,
    )
    return plan, []


def load_plan_file(path: str | os.PathLike[str]) -> Plan:
    """The plan in ``path`` (source "file"); PlanFileError listing every problem otherwise."""
    file = Path(path)
    kind = SUFFIXES.get(file.suffix.lower())
    if kind is None:
        raise PlanFileError(
            path, [PlanFileProblem("", f"unsupported file type {file.suffix or '(none)'!r}: use .yaml, .yml or .json")]
        )
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanFileError(path, [PlanFileProblem("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanFileError(path, [PlanFileProblem("", f"cannot read the file: {exc}")]) from exc
    data, lines, problems = _read_yaml(text) if kind == "yaml" else _read_json(text)
    if data is None and problems:
        raise PlanFileError(path, problems)
    plan, more = parse_plan(data, lines=lines)
    problems += more
    if problems or plan is None:
        raise PlanFileError(path, sorted(problems, key=lambda p: p.line or 0))
    return plan


def plan_for_file(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan as a person would write it: fields left at their defaults are dropped, so the file
    reads like the examples and loads back (``load_plan_file``) into the same plan."""
    task_defaults = {name: f.get_default(call_default_factory=True) for name, f in TaskPacket.model_fields.items()}
    tasks = []
    for packet in plan.get("tasks") or []:
        kept = {k: v for k, v in packet.items() if k in ("id", "title") or v != task_defaults.get(k)}
        if kept.get("objective") == kept.get("title"):
            kept.pop("objective", None)
        tasks.append(kept)
    out: dict[str, Any] = {"objective": plan.get("objective", "")}
    requires = {k: v for k, v in (plan.get("requires") or {}).items() if v}
    if requires:
        out["requires"] = requires
    for key in ("defaults", "budget"):
        if plan.get(key):
            out[key] = plan[key]
    out["tasks"] = tasks
    return out


def dump_plan_yaml(plan: dict[str, Any]) -> str:
    """The plan as YAML for a file that ``harness run --plan`` takes back."""
    import yaml

    return yaml.safe_dump(plan_for_file(plan), sort_keys=False, allow_unicode=True, width=100)
