"""DBOS peer: a DBOS workflow on SQLite with a ``@DBOS.step()`` per process of a task.

    python bench/peers/dbos_peer.py --tasks N [--parallel 1|2] --dir DIR [--p2 lanes|queue] [--check]

The system database is SQLite, ``system_database_url = sqlite:///DIR/dbos.sqlite``, as DBOS ships
it (rollback journal, ``synchronous`` FULL: every commit fsynced). A step's output is committed
before the workflow goes on, so each process's result is durable before the next step depends on
it: two committed steps per task, ``command`` and ``test``, as the harness logs TASK_STARTED and
TASK_COMPLETED durably around a task's two processes.

``--parallel 1``: one workflow for the plan, ``plan(n)``, calling the two steps of each task in
turn.

``--parallel 2`` (default ``--p2 lanes``): two child workflows at a time. The plan's workflow
starts two child workflows with ``DBOS.start_workflow``, lane 0 taking tasks 0, 2, 4... and lane
1 tasks 1, 3, 5..., each calling the same two steps per task, and waits for both. Durable work
per task is the same two step commits; the plan's workflow adds two child records and two
``getResult`` records in all. ``--p2 queue`` is the other idiom, one workflow per task enqueued on
a DBOS queue with ``worker_concurrency=2``: every task then also writes its own workflow row and
status changes, and is dispatched by the queue's poller (``polling_interval_sec=0.01`` here; the
default is 1 s), and its handle is polled for the result (also every 0.01 s). On this machine
that measured about twice the lanes' time per task (SQLite takes one writer at a time), so the
suite runs the lanes: the cheaper honest way for DBOS.

Logging is at WARNING (DBOS prints its launch banner at INFO). The program does not call
``DBOS.destroy()``: every step is committed by then, and destroy waits up to a second for DBOS's
queue thread to notice; an ordinary script simply exits. ``--check`` reads the SQLite file back:
every workflow SUCCESS and exactly one ``command`` and one ``test`` step output per task.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path
from typing import Any

from _common import check_report, run_process, since_start
from _common import parse as parse_common
from _common import report as report_common
from dbos import DBOS

IMPORTED = since_start()
QUEUE_POLL_S = 0.01


def main() -> int:
    def p2_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--p2", choices=("lanes", "queue"), default="lanes", help="how --parallel 2 runs")

    args = parse_common(__doc__, p2_option)
    db = args.dir / "dbos.sqlite"
    if args.check:
        return check(db, args.tasks)
    return run(args, db, args.p2)


@DBOS.step()
def command(i: int) -> int:
    run_process()
    return i


@DBOS.step()
def test(i: int) -> int:
    run_process()
    return i


@DBOS.workflow()
def plan(n: int) -> int:
    for i in range(n):
        command(i)
        test(i)
    return n


@DBOS.workflow()
def lane(first: int, n: int) -> int:
    done = 0
    for i in range(first, n, 2):
        command(i)
        test(i)
        done += 1
    return done


@DBOS.workflow()
def plan_in_lanes(n: int) -> int:
    handles = [DBOS.start_workflow(lane, k, n) for k in range(min(2, n))]
    return sum(h.get_result() for h in handles)


@DBOS.workflow()
def task(i: int) -> int:
    command(i)
    test(i)
    return 1


def run(args: argparse.Namespace, db: Path, p2: str) -> int:
    DBOS(config={"name": "bench-peer", "system_database_url": f"sqlite:///{db}", "log_level": "WARNING"})
    DBOS.launch()
    ready = since_start()
    if args.parallel == 1:
        done = plan(args.tasks)
    elif p2 == "lanes":
        done = plan_in_lanes(args.tasks)
    else:
        queue = DBOS.register_queue("tasks", worker_concurrency=2, polling_interval_sec=QUEUE_POLL_S)
        handles = [queue.enqueue(task, i) for i in range(args.tasks)]
        done = sum(h.get_result(polling_interval_sec=QUEUE_POLL_S) for h in handles)
    return report_common("dbos", args, done, import_s=IMPORTED, ready_s=ready, end_s=since_start())


def check(db: Path, tasks: int) -> int:
    conn = sqlite3.connect(str(db))
    try:
        statuses: dict[str, Any] = dict(conn.execute("SELECT status, count(*) FROM workflow_status GROUP BY 1"))
        steps = dict(conn.execute("SELECT function_name, count(*) FROM operation_outputs GROUP BY 1"))
        per_task = conn.execute(
            "SELECT count(*) FROM (SELECT output FROM operation_outputs WHERE function_name IN ('command', 'test')"
            " GROUP BY function_name, output)"
        ).fetchone()[0]
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    ok = (
        set(statuses) == {"SUCCESS"}
        and steps.get("command") == tasks
        and steps.get("test") == tasks
        and per_task == 2 * tasks
    )
    return check_report("dbos", ok, workflows=statuses, steps=steps, journal=journal)


if __name__ == "__main__":
    raise SystemExit(main())
