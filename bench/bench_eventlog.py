"""Event log: what durability and reading cost, measured against bare baselines in the same run.

    python bench/bench_eventlog.py [--n 2000] [--read 100000] [--rounds 3] [--dir DIR]

Appends: ``EventLog.append`` (lock, catch-up check, encode, hash, one write, one fdatasync) against
a bare loop of ``os.write`` + ``os.fdatasync`` of a line of the same size, rounds interleaved so
that both see the same disk. Group commit: ``append_many`` in groups of 10 and 100. Reads:
``read_events`` of a log of ``--read`` events against ``json.loads`` per line of the same file.
Use a folder on the disk you care about (``--dir``): on tmpfs an fsync costs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.eventlog import EventLog, iter_events, read_events, verify

RUN = "20260115-142345-a1b2c3"
DATA = {"attempt": 1, "title": "Build release"}


def bare_loop(path: Path, line: bytes, n: int, durable: bool) -> float:
    """The floor: the same bytes, one write (+ one fdatasync) per event, nothing else."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, line)
            if durable:
                os.fdatasync(fd)
        return time.perf_counter() - start
    finally:
        os.close(fd)


def ours_one_by_one(path: Path, n: int, durable: bool) -> float:
    with EventLog.open(path, RUN) as log:
        start = time.perf_counter()
        for i in range(n):
            log.append("TASK_STARTED", DATA, task_id=f"t{i}", durable=durable)
        return time.perf_counter() - start


def ours_grouped(path: Path, n: int, group: int) -> float:
    with EventLog.open(path, RUN) as log:
        start = time.perf_counter()
        for base in range(0, n, group):
            log.append_many([("TASK_STARTED", DATA, f"t{i}", None) for i in range(base, min(n, base + group))])
        return time.perf_counter() - start


def sample_line(folder: Path) -> bytes:
    path = folder / "sample.jsonl"
    with EventLog.open(path, RUN) as log:
        log.append_many([("TASK_STARTED", DATA, "t1234", None)] * 2, durable=False)
    return path.read_bytes().splitlines(keepends=True)[-1]


def best(fn, rounds: int) -> float:
    """Shortest of ``rounds`` calls of a function that returns its own elapsed time."""
    return min(fn() for _ in range(rounds))


def best_call(fn, rounds: int) -> float:
    """Shortest wall time of ``rounds`` calls of ``fn``."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def json_per_line(path: Path) -> int:
    with open(path, "rb") as f:
        return len([json.loads(line) for line in f.read().split(b"\n")[:-1]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="events per append measurement")
    ap.add_argument("--read", type=int, default=100_000, help="events in the read measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write (default: the temp folder)")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-eventlog-", dir=args.dir))
    rows: list[tuple[str, int, float, str]] = []
    try:
        n = args.n
        line = sample_line(root)
        counter = iter(range(10**9))

        def fresh() -> Path:
            return root / f"log{next(counter)}.jsonl"

        # Durable one by one, interleaved with the bare loop; medians of the rounds.
        bare_t, ours_t = [], []
        for _ in range(args.rounds):
            bare_t.append(bare_loop(fresh(), line, n, durable=True))
            ours_t.append(ours_one_by_one(fresh(), n, durable=True))
        bare_d, ours_d = statistics.median(bare_t), statistics.median(ours_t)
        rows.append(("bare os.write + fdatasync", n, bare_d, "baseline"))
        rows.append(("EventLog.append durable", n, ours_d, f"{ours_d / bare_d:.2f}x bare"))
        for group in (10, 100):
            t = statistics.median(ours_grouped(fresh(), n, group) for _ in range(args.rounds))
            rows.append((f"append_many durable, groups of {group}", n, t, f"{bare_d / t:.1f}x faster than bare"))
        bare_nd = best(lambda: bare_loop(fresh(), line, n, durable=False), args.rounds)
        ours_nd = best(lambda: ours_one_by_one(fresh(), n, durable=False), args.rounds)
        rows.append(("bare os.write, no fsync", n, bare_nd, "baseline"))
        rows.append(
            ("EventLog.append durable=False", n, ours_nd, f"+{(ours_nd - bare_nd) / n * 1e6:.1f} us/event over bare")
        )

        # Reading.
        big = fresh()
        with EventLog.open(big, RUN) as log:
            for base in range(0, args.read, 1000):
                log.append_many(
                    [("TASK_STARTED", DATA, f"t{i}", None) for i in range(base, min(args.read, base + 1000))],
                    durable=False,
                )
        size = big.stat().st_size
        assert len(read_events(big).events) == args.read
        t_json = best_call(lambda: json_per_line(big), args.rounds)
        t_read = best_call(lambda: read_events(big), args.rounds)
        t_iter = best_call(lambda: sum(1 for _ in iter_events(big)), args.rounds)
        t_verify = best_call(lambda: verify(big), args.rounds)
        assert verify(big).ok
        rows.append(("json.loads per line (baseline)", args.read, t_json, "baseline"))
        rows.append(("read_events", args.read, t_read, f"{t_json / t_read:.1f}x json.loads"))
        rows.append(("iter_events", args.read, t_iter, f"{t_json / t_iter:.1f}x json.loads"))
        rows.append(("verify (hash + chain)", args.read, t_verify, ""))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"event log bench: python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
        f"{len(line)} B lines, read file {size / 1e6:.1f} MB"
    )
    print(f"{'measurement':40} {'events':>7} {'seconds':>8} {'us/event':>9} {'events/s':>10}  note")
    for name, count, secs, note in rows:
        print(f"{name:40} {count:>7} {secs:>8.3f} {secs / count * 1e6:>9.1f} {count / secs:>10,.0f}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
