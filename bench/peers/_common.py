"""What every peer program shares: its arguments, the two processes of a task, its report line.

A task is what a no-op task of ``harness run`` is: two real processes, the command and the
acceptance test, each ``/bin/sh -c true``, spawned and waited for exactly as
``bench_run.bare_loop`` spawns them (``Popen``, stdin from /dev/null, a session of their own) and
checked like an acceptance test is (a non-zero exit fails the task).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SH = "/bin/sh"
T0 = time.perf_counter()  # as early as this program can take it: the imports below are timed


def run_process() -> None:
    """One of a task's two processes: ``/bin/sh -c true``, waited for; a failure raises."""
    proc = subprocess.Popen([SH, "-c", "true"], stdin=subprocess.DEVNULL, start_new_session=True)
    if proc.wait() != 0:
        raise RuntimeError(f"/bin/sh -c true exited {proc.returncode}")


def parse(doc: str | None, extra: Callable[[argparse.ArgumentParser], object] | None = None) -> argparse.Namespace:
    """The common options, and a peer's own ones added by ``extra``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    if extra is not None:
        extra(parser)
    parser.add_argument("--tasks", type=int, required=True, help="tasks to run (two processes each)")
    parser.add_argument("--parallel", type=int, choices=(1, 2), default=1, help="tasks at a time")
    parser.add_argument("--dir", required=True, help="this run's own folder (its durable state goes there)")
    parser.add_argument("--check", action="store_true", help="do not run: check the durable state left in --dir")
    args = parser.parse_args()
    args.dir = Path(args.dir)
    return args


def report(peer: str, args: argparse.Namespace, done: int, **timings: float) -> int:
    """The one line a run prints: what it did, and seconds since the program started, by phase."""
    print(json.dumps({"peer": peer, "tasks": args.tasks, "parallel": args.parallel, "done": done, **timings}))
    return 0 if done == args.tasks else 1


def check_report(peer: str, ok: bool, **facts: Any) -> int:
    print(json.dumps({"peer": peer, "ok": ok, **facts}))
    return 0 if ok else 1


def since_start() -> float:
    return time.perf_counter() - T0
