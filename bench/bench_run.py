"""`harness run` end to end: no-op tasks against bare loops doing the same work, in one run.

    python bench/bench_run.py [--tasks 200] [--rounds 3] [--single 10] [--startup 20]
                              [--format yaml|json] [--dir DIR] [--profile] [--only SECTION ...]

Every task of the plan is ``commands: ["true"]`` + ``acceptance_tests: ["true"]``: two real
processes (``/bin/sh -c true``) per task, because planning refuses a task without acceptance tests
and a task without commands is a manual step. So the like-for-like floor is the bare loop that
spawns two processes per task; the one-process loop is shown too, as the floor of the cheapest
task a plan could describe.

Sections (``--only``):
  startup     ``python -c pass`` (baseline), ``harness --help`` (median of ``--startup``), and a
              1-task ``harness run`` (median of ``--single``) with its phases read from the log.
  throughput  rounds interleaved: bare loops (1 process per task; 2 per task; 2 per task two at a
              time), each spawning ``/bin/sh -c true`` and fdatasyncing one ~400 B line per task,
              then ``harness run --plan PLAN --approve`` with ``--parallel 1`` and ``--parallel 2``
              as subprocesses. Tasks/s end to end (wall clock of the command) and of the execution
              phase (first TASK_STARTED to EXECUTION_COMPLETE, unix times from the log), slowdown
              against each bare loop, log bytes per task, phases of the run, per-task gaps between
              the events of one task, log bytes by event type.
  dag         DAG set-up per task: loading the plan file (YAML and JSON), the planning service's
              ``validate`` round trip, folding PLAN_CREATED, and the scheduler's step per completion,
              against ``graphlib.TopologicalSorter`` over the same graph.
  --profile   the sequential run in-process: perf_counter timers around the supervisor's costs,
              then cProfile of every supervisor thread and of the worker manager (a child that
              this script wraps in per-thread profilers).

Workspaces go under ``--dir`` (default: a fresh folder in the repository's parent directory, on
the repository's disk). On tmpfs an fsync costs nothing: a warning says so. The scratch folder's
mkdir, file-creation and fdatasync costs are printed first: the worker manager creates a folder
and three files per task, and on a shared VM disk those costs swing with other I/O (here from
~20 µs to ~900 µs per created inode within minutes, on the same device), which can add up to
~3 ms per task. Read every figure together with that line and the load averages.
Medians throughout; nothing here asserts a timing, it reports figures against their targets.
"""

from __future__ import annotations

import argparse
import cProfile
import graphlib
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parents[1]
SH = "/bin/sh"

# Targets (the design's performance budget and the brief).
E2E_TARGET = 200.0  # tasks/s, wall clock of the whole `harness run`
BARE_FACTOR_TARGET = 3.0  # within 3x of the bare loop
EXEC_SEQ_HOPE = 800.0  # tasks/s, execution phase, --parallel 1
EXEC_PAR2_HOPE = 1200.0  # tasks/s, execution phase, --parallel 2
LOG_PER_TASK_TARGET = 1000.0  # bytes
DAG_SETUP_TARGET_MS = 0.05  # per task
SINGLE_RUN_TARGET_MS = 200.0
HELP_TARGET_MS = 60.0

#: One line per task in the bare loops: about the size of a TASK_COMPLETED event.
BARE_LINE = (
    json.dumps({"seq": 1, "type": "TASK_COMPLETED", "task_id": "t0", "data": {"pad": "x" * 300}}) + "\n"
).encode()

TASK_CHAIN = (
    "WORKER_SPAWNED",  # trusted by a root at once: the trust is part of the spawn (log format 3)
    "TASK_STARTED",
    "WORKER_STARTED",
    "WORKER_FINISHED",
    "TASK_COMPLETED",
)


# -- helpers ------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def harness_argv() -> list[str]:
    """The console script next to this interpreter (what a user types), else ``python -m``."""
    script = Path(sys.executable).parent / "harness"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "harness.cli"]


