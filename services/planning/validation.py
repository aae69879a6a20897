"""Plan validation: every problem of a set of task packets, found in one pass.

Hard rules are errors whatever wrote the plan: duplicate ids, unknown or self dependencies,
cycles (each named in order, "a -> b -> c -> a"), tasks without acceptance tests (except a manual
step with a ``confirmation``: a person's word is its verdict), empty commands, scope paths that
leave the workspace (absolute paths, ``..``, symlinks; real paths are compared when the workspace
is known) and an empty plan. Soft rules — plan size, vague objectives, acceptance tests that cannot
fail (``vacuous_acceptance_test``, one per test, see :mod:`.vacuous`) and commands or tests that
leave their task's directory (``command_leaves_scope``) — are errors for generated plans and
warnings for hand-written ones, unless the config says otherwise. A plan is valid when it has no
errors; risky tasks are listed in ``risky`` and as ``risky_task`` warnings, never rejected, here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from harness.models import Plan, Problem, Risk, Severity, TaskPacket, ValidationReport

from .risk import risk_reasons, risky_ids
from .schemas import Level, Strictness, ValidationConfig
from .text import vagueness
from .vacuous import scope_escape, vacuous_reason


def _soft_severity(override: Level | None, strictness: Strictness) -> Severity | None:
    if override is None:
        return Severity.error if strictness == Strictness.generated else Severity.warning
    return None if override == Level.off else Severity(override.value)


class _Collector:
    """Accumulates problems with their JSON paths; ``root`` is ``tasks`` or ``packets``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.problems: list[Problem] = []

    def add(
        self, severity: Severity, code: str, message: str, task_id: str | None = None, path: str | None = None
    ) -> None:
        self.problems.append(Problem(severity=severity, code=code, message=message, task_id=task_id, path=path))

    def error(self, code: str, message: str, task_id: str | None = None, path: str | None = None) -> None:
        self.add(Severity.error, code, message, task_id, path)

    def at(self, index: int, field: str | None = None) -> str:
        return f"{self.root}[{index}]" + (f".{field}" if field else "")


# -- the dependency graph -------------------------------------------------------------------------


