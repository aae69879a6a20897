"""Every benchmark in one command, the harness against its peers and floors in the same invocation.

    python bench/suite.py [--quick] [--out BENCHMARKS.md] [--chart SVG]
                          [--only SECTION ...] [--tasks N] [--rounds R] [--big N] [--dir DIR] [--keep]

Writes ``BENCHMARKS.md`` (machine, every section's table, the targets met or not) and a chart of
the harness/peer ratios (``bench/benchmarks.svg``). Each figure is a median with its spread, next
to a baseline measured in this same invocation: on this shared VM, whose page cache is reclaimed
aggressively, only ratios from one run mean anything. Nothing here asserts a time.

Sections (``--only``):
  machine        cores, load average at start and end, an fdatasync in the scratch folder (median
                 of 200, ``bench_run.metadata_costs``) and a process spawn (``/bin/true``, median of
                 100), python, date.
  orchestration  N no-op tasks (``true`` + acceptance test ``true``: two real processes each) by
                 the bare floor, LangGraph (SqliteSaver, durability="sync"), DBOS (SQLite) and
                 ``harness run --plan --approve`` (``bench_run.harness_run``: the CLI as a user
                 runs it, its three services included), at parallel 1 and 2, every program a
                 fresh process timed from outside. Marginal cost per task = (wall of N tasks -
                 wall of 1 task) / (N - 1) per round, median of the rounds; the harness's ratio to
                 each peer per round (the two ran seconds apart), median of the rounds; the 1-task wall; the
                 durable state each leaves per task (the harness: its events.jsonl). The peers are
                 bench/peers/*.py; each run's state is read back once (``--check``).
  durability     (full only) the sync system calls (fsync, fdatasync...) each of those programs makes
                 per task, counted by ``strace -f -c`` over 1 and 11 tasks (skipped without strace).
  rpc            ``bench_rpc``'s targets (raw stdio echo loop, the bare Server, the planning service
                 on pipes and through ServiceProcess) and the MCP python SDK (bench/peers/
                 mcp_server.py through ClientSession: ping, and tools/call of a one-tool server),
                 driven by ``bench_rpc.measure_all``: the same number of calls, rounds interleaved;
                 sequential p50/p99 and pipelined.
  start          spawn to the answer of ``initialize``: the raw echo loop, the bare Server, the
                 three services, and the MCP server.
  eventlog       ``bench_eventlog``'s durable appends against bare os.write + fdatasync; a log of
                 100,000 events of real shapes (``bench_recovery.build_template``: six events a
                 task, copied from a real worker) read, folded and verified, against json.loads per
                 line and json.loads + sha256 per line.
  big            (full only) a real ``harness run`` of ``--big`` tasks (10,000) at parallel 2: per
                 completion against the 200-task figure of this invocation, the supervisor's peak
                 RSS (VmHWM, polled), log bytes per task.
  recovery, scheduler, agent
                 (full only) bench_recovery.py, bench_scheduler.py (``--whole 200``: the old scans
                 sampled from 2,000 tasks on) and bench_agent.py (``--agent claude`` on the tests'
                 fake model when Claude Code is installed, else the stand-in agent) as
                 subprocesses; their key figures parsed, their summaries kept verbatim.

``--quick`` (under a minute on this 2-core VM): 50 tasks, one round, fewer RPC calls and spawns,
a 20,000-event log, and no durability / big / recovery / scheduler / agent sections.

Scratch workspaces go in a fresh folder in the repository's parent directory (the repository's
disk, not tmpfs), removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import bench_eventlog
import bench_recovery
import bench_rpc
import bench_run

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS = BENCH / "peers"
PY = sys.executable
SECTIONS = (
    "machine",
    "orchestration",
    "durability",
    "rpc",
    "start",
    "eventlog",
    "big",
    "recovery",
    "scheduler",
    "agent",
    "ray",
)
SLOW = ("durability", "big", "recovery", "scheduler", "agent", "ray")

# The targets.
PEER_RATIO_TARGET = 0.8  # harness per task / LangGraph's and DBOS's, at parallel 1 and 2
SINGLE_RATIO_TARGET = 0.5  # harness 1-task program / DBOS's
LOG_TARGET_B = 1500.0  # log bytes per task
BIG_GROWTH_TARGET = 1.5  # per completion at 10,000 tasks / at 200
BIG_RSS_TARGET_MB = 200.0  # supervisor peak RSS
AGENT_RATIO_TARGET = 1.3  # harness around an agent task / the same CLI by hand
RAY_EXTRA_MS_TARGET = 10.0  # --executor ray per task, more than --executor local


# -- figures and the report -----------------------------------------------------------------------


def med(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else math.nan


def fmt(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}" if digits <= 2 else f"{x:.1f}"
    return f"{x:.{digits}f}"


def spread(xs: list[float], digits: int = 2) -> str:
    """min–max of the samples ('-' for one sample)."""
    if len(xs) < 2:
        return "-"
    return f"{fmt(min(xs), digits)}–{fmt(max(xs), digits)}"


def ratio(a: float, b: float) -> float:
    """a / b; NaN when either is NaN or not positive (a marginal cost under 0 is noise: the wall of
    the 1-task program varied by more than the N tasks took)."""
    if math.isnan(a) or math.isnan(b) or a <= 0 or b <= 0:
        return math.nan
    return a / b


def rx(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}x"


@dataclass
class Table:
    head: list[str]
    rows: list[list[str]]
    align: str = ""  # one of l/r per column; default: first left, the rest right

    def render(self) -> str:
        align = self.align or "l" + "r" * (len(self.head) - 1)
        widths = [max(len(str(c)) for c in col) for col in zip(self.head, *self.rows, strict=False)]

        def line(cells: list[str]) -> str:
            out = []
            for c, w, a in zip(cells, widths, align, strict=False):
                out.append(str(c).ljust(w) if a == "l" else str(c).rjust(w))
            return "| " + " | ".join(out) + " |"

        sep = (
            "|"
            + "|".join(
                ("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align, strict=False)
            )
            + "|"
        )
        return "\n".join([line(self.head), sep, *(line(r) for r in self.rows)])


@dataclass
class Section:
    key: str
    title: str
    blocks: list[str | Table] = field(default_factory=list)  # paragraphs, tables, ```verbatim```

    def say(self, text: str) -> None:
        self.blocks.append(text)
        print(text if not text.startswith("```") else text.strip("`").strip("\n"), flush=True)

    def table(self, head: list[str], rows: list[list[str]], align: str = "") -> None:
        t = Table(head, rows, align)
        self.blocks.append(t)
        print(t.render(), flush=True)

    def verbatim(self, text: str) -> None:
        self.blocks.append("```\n" + text.rstrip("\n") + "\n```")


@dataclass
class Target:
    label: str
    measured: str
    limit: str
    ok: bool | None  # None: not measured in this run


@dataclass
class Bar:
    """One bar of the chart: a ratio harness/baseline, and the target it should stay under."""

    label: str
    value: float
    target: float | None


@dataclass
class Report:
    quick: bool
    started: float
    sections: list[Section] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    machine: dict[str, str] = field(default_factory=dict)
    syncs: str = ""  # syncs per task at parallel 1, from the durability section

    def section(self, key: str, title: str) -> Section:
        sec = Section(key, title)
        self.sections.append(sec)
        print(f"\n== {title}", flush=True)
        return sec

    def target(self, label: str, value: float, limit: float, unit: str = "x", lower: bool = True) -> None:
        ok = None if math.isnan(value) else (value <= limit if lower else value >= limit)
        shown = rx(value) if unit == "x" else f"{fmt(value)} {unit}"
        self.targets.append(Target(label, shown, f"<= {limit:g}{unit if unit == 'x' else ' ' + unit}", ok))


# -- machine ---------------------------------------------------------------------------------------


def scratch_root(arg: str | None) -> Path:
    base = Path(arg) if arg else REPO.parent
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="bench-suite-", dir=base)).resolve()


def spawn_cost(n: int) -> list[float]:
    """Seconds of ``subprocess.run(["/bin/true"])``, ``n`` samples."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(["/bin/true"], stdin=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t)
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def compile_harness() -> int:
    """Compile the harness's modules to bytecode first, as ``pip install`` does (and did for the
    peers' packages): no program of the suite compiles source at its start. The number of modules
    that were stale (an editable install under PYTHONDONTWRITEBYTECODE never writes them)."""
    import compileall
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for folder in ("src", "services"):
            compileall.compile_dir(str(REPO / folder), quiet=0)
    return out.getvalue().count("Compiling ")


