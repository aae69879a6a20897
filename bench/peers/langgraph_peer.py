"""LangGraph peer: a StateGraph whose nodes run a task's two processes, SqliteSaver, durability="sync".

    python bench/peers/langgraph_peer.py --tasks N [--parallel 1|2] --dir DIR [--check]

The checkpointer is ``SqliteSaver`` (``langgraph.checkpoint.sqlite``) on ``DIR/checkpoints.sqlite``,
as shipped: it sets ``journal_mode=WAL`` and leaves SQLite's ``synchronous`` at FULL, so every
commit is fsynced. The graph is invoked once for the whole plan (one thread id) with
``durability="sync"``: each superstep's checkpoint is committed before the next superstep starts.

``--parallel 1``: two nodes, ``command`` and ``test``, each running one process; ``test`` advances
the task counter and a conditional edge loops back to ``command`` until the plan is done. Two
supersteps per task, so a task's command result is checkpointed before its test runs and the
test's before the next task starts (the harness logs TASK_STARTED and TASK_COMPLETED durably).

``--parallel 2``: the idiomatic fan-out, ``Send``. From START two ``Send("command", lane)`` start
tasks 0 and 1; a ``command`` node hands its task to ``test`` with ``Command(goto=Send("test", ...))``,
and ``test`` counts the task done (an ``operator.add`` reducer) and sends the lane's next task
(i + 2) to ``command``. Each superstep runs the two lanes' nodes concurrently (LangGraph's
executor threads) and checkpoints once for both: two supersteps per pair of tasks. The lanes move
in lockstep, which costs nothing here: every task takes the same time.

The state kept is two integers and a count (the checkpoint does not grow with the plan);
``recursion_limit`` is raised to the number of supersteps the plan needs. ``--check`` reads the
SQLite file back: the checkpoints and writes rows there, and the last checkpoint's ``done``.
"""

# No `from __future__ import annotations`: LangGraph reads the nodes' annotations at run time
# (get_type_hints), and Send and Command are imported inside build().
import operator
import sqlite3
from typing import Annotated, Any, TypedDict

from _common import check_report, parse, report, run_process, since_start


class Plan(TypedDict):
    n: int
    i: int  # next task (sequential graph)
    done: Annotated[int, operator.add]


class Lane(TypedDict):
    i: int  # this lane's current task
    n: int


def build(parallel: int) -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, Send

    builder = StateGraph(Plan)
    if parallel == 1:

        def command(state: Plan) -> dict[str, int]:
            run_process()
            return {}

        def test(state: Plan) -> dict[str, int]:
            run_process()
            return {"i": state["i"] + 1, "done": 1}

        def more(state: Plan) -> str:
            return "command" if state["i"] < state["n"] else END

        builder.add_node("command", command)
        builder.add_node("test", test)
        builder.add_conditional_edges(START, more, ["command", END])
        builder.add_edge("command", "test")
        builder.add_conditional_edges("test", more, ["command", END])
        return builder

    def lane_command(state: Lane) -> Command[Any]:
        run_process()
        return Command(goto=Send("test", state))

    def lane_test(state: Lane) -> Command[Any]:
        run_process()
        nxt = state["i"] + 2
        goto = [Send("command", {"i": nxt, "n": state["n"]})] if nxt < state["n"] else []
        return Command(update={"done": 1}, goto=goto)

    def fan_out(state: Plan) -> list[Send]:
        return [Send("command", {"i": k, "n": state["n"]}) for k in range(min(2, state["n"]))]

    builder.add_node("command", lane_command, input_schema=Lane)
    builder.add_node("test", lane_test, input_schema=Lane)
    builder.add_conditional_edges(START, fan_out, ["command"])
    return builder


def main() -> int:
    args = parse(__doc__)
    db = args.dir / "checkpoints.sqlite"
    if args.check:
        return check(db, args.tasks, args.parallel)

    from langgraph.checkpoint.sqlite import SqliteSaver

    imported = since_start()
    conn = sqlite3.connect(str(db), check_same_thread=False)
    try:
        graph = build(args.parallel).compile(checkpointer=SqliteSaver(conn))
        supersteps = 2 * args.tasks if args.parallel == 1 else args.tasks + 2
        config: Any = {"configurable": {"thread_id": "plan"}, "recursion_limit": supersteps + 10}
        ready = since_start()
        out = graph.invoke({"n": args.tasks, "i": 0, "done": 0}, config, durability="sync")
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]  # 2 = FULL: every commit fsynced
    finally:
        conn.close()
    timings = {"import_s": imported, "ready_s": ready, "end_s": since_start()}
    return report("langgraph", args, int(out["done"]), synchronous=sync, **timings)


def check(db: Any, tasks: int, parallel: int) -> int:
    """The checkpoints are in the file: at least one per superstep (two per task sequentially,
    two per pair of tasks at parallel 2), SQLite's synchronous at FULL, and the last checkpoint
    says every task is done (read through the saver, so that its encoding is not guessed)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(db), check_same_thread=False)
    try:
        checkpoints = conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
        writes = conn.execute("SELECT count(*) FROM writes").fetchone()[0]
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        latest = SqliteSaver(conn).get({"configurable": {"thread_id": "plan"}})
    finally:
        conn.close()
    done = latest["channel_values"].get("done") if latest else None
    supersteps = 2 * tasks if parallel == 1 else 2 * ((tasks + 1) // 2)
    ok = checkpoints >= supersteps and done == tasks
    return check_report("langgraph", ok, checkpoints=checkpoints, writes=writes, journal=journal, done=done)


if __name__ == "__main__":
    raise SystemExit(main())
