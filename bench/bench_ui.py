"""The dashboard on a 10,000-task run: its runs page and run page, cold and warm, against the fold
and the server's own floor, in one invocation.

    python bench/bench_ui.py [--tasks 10000] [--runs 21] [--cold 5] [--warm 20] [--profile]
                             [--dir DIR] [--keep]

The workspace. A real run of 3 shell tasks (``true`` twice, b after a; c's acceptance test fails
once, is classified logic_error and retried) is made with the real CLI (``harness run --plan
--approve``, CI=true) in a scratch git repository. Its events are the templates: the run-level
events (RUN_STARTED, SERVICE_STARTED, PLAN_CREATED, GATE_*, BOOTSTRAP_*; EXECUTION_COMPLETE,
SERVICE_STOPPED), the 5 events of a task that passed (WORKER_SPAWNED, TASK_STARTED,
WORKER_STARTED, WORKER_FINISHED, TASK_COMPLETED) and those of the task that failed once (... TASK_FAILED, FAILURE_DETECTED, FAILURE_CLASSIFIED,
RECOVERY_APPLIED, then attempt 2). A run of ``--tasks`` tasks is written from them with the real
writer (``EventLog.open`` + ``append_many(durable=False)`` in batches): the plan is the recorded
packet copied with new ids and titles, in levels of sqrt(N) tasks (100 levels of 100 at 10,000),
each task depending on 1-3 tasks of the level before (``random.Random(42)``); ``--flaky`` of them
(default 10) fail once and are retried; the plan is recorded as a real run from a plan file records
it (compact, ``plan_file`` in RUN_STARTED, which PLAN_CREATED names), with its real ``plan_hash``
in GATE_APPROVED; run ids, task ids, worker ids and idempotency keys are fresh. Time: the writer
takes a ``clock``; it is given the recorded gaps between events (a sequential run, ending five
minutes ago), and each worker event's ``at`` keeps its recorded offset from its event. The plan
report's per-task "acceptance test 'true' proves nothing" warnings are left out (a real plan of
10,000 tasks would not have 10,000 vacuous tests). Copies of 5 tasks fill the runs page up to
``--runs`` runs, the real one included. The big log is checked: ``verify`` ok, its fold has every
task completed.

What is timed (``time.perf_counter`` around a whole HTTP GET with ``http.client``: request,
response, the body read to the end, on a kept-alive connection). The server is started as
``harness ui`` starts it: ``bind("127.0.0.1", 0)``, ``Settings(workspace, token, hosts=
allowed_hosts(bound))``, ``create_app``, ``uvicorn.Server`` with the same Config, run in a thread on
the bound socket; the bench logs in with ``/?token=`` and sends the cookie after.

  cold    a new app per sample (and jinja's template cache emptied): nothing folded, nothing
          compiled. "runs page" is ``/`` on a new app (it folds every run's log); "run page" is
          ``/runs/<big>`` on another new app (a direct link: it folds the big log); "run page
          after the runs page" is the click from the first: folded already, rendered first time.
          The log is in the page cache in every sample (a real first view may read it from disk).
  warm    one app, every page loaded once, then ``--warm`` rounds of each page interleaved:
          a refresh reads no new bytes, so this is the rendering.
  baselines, same invocation: (a) ``read_events`` + ``upgrade`` + ``fold`` of the big log in
          process, as ``harness status`` reads a run (the least any page of the run must do once);
          (b) ``GET /static/app.css`` through the same server and connection (the server's floor).

Also: the task page of a task retried once (its worker folders copied from the real run), and the
report page (linked from the run page past 300 tasks). Every figure has an "of which gc" column:
the time the cyclic garbage collector ran during it (``gc.callbacks``, any thread). A check: the
warm pages again through a second listening socket of the same server with TCP_NODELAY set
explicitly, and whether ``bind()``'s own socket has it. Without it (the tree before ``bind()`` set
it) a small response on a kept-alive connection waits for the client's delayed ACK, about 40 ms,
and the two columns differ. In process, without HTTP, the parts of the run page
separately (``RunDigest.refresh`` of the whole log, also with the collector off for comparison,
the summary, ``svg.dag_svg``, ``svg.timeline_svg``, the template), so a slow page can be blamed;
``--profile`` adds cProfile of the cold refresh and of one warm pass.

How to read it: the requirement is the two cold figures (under 2 s each); cold over the fold
baseline says what the dashboard adds to reading the log; warm over the static GET says what a
page view costs over serving a file (if the TCP_NODELAY check differs, small pages' as-served
figures are the 40 ms wait, not the page). Only same-run ratios count on this shared 2-core VM;
the load average is printed at start and end.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import http.client
import inspect
import io
import json
import math
import os
import pstats
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import uvicorn
import yaml
from markupsafe import Markup

from harness import eventlog
from harness.events import upgrade
from harness.plandiff import plan_hash
from harness.planlog import full_plan
from harness.state import RunState, TaskStatus, fold
from harness.ui import app as ui_app
from harness.ui import svg
from harness.ui.app import Settings, create_app
from harness.ui.model import RunDigest
from harness.ui.server import Bound, allowed_hosts, bind

REPO = Path(__file__).resolve().parents[1]
FLAKY = "test -f once || { touch once; false; }"
SMALL_TASKS = 5
BATCH = 5000  # events per append_many
TITLES = ("Build", "Test", "Lint", "Package", "Migrate", "Index", "Render", "Check")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pick_root(arg: str | None) -> Path:
    """A fresh scratch folder on the repository's disk (the repository's parent by default)."""
    base = Path(arg) if arg else REPO.parent
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-ui-", dir=base)).resolve()
    same = root.stat().st_dev == REPO.stat().st_dev
    print(f"scratch: {root} ({'same device as the repository' if same else 'another device'})")
    return root


# -- the recording --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One recorded event as a template: its data as JSON text with markers for the ids."""

    type: str
    text: str  # @@RUN@@, @@TASK@@, @@W0@@, @@W1@@ stand for the ids
    task: bool  # the event names the task
    worker: int | None  # which attempt's worker the event names
    gap: float  # seconds after the event before it, as recorded
    at_offset: float | None  # data["at"] minus the event's unix time, as recorded


