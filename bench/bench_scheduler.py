"""The scheduler's cost per task completion, at 200, 2,000 and 10,000 tasks, against full scans.

    python bench/bench_scheduler.py [--quick]

A whole run is simulated in process, with no services and no processes: the decision layer
(``_decide.execute_step`` over the folded state) says what to launch, and each launch is folded
as its TASK_STARTED and then its TASK_COMPLETED, as a task thread would log them, until the run
finishes. What is timed is deciding plus folding, per completion.

The baseline, in the same invocation on the same plans, is the previous design: per completion,
the ready tasks found by scanning every task and its dependencies, a pass over every task for
dependents of skipped tasks, and a scan for tasks that hold new starts.

Shapes: a chain (each task depends on the one before), a wide plan (independent tasks), and
layers of 50 where each task depends on two tasks of the layer before. The growth column is the
cost per completion at this size over the cost at 200: flat means the cost does not grow with the
plan. Medians of the repetitions; only ratios from one invocation mean anything.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from harness.config import Policy
from harness.events import EventType as E
from harness.recovery import Recovery
from harness.state import RunState, TaskStatus, fold
from harness.supervisor import _decide as d

RUN = "bench"


def chain(n: int) -> list[dict[str, Any]]:
    return [{"id": f"t{i}", "depends_on": [f"t{i - 1}"] if i else []} for i in range(n)]


def wide(n: int) -> list[dict[str, Any]]:
    return [{"id": f"t{i}", "depends_on": []} for i in range(n)]


def layers(n: int, width: int = 50) -> list[dict[str, Any]]:
    tasks = []
    for i in range(n):
        layer, pos = divmod(i, width)
        deps = [] if layer == 0 else [f"t{(layer - 1) * width + pos}", f"t{(layer - 1) * width + (pos + 1) % width}"]
        tasks.append({"id": f"t{i}", "depends_on": deps})
    return tasks


SHAPES: dict[str, Callable[[int], list[dict[str, Any]]]] = {"chain": chain, "wide": wide, "layers": layers}


def created(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    packets = [{**t, "title": t["id"], "commands": ["true"], "acceptance_tests": ["true"]} for t in tasks]
    plan = {"objective": "bench", "tasks": packets}
    return [
        {"seq": 1, "unix": 0.0, "type": E.PLAN_CREATED, "data": {"plan": plan, "revision": 1, "report": None}},
        {"seq": 2, "unix": 0.0, "type": E.GATE_APPROVED, "data": {"gate": "plan", "revision": 1, "source": "flag"}},
    ]


def _event(seq: int, etype: E, tid: str) -> dict[str, Any]:
    return {"seq": seq, "unix": 1.0, "type": etype, "task_id": tid, "data": {"attempt": 1, "worker_id": "w"}}


def run_ours(tasks: list[dict[str, Any]], parallel: int) -> float:
    """Seconds to drive the whole plan through execute_step and the fold."""
    state = fold(created(tasks))
    rules = d.Rules(RUN, Policy(), Recovery())
    seq = 2
    running: list[str] = []
    t0 = time.perf_counter()
    while True:
        actions = d.execute_step(state, d.View(frozenset(running), 1.0, parallel), rules)
        launches = [a for a in actions if isinstance(a, d.Launch)]
        if launches:
            for a in launches:
                seq += 1
                state.apply(_event(seq, E.TASK_STARTED, a.task_id))
                running.append(a.task_id)
            continue
        if not actions and running:
            tid = running.pop(0)
            seq += 1
            state.apply(_event(seq, E.TASK_COMPLETED, tid))
            continue
        break
    elapsed = time.perf_counter() - t0
    assert all(t.status is TaskStatus.completed for t in state.tasks.values())
    return elapsed


def _scan_ready(state: RunState) -> list[str]:
    out = []
    for tid in state.order:
        t = state.tasks[tid]
        if t.status is not TaskStatus.pending:
            continue
        if all(state.tasks[dep].status is TaskStatus.completed for dep in t.depends_on):
            out.append(tid)
    return out


def _scan_skips(state: RunState) -> None:
    for tid in state.order:
        t = state.tasks[tid]
        if t.status is TaskStatus.pending:
            for dep in t.depends_on:
                dd = state.tasks[dep]
                if dd.status is TaskStatus.skipped and not dd.keep_dependents:
                    break


def _scan_halted(state: RunState) -> bool:
    return any(t.status is TaskStatus.failed for t in state.tasks.values())


def run_baseline(tasks: list[dict[str, Any]], parallel: int, limit: int | None = None) -> float:
    """The previous design: full scans per step, the same fold of the same events. With ``limit``,
    only the first ``limit`` completions (the scans cost the same all along: every task is looked at)."""
    state = fold(created(tasks))
    seq = 2
    done = 0
    running: list[str] = []
    t0 = time.perf_counter()
    while True:
        _scan_skips(state)
        launched = False
        if not _scan_halted(state):
            for tid in _scan_ready(state):
                if len(running) >= parallel:
                    break
                if tid in running:
                    continue
                seq += 1
                state.apply(_event(seq, E.TASK_STARTED, tid))
                running.append(tid)
                launched = True
        if launched:
            continue
        if running and (limit is None or done < limit):
            tid = running.pop(0)
            seq += 1
            state.apply(_event(seq, E.TASK_COMPLETED, tid))
            done += 1
            continue
        break
    return (time.perf_counter() - t0) * len(tasks) / max(done, 1)


def measure(
    fn: Callable[[list[dict[str, Any]], int], float], tasks: list[dict[str, Any]], parallel: int, reps: int
) -> float:
    """Median microseconds per completion."""
    times = []
    for _ in range(reps):
        gc.collect()
        times.append(fn(tasks, parallel))
    return statistics.median(times) / len(tasks) * 1e6


def setup_cost(tasks: list[dict[str, Any]], reps: int) -> float:
    """Microseconds per task to fold PLAN_CREATED (the DAG's indexes included)."""
    events = created(tasks)[:1]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fold(events)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / len(tasks) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 and 2,000 tasks, one repetition")
    args = parser.parse_args(argv)
    sizes = [200, 2000] if args.quick else [200, 2000, 10000]
    reps = 1 if args.quick else 3
    head = f"{'shape':<7} {'tasks':>6} {'par':>3} {'ours µs':>8} {'scans µs':>9} {'scans/ours':>10} {'ours growth':>11} {'scans growth':>12}"
    print(head)
    print("-" * len(head))
    for shape, make in SHAPES.items():
        for parallel in (1, 4):
            base: tuple[float, float] | None = None
            for n in sizes:
                tasks = make(n)
                ours = measure(run_ours, tasks, parallel, reps)
                # the full scans are quadratic: at 10,000 tasks the first 300 completions stand for all
                limit = 300 if n >= 10000 else None
                scans = measure(partial(run_baseline, limit=limit), tasks, parallel, reps)
                if base is None:
                    base = (ours, scans)
                print(
                    f"{shape:<7} {n:>6} {parallel:>3} {ours:>8.1f} {scans:>9.1f} {scans / ours:>9.1f}x"
                    f" {ours / base[0]:>10.2f}x {scans / base[1]:>11.2f}x"
                )
    print()
    for n in sizes:
        print(f"DAG set-up (fold PLAN_CREATED), {n} tasks in layers: {setup_cost(layers(n), reps):.2f} µs per task")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