def section_machine(rep: Report, root: Path) -> None:
    sec = rep.section("machine", "Machine")
    stale = compile_harness()
    load = os.getloadavg()
    _mk, _cr, sync_us = bench_run.metadata_costs(root, 200)
    spawns = spawn_cost(100)
    kind = bench_run._fstype(root)
    rep.machine.update(
        {
            "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "python": f"{sys.version.split()[0]} ({platform.python_implementation()})",
            "cpu": f"{os.cpu_count()} cores, {cpu_model()}",
            "os": f"{platform.system()} {platform.release()}",
            "load average at start": " ".join(f"{x:.2f}" for x in load),
            "scratch folder": f"{root.parent} ({kind}{', tmpfs: fsync is free' if kind in ('tmpfs', 'ramfs') else ''})",
            "fdatasync (small append, median of 200)": f"{sync_us:.0f} µs",
            "process spawn (/bin/true via subprocess, median of 100)": f"{med(spawns) * 1e3:.2f} ms (spread {spread([s * 1e3 for s in spawns])} ms)",
            "harness bytecode": f"compiled first, as pip install does ({stale} module(s) were stale)",
        }
    )
    sec.table(["", ""], [[k, v] for k, v in rep.machine.items()], "ll")


# -- orchestration ---------------------------------------------------------------------------------

PEER_PROGRAMS = {
    "bare": ("bare loop (floor)", PEERS / "bare.py"),
    "langgraph": ("LangGraph, SqliteSaver, durability=sync", PEERS / "langgraph_peer.py"),
    "dbos": ("DBOS on SQLite", PEERS / "dbos_peer.py"),
}
HARNESS_LABEL = "harness run --plan --approve, no sandbox (as the peers)"
BWRAP_LABEL = "harness, each step under bubblewrap (the default where installed)"
HARNESS_KEYS = ("harness", "harness-bwrap")


def bwrap_works() -> bool:
    """Whether runs here would confine their steps with bubblewrap (``sandbox: auto``)."""
    from harness.sandbox import choose

    return choose("auto")["mode"] == "bwrap"


def label_of(key: str) -> str:
    return {"harness": HARNESS_LABEL, "harness-bwrap": BWRAP_LABEL}.get(key) or PEER_PROGRAMS[key][0]


SINGLES = 3  # 1-task runs per program and round: the 1-task wall varies most (imports), so its median


@dataclass
class Sample:
    wall: float
    state_bytes: int
    ready: float  # seconds from spawn (harness) or the program's first line (peers) to ready to run


@dataclass
class OrchCell:
    ones: list[list[Sample]] = field(default_factory=list)  # per round, SINGLES 1-task runs
    many: list[Sample] = field(default_factory=list)  # per round, one N-task run
    checks: list[str] = field(default_factory=list)

    def one_walls(self) -> list[float]:
        """Each round's 1-task wall: the median of its 1-task runs."""
        return [med(s.wall for s in runs) for runs in self.ones]

    def all_ones(self) -> list[Sample]:
        return [s for runs in self.ones for s in runs]

    def marginals(self, n: int) -> list[float]:
        return [(m.wall - o) / (n - 1) for o, m in zip(self.one_walls(), self.many, strict=False)]

    def state_marginals(self, n: int) -> list[float]:
        return [(m.state_bytes - o[0].state_bytes) / (n - 1) for o, m in zip(self.ones, self.many, strict=False)]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_peer(key: str, folder: Path, n: int, parallel: int, check: bool) -> tuple[Sample, str | None]:
    script = PEER_PROGRAMS[key][1]
    folder.mkdir(parents=True)
    argv = [PY, str(script), "--tasks", str(n), "--parallel", str(parallel), "--dir", str(folder)]
    wall, proc = bench_run.timed_cmd(argv, cwd=folder, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{script.name} {n} tasks p{parallel} exited {proc.returncode}:\n{proc.stderr.decode()[-3000:]}"
        )
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    if out["done"] != n:
        raise RuntimeError(f"{script.name}: {out['done']} of {n} tasks done")
    verdict = None
    if check:
        chk = subprocess.run(argv + ["--check"], capture_output=True, text=True, timeout=120)
        verdict = chk.stdout.strip() or chk.stderr.strip()[-500:]
        if chk.returncode != 0:
            raise RuntimeError(f"{script.name} --check failed: {verdict}")
    sample = Sample(wall, folder_bytes(folder), float(out.get("ready_s", out.get("start_s", 0.0))))
    shutil.rmtree(folder, ignore_errors=True)
    return sample, verdict


def run_harness(
    root: Path, name: str, n: int, parallel: int, check: bool, sandbox: bool = False
) -> tuple[Sample, str | None]:
    from harness.eventlog import verify

    ws, plan = bench_run.new_workspace(root, name, bench_run.noop_tasks(n), "yaml")
    res = bench_run.harness_run(ws, plan, parallel, sandbox=sandbox)
    completed = sum(1 for e in res.events if e["type"] == "TASK_COMPLETED")
    if completed != n:
        raise RuntimeError(f"harness: {completed} of {n} tasks completed")
    verdict = None
    if check:
        v = verify(res.log_path)
        verdict = json.dumps({"peer": "harness", "ok": v.ok, "events": v.count, "tasks_completed": completed})
        if not v.ok:
            raise RuntimeError(f"harness log does not verify: {v.problems[:3]}")
    ready = res.first("TASK_STARTED")["unix"] - res.spawn_unix
    sample = Sample(res.wall, res.log_bytes, ready)
    shutil.rmtree(ws, ignore_errors=True)
    return sample, verdict