@dataclass
class Recording:
    workspace: Path
    run_id: str
    events: list[dict[str, Any]]
    prefix: list[Step]  # run-level events before the first task's
    suffix: list[Step]  # run-level events after the last task's
    plain: list[Step]  # a task that passed at once
    flaky: list[Step]  # a task that failed once and passed on the retry
    between: float  # from one task's last event to the next task's first
    plan: dict[str, Any]
    plan_file: dict[str, Any]
    report: dict[str, Any] | None
    flaky_workers: list[str]  # the real worker ids of the flaky task, for its folders


def record(root: Path) -> Recording:
    """A real 3-task run with the real CLI; its events cut into templates."""
    ws = root / "workspace"
    ws.mkdir()
    git_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True, env=git_env)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "init"], cwd=ws, check=True, env=git_env)
    plan_path = root / "plan.yaml"
    plan_path.write_text(
        yaml.safe_dump(
            {
                "objective": "Bench the dashboard",
                "tasks": [
                    {"id": "a", "title": "Passes", "commands": ["true"], "acceptance_tests": ["true"]},
                    {
                        "id": "b",
                        "title": "Passes after a",
                        "depends_on": ["a"],
                        "commands": ["true"],
                        "acceptance_tests": ["true"],
                    },
                    {"id": "c", "title": "Fails once", "commands": ["true"], "acceptance_tests": [FLAKY]},
                ],
            },
            sort_keys=False,
        )
    )
    cmd = [sys.executable, "-m", "harness.cli", "run", "--plan", str(plan_path), "--approve", "--workspace", str(ws)]
    proc = subprocess.run(
        cmd,
        cwd=root,
        env={**git_env, "CI": "true"},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the recorded run exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    run_id = eventlog.list_runs(ws)[-1]
    events = eventlog.read_events(eventlog.events_path(ws, run_id)).events
    with_task = [i for i, e in enumerate(events) if e.get("task_id")]
    first, last = with_task[0], with_task[-1]
    if any(not e.get("task_id") for e in events[first : last + 1]):
        raise RuntimeError("the recorded run has run-level events between its tasks' events")
    by_task: dict[str, list[int]] = {}
    for i in with_task:
        by_task.setdefault(events[i]["task_id"], []).append(i)
    if sorted(by_task) != ["a", "b", "c"] or by_task["a"][-1] > by_task["b"][0]:
        raise RuntimeError(f"unexpected task order in the recorded run: {list(by_task)}")
    flaky_types = [events[i]["type"] for i in by_task["c"]]
    for needed in ("TASK_FAILED", "FAILURE_CLASSIFIED", "RECOVERY_APPLIED"):
        if needed not in flaky_types:
            raise RuntimeError(f"task c of the recorded run has no {needed}: {flaky_types}")
    if flaky_types[-1] != "TASK_COMPLETED" or events[by_task["a"][-1]]["type"] != "TASK_COMPLETED":
        raise RuntimeError("a recorded task did not end with TASK_COMPLETED")

    def workers_of(indices: list[int]) -> list[str]:
        out: list[str] = []
        for i in indices:
            w = events[i].get("worker_id")
            if w and w not in out:
                out.append(w)
        return out

    def steps(indices: list[int], task_id: str | None) -> list[Step]:
        workers = workers_of(indices) if task_id else []
        out = []
        for i in indices:
            e = events[i]
            text = json.dumps(e["data"], ensure_ascii=False)
            for k, w in enumerate(workers):
                text = text.replace(w, f"@@W{k}@@")
            if task_id:
                text = text.replace(f"{run_id}:{task_id}:", "@@RUN@@:@@TASK@@:")
            text = text.replace(run_id, "@@RUN@@")
            at = e["data"].get("at")
            out.append(
                Step(
                    type=e["type"],
                    text=text,
                    task=bool(task_id),
                    worker=workers.index(e["worker_id"]) if e.get("worker_id") else None,
                    gap=float(e["unix"]) - float(events[i - 1]["unix"]) if i else 0.0,
                    at_offset=float(at) - float(e["unix"]) if isinstance(at, int | float) else None,
                )
            )
        return out

    plan_created = next(e for e in events if e["type"] == "PLAN_CREATED")["data"]
    run_started = events[0]["data"]
    return Recording(
        workspace=ws,
        run_id=run_id,
        events=events,
        prefix=steps(list(range(first)), None),
        suffix=steps(list(range(last + 1, len(events))), None),
        plain=steps(by_task["a"], "a"),
        flaky=steps(by_task["c"], "c"),
        between=float(events[by_task["b"][0]]["unix"]) - float(events[by_task["a"][-1]]["unix"]),
        plan=plan_created.get("plan") or run_started["plan_file"],  # compact, as logged (format 3)
        plan_file=run_started.get("plan_file") or plan_created["plan"],
        report=plan_created.get("report"),
        flaky_workers=workers_of(by_task["c"]),
    )


# -- writing a big run from it --------------------------------------------------------------------


class Clock:
    """The writer's clock: hands out the times queued for the events being appended, in order."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def __call__(self) -> float:
        return self.times.popleft()


@dataclass
class Written:
    run_id: str
    path: Path
    events: int
    tasks: list[str]
    flaky: list[str]
    workers: dict[str, list[str]] = field(default_factory=dict)  # task id -> its workers' ids


def plan_tasks(rec: Recording, n: int, flaky: set[int], rng: random.Random) -> tuple[list[dict[str, Any]], int]:
    """n packets copied from the recorded ones, in levels of sqrt(n), each on 1-3 of the level before."""
    packets = {p["id"]: p for p in rec.plan["tasks"]}
    width = max(1, round(math.sqrt(n)))
    digits = max(3, len(str(n - 1)))
    tasks: list[dict[str, Any]] = []
    previous: list[str] = []
    level: list[str] = []
    for i in range(n):
        lv = i // width
        if i % width == 0 and i:
            previous, level = level, []
        tid = f"t{i:0{digits}d}"
        title = f"{TITLES[i % len(TITLES)]} part {i} (level {lv})"
        deps = sorted(rng.sample(previous, min(len(previous), rng.randint(1, 3)))) if previous else []
        packet = dict(packets["c" if i in flaky else "a"])
        packet.update(id=tid, title=title, objective=title, depends_on=deps)
        tasks.append(packet)
        level.append(tid)
    return tasks, (n - 1) // width + 1


def span(rec: Recording, n: int, n_flaky: int) -> float:
    """How long the written run lasts, from the recorded gaps."""
    per = sum(s.gap for s in rec.plain[1:]), sum(s.gap for s in rec.flaky[1:])
    return (
        sum(s.gap for s in rec.prefix[1:])
        + rec.plain[0].gap
        + (n - 1) * rec.between
        + (n - n_flaky) * per[0]
        + n_flaky * per[1]
        + sum(s.gap for s in rec.suffix)
    )


def write_run(rec: Recording, n: int, n_flaky: int, end: float, rng: random.Random) -> Written:
    flaky_idx = set(rng.sample(range(n), min(n, n_flaky)))
    tasks, _levels = plan_tasks(rec, n, flaky_idx, rng)
    plan = {**rec.plan, "tasks": tasks}
    plan_file = {**rec.plan_file, "tasks": tasks}
    report = dict(rec.report) if rec.report is not None else None
    if report is not None:
        recorded_ids = {p["id"] for p in rec.plan["tasks"]}
        report["problems"] = [p for p in report.get("problems") or [] if p.get("task_id") not in recorded_ids]
    start = end - span(rec, n, len(flaky_idx))
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(start)) + f"-{rng.getrandbits(24):06x}"
    path = eventlog.events_path(rec.workspace, run_id)
    clock = Clock()
    out = Written(run_id, path, 0, [t["id"] for t in tasks], [tasks[i]["id"] for i in sorted(flaky_idx)])
    specs: list[tuple[str, dict[str, Any], str | None, str | None]] = []
    now = start

    def add(step: Step, task: str | None = None, workers: tuple[str, ...] = ()) -> None:
        nonlocal now
        now += step.gap
        text = step.text.replace("@@RUN@@", run_id)
        if task is not None:
            text = text.replace("@@TASK@@", task)
            for k, w in enumerate(workers):
                text = text.replace(f"@@W{k}@@", w)
        data = json.loads(text)
        if step.at_offset is not None:
            data["at"] = round(now + step.at_offset, 7)
        specs.append((step.type, data, task, workers[step.worker] if step.worker is not None else None))
        clock.times.append(now)

    with eventlog.EventLog.open(path, run_id, create=True, clock=clock) as log:

        def flush() -> None:
            log.append_many(specs, durable=False)
            assert not clock.times, "the writer did not ask the clock once per event"
            out.events += len(specs)
            specs.clear()

        for k, step in enumerate(rec.prefix):
            if k == 0:
                step = Step(step.type, step.text, False, None, 0.0, None)
            add(step)
            data = specs[-1][1]
            if step.type == "RUN_STARTED" and "plan_file" in data:
                data["plan_file"] = plan_file
                data["plan_file_hash"] = plan_hash(full_plan(plan_file))  # hashed whole, logged compact
            elif step.type == "PLAN_CREATED":
                data["report"] = report
                if "plan" in data:  # else from_plan_file: RUN_STARTED's, recorded once
                    data["plan"] = plan
            elif step.type == "GATE_APPROVAL_REQUESTED":
                data["tasks"] = n
            elif step.type == "GATE_APPROVED" and "plan_hash" in data:
                data["plan_hash"] = plan_hash(full_plan(plan))
        for i, task in enumerate(tasks):
            template = rec.flaky if i in flaky_idx else rec.plain
            workers = tuple(f"w-{rng.getrandbits(48):012x}" for _ in range(1 + max(s.worker or 0 for s in template)))
            out.workers[task["id"]] = list(workers)
            for k, step in enumerate(template):
                if k == 0 and i:
                    step = Step(step.type, step.text, step.task, step.worker, rec.between, step.at_offset)
                add(step, task["id"], workers)
            if len(specs) >= BATCH:
                flush()
        for step in rec.suffix:
            add(step)
            if step.type == "EXECUTION_COMPLETE":
                data = specs[-1][1]
                for key in ("pending", "running", "waiting", "failed", "skipped"):
                    data[key] = 0
                data.update(status="completed", completed=n)
        flush()
    return out


def check(written: Written, n: int) -> RunState:
    result = eventlog.verify(written.path)
    if not result.ok:
        raise RuntimeError(f"the written log does not verify: {result.problems[:3]}")
    state = fold(upgrade(eventlog.read_events(written.path).events))
    done = sum(1 for t in state.tasks.values() if t.status is TaskStatus.completed)
    if len(state.tasks) != n or done != n or state.status.value != "completed":
        raise RuntimeError(f"the written log folds to {len(state.tasks)} tasks, {done} completed, {state.status}")
    return state


def copy_worker_dirs(rec: Recording, written: Written, task: str) -> None:
    """The task page shows the latest attempt's stdout/stderr: give that task real worker folders."""
    source = eventlog.run_dir(rec.workspace, rec.run_id) / "workers"
    target = eventlog.run_dir(rec.workspace, written.run_id) / "workers"
    for real, fresh in zip(rec.flaky_workers, written.workers[task], strict=False):
        if (source / real).is_dir():
            shutil.copytree(source / real, target / fresh)


# -- the server -----------------------------------------------------------------------------------


class GcClock:
    """Seconds the cyclic garbage collector ran, in any thread of this process (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0  # generation-2 collections
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.full += info.get("generation") == 2


GC = GcClock()


@dataclass
class Sample:
    seconds: float
    gc: float  # of which the garbage collector
    size: int
    full: int = 0  # full (generation 2) collections during it


class Served:
    """The dashboard as `harness ui` serves it, in a thread, with a logged-in kept-alive connection.

    ``diagnostic`` adds a second listening socket to the same server (so the same app, the same
    heap) with TCP_NODELAY set explicitly, which Linux passes on to every connection it accepts:
    a check of what Nagle's algorithm would cost small responses on `harness ui`'s own socket."""

    def __init__(self, workspace: Path, *, diagnostic: bool = False) -> None:
        self.bound: Bound = bind("127.0.0.1", 0)
        self.nodelay = bool(self.bound.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        bounds = [self.bound]
        hosts = allowed_hosts(self.bound)
        if diagnostic:
            extra = bind("127.0.0.1", 0)
            extra.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            bounds.append(extra)
            hosts |= allowed_hosts(extra)
        token = secrets.token_urlsafe(24)
        settings = Settings(workspace=str(workspace), token=token, hosts=hosts)
        config = uvicorn.Config(
            create_app(settings), log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.socks = [b.sock for b in bounds]
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": self.socks}, name="bench-ui", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.005)
        self.conns = [http.client.HTTPConnection("127.0.0.1", b.port, timeout=120) for b in bounds]
        self.conns[0].request("GET", f"/?token={token}")
        response = self.conns[0].getresponse()
        response.read()
        cookie = response.getheader("set-cookie") or ""
        if response.status != 303 or not cookie:
            raise RuntimeError(f"login answered {response.status} without a cookie")
        self.cookie = cookie.split(";", 1)[0]

    def get(self, path: str, *, nodelay: bool = False) -> Sample:
        """One whole GET: seconds, the collector's share, the body's size."""
        conn = self.conns[1 if nodelay else 0]
        gc0, full0 = GC.seconds, GC.full
        t = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": self.cookie})
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - t
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
        return Sample(elapsed, GC.seconds - gc0, len(body), GC.full - full0)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        for sock in self.socks:
            sock.close()


def fresh(workspace: Path) -> Served:
    """A new app on a clean heap, with jinja's compiled templates forgotten (they are module-level,
    shared by every app of the process; a new `harness ui` process compiles them again)."""
    gc.collect()
    if ui_app._env.cache is not None:
        ui_app._env.cache.clear()
    return Served(workspace)


def med(samples: list[Sample]) -> tuple[float, float]:
    """Median seconds, and the median collector share."""
    return statistics.median(s.seconds for s in samples), statistics.median(s.gc for s in samples)


# -- the parts of the run page, in process --------------------------------------------------------


def href_of(run_id: str) -> Callable[[str], str]:
    return lambda tid: f"/runs/{quote(run_id, safe='')}/tasks/{quote(tid, safe='')}"


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    """Median seconds of ``reps`` calls, and the median seconds the collector ran during one."""
    samples = []
    for _ in range(reps):
        gc0 = GC.seconds
        t = time.perf_counter()
        fn()
        samples.append(Sample(time.perf_counter() - t, GC.seconds - gc0, 0))
    return med(samples)


def parts(workspace: Path, run_id: str, reps: int) -> list[tuple[str, float, float]]:
    """The run page's work piece by piece, as its handler does it (medians of ``reps``)."""
    rows: list[tuple[str, float, float]] = []

    def row(name: str, fn: Callable[[], Any]) -> None:
        rows.append((name, *timed(fn, reps)))

    gc.collect()
    row("RunDigest.refresh, whole log (the cold fold)", lambda: RunDigest(workspace, run_id).refresh())
    gc.collect()
    gc.disable()
    try:
        row("  the same, collector off (comparison only)", lambda: RunDigest(workspace, run_id).refresh())
    finally:
        gc.enable()
    d = RunDigest(workspace, run_id).refresh()
    gc.collect()
    href = href_of(run_id)
    row("RunDigest.refresh, nothing new (warm)", d.refresh)
    row("summary() + questions()", lambda: (d.summary(), d.questions()))
    nodes = d.nodes()
    row("nodes()", d.nodes)
    dag = svg.dag_svg(nodes, href=href)
    limit = inspect.signature(svg.dag_svg).parameters["limit"].default
    shape = f"a summary: {len(nodes):,} > {limit} tasks" if len(nodes) > limit else "the whole graph"
    row(f"svg.dag_svg ({shape})", lambda: svg.dag_svg(nodes, href=href))
    row("rows() + phase_list()", lambda: (d.rows(), d.phase_list()))
    task_rows, phases = d.rows(), d.phase_list()
    now = time.time()
    timeline = svg.timeline_svg(task_rows, phases, now=now, href=href)
    row("svg.timeline_svg (300 lanes drawn)", lambda: svg.timeline_svg(task_rows, phases, now=now, href=href))
    row("recent_lines() (200 events)", d.recent_lines)
    events = d.recent_lines()
    summary, questions = d.summary(), d.questions()
    try:

        def render() -> Any:
            return ui_app.page(
                "run.html",
                run=summary,
                state=d.state,
                questions=questions,
                dag=Markup(dag),
                timeline=Markup(timeline),
                events=events,
                last_seq=d.state.last_seq,
                report=None,
                plan_changes=None,
                read_only=False,
                approver="",
                flash=None,
                resumed=None,
            )

        render()
        row("run.html template render", render)
    except Exception as exc:  # the template is being worked on: say so, keep the rest
        rows.append((f"run.html template render: failed ({type(exc).__name__}: {exc})", math.nan, math.nan))
    return rows


