"""The scheduler's cost per task completion, at 200, 2,000 and 10,000 tasks, against full scans.

    python bench/bench_scheduler.py [--quick] [--reps 3] [--sample 300]

A whole run is simulated in process, with no services and no processes. Ours: the decision
layer (``_decide.execute_step`` over the folded ``RunState``) is asked what to do next, each
Launch is folded as its TASK_STARTED, and whenever it answers "wait" (an empty list) the oldest
running task's TASK_COMPLETED is folded, as its thread would log it, until it answers with the
finish (EXECUTION_COMPLETE, Summary, Finish(OK)). This is the driver's loop in
``Supervisor._execute``: two decisions per completion, one that launches and one that waits.

The baseline is the previous design, reimplemented here as plain functions of the same state
(``baseline_step``): per wake-up of the old loop, a pass over every task for decisions to act on,
``skip_dependents`` (every pending task's dependencies looked at for a skipped one), ``halted``
(every task looked at for one that holds new starts) and ``ready`` (every pending task in
execution order whose dependencies are all satisfied, found by scanning all tasks), then one
``halted`` per launch (the task thread's check before TASK_STARTED); the old loop woke once per
completion. It drives the same simulated run: the same plan, the same events folded by the same
fold, and its launches are checked to be the same, in the same order, as ours.

What is timed (``time.perf_counter``, same process, same inputs) is deciding plus folding, from
the approved plan to the finish, divided by the number of completions; medians of ``--reps``
repetitions. The full scans are quadratic in the plan, so above ``--whole`` tasks (2,000;
200 with ``--quick``) the baseline is timed on ``--sample`` completions in 10 windows spread evenly
over the same run (each window starts from the state folded from ours' events up to that
point): the whole run would take hours. At 2,000 tasks (not with ``--quick``) both ways are
measured and their ratio printed, as a check of the sampling.

Shapes: a chain (each task depends on the one before), a wide plan (independent tasks), and
layers of 50 where each task depends on two tasks of the layer before. Growth is the cost per
completion at this size over the cost at 200 tasks: flat means the cost does not grow with the
plan. Also printed: the DAG set-up per task (folding the plan's PLAN_CREATED, the scheduler's
indexes included). Nothing is asserted about times; only ratios from one invocation mean much.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from harness.config import Policy
from harness.events import LOG_FORMAT
from harness.events import EventType as E
from harness.recovery import Recovery
from harness.state import RunState, TaskStatus, fold
from harness.supervisor import _decide as d
from harness.vocab import ExitCode, Question

RUN = "20260101-000000-bench0"
NOW = 100.0  # the events' unix time and the decision layer's clock: no backoff is ever pending
WINDOWS = 10

Plan = list[dict[str, Any]]
Step = tuple[E, str, int]  # (TASK_STARTED | TASK_COMPLETED, task id, attempt)


# -- plans ------------------------------------------------------------------------------------------
def chain(n: int) -> Plan:
    return [{"id": f"t{i}", "depends_on": [f"t{i - 1}"] if i else []} for i in range(n)]


def wide(n: int) -> Plan:
    return [{"id": f"t{i}", "depends_on": []} for i in range(n)]


def layers(n: int, width: int = 50) -> Plan:
    tasks = []
    for i in range(n):
        layer, pos = divmod(i, width)
        prev = (layer - 1) * width
        deps = [] if layer == 0 else [f"t{prev + pos}", f"t{prev + (pos + 1) % width}"]
        tasks.append({"id": f"t{i}", "depends_on": deps})
    return tasks


SHAPES: dict[str, Callable[[int], Plan]] = {"chain": chain, "wide": wide, "layers": layers}


# -- events, in the shapes the supervisor logs them (see tests/test_decide.py's Log) ------------------
def _event(seq: int, etype: E, data: dict[str, Any], task_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"seq": seq, "unix": NOW, "type": etype, "run_id": RUN, "data": data}
    if task_id is not None:
        event["task_id"] = task_id
    return event


def plan_created(tasks: Plan) -> dict[str, Any]:
    packets = [{**t, "title": t["id"], "commands": ["true"], "acceptance_tests": ["true"]} for t in tasks]
    return _event(2, E.PLAN_CREATED, {"plan": {"objective": "bench", "tasks": packets}, "revision": 1, "report": None})


def approved_log(tasks: Plan) -> list[dict[str, Any]]:
    """RUN_STARTED, PLAN_CREATED, GATE_APPROVED: where execution starts."""
    started = {"log_format": LOG_FORMAT, "objective": "bench", "workspace": "/w", "options": {}, "supervisor_pid": 1}
    gate = {"gate": Question.plan, "revision": 1, "source": "flag", "approver": "bench"}
    return [_event(1, E.RUN_STARTED, started), plan_created(tasks), _event(3, E.GATE_APPROVED, gate)]


def task_event(seq: int, step: Step) -> dict[str, Any]:
    etype, tid, attempt = step
    wid = f"w-{tid}-{attempt}"
    data: dict[str, Any] = {"attempt": attempt, "worker_id": wid}
    if etype is E.TASK_COMPLETED:
        data["duration_ms"] = 1.0
    event = _event(seq, etype, data, tid)
    event["worker_id"] = wid
    return event


class Sim:
    """A run being simulated: the folded state, the tasks running (in start order), the log."""

    def __init__(self, state: RunState, running: list[tuple[str, int]], seq: int) -> None:
        self.state = state
        self.running = running
        self.seq = seq
        self.steps: list[Step] = []
        self.completions = 0

    @classmethod
    def start(cls, tasks: Plan) -> Sim:
        log = approved_log(tasks)
        return cls(fold(log), [], len(log))

    @classmethod
    def at(cls, tasks: Plan, steps: list[Step]) -> Sim:
        """The state after ``steps`` of a run of ``tasks``, its running tasks as the driver has them."""
        log = approved_log(tasks)
        log += [task_event(len(log) + i + 1, s) for i, s in enumerate(steps)]
        running: dict[str, int] = {}
        for etype, tid, attempt in steps:
            if etype is E.TASK_STARTED:
                running[tid] = attempt
            else:
                running.pop(tid)
        return cls(fold(log), list(running.items()), len(log))

    def launch(self, tid: str, attempt: int) -> None:
        self._fold((E.TASK_STARTED, tid, attempt))
        self.running.append((tid, attempt))

    def complete_oldest(self) -> None:
        tid, attempt = self.running.pop(0)
        self._fold((E.TASK_COMPLETED, tid, attempt))
        self.completions += 1

    def _fold(self, step: Step) -> None:
        self.seq += 1
        self.state.apply(task_event(self.seq, step))
        self.steps.append(step)


# -- ours: the decision layer over the fold's indexes -------------------------------------------------
def run_ours(tasks: Plan, parallel: int) -> tuple[float, Sim]:
    """Seconds from the approved plan to the finish, and the simulated run."""
    sim = Sim.start(tasks)
    rules = d.Rules(RUN, Policy(), Recovery())
    gc.collect()
    t0 = time.perf_counter()
    while True:
        view = d.View(frozenset(tid for tid, _ in sim.running), NOW, parallel)
        actions = d.execute_step(sim.state, view, rules)
        if actions and all(isinstance(a, d.Launch) for a in actions):
            for a in actions:
                assert isinstance(a, d.Launch)
                sim.launch(a.task_id, a.attempt)
        elif not actions:
            sim.complete_oldest()  # "wait for a running task": its thread logs TASK_COMPLETED
        else:
            break
    elapsed = time.perf_counter() - t0
    finished = isinstance(actions[0], d.Record) and actions[0].type is E.EXECUTION_COMPLETE
    if not finished or actions[-1] != d.Finish(ExitCode.OK) or sim.completions != len(tasks):
        raise RuntimeError(f"the simulated run did not finish as expected: {actions}")
    return elapsed, sim


# -- the baseline: the previous design's per-completion scans, as plain functions of the state --------
def _satisfied(state: RunState, dep: str) -> bool:
    t = state.tasks.get(dep)
    return t is not None and (
        t.status is TaskStatus.completed or (t.status is TaskStatus.skipped and t.keep_dependents)
    )


def scan_ready(state: RunState) -> list[str]:
    """Every pending task, in execution order, whose dependencies are all satisfied."""
    out = []
    for tid in state.order:
        t = state.tasks.get(tid)
        if t is None or t.status is not TaskStatus.pending:
            continue
        if all(_satisfied(state, dep) for dep in t.depends_on):
            out.append(tid)
    return out


def scan_skip_dependents(state: RunState) -> list[str]:
    """Pending tasks with a dependency skipped without its dependents (to be skipped too)."""
    doomed = []
    for tid in state.order:
        t = state.tasks[tid]
        if t.status is not TaskStatus.pending:
            continue
        for dep in t.depends_on:
            x = state.tasks.get(dep)
            if x is not None and x.status is TaskStatus.skipped and not x.keep_dependents:
                doomed.append(tid)
                break
    return doomed


def scan_halted(state: RunState) -> bool:
    """Stop on error: a task that failed for good, or awaits an escalation decision."""
    return any(
        t.status is TaskStatus.failed or (t.status is TaskStatus.waiting and t.waiting_for is Question.escalation)
        for t in state.tasks.values()
    )


def scan_decisions(state: RunState) -> list[str]:
    """Tasks with a decision to act on."""
    return [
        tid
        for tid in state.order
        if state.tasks[tid].decision is not None
        and state.tasks[tid].status not in (TaskStatus.completed, TaskStatus.running, TaskStatus.skipped)
    ]


def baseline_step(state: RunState, running: list[str], parallel: int) -> list[str]:
    """One wake-up of the old loop: the tasks to launch now."""
    if scan_decisions(state) or scan_skip_dependents(state):
        raise RuntimeError("the bench plans have no decisions and no skips")
    if scan_halted(state):
        return []
    launch: list[str] = []
    for tid in scan_ready(state):
        if len(running) + len(launch) >= parallel:
            break
        if tid not in running and state.tasks[tid].retry_at <= NOW:
            launch.append(tid)
    return launch


def drive_baseline(sim: Sim, parallel: int, limit: int | None = None) -> float:
    """Seconds for the old loop to drive ``sim`` to the end (or through ``limit`` completions)."""
    gc.collect()
    t0 = time.perf_counter()
    while limit is None or sim.completions < limit:
        for tid in baseline_step(sim.state, [t for t, _ in sim.running], parallel):
            if scan_halted(sim.state):  # the task thread's check before its TASK_STARTED
                break
            sim.launch(tid, sim.state.tasks[tid].attempts + 1)
        if not sim.running:
            scan_ready(sim.state)  # the old loop's last look for a retry backing off
            all(t.status in (TaskStatus.completed, TaskStatus.skipped) for t in sim.state.task_list())  # its end
            break
        sim.complete_oldest()
    return time.perf_counter() - t0


def baseline_whole(tasks: Plan, parallel: int, expected: list[Step]) -> float:
    """Microseconds per completion over the whole run."""
    sim = Sim.start(tasks)
    elapsed = drive_baseline(sim, parallel)
    if sim.steps != expected or sim.completions != len(tasks):
        raise RuntimeError("the baseline did not drive the same run as ours")
    return elapsed / sim.completions * 1e6


def baseline_sampled(tasks: Plan, parallel: int, expected: list[Step], sample: int) -> float:
    """Microseconds per completion over ``sample`` completions in windows spread over the run."""
    per_window = max(1, sample // WINDOWS)
    done_at = [i + 1 for i, s in enumerate(expected) if s[0] is E.TASK_COMPLETED]
    elapsed, completions = 0.0, 0
    for w in range(WINDOWS):
        first = (len(tasks) - per_window) * w // max(1, WINDOWS - 1)  # completions before the window
        cut = done_at[first - 1] if first else 0  # just after a completion: where the old loop woke
        sim = Sim.at(tasks, expected[:cut])
        elapsed += drive_baseline(sim, parallel, limit=per_window)
        if sim.steps != expected[cut : cut + len(sim.steps)]:
            raise RuntimeError("the baseline did not drive the same run as ours")
        completions += sim.completions
    return elapsed / completions * 1e6


# -- measurement ------------------------------------------------------------------------------------
def setup_cost(tasks: Plan, reps: int) -> float:
    """Microseconds per task to fold PLAN_CREATED (the DAG's indexes included)."""
    event = plan_created(tasks)
    times = []
    for _ in range(max(reps, 3)):
        gc.collect()
        t0 = time.perf_counter()
        RunState().apply(event)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / len(tasks) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 and 2,000 tasks, one repetition (~20 s)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions, median taken (default 3; 1 with --quick)")
    parser.add_argument("--sample", type=int, default=300, help="completions timed for a sampled baseline")
    parser.add_argument("--whole", type=int, default=None, help="largest plan with the baseline timed whole")
    args = parser.parse_args(argv)
    sizes = [200, 2000] if args.quick else [200, 2000, 10000]
    reps = args.reps or (1 if args.quick else 3)
    whole = args.whole if args.whole is not None else (200 if args.quick else 2000)
    print(
        f"bench_scheduler: python {sys.version.split()[0]} on {os.cpu_count()} cores; load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + f"; medians of {reps}; µs per completion (decide + fold)"
    )
    head = (
        f"{'shape':<7} {'tasks':>6} {'par':>3} {'ours µs':>8} {'baseline µs':>11} {'ours growth':>11}"
        f" {'base growth':>11} {'base/ours':>9}  baseline timed over"
    )
    print(head)
    print("-" * len(head))
    checks: list[str] = []
    for shape, make in SHAPES.items():
        for parallel in (1, 4):
            base: tuple[float, float] | None = None
            for n in sizes:
                tasks = make(n)
                ours_runs = [run_ours(tasks, parallel) for _ in range(reps)]
                ours = statistics.median(t for t, _ in ours_runs) / n * 1e6
                expected = ours_runs[0][1].steps
                if n <= whole:
                    scans = statistics.median(baseline_whole(tasks, parallel, expected) for _ in range(reps))
                    over = "the whole run"
                else:
                    scans = statistics.median(
                        baseline_sampled(tasks, parallel, expected, args.sample) for _ in range(reps)
                    )
                    over = f"{args.sample} completions in {WINDOWS} windows"
                if n == whole and n > 200 and not args.quick:
                    sampled = statistics.median(
                        baseline_sampled(tasks, parallel, expected, args.sample) for _ in range(reps)
                    )
                    checks.append(f"{shape} {n:,} par {parallel}: sampled / whole run = {sampled / scans:.2f}")
                if base is None:
                    base = (ours, scans)
                print(
                    f"{shape:<7} {n:>6} {parallel:>3} {ours:>8.1f} {scans:>11.1f} {ours / base[0]:>10.2f}x"
                    f" {scans / base[1]:>10.2f}x {scans / ours:>8.1f}x  {over}",
                    flush=True,
                )
    if checks:
        print("\nsampling check (baseline on samples against the same baseline over the whole run):")
        for line in checks:
            print(f"  {line}")
    print("\nDAG set-up: folding PLAN_CREATED (the scheduler's indexes included), µs per task")
    print(f"{'shape':<7}" + "".join(f"{n:>10,}" for n in sizes))
    for shape, make in SHAPES.items():
        print(f"{shape:<7}" + "".join(f"{setup_cost(make(n), reps):>10.2f}" for n in sizes))
    print("load average at end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