@dataclass
class Orchestration:
    n: int
    cells: dict[tuple[str, int], OrchCell]

    def per_task_ms(self, key: str, p: int) -> float:
        return med(self.cells[key, p].marginals(self.n)) * 1e3

    def single_s(self, key: str, p: int = 1) -> float:
        return med(s.wall for s in self.cells[key, p].all_ones())

    def round_ratios(self, key: str, other: str, p: int) -> list[float]:
        """Per round, ``key``'s ms/task over ``other``'s: two programs that ran seconds apart, so
        the drift of the machine between rounds (2-3x here between hours) leaves the ratio alone."""
        mine, theirs = self.cells[key, p].marginals(self.n), self.cells[other, p].marginals(self.n)
        pairs = (ratio(a, b) for a, b in zip(mine, theirs, strict=False))
        return [x for x in pairs if not math.isnan(x)]

    def paired_ratio(self, key: str, other: str, p: int) -> float:
        """The median of :meth:`round_ratios`; NaN when no round gave both figures."""
        return med(self.round_ratios(key, other, p))


def section_orchestration(rep: Report, root: Path, n: int, rounds: int) -> Orchestration:
    sec = rep.section("orchestration", f"Orchestration: {n} no-op tasks, two processes each")
    keys = [*PEER_PROGRAMS, "harness", *(["harness-bwrap"] if bwrap_works() else [])]
    cells = {(k, p): OrchCell() for k in keys for p in (1, 2)}
    work = root / "orchestration"
    work.mkdir()
    for r in range(rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]  # rotated: drift hits every program alike
        for p in (1, 2):
            for key in order:
                cell = cells[key, p]
                cell.ones.append([])
                for i, size in enumerate([1] * SINGLES + [n]):
                    name = f"{key}-p{p}-n{size}-r{r}-{i}"
                    check = r == 0 and i in (0, SINGLES)
                    os.sync()  # what the program before wrote goes to disk now, not during this one
                    if key in HARNESS_KEYS:
                        sample, verdict = run_harness(work, name, size, p, check, sandbox=key == "harness-bwrap")
                    else:
                        sample, verdict = run_peer(key, work / name, size, p, check)
                    (cell.ones[-1] if size == 1 else cell.many).append(sample)
                    if verdict:
                        cell.checks.append(f"{size} task{'s' if size > 1 else ''}: {verdict}")
        print(f"   round {r + 1}/{rounds} done ({time.perf_counter() - rep.started:.0f} s)", flush=True)
    orch = Orchestration(n, cells)

    sec.say(
        f"Every task is `true` with the acceptance test `true`: two real processes (`/bin/sh -c true`), the "
        f"result of each made durable before the next step depends on it. Each program is a fresh process timed "
        f"from outside, in a fresh folder; per round, 1 task ({SINGLES} times, the median taken) and {n} tasks; "
        f"ms per task = (wall of {n} - wall of 1) / {n - 1}, median of {rounds} round{'s' if rounds > 1 else ''} "
        f"(spread: min–max of the rounds' figures), programs interleaved and rotated between rounds, the page "
        f"cache written back (sync) before each program so that no program's writeback lands in the next one's "
        f"time. The 1-task "
        f"wall (all its runs: median, min–max) includes the interpreter, imports, set-up and (harness) the three "
        f"services. Durable B/task: what the runs left on disk, (bytes after {n} tasks - bytes after 1) / "
        f"{n - 1}, so that fixed costs (a schema) drop out (bare: its lines; LangGraph and DBOS: the SQLite files; "
        f"harness: events.jsonl, whose size / {n} is the "
        f"log target's figure)."
    )
    rows = []
    for p in (1, 2):
        floor = orch.per_task_ms("bare", p)
        for key in keys:
            cell = cells[key, p]
            ms = [x * 1e3 for x in cell.marginals(n)]
            ones = [s.wall for s in cell.all_ones()]
            label = label_of(key)
            vs_h = "" if key in (*HARNESS_KEYS, "bare") else rx(orch.paired_ratio("harness", key, p))
            rows.append(
                [
                    f"**{label}**" if key == "harness" else label,
                    str(p),
                    fmt(med(ms)),
                    spread(ms),
                    rx(ratio(med(ms), floor)),
                    vs_h,
                    f"{med(ones):.3f}",
                    spread(ones, 3),
                    f"{med(s.ready for s in cell.all_ones()):.3f}",
                    f"{med(cell.state_marginals(n)):,.0f}",
                ]
            )
    sec.table(
        [
            "program",
            "parallel",
            "ms/task",
            "spread",
            "x floor",
            "harness / this",
            "1-task wall s",
            "spread",
            "ready s",
            "durable B/task",
        ],
        rows,
        "lrrrrrrrrr",
    )
    sec.say(
        "x floor: ms/task over the bare loop's at the same parallelism. harness / this: the harness's ms/task over "
        "this program's in the same round, median of the rounds (target <= 0.8 for LangGraph and DBOS); the "
        "targets below give the rounds' range. ready: seconds to the first task (harness: from "
        "spawn to the first TASK_STARTED; peers: from the program's first line to its engine ready, so without "
        "the interpreter's own start)."
        + (
            " The bubblewrap row is the same run with each step confined (a user namespace, a read-only file "
            "system but for the task's scope, a private /tmp, no network): what confinement costs on top; the "
            "peers confine nothing, so the targets compare the row without a sandbox."
            if "harness-bwrap" in keys
            else " bubblewrap is not usable here, so the confined row is left out."
        )
    )
    checks = [f"{key} p{p}, {c}" for (key, p), cell in cells.items() for c in cell.checks]
    sec.say(
        "State read back after the first round (each peer's `--check`; the harness: `verify` of its log and "
        "the count of TASK_COMPLETED):"
    )
    sec.verbatim("\n".join(checks))

    h_single, d_single, lg_single = orch.single_s("harness"), orch.single_s("dbos"), orch.single_s("langgraph")
    log_b = med(s.state_bytes for s in cells["harness", 1].many) / n
    for p in (1, 2):
        h = orch.per_task_ms("harness", p)
        for key, name in (("langgraph", "LangGraph"), ("dbos", "DBOS")):
            each = orch.round_ratios("harness", key, p)
            r_ = med(each)
            rounds_ = f"; rounds {min(each):.2f}–{max(each):.2f}" if len(each) > 1 else ""
            rep.target(
                f"per task, parallel {p}: harness / {name} ({fmt(h)} / {fmt(orch.per_task_ms(key, p))} ms{rounds_})",
                r_,
                PEER_RATIO_TARGET,
            )
            rep.bars.append(Bar(f"per task p{p} / {name}", r_, PEER_RATIO_TARGET))
    r1 = ratio(h_single, d_single)
    rep.target(f"1-task program: harness / DBOS ({h_single:.3f} / {d_single:.3f} s)", r1, SINGLE_RATIO_TARGET)
    rep.bars.append(Bar("1-task wall / DBOS", r1, SINGLE_RATIO_TARGET))
    rep.bars.append(Bar("1-task wall / LangGraph", ratio(h_single, lg_single), None))
    rep.target(f"log bytes per task ({n}-task run, parallel 1)", log_b, LOG_TARGET_B, unit="B")
    return orch


# -- durability: the syncs each program makes per task -------------------------------------------

SYNC_CALLS = "fsync,fdatasync,sync_file_range,syncfs,sync,msync"