def _graph(packets: Sequence[TaskPacket]) -> dict[str, list[str]]:
    """id -> known dependencies, in plan order (first of duplicated ids; unknown and self edges dropped)."""
    raw: dict[str, list[str]] = {}
    for p in packets:
        raw.setdefault(p.id, p.depends_on)
    return {n: [d for d in dict.fromkeys(deps) if d in raw and d != n] for n, deps in raw.items()}


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's components (iterative, so deep plans cannot exhaust the stack), in plan order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            deps = graph[node]
            if child < len(deps):
                work.append((node, child + 1))
                nxt = deps[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    order = {n: i for i, n in enumerate(graph)}
    return sorted((sorted(c, key=order.__getitem__) for c in components), key=lambda c: order[c[0]])


def _cycle_through(start: str, members: set[str], graph: dict[str, list[str]]) -> list[str]:
    """One cycle from ``start`` back to itself inside a strongly connected component (BFS: shortest)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for dep in graph[node]:
                if dep not in members:
                    continue
                if dep == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if dep not in parents:
                    parents[dep] = node
                    nxt.append(dep)
        frontier = nxt
    return [start, start]  # unreachable for a real component; kept total


def find_cycles(packets: Sequence[TaskPacket]) -> list[list[str]]:
    """One cycle per knot of mutually dependent tasks, each as ids in order ending where it began.

    ``a`` depends on ``b`` is the edge a -> b, so [a, b, c, a] means a waits for b, b for c, c for a.
    Self-dependencies are reported separately and are not cycles here.
    """
    graph = _graph(packets)
    cycles: list[list[str]] = []
    for component in _strongly_connected(graph):
        if len(component) > 1:
            cycles.append(_cycle_through(component[0], set(component), graph))
    return cycles


def topological_order(packets: Sequence[TaskPacket]) -> list[str] | None:
    """Ids in an order where every task follows its dependencies (stable), or None on a cycle."""
    graph = _graph(packets)
    done: list[str] = []
    placed: set[str] = set()
    remaining = list(graph)
    while remaining:
        ready = [n for n in remaining if all(d in placed for d in graph[n])]
        if not ready:
            return None
        for n in ready:
            placed.add(n)
            done.append(n)
        remaining = [n for n in remaining if n not in placed]
    return done


# -- scopes ---------------------------------------------------------------------------------------


def _inside(child: str, parent: str) -> bool:
    return child == parent or os.path.commonpath([child, parent]) == parent


def scope_problem(scope_path: str, workspace: str | None) -> tuple[str, str] | None:
    """(code, message) when ``scope_path`` is not safely inside ``workspace``, else None.

    Lexical checks first (absolute path, ``..``), then, with a workspace, the real path: a
    symlink inside the workspace that points outside is an escape too.
    """
    path = scope_path or "."
    if workspace is None:
        if os.path.isabs(path):
            return ("absolute_scope_path", f"absolute scope path {path!r} cannot be checked without a workspace")
        if os.path.normpath(path).split(os.sep)[0] == "..":
            return ("scope_outside_workspace", f"scope path {path!r} climbs out of the workspace with '..'")
        return None
    base = os.path.abspath(workspace)
    target = os.path.normpath(os.path.join(base, path))
    if not _inside(target, base):
        how = "is an absolute path outside" if os.path.isabs(path) else "climbs with '..' out of"
        return ("scope_outside_workspace", f"scope path {path!r} {how} the workspace {base}")
    real_base, real_target = os.path.realpath(base), os.path.realpath(target)
    if not _inside(real_target, real_base):
        return (
            "scope_outside_workspace",
            f"scope path {path!r} resolves through a symlink to {real_target}, outside the workspace",
        )
    return None


# -- the checks -----------------------------------------------------------------------------------


def _check_tasks(packets: Sequence[TaskPacket], out: _Collector, vague: Severity | None, workspace: str | None) -> None:
    ids = {p.id for p in packets}
    first_index: dict[str, int] = {}
    scopes: dict[str, tuple[str, str] | None] = {}
    for i, p in enumerate(packets):
        if p.id in first_index:
            out.error(
                "duplicate_id",
                f"task id {p.id!r} is used again (first at {out.at(first_index[p.id])})",
                p.id,
                out.at(i, "id"),
            )
        else:
            first_index[p.id] = i
        for j, dep in enumerate(p.depends_on):
            where = out.at(i, f"depends_on[{j}]")
            if dep == p.id:
                out.error("self_dependency", f"task {p.id!r} depends on itself", p.id, where)
            elif dep not in ids:
                out.error(
                    "unknown_dependency", f"task {p.id!r} depends on {dep!r}, which is not in the plan", p.id, where
                )
            elif dep in p.depends_on[:j]:
                out.add(Severity.warning, "duplicate_dependency", f"task {p.id!r} lists {dep!r} twice", p.id, where)
        confirmed = p.is_manual and bool((p.confirmation or "").strip())
        if not [t for t in p.acceptance_tests if t.strip()] and not confirmed:
            out.error(
                "missing_acceptance_tests",
                f"task {p.id!r} has no acceptance tests"
                + (" and no confirmation" if p.is_manual else "")
                + ": nothing would decide whether it worked",
                p.id,
                out.at(i, "acceptance_tests"),
            )
        for field in ("commands", "acceptance_tests"):
            for j, cmd in enumerate(getattr(p, field)):
                if not cmd.strip():
                    out.error(
                        "empty_command",
                        f"task {p.id!r} has an empty entry in {field}",
                        p.id,
                        out.at(i, f"{field}[{j}]"),
                    )
        if vague is not None and (why := vagueness(p.objective)):
            out.add(
                vague,
                "vague_objective",
                f"task {p.id!r} objective {p.objective!r} is vague: {why}",
                p.id,
                out.at(i, "objective"),
            )
        if p.scope_path not in scopes:  # many tasks share a scope: its checks touch the disk
            scopes[p.scope_path] = scope_problem(p.scope_path, workspace)
        found = scopes[p.scope_path]
        if found:
            code, message = found
            severity = Severity.warning if code == "absolute_scope_path" else Severity.error
            out.add(severity, code, f"task {p.id!r}: {message}", p.id, out.at(i, "scope_path"))


def _check_commands(
    packets: Sequence[TaskPacket], out: _Collector, vacuous: Severity | None, leaves: Severity | None
) -> None:
    """Acceptance tests that cannot fail, and commands or tests that leave their task's directory."""
    for i, p in enumerate(packets):
        if vacuous is not None:
            for j, test in enumerate(p.acceptance_tests):
                if why := vacuous_reason(test):
                    out.add(
                        vacuous,
                        "vacuous_acceptance_test",
                        f"task {p.id!r}: acceptance test {test!r} cannot fail, so it proves nothing: {why}",
                        p.id,
                        out.at(i, f"acceptance_tests[{j}]"),
                    )
        if leaves is not None:
            for field in ("commands", "acceptance_tests"):
                for j, cmd in enumerate(getattr(p, field)):
                    if why := scope_escape(cmd):
                        out.add(
                            leaves,
                            "command_leaves_scope",
                            f"task {p.id!r}: {field[:-1].replace('_', ' ')} {cmd!r} leaves the task's directory: {why}",
                            p.id,
                            out.at(i, f"{field}[{j}]"),
                        )


def _check_risks(packets: Sequence[TaskPacket], out: _Collector) -> None:
    """Risky tasks are warnings, not errors: the trust gate asks about them before they run."""
    for i, p in enumerate(packets):
        reasons = risk_reasons(p) or list(p.risk_reasons) or (["marked risk high"] if p.risk == Risk.high else [])
        if reasons:
            out.add(Severity.warning, "risky_task", f"task {p.id!r} is risky: {'; '.join(reasons)}", p.id, out.at(i))


def _check_cycles(packets: Sequence[TaskPacket], out: _Collector) -> None:
    for cycle in find_cycles(packets):
        out.error("cycle", "dependency cycle: " + " -> ".join(cycle), cycle[0], None)


def validate_packets(
    packets: Sequence[TaskPacket],
    *,
    workspace: str | None = None,
    strictness: Strictness = Strictness.file,
    config: ValidationConfig | None = None,
    objective: str | None = None,
    root: str = "packets",
) -> ValidationReport:
    """All problems of ``packets`` at once. Pure apart from reading the workspace's paths."""
    cfg = config or ValidationConfig()
    out = _Collector(root)
    size = _soft_severity(cfg.size, strictness)
    vague = _soft_severity(cfg.vague, strictness)
    vacuous = _soft_severity(cfg.vacuous, strictness)
    leaves = _soft_severity(cfg.scope_escape, strictness)
    if workspace is not None and not os.path.isdir(workspace):
        out.error("workspace_not_found", f"workspace {workspace!r} is not a directory", None, "workspace")
        workspace_for_scopes = None
    else:
        workspace_for_scopes = workspace
    if not packets:
        out.error("empty_plan", "the plan has no tasks", None, root)
    elif size is not None and not cfg.min_tasks <= len(packets) <= cfg.max_tasks:
        out.add(
            size,
            "plan_size",
            f"the plan has {len(packets)} tasks; expected {cfg.min_tasks} to {cfg.max_tasks}",
            None,
            root,
        )
    if objective is not None and vague is not None and (why := vagueness(objective)):
        out.add(vague, "vague_objective", f"the objective {objective!r} is vague: {why}", None, "objective")
    _check_tasks(packets, out, vague, workspace_for_scopes)
    _check_commands(packets, out, vacuous, leaves)
    _check_cycles(packets, out)
    _check_risks(packets, out)
    valid = not any(p.severity == Severity.error for p in out.problems)
    return ValidationReport(valid=valid, problems=out.problems, risky=risky_ids(packets))


def validate_plan(
    plan: Plan,
    *,
    workspace: str | None = None,
    strictness: Strictness = Strictness.file,
    config: ValidationConfig | None = None,
) -> ValidationReport:
    """:func:`validate_packets` for a whole plan: paths say ``tasks[i]`` and the objective is checked."""
    return validate_packets(
        plan.tasks, workspace=workspace, strictness=strictness, config=config, objective=plan.objective, root="tasks"
    )
