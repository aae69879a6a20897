"""The floor: a bare loop doing a task's two processes, with an fdatasync'd line per step.

    python bench/peers/bare.py --tasks N [--parallel 1|2] --dir DIR [--check]

Per task: run the command (``/bin/sh -c true``), append one line saying so to ``DIR/steps.jsonl``
and ``os.fdatasync`` it; run the acceptance test, append and fdatasync its line. Each step's
result is durable before the next step (or the next task) depends on it: two durable lines per
task, as the harness logs TASK_STARTED and TASK_COMPLETED durably around a task's two processes.
The line is about the size of a TASK_COMPLETED event. ``--parallel 2``: two threads take tasks
from one counter; the write is under a lock, the fdatasync is not (as the event log does it).
No framework, no state but the file: nothing can do this work for less.
"""

from __future__ import annotations

import json
import os
import threading

from _common import check_report, parse, report, run_process, since_start

LINE_PAD = "x" * 300


def main() -> int:
    args = parse(__doc__)
    path = args.dir / "steps.jsonl"
    if args.check:
        lines = [json.loads(line) for line in path.read_bytes().splitlines()]
        steps = sorted((d["task"], d["step"]) for d in lines)
        expected = sorted((t, s) for t in range(args.tasks) for s in ("command", "test"))
        return check_report("bare", steps == expected, lines=len(lines), bytes=path.stat().st_size)

    started = since_start()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    lock = threading.Lock()
    tasks = iter(range(args.tasks))
    done = [0]

    def durable(task: int, step: str) -> None:
        line = json.dumps({"task": task, "step": step, "status": "ok", "pad": LINE_PAD}) + "\n"
        with lock:
            os.write(fd, line.encode())
        os.fdatasync(fd)

    def worker() -> None:
        while True:
            with lock:
                task = next(tasks, None)
            if task is None:
                return
            run_process()
            durable(task, "command")
            run_process()
            durable(task, "test")
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.close(fd)
    return report("bare", args, done[0], start_s=started, end_s=since_start())


if __name__ == "__main__":
    raise SystemExit(main())