def profile(workspace: Path, run_id: str, top: int) -> str:
    """cProfile of a cold refresh, then of one warm pass over the run page's parts, with the
    collector off (its time is measured apart; cProfile would charge each collection to whatever
    function happened to allocate when it struck)."""
    out = io.StringIO()
    gc.collect()
    gc.disable()
    try:
        prof = cProfile.Profile()
        prof.enable()
        d = RunDigest(workspace, run_id).refresh()
        prof.disable()
        print(f"\n--- cProfile, collector off: cold RunDigest.refresh (top {top} by own time) ---", file=out)
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
        href = href_of(run_id)
        prof = cProfile.Profile()
        prof.enable()
        with d.lock:
            d.refresh()
            d.summary()
            d.questions()
            svg.dag_svg(d.nodes(), href=href)
            svg.timeline_svg(d.rows(), d.phase_list(), now=time.time(), href=href)
            d.recent_lines()
        prof.disable()
    finally:
        gc.enable()
    print(f"--- cProfile, collector off: one warm pass over the run page's parts (top {top} by own time) ---", file=out)
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks of the big run (default 10000)")
    parser.add_argument("--runs", type=int, default=21, help="runs in the workspace, the real and the big one included")
    parser.add_argument("--flaky", type=int, default=10, help="tasks of the big run that fail once and are retried")
    parser.add_argument("--cold", type=int, default=5, help="cold samples, a new app each (median)")
    parser.add_argument("--warm", type=int, default=20, help="warm rounds (median)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the in-process parts and the fold baseline")
    parser.add_argument("--profile", action="store_true", help="cProfile the cold refresh and one warm render")
    parser.add_argument("--top", type=int, default=15, help="rows of each profile")
    parser.add_argument(
        "--dir", default=None, help="where the scratch workspace goes (default: the repository's parent; not tmpfs)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the workspace (open it with harness ui --workspace)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.runs < 2 or args.cold < 1 or args.warm < 1 or args.reps < 1:
        parser.error("--tasks, --cold, --warm and --reps must be at least 1, --runs at least 2")

    print(f"bench_ui: python {sys.version.split()[0]} on {os.cpu_count()} cores; load average {loadavg()}", flush=True)
    gc.callbacks.append(GC)
    root = pick_root(args.dir)
    try:
        t = time.perf_counter()
        rec = record(root)
        print(f"  recorded a real 3-task run in {time.perf_counter() - t:.2f} s: {len(rec.events)} events", flush=True)
        rng = random.Random(42)
        t = time.perf_counter()
        now = time.time()
        big = write_run(rec, args.tasks, args.flaky, now - 300, rng)
        written_s = time.perf_counter() - t
        completed = sum(1 for x in check(big, args.tasks).tasks.values() if x.status is TaskStatus.completed)
        size = big.path.stat().st_size
        for k in range(args.runs - 2):
            write_run(rec, SMALL_TASKS, 1 if k % 2 == 0 else 0, now - 3600 * (k + 1), rng)
        runs = eventlog.list_runs(rec.workspace)
        task = big.flaky[0] if big.flaky else big.tasks[-1]
        copy_worker_dirs(rec, big, task)
        levels = len(set(svg.levels(RunDigest(rec.workspace, big.run_id).refresh().nodes()).values()))
        print(
            f"  big run {big.run_id}: {args.tasks:,} tasks in {levels} levels, {len(big.flaky)} retried once; "
            f"{big.events:,} events, {size / 1e6:.1f} MB ({size / args.tasks:,.0f} B/task); "
            f"written in {written_s:.1f} s; verify ok; fold: {completed:,} tasks completed",
            flush=True,
        )
        print(
            f"  runs in the workspace: {len(runs)} ({args.runs - 2} copies of {SMALL_TASKS} tasks, the real one, the big one)"
        )

        run_path = f"/runs/{quote(big.run_id, safe='')}"
        paths = {
            "runs": "/",
            "run": run_path,
            "task": f"{run_path}/tasks/{quote(task, safe='')}",
            "static": "/static/app.css",
        }

        # Baseline (a): the fold, as `harness status` reads a run.
        gc.collect()
        fold_s, fold_gc = timed(lambda: fold(upgrade(eventlog.read_events(big.path).events)), args.reps)
        read_s, _ = timed(lambda: eventlog.read_events(big.path), args.reps)

        # Cold: a new app per page view.
        cold: dict[str, list[Sample]] = {"runs": [], "after": [], "run": []}
        for _ in range(args.cold):
            served = fresh(rec.workspace)
            try:
                cold["runs"].append(served.get("/"))
                cold["after"].append(served.get(run_path))
            finally:
                served.close()
            served = fresh(rec.workspace)
            try:
                cold["run"].append(served.get(run_path))
            finally:
                served.close()
            r, p = cold["runs"][-1], cold["run"][-1]
            print(
                f"  cold: runs page {r.seconds:.3f} s (collector {r.gc:.3f} s, {r.full} full), "
                f"run page {p.seconds:.3f} s (collector {p.gc:.3f} s, {p.full} full)",
                flush=True,
            )

        # Warm: one app, every page loaded once, then the rounds, pages interleaved; each page also
        # over the diagnostic TCP_NODELAY socket of the same server.
        gc.collect()
        warm: dict[str, dict[str, list[Sample]]] = {"ui": {}, "nodelay": {}}
        report: list[Sample] = []
        served = Served(rec.workspace, diagnostic=True)
        bind_nodelay = served.nodelay
        try:
            for name, path in paths.items():
                for kind in warm:
                    served.get(path, nodelay=kind == "nodelay")
                    warm[kind][name] = []
            for _ in range(args.warm):
                for name, path in paths.items():
                    for kind in warm:
                        warm[kind][name].append(served.get(path, nodelay=kind == "nodelay"))
            for _ in range(3):
                report.append(served.get(f"{run_path}/report"))
        finally:
            served.close()

        pieces = parts(rec.workspace, big.run_id, args.reps)
        profiled = profile(rec.workspace, big.run_id, args.top) if args.profile else ""
        end_load = loadavg()
    finally:
        gc.callbacks.remove(GC)
        if args.keep:
            print(f"kept {root} (harness ui --workspace {root / 'workspace'})")
        else:
            shutil.rmtree(root, ignore_errors=True)

    c_runs, c_after, c_run = (med(cold[k]) for k in ("runs", "after", "run"))
    w = {kind: {name: med(v) for name, v in pages.items()} for kind, pages in warm.items()}
    size_of = {name: v[0].size for name, v in warm["ui"].items()}
    rep = med(report)
    static_ui, static_nd = w["ui"]["static"][0], w["nodelay"]["static"][0]
    print()
    print(
        f"{args.tasks:,}-task run: {big.events:,} events, {size / 1e6:.1f} MB; {len(runs)} runs on the runs page. "
        f"Medians: cold of {args.cold} (a new app each), warm of {args.warm}, in process of {args.reps}."
    )
    print(f"{'':46} {'seconds':>8} {'of which gc':>11} {'bytes':>9}  ratio")

    def line(name: str, secs_gc: tuple[float, float], nbytes: int | None, note: str) -> None:
        sz = "" if nbytes is None else f"{nbytes:,}"
        print(f"  {name:44} {secs_gc[0]:8.4f} {secs_gc[1]:11.4f} {sz:>9}  {note}")

    line("baseline (a): read_events + upgrade + fold", (fold_s, fold_gc), None, f"read_events alone {read_s:.3f} s")
    line("baseline (b): GET /static/app.css, warm", w["ui"]["static"], size_of["static"], "")
    line("cold: runs page /", c_runs, size_of["runs"], f"{c_runs[0] / fold_s:.2f}x fold")
    line("cold: run page (a new app: a direct link)", c_run, size_of["run"], f"{c_run[0] / fold_s:.2f}x fold")
    line("cold: run page, clicked from the runs page", c_after, size_of["run"], "folded by the runs page already")
    for name, label in (("runs", "runs page /"), ("run", "run page"), ("task", "task page (retried once)")):
        line(f"warm: {label}", w["ui"][name], size_of[name], f"{w['ui'][name][0] / static_ui:.1f}x static GET")
    line("warm: report page (median of 3)", rep, None, f"{rep[0] / fold_s:.2f}x fold; {report[0].size:,} B")
    print(
        f"  cold over warm: run page {c_run[0] / w['ui']['run'][0]:.1f}x, runs page {c_runs[0] / w['ui']['runs'][0]:.1f}x; "
        f"first cold samples (this process's first requests): runs page {cold['runs'][0].seconds:.3f} s, "
        f"run page {cold['run'][0].seconds:.3f} s; slowest cold: "
        f"{max(s.seconds for s in cold['runs']):.3f} s / {max(s.seconds for s in cold['run']):.3f} s"
    )
    print()
    print(
        "warm, the same app over a second listening socket with TCP_NODELAY set explicitly "
        f"(bind()'s own socket has TCP_NODELAY: {'yes' if bind_nodelay else 'NO'}):"
    )
    for name in ("static", "runs", "run", "task"):
        (ui_s, ui_gc), (nd_s, nd_gc) = w["ui"][name], w["nodelay"][name]
        full = sum(x.full for x in warm["ui"][name] + warm["nodelay"][name]) / (2 * args.warm)
        print(
            f"  {name:8} as served {ui_s * 1000:7.1f} ms (gc {ui_gc * 1000:5.1f})   "
            f"with TCP_NODELAY {nd_s * 1000:7.1f} ms (gc {nd_gc * 1000:5.1f})   "
            f"{nd_s / static_nd:5.1f}x the static GET with TCP_NODELAY; {full:.1f} full collections a view"
        )
    print()
    print(f"runs page cold: {c_runs[0]:.2f} s, run page cold: {c_run[0]:.2f} s (requirement: under 2 s each)")
    print()
    print(f"the run page's parts, in process, medians of {args.reps}:")
    for name, secs, gcs in pieces:
        print(f"  {name:56} {secs * 1000:9.1f} ms  (collector {gcs * 1000:6.1f} ms)")
    warm_parts = sum(s for name, s, _ in pieces[2:] if not math.isnan(s))
    print(
        f"  {'sum of the warm parts':56} {warm_parts * 1000:9.1f} ms  "
        f"(warm GET {w['nodelay']['run'][0] * 1000:.1f} ms with TCP_NODELAY)"
    )
    if profiled:
        print(profiled)
    print(f"load average at end: {end_load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