def _fstype(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (longest mount-point prefix)."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) >= len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def pick_root(arg: str | None) -> Path:
    """A scratch folder on the repository's disk, so that fsyncs cost what they cost there."""
    base = Path(arg) if arg else REPO.parent
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-run-", dir=base)).resolve()
    kind = _fstype(root)
    same = root.stat().st_dev == REPO.stat().st_dev
    print(f"scratch: {root} ({kind}{', same device as the repository' if same else ', NOT the repository device'})")
    if kind in ("tmpfs", "ramfs"):
        print("warning: tmpfs makes fsync free; the durable figures below are optimistic")
    mk, cr, sync = metadata_costs(root)
    print(
        f"scratch folder costs: mkdir {mk:.0f} µs, file create {cr:.0f} µs, fdatasync {sync:.0f} µs (medians;"
        " a worker creates 1 folder + 3 files, a task fdatasyncs twice)"
    )
    return root


def metadata_costs(root: Path, n: int = 50) -> tuple[float, float, float]:
    """Median µs of a mkdir, a file creation and a small append + fdatasync in ``root``. On a
    shared disk these swing with other I/O (the journal), and the worker manager creates four
    inodes per task, so they say under which conditions the figures were taken."""
    probe = root / ".probe"
    probe.mkdir()
    mk, cr, sync = [], [], []
    fd = os.open(probe / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for i in range(n):
            t = time.perf_counter()
            os.mkdir(probe / f"d{i}")
            t1 = time.perf_counter()
            os.close(os.open(probe / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o644))
            t2 = time.perf_counter()
            os.write(fd, BARE_LINE)
            os.fdatasync(fd)
            t3 = time.perf_counter()
            mk.append(t1 - t)
            cr.append(t2 - t1)
            sync.append(t3 - t2)
    finally:
        os.close(fd)
        shutil.rmtree(probe, ignore_errors=True)
    return median(mk) * 1e6, median(cr) * 1e6, median(sync) * 1e6


def noop_tasks(n: int, deps: Callable[[int], list[str]] | None = None) -> list[dict[str, Any]]:
    tasks = []
    for i in range(n):
        task: dict[str, Any] = {
            "id": f"t{i}",
            "title": f"No-op {i}",
            "commands": ["true"],
            "acceptance_tests": ["true"],
        }
        if deps is not None and deps(i):
            task["depends_on"] = deps(i)
        tasks.append(task)
    return tasks


def write_plan(ws: Path, tasks: list[dict[str, Any]], fmt: str) -> Path:
    plan = {"objective": f"{len(tasks)} no-op tasks", "tasks": tasks}
    if fmt == "json":
        path = ws / "plan.json"
        path.write_text(json.dumps(plan))
    else:
        import yaml

        path = ws / "plan.yaml"
        path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def new_workspace(root: Path, name: str, tasks: list[dict[str, Any]], fmt: str) -> tuple[Path, Path]:
    ws = root / name
    ws.mkdir()
    return ws, write_plan(ws, tasks, fmt)


def log_of(ws: Path) -> Path:
    runs = sorted((ws / ".harness" / "runs").iterdir())
    return runs[-1] / "events.jsonl"


def read_log(path: Path) -> list[dict[str, Any]]:
    from harness.eventlog import read_events

    return read_events(path).events


def timed_cmd(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return time.perf_counter() - t, proc


# -- `harness run` as a user runs it ------------------------------------------------------------------


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@dataclass
class RunResult:
    wall: float
    cpu: float  # user + system seconds of the command and every process it waited for
    spawn_unix: float
    exit_unix: float
    events: list[dict[str, Any]]
    log_bytes: int
    log_path: Path

    def first(self, etype: str) -> dict[str, Any]:
        return next(e for e in self.events if e["type"] == etype)

    def last(self, etype: str) -> dict[str, Any]:
        return next(e for e in reversed(self.events) if e["type"] == etype)

    @property
    def exec_seconds(self) -> float:
        return self.last("EXECUTION_COMPLETE")["unix"] - self.first("TASK_STARTED")["unix"]

    def phases(self) -> dict[str, float]:
        """Seconds per phase, from the command's spawn to its exit, cut at logged events."""
        marks = [
            ("start: interpreter, imports, config, log", self.first("RUN_STARTED")["unix"]),
            ("services up (3, concurrently)", max(e["unix"] for e in self.events if e["type"] == "SERVICE_STARTED")),
            ("plan validated (PLAN_CREATED)", self.first("PLAN_CREATED")["unix"]),
            ("gate (GATE_APPROVED)", self.first("GATE_APPROVED")["unix"]),
            ("bootstrap phases", self.first("TASK_STARTED")["unix"]),
            ("execution (to EXECUTION_COMPLETE)", self.last("EXECUTION_COMPLETE")["unix"]),
            ("shutdown (to exit)", self.exit_unix),
        ]
        out, prev = {}, self.spawn_unix
        for name, t in marks:
            out[name] = t - prev
            prev = t
        return out


#: The policy the benchmarks run under unless a sandbox is asked for: the peers confine nothing, so
#: like-for-like is no sandbox (bubblewrap per step is measured as its own row by bench/suite.py).
UNCONFINED_POLICY = "sandbox: 'off'\n"


def run_argv(ws: Path, plan: Path, parallel: int, sandbox: bool = False) -> list[str]:
    """``harness run --plan PLAN --approve`` of a workspace, as every benchmark runs it: without a
    sandbox (a policy file saying so, in the workspace's .harness folder) unless ``sandbox``."""
    argv = harness_argv() + [
        "run",
        "--plan",
        str(plan),
        "--approve",
        "--workspace",
        str(ws),
        "--parallel",
        str(parallel),
    ]
    if not sandbox:
        policy = ws / ".harness" / "bench-policy.yaml"
        policy.parent.mkdir(parents=True, exist_ok=True)
        policy.write_text(UNCONFINED_POLICY)
        argv += ["--policy", str(policy)]
    return argv


def harness_run(ws: Path, plan: Path, parallel: int, timeout: float = 600, sandbox: bool = False) -> RunResult:
    env = {**os.environ, "CI": "true"}
    argv = run_argv(ws, plan, parallel, sandbox)
    spawn_unix = time.time()
    cpu0 = cpu_seconds(resource.RUSAGE_CHILDREN)
    wall, proc = timed_cmd(argv, cwd=ws, env=env, timeout=timeout)
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0
    exit_unix = time.time()
    if proc.returncode != 0:
        raise RuntimeError(
            f"harness run exited {proc.returncode}:\n{proc.stdout.decode()[-2000:]}\n{proc.stderr.decode()[-2000:]}"
        )
    path = log_of(ws)
    return RunResult(wall, cpu, spawn_unix, exit_unix, read_log(path), path.stat().st_size, path)


# -- the bare loops -----------------------------------------------------------------------------------


def bare_loop(folder: Path, n: int, procs: int, parallel: int = 1) -> tuple[float, float]:
    """The floor: per task spawn ``procs`` x ``/bin/sh -c true`` and wait, then append one line
    and fdatasync it. With ``parallel`` > 1, that many threads take tasks from one counter; the
    write is under a lock, the fdatasync is not (as the event log does it). Returns (wall, cpu)
    seconds, cpu counting this process and the processes it spawned."""
    path = folder / f"bare-{procs}p-{parallel}x-{time.monotonic_ns()}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            for _ in range(procs):
                subprocess.Popen([SH, "-c", "true"], stdin=subprocess.DEVNULL, start_new_session=True).wait()
            with lock:
                os.write(fd, BARE_LINE)
            os.fdatasync(fd)

    try:
        cpu0 = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        wall = time.perf_counter() - start
        return wall, cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0
    finally:
        os.close(fd)
        path.unlink()


# -- analysis of one run's log ------------------------------------------------------------------------


def per_task_gaps(events: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Median microseconds between the events of one task in a sequential run.

    Worker events carry the manager's own clock (``data.at``) as well as the supervisor's
    append time (``unix``); both are ``time.time()`` on one machine, so the gaps split the task
    into: scheduling + spawn_worker, check_trust, durable TASK_STARTED, run_worker up to the
    first process, the processes, and the way back to a durable TASK_COMPLETED.
    """
    by_task: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    order: list[str] = []
    for e in events:
        tid = e.get("task_id")
        if tid and e["type"] in TASK_CHAIN:
            if tid not in by_task:
                order.append(tid)
            by_task[tid].setdefault(e["type"], e)
    gaps: dict[str, list[float]] = defaultdict(list)
    labels = [
        "prev TASK_COMPLETED -> worker spawned and trusted (fsync, schedule, checks, spawn_worker)",
        "worker spawned -> TASK_STARTED appended (reply, emit)",
        "TASK_STARTED -> first process started (fsync, run_worker, job)",
        "first process started -> worker finished (2 x sh; wait; tails)",
        "worker finished -> TASK_COMPLETED appended (reply, emit)",
    ]
    prev_done: float | None = None
    for tid in order:
        ev = by_task[tid]
        if len(ev) < len(TASK_CHAIN):
            continue
        sp, ts, ws, wf, tc = (ev[k]["unix"] for k in TASK_CHAIN)  # when the supervisor logged each
        if prev_done is not None:
            gaps[labels[0]].append(sp - prev_done)
        gaps[labels[1]].append(ts - sp)
        gaps[labels[2]].append(ws - ts)
        gaps[labels[3]].append(wf - ws)
        gaps[labels[4]].append(tc - wf)
        prev_done = tc
    return [(label, median(gaps[label]) * 1e6) for label in labels]


def bytes_by_type(path: Path) -> list[tuple[str, int, int]]:
    """(type, count, bytes) for every event type in a log, largest first."""
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    for line in path.read_bytes().splitlines():
        etype = json.loads(line)["type"]
        count[etype] += 1
        size[etype] += len(line) + 1
    return sorted(((t, count[t], size[t]) for t in count), key=lambda r: -r[2])


# -- sections -----------------------------------------------------------------------------------------


def section_startup(root: Path, args: argparse.Namespace) -> dict[str, float]:
    n = args.startup
    py = [timed_cmd([sys.executable, "-c", "pass"])[0] for _ in range(n)]
    helps = []
    for _ in range(n):
        secs, proc = timed_cmd(harness_argv() + ["--help"])
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.decode())
        helps.append(secs)
    singles: list[RunResult] = []
    for i in range(args.single):
        ws, plan = new_workspace(root, f"single-{i}", noop_tasks(1), args.format)
        singles.append(harness_run(ws, plan, 1))
        shutil.rmtree(ws, ignore_errors=True)
    py_ms, help_ms = median(py) * 1e3, median(helps) * 1e3
    single_ms = median([r.wall for r in singles]) * 1e3
    print(f"\n== startup (medians; {n} runs each, {args.single} one-task runs, each in a fresh workspace)")
    print(f"{'command':<44} {'ms':>8} {'vs python -c pass':>18} {'target':>10}")
    print(f"{'python -c pass (baseline)':<44} {py_ms:>8.1f} {'1.0x':>18} {'':>10}")
    print(
        f"{'harness --help':<44} {help_ms:>8.1f} {help_ms / py_ms:>17.1f}x {f'< {HELP_TARGET_MS:.0f}':>10}  {verdict(help_ms < HELP_TARGET_MS)}"
    )
    print(
        f"{'harness run (1 task, 2 processes)':<44} {single_ms:>8.1f} {single_ms / py_ms:>17.1f}x {f'< {SINGLE_RUN_TARGET_MS:.0f}':>10}  {verdict(single_ms < SINGLE_RUN_TARGET_MS)}"
    )
    print("   where the 1-task run's time goes (median ms):")
    names = list(singles[0].phases())
    for name in names:
        print(f"     {name:<46} {median([r.phases()[name] for r in singles]) * 1e3:>7.1f}")
    return {"python": py_ms, "help": help_ms, "single": single_ms}


@dataclass
class Row:
    name: str
    procs: int
    parallel: int
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    execs: list[float] = field(default_factory=list)
    bytes_per_task: list[float] = field(default_factory=list)
    runs: list[RunResult] = field(default_factory=list)


def section_throughput(root: Path, args: argparse.Namespace) -> dict[str, Row]:
    n = args.tasks
    rows = {
        "bare1": Row("bare loop, 1 process + 1 fsync per task", 1, 1),
        "bare2": Row("bare loop, 2 processes + 1 fsync per task", 2, 1),
        "bare2x2": Row("bare loop, 2 processes + 1 fsync, 2 at a time", 2, 2),
        "seq": Row("harness run --parallel 1", 2, 1),
        "par2": Row("harness run --parallel 2", 2, 2),
    }
    tasks = noop_tasks(n)
    bare_dir = root / "bare"
    bare_dir.mkdir()
    for r in range(args.rounds):
        for key in ("bare1", "bare2", "bare2x2"):
            row = rows[key]
            wall, cpu = bare_loop(bare_dir, n, row.procs, row.parallel)
            row.walls.append(wall)
            row.cpus.append(cpu)
        for key in ("seq", "par2"):
            row = rows[key]
            ws, plan = new_workspace(root, f"{key}-{r}", tasks, args.format)
            res = harness_run(ws, plan, row.parallel)
            row.walls.append(res.wall)
            row.cpus.append(res.cpu)
            row.execs.append(res.exec_seconds)
            row.bytes_per_task.append(res.log_bytes / n)
            row.runs.append(res)
    bare1, bare2 = n / median(rows["bare1"].walls), n / median(rows["bare2"].walls)
    bare2x2 = n / median(rows["bare2x2"].walls)

    print(f"\n== throughput: {n} no-op tasks, medians of {args.rounds} interleaved rounds ({args.format} plan)")
    head = f"{'':<48} {'proc':>4} {'wall s':>7} {'tasks/s':>8} {'exec t/s':>9} {'x bare1':>8} {'x bare2':>8} {'CPU µs/task':>11} {'log B/task':>10}"
    print(head)
    print("-" * len(head))
    for row in rows.values():
        wall = median(row.walls)
        rate = n / wall
        execs = f"{n / median(row.execs):>9,.0f}" if row.execs else f"{'':>9}"
        floor = bare2x2 if row.parallel == 2 else bare2
        x1 = f"{bare1 / rate:>7.2f}x"
        x2 = f"{floor / rate:>7.2f}x"
        logb = f"{median(row.bytes_per_task):>10,.0f}" if row.bytes_per_task else f"{'':>10}"
        cpu = median(row.cpus) / n * 1e6
        print(f"{row.name:<48} {row.procs:>4} {wall:>7.3f} {rate:>8,.0f} {execs} {x1:>8} {x2:>8} {cpu:>11,.0f} {logb}")
    print("   x bare1/x bare2: how many times slower than the 1-process / 2-process bare loop")
    print("   (the --parallel 2 rows compare with the 2-at-a-time bare loop in the x bare2 column)")
    print("   CPU µs/task: user + system time of everything involved (the command, its services and workers;")
    print("   the bare loop and its children), per task: steadier than wall clock on a busy machine")

    seq, par2 = rows["seq"], rows["par2"]
    seq_rate, par_rate = n / median(seq.walls), n / median(par2.walls)
    seq_exec, par_exec = n / median(seq.execs), n / median(par2.execs)
    print("\n   phases of the sequential run (median ms):")
    for name in seq.runs[0].phases():
        print(f"     {name:<46} {median([r.phases()[name] for r in seq.runs]) * 1e3:>8.1f}")
    print("\n   one task in the sequential run (median µs between its events):")
    gap_rows = [per_task_gaps(r.events) for r in seq.runs]
    for i, (label, _) in enumerate(gap_rows[0]):
        print(f"     {label:<72} {median([g[i][1] for g in gap_rows]):>7.0f}")
    durations = [e["data"]["duration_ms"] for r in seq.runs for e in r.events if e["type"] == "TASK_COMPLETED"]
    print(f"     {'(worker duration_ms as the manager measured it, median)':<72} {median(durations) * 1e3:>7.0f}")
    print(f"     {'(bare loop: 2 processes + 1 fsync per task)':<72} {median(rows['bare2'].walls) / n * 1e6:>7.0f}")

    print("\n   log bytes by event type (sequential run):")
    total = seq.runs[0].log_bytes
    for etype, count, size in bytes_by_type(seq.runs[0].log_path)[:12]:
        print(
            f"     {etype:<28} {count:>5} x {size / count:>7,.0f} B = {size / n:>6,.0f} B/task ({size / total:>4.0%})"
        )

    print("\ntargets:")
    checks = [
        (f"end to end >= {E2E_TARGET:.0f} tasks/s (--parallel 1)", f"{seq_rate:,.0f}", seq_rate >= E2E_TARGET),
        (f"end to end >= {E2E_TARGET:.0f} tasks/s (--parallel 2)", f"{par_rate:,.0f}", par_rate >= E2E_TARGET),
        (
            f"within {BARE_FACTOR_TARGET:.0f}x of the 1-process bare loop, end to end",
            f"{bare1 / seq_rate:.1f}x",
            bare1 / seq_rate <= BARE_FACTOR_TARGET,
        ),
        (
            f"within {BARE_FACTOR_TARGET:.0f}x of the 2-process bare loop, end to end",
            f"{bare2 / seq_rate:.1f}x",
            bare2 / seq_rate <= BARE_FACTOR_TARGET,
        ),
        (
            f"within {BARE_FACTOR_TARGET:.0f}x of the 2-process bare loop, execution phase",
            f"{bare2 / seq_exec:.1f}x",
            bare2 / seq_exec <= BARE_FACTOR_TARGET,
        ),
        (
            f"execution phase >= {EXEC_SEQ_HOPE:.0f} tasks/s sequential (design hope)",
            f"{seq_exec:,.0f}",
            seq_exec >= EXEC_SEQ_HOPE,
        ),
        (
            f"execution phase >= {EXEC_PAR2_HOPE:.0f} tasks/s at --parallel 2 (design hope)",
            f"{par_exec:,.0f}",
            par_exec >= EXEC_PAR2_HOPE,
        ),
        (
            f"log < {LOG_PER_TASK_TARGET:.0f} B per task",
            f"{median(seq.bytes_per_task):,.0f}",
            median(seq.bytes_per_task) < LOG_PER_TASK_TARGET,
        ),
    ]
    for label, value, ok in checks:
        print(f"  {label:<66} {value:>9}  {verdict(ok)}")
    return rows


def section_dag(root: Path, args: argparse.Namespace) -> None:
    """DAG set-up per task: what the supervisor does with a plan before and while it schedules."""
    for n in dict.fromkeys([args.tasks, *args.dag_sizes]):
        _dag_for(root, args, n)


def _dag_for(root: Path, args: argparse.Namespace, n: int) -> None:
    from harness.planfile import load_plan_file
    from harness.rpc import ServiceProcess
    from harness.state import fold

    shapes = {
        "independent": None,
        "layered (each on 2 earlier)": lambda i: sorted({f"t{i - 1}", f"t{i // 2}"}) if i else [],
    }
    print(f"\n== DAG set-up: {n} tasks, medians of {max(3, args.rounds)} (ms total, then ms per task)")
    print(f"{'step':<58} {'shape':<28} {'ms':>8} {'ms/task':>9}")
    reps = max(3, args.rounds)
    planning = ServiceProcess(
        [sys.executable, "-m", "harness.services.planning"], name="planning", stderr=subprocess.DEVNULL
    )
    try:
        planning.request("initialize", {"client": "bench"}, timeout=30)
        for shape, deps in shapes.items():
            tasks = noop_tasks(n, deps)
            ws = root / f"dag-{len(os.listdir(root))}"
            ws.mkdir()
            rows: list[tuple[str, float]] = []

            def med(fn: Callable[[], Any]) -> float:
                times = []
                for _ in range(reps):
                    t = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t)
                return median(times) * 1e3

            baseline = med(partial(_static_order, tasks))
            for fmt in ("yaml", "json"):
                path = write_plan(ws, tasks, fmt)
                rows.append((f"load_plan_file ({fmt}: parse + Plan model)", med(partial(load_plan_file, path))))
            plan = load_plan_file(write_plan(ws, tasks, "json")).model_dump(mode="json")
            params = {"plan": plan, "workspace": str(ws), "strictness": "file"}
            report = planning.request("validate", params, timeout=60)
            if not report.get("valid"):
                raise RuntimeError(f"the bench plan is invalid: {report.get('problems')}")
            rows.append(
                ("planning validate (round trip)", med(partial(planning.request, "validate", params, timeout=60)))
            )
            created = {
                "seq": 1,
                "unix": 0.0,
                "type": "PLAN_CREATED",
                "run_id": "r",
                "data": {"plan": plan, "revision": 1, "report": report},
            }
            rows.append(("fold PLAN_CREATED (RunState)", med(partial(fold, [created]))))
            rows.append(
                ("scheduler steps (execute_step + fold, per completion)", med(partial(_scheduler_steps, created)))
            )
            for name, ms in rows:
                print(f"{name:<58} {shape:<28} {ms:>8.2f} {ms / n:>9.4f}")
            setup = sum(ms for name, ms in rows if not name.startswith(("load_plan_file (yaml", "scheduler")))
            yaml_setup = setup - rows[1][1] + rows[0][1]
            print(
                f"{'graphlib.TopologicalSorter static_order (baseline)':<58} {shape:<28} {baseline:>8.2f} {baseline / n:>9.4f}"
            )
            print(
                f"{'  set-up total, JSON plan (load + validate + fold)':<58} {shape:<28} {setup:>8.2f} {setup / n:>9.4f}  "
                f"target < {DAG_SETUP_TARGET_MS} ms/task: {verdict(setup / n < DAG_SETUP_TARGET_MS)}"
            )
            print(
                f"{'  set-up total, YAML plan':<58} {shape:<28} {yaml_setup:>8.2f} {yaml_setup / n:>9.4f}  "
                f"{verdict(yaml_setup / n < DAG_SETUP_TARGET_MS)}"
            )
    finally:
        planning.stop(grace=2.0, term_grace=1.0)


def _static_order(tasks: list[dict[str, Any]]) -> list[str]:
    """The baseline: a plain topological sort of the tasks, graph built included."""
    return list(graphlib.TopologicalSorter({t["id"]: t.get("depends_on", []) for t in tasks}).static_order())


def _scheduler_steps(created: dict[str, Any]) -> None:
    """The scheduler's work per task completion, as ``Supervisor._execute`` does it with
    ``--parallel 1``: ask the decision layer what to do next (``execute_step``: a Launch), fold the
    attempt's TASK_STARTED, ask again with the task launched (it says wait: an empty list), fold
    its TASK_COMPLETED as the task thread logs it; until it answers with the finish. Starts from
    the state folded from ``created`` (a PLAN_CREATED event; that fold is timed too, and is also
    shown on its own row). For the previous design's full scans against this, and other shapes,
    sizes and parallelism, see bench_scheduler.py."""
    from harness.config import Policy
    from harness.events import EventType
    from harness.recovery import Recovery
    from harness.state import fold
    from harness.supervisor import _decide as decide
    from harness.vocab import ExitCode

    state = fold([created])
    rules = decide.Rules(run_id="bench", policy=Policy(), recovery=Recovery())
    seq = int(created["seq"])

    def log(etype: EventType, tid: str, data: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        event = {"seq": seq, "unix": 0.0, "type": etype, "run_id": "bench", "task_id": tid, "data": data}
        state.apply({**event, "worker_id": data["worker_id"]})

    for tid in list(state.order):
        actions = decide.execute_step(state, decide.View(frozenset(), 0.0, 1), rules)
        assert actions == [decide.Launch(tid, 1)], actions
        log(EventType.TASK_STARTED, tid, {"attempt": 1, "worker_id": f"w-{tid}"})
        waiting = decide.execute_step(state, decide.View(frozenset({tid}), 0.0, 1), rules)
        assert waiting == [], waiting
        log(EventType.TASK_COMPLETED, tid, {"attempt": 1, "worker_id": f"w-{tid}", "duration_ms": 0.0})
    done = decide.execute_step(state, decide.View(frozenset(), 0.0, 1), rules)  # the summary and exit code
    assert isinstance(done[0], decide.Record) and done[0].type is EventType.EXECUTION_COMPLETE, done
    assert done[-1] == decide.Finish(ExitCode.OK), done


# -- profiling ----------------------------------------------------------------------------------------


class ThreadProfiles:
    """cProfile for every thread started while installed (cProfile hooks only the thread that
    enables it, and the supervisor does its RPC in task threads and reader threads)."""

    def __init__(self) -> None:
        self.done: list[cProfile.Profile] = []
        self.unfinished = 0
        self._lock = threading.Lock()
        self._orig = threading.Thread.run

    def install(self) -> None:
        orig, profiles = self._orig, self

        def run(self: threading.Thread) -> None:  # replaces Thread.run: the same signature
            prof = cProfile.Profile()
            with profiles._lock:
                profiles.unfinished += 1
            prof.enable()
            try:
                orig(self)
            finally:
                prof.disable()
                with profiles._lock:
                    profiles.unfinished -= 1
                    profiles.done.append(prof)

        threading.Thread.run = run  # type: ignore[method-assign]

    def uninstall(self) -> None:
        threading.Thread.run = self._orig  # type: ignore[method-assign]

    def stats(self, *extra: cProfile.Profile) -> pstats.Stats | None:
        profs = [*extra, *self.done]
        if not profs:
            return None
        stats = pstats.Stats(profs[0])
        for p in profs[1:]:
            stats.add(p)
        return stats


def wm_child(out: str) -> int:
    """Child mode: the worker manager under per-thread cProfile; stats written to ``out`` at exit."""
    from harness.rpc import Server
    from harness.services.worker_manager import main as wm_main

    def run_stdio_and_return(self: Server, before_exit: Callable[[], None] | None = None) -> NoReturn:
        code = self.run_stdio()
        if before_exit is not None:
            before_exit()
        sys.exit(code)  # not os._exit as shipped: the stats below must be written first

    Server.run_stdio_and_exit = run_stdio_and_return  # type: ignore[method-assign]
    profiles = ThreadProfiles()
    profiles.install()
    prof = cProfile.Profile()
    prof.enable()
    try:
        return wm_main()
    finally:
        prof.disable()
        stats = profiles.stats(prof)
        if stats is not None:
            stats.dump_stats(out)


class Timers:
    """perf_counter around chosen functions (patched on their classes/modules, restored after)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.count: Counter[str] = Counter()
        self._undo: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def wrap(self, owner: Any, attr: str, label: str | Callable[..., str]) -> None:
        orig = getattr(owner, attr, None)
        if orig is None:  # the code moved on: time what exists
            print(f"   (no {getattr(owner, '__name__', owner)}.{attr} to time)")
            return
        timers = self

        def timed(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                name = label(*a, **kw) if callable(label) else label
                dt = time.perf_counter() - t
                with timers._lock:
                    timers.total[name] += dt
                    timers.count[name] += 1

        setattr(owner, attr, timed)
        self._undo.append(lambda: setattr(owner, attr, orig))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


def _inprocess_run(
    root: Path, name: str, n: int, fmt: str, config_extra: dict[str, Any] | None = None, around: Any = None
) -> tuple[float, Any]:
    """One sequential run through ``Supervisor.start()`` in this process; ``around`` (a context
    manager) wraps only the start, not the plan loading."""
    import contextlib

    from harness.config import load_config
    from harness.planfile import load_plan_file
    from harness.supervisor import UI, RunOptions, Supervisor

    ws, plan_path = new_workspace(root, name, noop_tasks(n), fmt)
    config_extra = {"policy": {"sandbox": "off"}, **(config_extra or {})}  # no sandbox, as the peers
    if config_extra:
        import yaml

        (ws / "harness.yaml").write_text(yaml.safe_dump(config_extra))
    plan = load_plan_file(plan_path).model_dump(mode="json")
    sup = Supervisor(ws, load_config(ws), UI(io.StringIO()), RunOptions(plan=plan, approve=True, parallel=1))
    with around if around is not None else contextlib.nullcontext():
        t = time.perf_counter()
        code = sup.start()
        wall = time.perf_counter() - t
    if code != 0:
        raise RuntimeError(f"in-process run exited {code}")
    return wall, sup


class _Profiling:
    """Context manager: cProfile on this thread and on every thread started meanwhile."""

    def __init__(self) -> None:
        self.threads = ThreadProfiles()
        self.main = cProfile.Profile()

    def __enter__(self) -> _Profiling:
        self.threads.install()
        self.main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self.main.disable()
        self.threads.uninstall()


def section_profile(root: Path, args: argparse.Namespace) -> None:
    from harness import eventlog
    from harness.state import RunState
    from harness.supervisor import UI, SupervisedService, Supervisor
    from harness.supervisor import _decide as decide

    n = args.tasks
    print(f"\n== profile: {n} tasks sequential, in-process Supervisor.start() (plan loaded beforehand)")
    walls: list[float] = []
    execs: list[float] = []
    for i in range(max(3, args.rounds)):
        wall, sup = _inprocess_run(root, f"inproc-plain-{i}", n, args.format)
        events = read_log(sup.log_path)
        start = next(e for e in events if e["type"] == "TASK_STARTED")["unix"]
        end = next(e for e in events if e["type"] == "EXECUTION_COMPLETE")["unix"]
        walls.append(wall)
        execs.append(end - start)
    print(
        f"   uninstrumented (median of {len(walls)}): {median(walls) * 1e3:.0f} ms in start(), execution phase "
        f"{median(execs) * 1e3:.0f} ms ({n / median(execs):,.0f} tasks/s, {median(execs) / n * 1e6:,.0f} µs/task)"
    )

    timers = Timers()
    timers.wrap(SupervisedService, "call", lambda self, method, *a, **kw: f"rpc {self.name}.{method} (round trip)")
    timers.wrap(eventlog.EventLog, "append_many", "EventLog.append_many (all of it)")
    timers.wrap(eventlog, "_datasync", "  of which fdatasync")
    timers.wrap(eventlog, "_encode_event", "  of which encode + sha256")
    timers.wrap(eventlog, "_parse_line", "  of which parse back (one per event)")
    timers.wrap(eventlog.EventLog, "take_foreign", "EventLog.take_foreign (fstat per emit)")
    timers.wrap(RunState, "apply", "RunState.apply (fold one event)")
    timers.wrap(UI, "on_event", "UI.on_event (progress line)")
    timers.wrap(Supervisor, "_on_notification", "Supervisor._on_notification (a worker event, all of it)")
    timers.wrap(Supervisor, "_start_services", "Supervisor._start_services (3 concurrently)")
    timers.wrap(Supervisor, "_shutdown", "Supervisor._shutdown (stop services, close log)")
    timers.wrap(Supervisor, "_attempt", "Supervisor._attempt (one task, all of it)")
    timers.wrap(decide, "execute_step", "scheduler decide.execute_step (what next)")
    for meth in ("perform", "_absorb_foreign"):
        timers.wrap(Supervisor, meth, f"scheduler Supervisor.{meth}")
    try:
        wall, sup = _inprocess_run(root, "inproc-timed", n, args.format)
    finally:
        timers.restore()
    print(
        f"   with perf_counter timers: {wall * 1e3:.0f} ms in start(). Inclusive times; rpc rows include the manager's"
        " work; rows overlap (append_many includes its fdatasync)"
    )
    print(f"   {'what':<62} {'calls/task':>10} {'µs/call':>8} {'µs/task':>8} {'ms total':>9}")
    group = {
        "EventLog.append_many (all of it)": 1,
        "  of which fdatasync": 1.1,
        "  of which encode + sha256": 1.2,
        "  of which parse back (one per event)": 1.3,
    }

    def order(label: str) -> tuple[float, float]:
        if label in group:
            return (1, group[label])
        if label.startswith("rpc ") or label.startswith("Supervisor._attempt"):
            return (0, -timers.total[label])
        if label.startswith("scheduler"):
            return (3, -timers.total[label])
        if label.startswith(("Supervisor._start_services", "Supervisor._shutdown")):
            return (4, -timers.total[label])
        return (2, -timers.total[label])

    for label in sorted(timers.total, key=order):
        tot, cnt = timers.total[label], timers.count[label]
        print(f"   {label:<62} {cnt / n:>10.2f} {tot / cnt * 1e6:>8.0f} {tot / n * 1e6:>8.0f} {tot * 1e3:>9.1f}")

    # cProfile: every supervisor thread, and the worker manager (wrapped by this script).
    wm_out = root / "wm.prof"
    wm_cmd = [sys.executable, str(Path(__file__).resolve()), "--wm-child", str(wm_out)]
    prof = _Profiling()
    wall, sup = _inprocess_run(
        root, "inproc-cprofile", n, args.format, {"services": {"worker-manager": {"command": wm_cmd}}}, prof
    )
    print(
        f"\n   cProfile of the supervisor (all its threads; {prof.threads.unfinished} still running, left out):"
        f" {wall * 1e3:.0f} ms in start() under the profiler"
    )
    stats = prof.threads.stats(prof.main)
    assert stats is not None
    _print_top(stats, n, args.top)
    deadline = time.monotonic() + 10
    while not wm_out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if wm_out.exists():
        print("\n   cProfile of the worker manager (all its threads):")
        _print_top(pstats.Stats(str(wm_out)), n, args.top)
    else:
        print("\n   (the worker manager's profile was not written)")


#: Functions whose own time is waiting (for a reply, a lock, a process, a queue), not work.
WAITS = (
    "acquire' of '_thread.lock",
    "readline' of '_io.BufferedReader",
    "time.sleep",
    "get' of '_queue.SimpleQueue",
    "poll' of 'select.poll",
    "posix.waitpid",
    "wait' of 'threading.Condition",
    "posix.read>",
)


def _print_top(stats: pstats.Stats, n: int, top: int) -> None:
    """Top functions by own time (waits listed apart, they are not work), then our own
    functions by cumulative time; microseconds per task."""
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = file
        for mark in ("/src/harness/", "/services/"):  # our code, wherever it was imported from
            if mark in short and "site-packages" not in short:
                short = (
                    mark.strip("/").split("/")[0] + "/" + short.split(mark, 1)[1]
                    if mark == "/services/"
                    else "src/harness/" + short.split(mark, 1)[1]
                )
                break
        if "site-packages/" in short:
            short = "<site>/" + short.split("site-packages/", 1)[1]
        elif short.startswith("/") and "/lib/python" in short:
            short = "<stdlib>/" + short.split("/lib/python", 1)[1].split("/", 1)[-1]
        rows.append((tt, ct, nc, f"{short}:{line}({func})" if line else func))
    rows.sort(reverse=True)
    waits = [r for r in rows if any(w in r[3] for w in WAITS)]
    work = [r for r in rows if r not in waits]
    print(
        "   waiting (own µs/task): "
        + ", ".join(f"{r[3].split('<')[-1].rstrip('>)')} {r[0] / n * 1e6:,.0f}" for r in waits[:5])
    )
    print(f"   {'own µs/task':>11} {'cum µs/task':>11} {'calls/task':>10}  function (by own time, waits excluded)")
    for tt, ct, nc, name in work[:top]:
        print(f"   {tt / n * 1e6:>11.1f} {ct / n * 1e6:>11.1f} {nc / n:>10.1f}  {name[:110]}")
    ours = sorted((r for r in rows if r[3].startswith(("src/", "services/"))), key=lambda r: -r[1])
    print(
        f"   {'own µs/task':>11} {'cum µs/task':>11} {'calls/task':>10}  our functions (by cumulative time, waits included)"
    )
    for tt, ct, nc, name in ours[:top]:
        print(f"   {tt / n * 1e6:>11.1f} {ct / n * 1e6:>11.1f} {nc / n:>10.1f}  {name[:110]}")


# -- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the throughput runs (medians)")
    parser.add_argument("--single", type=int, default=10, help="1-task runs (median)")
    parser.add_argument("--startup", type=int, default=20, help="python -c pass / harness --help runs (median)")
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml", help="plan file format of the runs")
    parser.add_argument(
        "--dir", default=None, help="where the scratch workspaces go (default: the repository's parent; not tmpfs)"
    )
    parser.add_argument("--dag-sizes", type=int, nargs="*", default=[2000], help="more plan sizes for the DAG section")
    parser.add_argument("--only", nargs="+", choices=("startup", "throughput", "dag"), default=None)
    parser.add_argument("--profile", action="store_true", help="also profile the sequential run in-process")
    parser.add_argument("--top", type=int, default=25, help="rows of each cProfile table")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--wm-child", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.wm_child:
        return wm_child(args.wm_child)

    sections = args.only or ["startup", "throughput", "dag"]
    print(
        f"bench_run: python {sys.version.split()[0]} on {os.cpu_count()} cores; {args.tasks} tasks; {' '.join(harness_argv())}"
    )
    root = pick_root(args.dir)
    print(
        "load average at start: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (other work on the machine skews every figure)"
    )
    try:
        if "startup" in sections:
            section_startup(root, args)
        if "throughput" in sections:
            section_throughput(root, args)
        if "dag" in sections:
            section_dag(root, args)
        if args.profile:
            section_profile(root, args)
        print("\nload average at end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