def strace_syncs(argv: list[str], out: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Sync system calls made by ``argv`` and every process it starts (``strace -f -c``)."""
    cmd = ["strace", "-f", "-qq", "-c", "-e", f"trace={SYNC_CALLS}", "-o", str(out), *argv]
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} under strace exited {proc.returncode}: {proc.stderr.decode()[-1000:]}")
    calls = 0
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in SYNC_CALLS.split(",") and parts[3].isdigit():
            calls += int(parts[3])
    return calls


def section_durability(rep: Report, root: Path, quick: bool) -> None:
    sec = rep.section("durability", "Durability: syncs per task")
    if shutil.which("strace") is None:
        sec.say("Skipped: `strace` is not installed.")
        return
    folder = root / "durability"
    folder.mkdir()
    small, big = 1, 11
    rows = []
    for p in (1,) if quick else (1, 2):
        for key in [*PEER_PROGRAMS, "harness"]:
            counts = []
            for n in (small, big):
                where = folder / f"{key}-p{p}-{n}"
                where.mkdir()
                if key == "harness":
                    _, plan = bench_run.new_workspace(where, "ws", bench_run.noop_tasks(n), "yaml")
                    argv = bench_run.run_argv(plan.parent, plan, p)
                    counts.append(strace_syncs(argv, where / "strace.txt", plan.parent, {**os.environ, "CI": "true"}))
                else:
                    state = where / "state"
                    state.mkdir()
                    argv = [
                        PY,
                        str(PEER_PROGRAMS[key][1]),
                        "--tasks",
                        str(n),
                        "--parallel",
                        str(p),
                        "--dir",
                        str(state),
                    ]
                    counts.append(strace_syncs(argv, where / "strace.txt", where))
            rows.append([label_of(key), str(p), str(counts[0]), fmt((counts[1] - counts[0]) / (big - small), 1)])
    sec.say(
        f"`fsync`, `fdatasync` and the other sync calls made by each program and every process it starts "
        f"(`strace -f -c`), for {small} and {big} tasks; per task = the difference / {big - small}. Every program "
        f"makes each task's results durable before going on; the SQLite peers pay several syncs per commit "
        f"(LangGraph: WAL, a commit per checkpoint and per task's writes; DBOS: rollback journal, a commit per step)."
        + (" Parallel 1 only in --quick." if quick else "")
    )
    sec.table(["program", "parallel", f"syncs, {small}-task program", "syncs per task"], rows)
    rep.syncs = ", ".join(f"{r[0].split(',')[0]} {r[3]}" for r in rows if r[1] == "1")
    shutil.rmtree(folder, ignore_errors=True)


# -- RPC and service start ---------------------------------------------------------------------------

MCP_SERVER = PEERS / "mcp_server.py"


class McpTarget:
    """The MCP SDK's client session on the SDK's stdio server, for ``bench_rpc.measure_all``: its
    event loop runs in a thread (an anyio blocking portal); a batch of calls is one portal call,
    so the latencies are timed inside the loop, as a user of the async SDK would see them."""

    def __init__(self, name: str, tool: bool) -> None:
        import contextlib

        import anyio.from_thread
        from mcp import ClientSession, StdioServerParameters, stdio_client

        self.name = name
        self.tool = tool
        self._devnull = open(os.devnull, "w")  # closed in close()
        params = StdioServerParameters(command=PY, args=[str(MCP_SERVER)])
        devnull = self._devnull

        @contextlib.asynccontextmanager
        async def session() -> Any:
            async with stdio_client(params, errlog=devnull) as (read, write):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    yield s

        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._session_cm = self._portal.wrap_async_context_manager(session())
        self.session = self._session_cm.__enter__()

    async def _one(self, i: int) -> None:
        if self.tool:
            res = await self.session.call_tool("echo", {"n": i})
            if res.is_error:
                raise RuntimeError(f"MCP echo failed: {res}")
        else:
            await self.session.send_ping()

    async def _sequential(self, n: int) -> list[int]:
        clock, lat = time.perf_counter_ns, [0] * n
        for i in range(n):
            t0 = clock()
            await self._one(i)
            lat[i] = clock() - t0
        return lat

    async def _pipelined(self, n: int) -> float:
        import anyio

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(self._one, i)
        return n / (time.perf_counter() - t0)

    def sequential(self, n: int) -> list[int]:
        return self._portal.call(self._sequential, n)

    def pipelined(self, n: int) -> float:
        return self._portal.call(self._pipelined, n)

    def close(self) -> None:
        try:
            self._session_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)
            self._devnull.close()


def section_rpc(rep: Report, quick: bool) -> None:
    sec = rep.section("rpc", "RPC over stdio: the harness's JSON-RPC against a raw echo loop and the MCP SDK")
    ns = argparse.Namespace(
        requests=1000 if quick else 10_000,
        warmup=200 if quick else 1000,
        rounds=5 if quick else 10,
        pipelined=2000 if quick else 10_000,
        pipelined_rounds=1 if quick else 3,
    )
    service_name, service = bench_rpc.planning_argv()
    targets: list[Any] = []
    try:
        targets.append(bench_rpc.PipeTarget("raw stdio echo loop (baseline)", [PY, "-c", bench_rpc.RAW_ECHO]))
        targets.append(bench_rpc.PipeTarget("harness.rpc Server, built-in ping", [PY, "-c", bench_rpc.BARE_SERVER]))
        targets.append(bench_rpc.PipeTarget(service_name, service))
        targets.append(bench_rpc.PeerTarget("planning ping via ServiceProcess.request (our client)", service))
        targets.append(McpTarget("MCP SDK: ClientSession.send_ping", tool=False))
        targets.append(McpTarget("MCP SDK: ClientSession.call_tool (one-tool server)", tool=True))
        rows = bench_rpc.measure_all(targets, ns)
    finally:
        for t in targets:
            t.close()
    raw = rows[0]
    by = {r.name: r for r in rows}
    ours = by["planning ping via ServiceProcess.request (our client)"]
    mcp_ping, mcp_tool = rows[4], rows[5]
    sec.say(
        f"Every target gets {ns.requests:,} sequential calls in {ns.rounds} interleaved rounds (after "
        f"{ns.warmup:,} warm-up calls) and {ns.pipelined_rounds} x {ns.pipelined:,} pipelined calls (all in "
        f"flight; median of the runs), through `bench_rpc.measure_all`. The first three rows share one plain "
        f"client (bench_rpc's, one thread, raw pipes); the fourth is our client (`ServiceProcess`); the MCP rows "
        f"are the SDK's client and server (bench/peers/mcp_server.py), the client timed inside its event loop. "
        f"Spread of a latency: p50 to p99."
    )
    table = []
    for r in rows:
        table.append(
            [
                r.name,
                fmt(r.p50_us, 1),
                fmt(r.p99_us, 1),
                rx(ratio(r.p50_us, raw.p50_us)),
                f"{r.seq_rps:,.0f}",
                f"{r.pipelined_rps:,.0f}",
                rx(ratio(raw.pipelined_rps, r.pipelined_rps)),
            ]
        )
    sec.table(
        [
            "target",
            "p50 µs",
            "p99 µs",
            "p50 vs raw",
            "sequential calls/s",
            "pipelined calls/s",
            "pipelined time vs raw",
        ],
        table,
    )
    r_ping, r_tool = ratio(ours.p50_us, mcp_ping.p50_us), ratio(ours.p50_us, mcp_tool.p50_us)
    r_pipe = ratio(mcp_tool.pipelined_rps, ours.pipelined_rps)
    sec.say(
        f"Our client and service against the MCP SDK's, p50 of a round trip: {rx(r_ping)} of MCP's ping, "
        f"{rx(r_tool)} of its tools/call; pipelined, our time per call is {rx(r_pipe)} of MCP tools/call's."
    )
    rep.bars.append(Bar("RPC p50 / MCP tools/call", r_tool, None))
    rep.bars.append(Bar("RPC pipelined time / MCP tools/call", r_pipe, None))


def mcp_initialize_line() -> bytes:
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

    params = {
        "protocolVersion": HANDSHAKE_PROTOCOL_VERSIONS[-1],
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    }
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}).encode() + b"\n"


def spawn_samples(argv: list[str], line: bytes, times: int) -> list[float]:
    """ms from spawn to the reply to ``line`` (an initialize), a fresh process each time, driven by
    bench_rpc's plain client."""
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        child = bench_rpc.Child(argv)
        try:
            reply = child.round_trip(line)
            out.append((time.perf_counter() - t0) * 1e3)
            if b'"result"' not in reply:
                raise RuntimeError(f"{argv}: initialize answered {reply[:200]!r}")
        finally:
            child.close()
    return out


def section_start(rep: Report, quick: bool) -> None:
    sec = rep.section("start", "Service start: spawn to the answer of `initialize`")
    times = 3 if quick else 10
    ours_init = b'{"jsonrpc":"2.0","id":1,"method":"initialize"}\n'
    progs: list[tuple[str, list[str], bytes]] = [
        ("raw stdio echo loop, python -c (baseline)", [PY, "-c", bench_rpc.RAW_ECHO], ours_init),
        ("harness.rpc Server, bare", [PY, "-c", bench_rpc.BARE_SERVER], ours_init),
    ]
    progs += [
        (f"harness service: {s}", bench_rpc.service_argv(s), ours_init)
        for s in bench_rpc.SERVICES
        if bench_rpc.runnable(s)
    ]
    progs.append(("MCP SDK server, one tool (bench/peers/mcp_server.py)", [PY, str(MCP_SERVER)], mcp_initialize_line()))
    samples: dict[str, list[float]] = {name: [] for name, _, _ in progs}
    for _ in range(times):  # interleaved
        for name, argv, line in progs:
            samples[name] += spawn_samples(argv, line, 1)
    base = med(samples[progs[0][0]])
    mcp = med(samples[progs[-1][0]])
    rows = [
        [name, fmt(med(xs), 1), spread(xs, 1), rx(ratio(med(xs), base)), rx(ratio(med(xs), mcp))]
        for name, xs in samples.items()
    ]
    sec.say(
        f"A fresh process each time, {times} interleaved rounds, median and min–max in ms. The harness starts its three services concurrently."
    )
    sec.table(["program", "ms", "spread", "vs raw", "vs MCP server"], rows)
    wm = samples.get("harness service: worker_manager")
    if wm:
        rep.bars.append(Bar("service start / MCP server", ratio(med(wm), mcp), None))


# -- event log ---------------------------------------------------------------------------------------


def hash_chain_floor(path: Path) -> int:
    """The least a verify must do per line: parse it and hash it (sha256 of the previous line's
    hash and the bytes before the hash field, 33 bytes from the end, as the log's format defines
    it)."""
    prev = b""
    count = 0
    with open(path, "rb") as f:
        for line in f.read().split(b"\n")[:-1]:
            event = json.loads(line)
            digest = base64.urlsafe_b64encode(hashlib.sha256(prev + line[:-33] + b"}").digest()[:16]).rstrip(b"=")
            if digest.decode() != event["hash"]:
                raise RuntimeError(f"line {count + 1}: the floor's hash chain does not hold")
            prev = digest
            count += 1
    return count


def timed_samples(fn: Callable[[], Any], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def section_eventlog(rep: Report, root: Path, quick: bool) -> None:
    from harness.eventlog import events_path, read_events, verify
    from harness.state import fold

    sec = rep.section("eventlog", "Event log: durable appends, fold and verify")
    folder = root / "eventlog"
    folder.mkdir()
    n, rounds = (500, 1) if quick else (2000, 3)
    line = bench_eventlog.sample_line(folder)
    counter = iter(range(10**6))

    def fresh() -> Path:
        return folder / f"log{next(counter)}.jsonl"

    bare, ours, grouped = [], [], []
    for _ in range(rounds):  # interleaved, as bench_eventlog does
        bare.append(bench_eventlog.bare_loop(fresh(), line, n, durable=True) / n * 1e6)
        ours.append(bench_eventlog.ours_one_by_one(fresh(), n, durable=True) / n * 1e6)
        grouped.append(bench_eventlog.ours_grouped(fresh(), n, 10) / n * 1e6)
    sec.say(
        f"Appends: {n:,} events of {len(line)} B, {rounds} interleaved round{'s' if rounds > 1 else ''} "
        f"(`bench_eventlog`'s functions), µs per event."
    )
    sec.table(
        ["append", "µs/event", "spread", "vs bare"],
        [
            ["bare os.write + fdatasync per line (baseline)", fmt(med(bare), 1), spread(bare, 1), "1.00x"],
            ["EventLog.append, durable", fmt(med(ours), 1), spread(ours, 1), rx(ratio(med(ours), med(bare)))],
            [
                "EventLog.append_many, groups of 10, durable",
                fmt(med(grouped), 1),
                spread(grouped, 1),
                rx(ratio(med(grouped), med(bare))),
            ],
        ],
    )

    size = 20_000 if quick else 100_000
    t = time.perf_counter()
    ws, run_id, _wire = bench_recovery.build_template(folder / "big", size, 0.0)
    path = events_path(ws, run_id)
    built = time.perf_counter() - t
    events = read_events(path).events
    reps = 1 if quick else 3
    parse = timed_samples(lambda: bench_eventlog.json_per_line(path), reps)
    reads = timed_samples(lambda: read_events(path), reps)
    folds = timed_samples(lambda: fold(events), reps)
    both = timed_samples(lambda: fold(read_events(path).events), reps)
    floor = timed_samples(lambda: hash_chain_floor(path), reps)
    verifies = timed_samples(lambda: verify(path), reps)
    result = verify(path)
    if not result.ok or result.count != len(events):
        raise RuntimeError(f"the {size}-event log does not verify: {result.problems[:3]}")
    sec.say(
        f"A log of {len(events):,} events ({path.stat().st_size / 1e6:.1f} MB), built in {built:.1f} s by "
        f"`bench_recovery.build_template`: a real run waiting at its gate, grown with copies of a real worker's "
        f"history (six events a task, four of them worker events). Median of {reps}, ms. `read_events` "
        f"parses with a faster parser than the stdlib's `json.loads`, hence ratios under 1."
    )

    def row(name: str, xs: list[float], base: list[float] | None) -> list[str]:
        return [
            name,
            fmt(med(xs) * 1e3, 1),
            spread([x * 1e3 for x in xs], 1),
            rx(ratio(med(xs), med(base))) if base else "1.00x",
        ]

    sec.table(
        ["over the whole log", "ms", "spread", "vs its baseline"],
        [
            row("json.loads per line (baseline: parsing)", parse, None),
            row("read_events", reads, parse),
            row(f"fold of the {len(events):,} events read (harness.state.fold)", folds, parse),
            row("read_events + fold (what `harness status` does)", both, parse),
            row("json.loads + sha256 per line (baseline: hash chain)", floor, None),
            row("verify (hashes, prev chain, seq)", verifies, floor),
        ],
    )
    shutil.rmtree(folder, ignore_errors=True)


# -- the big run -------------------------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run_with_rss(ws: Path, plan: Path, parallel: int) -> tuple[float, int, dict[int, tuple[str, int]]]:
    """``harness run`` as bench_run runs it, with the peak RSS (VmHWM) of the CLI, which is the
    supervisor, polled every 0.2 s, and of its children (the services). Returns (wall, the
    supervisor's peak kB, {pid: (command, peak kB)} of the children)."""
    argv = bench_run.run_argv(ws, plan, parallel)
    peaks: dict[int, tuple[str, int]] = {}
    top = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=ws,
        env={**os.environ, "CI": "true"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.2):
            top[0] = max(top[0], _status_kb(proc.pid, "VmHWM"))
            for child in _children(proc.pid):
                kb = _status_kb(child, "VmHWM")
                if kb:
                    try:
                        cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()[-60:]
                    except OSError:
                        cmd = "?"
                    peaks[child] = (cmd, max(kb, peaks.get(child, ("", 0))[1]))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    _, err = proc.communicate(timeout=3600)
    wall = time.perf_counter() - t0
    done.set()
    poller.join()
    if proc.returncode != 0:
        raise RuntimeError(f"harness run exited {proc.returncode}: {err.decode()[-2000:]}")
    return wall, top[0], peaks


def section_big(rep: Report, root: Path, orch: Orchestration | None, big: int) -> None:
    sec = rep.section("big", f"Scale: a real {big:,}-task run")
    p = 2
    ws, plan = bench_run.new_workspace(root, f"big-{big}", bench_run.noop_tasks(big), "yaml")
    wall, sup_kb, children = run_with_rss(ws, plan, p)
    log = bench_run.log_of(ws)
    log_b = log.stat().st_size / big
    if orch is not None:
        one = orch.single_s("harness", p)
        small = orch.per_task_ms("harness", p)
    else:
        one, small = math.nan, math.nan
    per = (wall - one) / (big - 1) * 1e3
    growth = ratio(per, small)
    sec.say(
        f"`harness run --plan --approve --parallel {p}` of {big:,} no-op tasks (two processes each), one run. Per "
        f"completion = (its wall - the 1-task wall of the orchestration section) / {big - 1:,}, against the "
        f"{orch.n if orch else '?'}-task figure at parallel {p} from this invocation. Peak RSS: VmHWM of the CLI "
        f"process (the supervisor) and of its children (the services), polled every 0.2 s."
    )
    rows = [
        ["wall", f"{wall:.1f} s"],
        ["per completion", f"{per:.2f} ms"],
        [f"per completion at {orch.n if orch else '?'} tasks (orchestration, same parallelism)", f"{fmt(small)} ms"],
        ["growth", rx(growth)],
        ["supervisor peak RSS", f"{sup_kb / 1024:.0f} MB"],
    ]
    for _pid, (cmd, kb) in sorted(children.items(), key=lambda kv: -kv[1][1]):
        rows.append([f"child peak RSS: …{cmd.strip()[-45:]}", f"{kb / 1024:.0f} MB"])
    rows.append(["log bytes per task", f"{log_b:,.0f} B"])
    sec.table(["", ""], rows, "lr")
    rep.target(
        f"{big:,}-task plan, parallel {p}: per completion / {orch.n if orch else '?'}-task figure "
        f"({per:.2f} / {fmt(small)} ms)",
        growth,
        BIG_GROWTH_TARGET,
    )
    rep.target(f"{big:,}-task plan, parallel {p}: supervisor peak RSS", sup_kb / 1024, BIG_RSS_TARGET_MB, unit="MB")
    rep.bars.append(Bar(f"per completion {big // 1000}k / {orch.n if orch else '?'}", growth, BIG_GROWTH_TARGET))
    shutil.rmtree(ws, ignore_errors=True)


# -- the existing scripts, as subprocesses ---------------------------------------------------------


def run_script(argv: list[str], timeout: float = 1800) -> str:
    t = time.perf_counter()
    proc = subprocess.run([PY, *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    print(f"   {' '.join(argv)}: exit {proc.returncode} in {time.perf_counter() - t:.0f} s", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def numbers(line: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"(?<![\w.])\d[\d,]*\.?\d*(?![\w])", line)]


def section_recovery(rep: Report, root: Path) -> None:
    sec = rep.section("recovery", "Recovery: SIGKILL of the worker manager to the next attempt")
    out = run_script(["bench/bench_recovery.py", "--dir", str(root)])
    base = re.search(r"spawn -> answered initialize of a fresh worker manager, no replay: ([\d.]+) ms", out)
    sizes_line = next((ln for ln in out.splitlines() if ln.startswith("== kill")), "")
    sizes = [int(x) for x in numbers(sizes_line.split(":", 1)[-1])]
    started = next((ln for ln in out.splitlines() if ln.startswith("attempt 2 started")), "")
    folds = next((ln for ln in out.splitlines() if ln.startswith("fold (harness.state.fold)")), "")
    base_ms = float(base.group(1)) if base else math.nan
    got = numbers(started.split(")", 1)[-1]) if started else []
    fold_ms = numbers(folds.split(")", 1)[-1].split("events", 1)[-1]) if folds else []
    sec.say(
        "`bench/bench_recovery.py` (medians of 3): a real run whose log is grown to N events, its worker "
        "manager SIGKILLed while a task runs; the figure is the kill to the durable TASK_STARTED of attempt 2. "
        "Baseline: spawn to answered `initialize` of a fresh worker manager, no replay."
    )
    if sizes and len(got) == len(sizes):
        rows = [
            [f"{s:,} events", fmt(ms, 1), rx(ratio(ms, base_ms)), fmt(f, 1) if i < len(fold_ms) else "-"]
            for i, (s, ms, f) in enumerate(zip(sizes, got, fold_ms + [math.nan] * 3, strict=False))
        ]
        sec.table(["log of", "kill -> attempt 2 started, ms", "vs spawn + initialize", "fold of the log, ms"], rows)
        bars = dict(zip(sizes, got, strict=False))
        if 10_000 in bars:
            rep.bars.append(Bar("recovery at 10k events / spawn", ratio(bars[10_000], base_ms), None))
    tail = out[out.find("== kill") :] if "== kill" in out else out
    sec.verbatim(tail)


SCHED_ROW = re.compile(
    r"^(chain|wide|layers)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)x\s+([\d.]+)x"
)


def section_scheduler(rep: Report) -> None:
    sec = rep.section("scheduler", "Scheduler scaling: 200 / 2,000 / 10,000 tasks")
    out = run_script(["bench/bench_scheduler.py", "--whole", "200"])
    rows: dict[tuple[str, int], dict[int, tuple[float, float]]] = {}
    for ln in out.splitlines():
        m = SCHED_ROW.match(ln)
        if m:
            rows.setdefault((m.group(1), int(m.group(3))), {})[int(m.group(2))] = (float(m.group(4)), float(m.group(5)))
    sec.say(
        "`bench/bench_scheduler.py --whole 200`: a whole run simulated in process (no services, no processes), "
        "the decision layer plus the fold per completion, medians of 3, against the previous design's full "
        "scans per completion (timed on 300 completions in 10 windows above 200 tasks). Growth: cost per "
        "completion at this size over the cost at 200 tasks."
    )
    table = []
    for (shape, par), by_n in rows.items():
        base_ours, base_scan = by_n.get(200, (math.nan, math.nan))
        for n_, (ours, scans) in sorted(by_n.items()):
            table.append(
                [
                    shape,
                    str(par),
                    f"{n_:,}",
                    fmt(ours, 1),
                    rx(ratio(ours, base_ours)),
                    fmt(scans, 1),
                    rx(ratio(scans, base_scan)),
                    rx(ratio(scans, ours)),
                ]
            )
    if table:
        sec.table(
            ["shape", "parallel", "tasks", "ours µs", "ours growth", "scans µs", "scans growth", "scans / ours"],
            table,
            "lrrrrrrr",
        )
        growths = [ratio(by_n[10000][0], by_n[200][0]) for by_n in rows.values() if 10000 in by_n and 200 in by_n]
        if growths:
            sec.say(
                f"Largest growth of ours from 200 to 10,000 tasks: {rx(max(growths))} (the decision layer alone; the `big` section has a real run)."
            )
    sec.verbatim(out)


def section_agent(rep: Report) -> None:
    sec = rep.section("agent", "Agent overhead: the harness around an agent task against the same CLI by hand")
    claude = REPO / ".ci" / "agents" / "node_modules" / ".bin" / "claude"
    use_claude = os.access(claude, os.X_OK) or bool(os.environ.get("HARNESS_AGENT_BIN_DIR"))
    argv = ["bench/bench_agent.py"] + (["--agent", "claude"] if use_claude else [])
    out = run_script(argv)
    bare = re.search(r"^bare\s+([\d.]+)\s+([\d.]+)s", out, re.M)
    ours = re.search(r"^harness\s+([\d.]+)\s+([\d.]+)s", out, re.M)
    r = re.search(r"harness / bare per task: ([\d.]+)x", out)
    sec.say(
        f"`bench/bench_agent.py{' --agent claude' if use_claude else ''}`: "
        + (
            "Claude Code on the tests' fake model, both sides"
            if use_claude
            else "the stand-in agent program (Claude Code is not installed here), both sides"
        )
        + "; marginal ms per task of a chain (N tasks minus 1, over N - 1), medians of 3: `harness run --agent` "
        "(worktree, prompt, output parsing, acceptance test, commit, merge, log) against the same CLI and test run by hand."
    )
    if bare and ours:
        sec.table(
            ["side", "ms/task", "1-task wall s"],
            [
                ["by hand (baseline)", bare.group(1), bare.group(2)],
                ["harness run --agent", ours.group(1), ours.group(2)],
            ],
        )
    value = float(r.group(1)) if r else math.nan
    what = "Claude Code" if use_claude else "stand-in agent"
    rep.target(f"agent task ({what}): harness / bare run of the same CLI", value, AGENT_RATIO_TARGET)
    rep.bars.append(Bar(f"agent task / by hand ({what})", value, AGENT_RATIO_TARGET))
    sec.verbatim(out)


def section_ray(rep: Report) -> None:
    sec = rep.section("ray", "Ray executor overhead: --executor ray against --executor local")
    out = run_script(["bench/bench_ray.py"])
    if "not installed" in out:
        sec.say("Skipped: Ray is not installed (`pip install -e '.[ray]'`).")
        return
    sec.say(
        "`bench/bench_ray.py`: a one-node Ray cluster on this machine (loopback, 2 CPUs), started once and "
        "timed apart; the same plan of no-op tasks (a 10-file scope) run by `harness run` with the local "
        "executor, with Ray on a shared file system (steps in place) and with Ray bundling each attempt's "
        "scope to the node and its changes back (the default); marginal ms per task, medians of 3 rounds."
    )
    for way in ("shared fs", "bundled"):
        m = re.search(rf"^ray, {way} - local per task: (-?[\d.]+) ms", out, re.M)
        value = float(m.group(1)) if m else math.nan
        rep.target(f"Ray executor ({way}): ms per task more than local", value, RAY_EXTRA_MS_TARGET, unit="ms")
    sec.verbatim(out)


# -- chart and markdown ------------------------------------------------------------------------------


def chart_svg(bars: list[Bar], title: str) -> str:
    """A horizontal bar per ratio, a red tick at its target, a grey line at 1.0 (parity)."""
    bars = [b for b in bars if not math.isnan(b.value)]
    left, width, row_h, top = 290, 420, 30, 54
    height = top + row_h * len(bars) + 46
    scale_max = max([1.2, *(b.value for b in bars), *(b.target or 0 for b in bars)]) * 1.12

    def x(v: float) -> float:
        return left + width * v / scale_max

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="12" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
        '<text x="12" y="40" fill="#555">harness / baseline, same invocation; red tick = target (at most); '
        "grey line = 1.0</text>",
    ]
    for i, b in enumerate(bars):
        y = top + i * row_h
        met = None if b.target is None else b.value <= b.target
        color = "#78909c" if met is None else ("#2e7d32" if met else "#c62828")
        out.append(f'<text x="{left - 8}" y="{y + 19}" text-anchor="end">{escape(b.label)}</text>')
        out.append(
            f'<rect x="{left}" y="{y + 6}" width="{max(1.0, x(b.value) - left):.1f}" height="18" fill="{color}"/>'
        )
        label_x = max(x(b.value), x(b.target) + 2 if b.target is not None else 0.0) + 5
        out.append(f'<text x="{label_x:.1f}" y="{y + 19}">{b.value:.2f}x</text>')
        if b.target is not None:
            tx = x(b.target)
            out.append(
                f'<line x1="{tx:.1f}" y1="{y + 2}" x2="{tx:.1f}" y2="{y + 28}" stroke="#d50000" stroke-width="2.5"/>'
            )
    base_y = top + row_h * len(bars)
    out.append(
        f'<line x1="{x(1.0):.1f}" y1="{top}" x2="{x(1.0):.1f}" y2="{base_y}" stroke="#9e9e9e" stroke-dasharray="4 3"/>'
    )
    out.append(f'<line x1="{left}" y1="{base_y}" x2="{left + width}" y2="{base_y}" stroke="#333"/>')
    step = 0.5 if scale_max <= 4 else (1.0 if scale_max <= 8 else 2.0)
    v = 0.0
    while v <= scale_max:
        out.append(f'<line x1="{x(v):.1f}" y1="{base_y}" x2="{x(v):.1f}" y2="{base_y + 5}" stroke="#333"/>')
        out.append(f'<text x="{x(v):.1f}" y="{base_y + 18}" text-anchor="middle" fill="#333">{v:g}x</text>')
        v += step
    out.append(
        f'<text x="12" y="{height - 8}" fill="#555">green: target met; red: missed; grey: no target (context)</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def markdown(rep: Report, chart_rel: str, runtime: float, argv: list[str]) -> str:
    mode = "quick" if rep.quick else "full"
    lines = [
        "# Benchmarks",
        "",
        f"Written by `python bench/suite.py{' ' + ' '.join(argv) if argv else ''}` ({mode} run, {runtime:.0f} s). "
        "Every figure is a median with its spread, next to a baseline measured **in the same invocation**; "
        "this is a shared 2-core VM whose page cache is reclaimed aggressively, so only ratios from one run "
        "count. Regenerate rather than compare with another run's absolute figures.",
        "",
    ]
    if rep.quick:
        lines += [
            "**Quick run**: fewer tasks and calls, one round, no durability / big / recovery / scheduler / agent "
            "sections; "
            "read its figures as indicative.",
            "",
        ]
    lines += ["## Machine", "", Table(["", ""], [[k, v] for k, v in rep.machine.items()], "ll").render(), ""]
    lines += ["## Targets", ""]
    rows = [
        [t.label, t.measured, t.limit, "met" if t.ok else ("**not met**" if t.ok is False else "not measured")]
        for t in rep.targets
    ]
    lines += [Table(["target (from the issue)", "measured", "target", ""], rows, "lrrl").render(), ""]
    lines += [
        "Also required: every state change durable before the next step depends on it. Each program here does "
        "that (the harness fdatasyncs its log; the peers commit a step or a checkpoint per process, see "
        "bench/peers/); the Durability section counts the syncs each makes per task"
        + (f" (parallel 1: {rep.syncs})." if rep.syncs else " (full run only)."),
        "",
        f"![harness / baseline ratios]({chart_rel})",
        "",
    ]
    for sec in rep.sections:
        if sec.key == "machine":
            continue
        lines += [f"## {sec.title}", ""]
        for block in sec.blocks:
            lines += [block.render() if isinstance(block, Table) else block, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="under a minute: 50 tasks, one round, no slow sections")
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="the report (default: BENCHMARKS.md)")
    parser.add_argument(
        "--chart",
        help="the chart of the ratios (default: bench/benchmarks.svg with the default --out, else beside --out)",
    )
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=None, help="run these sections only")
    parser.add_argument("--tasks", type=int, default=None, help="tasks per orchestration run (200; quick 50)")
    parser.add_argument("--rounds", type=int, default=None, help="orchestration rounds (7; quick 1)")
    parser.add_argument("--big", type=int, default=10_000, help="tasks of the big run (full only; 0 skips it)")
    parser.add_argument("--dir", default=None, help="where the scratch folder goes (default: the repository's parent)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    shown_argv = list(argv if argv is not None else sys.argv[1:])

    sections = list(args.only or SECTIONS)
    if args.quick:
        skipped = [s for s in sections if s in SLOW]
        sections = [s for s in sections if s not in SLOW]
    else:
        skipped = ["big"] if args.big <= 0 and "big" in sections else []
        sections = [s for s in sections if s not in skipped]
    n = args.tasks or (50 if args.quick else 200)
    rounds = args.rounds or (1 if args.quick else 7)

    rep = Report(quick=args.quick, started=time.perf_counter())
    root = scratch_root(args.dir)
    print(f"bench/suite.py: {'quick' if args.quick else 'full'} run; scratch {root}", flush=True)
    if skipped:
        print(f"skipped{' in --quick' if args.quick else ''}: {', '.join(skipped)}", flush=True)
    orch: list[Orchestration] = []
    steps: dict[str, Callable[[], object]] = {
        "orchestration": lambda: orch.append(section_orchestration(rep, root, n, rounds)),
        "durability": lambda: section_durability(rep, root, args.quick),
        "rpc": lambda: section_rpc(rep, args.quick),
        "start": lambda: section_start(rep, args.quick),
        "eventlog": lambda: section_eventlog(rep, root, args.quick),
        "big": lambda: section_big(rep, root, orch[0] if orch else None, args.big),
        "recovery": lambda: section_recovery(rep, root),
        "scheduler": lambda: section_scheduler(rep),
        "agent": lambda: section_agent(rep),
        "ray": lambda: section_ray(rep),
    }
    failed = []
    try:
        section_machine(rep, root)  # always: the conditions every figure was taken under
        for key in SECTIONS[1:]:
            if key not in sections:
                continue
            try:
                steps[key]()
            except Exception as exc:  # one section failing leaves the others' figures standing
                failed.append(key)
                print(f"section {key} FAILED: {exc!r}", file=sys.stderr, flush=True)
                sec = rep.sections[-1] if rep.sections and rep.sections[-1].key == key else rep.section(key, key)
                sec.say(f"**This section failed**: `{type(exc).__name__}: {str(exc)[:500]}`")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    for s in skipped:
        titles = {
            "durability": "Durability: syncs per task",
            "big": "Scale: a real 10,000-task run",
            "recovery": "Recovery",
            "scheduler": "Scheduler scaling",
            "agent": "Agent overhead",
            "ray": "Ray executor overhead",
        }
        sec = rep.section(s, titles[s])
        sec.say(f"Skipped{' in --quick' if args.quick else ' (--big 0)'}: run `python bench/suite.py` for it.")
    if args.quick:
        rep.targets += [
            Target(
                f"{args.big:,}-task plan: per completion / 200-task figure", "-", f"<= {BIG_GROWTH_TARGET:g}x", None
            ),
            Target(f"{args.big:,}-task plan: supervisor peak RSS", "-", f"<= {BIG_RSS_TARGET_MB:g} MB", None),
            Target("agent task: harness / bare run of the same CLI", "-", f"<= {AGENT_RATIO_TARGET:g}x", None),
            Target("Ray executor: ms per task more than local", "-", f"<= {RAY_EXTRA_MS_TARGET:g} ms", None),
        ]
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rep.machine["load average at end"] = load_end
    runtime = time.perf_counter() - rep.started

    print("\n== Targets")
    for t in rep.targets:
        print(
            f"  {t.label:<78} {t.measured:>10}  {t.limit:>10}  {'met' if t.ok else ('NOT MET' if t.ok is False else '-')}"
        )
    print(f"\nload average at end: {load_end}; {runtime:.0f} s in all")

    out = Path(args.out).resolve()
    if args.chart:
        chart = Path(args.chart).resolve()
    elif out == (REPO / "BENCHMARKS.md").resolve():
        chart = BENCH / "benchmarks.svg"
    else:  # a report elsewhere does not overwrite the chart the README shows
        chart = out.with_suffix(".svg")
    chart.write_text(chart_svg(rep.bars, f"harness / baseline ({'quick' if args.quick else 'full'} run)"))
    out.write_text(markdown(rep, os.path.relpath(chart, out.parent), runtime, shown_argv))
    print(f"wrote {out} and {chart}")
    if failed:
        print(f"failed sections: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
