"""JSON-RPC over stdio: our services against a raw stdlib echo loop, measured in the same run.

    python bench/bench_rpc.py [--requests 20000] [--pipelined 50000] [--spawns 10] [--profile]

Rows:
  raw stdlib echo      a ``python -c`` child: readline, json.loads, json.dumps, write (the floor)
  harness.rpc Server   a bare Server answering the built-in ``ping`` (the library alone)
  planning service     ``python -m harness.services.planning`` answering ``ping``
  planning via Peer    the same service driven by our client, ServiceProcess.request

The first three rows share one client (plain pipes, one thread), so they differ only in the
server. Sequential: one request in flight, latency per round trip. Pipelined: one thread writes
all requests while another reads the replies. Spawn: spawn, send ``initialize``, read the reply.
``--profile`` runs the planning service under cProfile during its sequential run and prints
where its time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from typing import IO

RAW_ECHO = r"""
import json, sys
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    msg = json.loads(line)
    out.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {}}).encode() + b"\n")
    out.flush()
"""
BARE_SERVER = "from harness.rpc import Server; raise SystemExit(Server('bare', '0').run_stdio())"
SERVICES = ("planning", "bootstrap", "worker_manager")

# Targets from the design's performance budget.
SEQ_RATIO_TARGET = 0.7
P99_TARGET_US = 200.0
PIPELINED_TARGET = 50_000.0
SPAWN_TARGET_MS = 120.0


def service_argv(name: str) -> list[str]:
    return [sys.executable, "-m", f"harness.services.{name}"]


def runnable(name: str) -> bool:
    """Whether ``python -m harness.services.<name>`` can start (module, or package with __main__)."""
    spec = find_spec(f"harness.services.{name}")
    if spec is None:
        return False
    return not spec.submodule_search_locations or find_spec(f"harness.services.{name}.__main__") is not None


def planning_argv() -> tuple[str, list[str]]:
    """The planning service, or the bare Server while planning cannot run yet."""
    if runnable("planning"):
        return "planning service (ping)", service_argv("planning")
    return "bare Server (planning missing)", [sys.executable, "-c", BARE_SERVER]


def ping(rid: int) -> bytes:
    return b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % rid


@dataclass
class Row:
    name: str
    seq_rps: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    pipelined_rps: float = 0.0


class Child:
    """A child speaking JSON lines on its pipes, driven by plain reads and writes."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        self.stdin = stdin
        self.fd_in = stdin.fileno()
        self.out: IO[bytes] = io.BufferedReader(stdout, 1 << 16) if isinstance(stdout, io.RawIOBase) else stdout

    def round_trip(self, line: bytes) -> bytes:
        os.write(self.fd_in, line)
        reply = self.out.readline()
        if not reply:
            raise RuntimeError(f"{self.argv} closed its output")
        return reply

    def close(self) -> None:
        self.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()


class PipeTarget:
    """A server driven by the plain one-thread client: the same client for every server."""

    def __init__(self, name: str, argv: Sequence[str]) -> None:
        self.name = name
        self.child = Child(argv)
        self.next_id = 0

    def sequential(self, n: int) -> list[int]:
        """Latencies (ns) of ``n`` round trips, one request in flight."""
        clock, child = time.perf_counter_ns, self.child
        lat = [0] * n
        for i in range(n):
            rid = self.next_id = self.next_id + 1
            t0 = clock()
            reply = child.round_trip(ping(rid))
            lat[i] = clock() - t0
        if b'"id":%d' % rid not in reply.replace(b" ", b""):
            raise RuntimeError(f"{self.name}: unexpected reply {reply[:100]!r}")
        return lat

    def pipelined(self, n: int, batch: int = 100) -> float:
        """Requests/s with one thread writing all ``n`` requests while this one reads replies."""
        child = self.child

        def write_all() -> None:
            for start in range(0, n, batch):
                os.write(child.fd_in, b"".join(ping(i) for i in range(start, min(start + batch, n))))

        writer = threading.Thread(target=write_all, daemon=True)
        t0 = time.perf_counter()
        writer.start()
        for _ in range(n):
            if not child.out.readline():
                raise RuntimeError(f"{self.name} closed its output")
        elapsed = time.perf_counter() - t0
        writer.join(10)
        return n / elapsed

    def close(self) -> None:
        self.child.close()


class PeerTarget:
    """A service driven by our own client, ServiceProcess / Peer."""

    def __init__(self, name: str, argv: Sequence[str]) -> None:
        from harness.rpc import ServiceProcess

        self.name = name
        self.service = ServiceProcess(argv, name="bench")

    def sequential(self, n: int) -> list[int]:
        clock, request = time.perf_counter_ns, self.service.request
        lat = [0] * n
        for i in range(n):
            t0 = clock()
            request("ping", timeout=30)
            lat[i] = clock() - t0
        return lat

    def pipelined(self, n: int) -> float:
        t0 = time.perf_counter()
        futures = [self.service.peer.request_async("ping", timeout=60) for _ in range(n)]
        for fut in futures:
            fut.result(60)
        return n / (time.perf_counter() - t0)

    def close(self) -> None:
        self.service.stop()


Target = PipeTarget | PeerTarget


def measure_all(targets: list[Target], args: argparse.Namespace) -> list[Row]:
    """Interleaved rounds, so that drift in machine load hits every target alike."""
    rounds = args.rounds
    lat: dict[str, list[int]] = {t.name: [] for t in targets}
    busy: dict[str, float] = {t.name: 0.0 for t in targets}
    for t in targets:
        t.sequential(args.warmup)
    for r in range(rounds):
        for t in targets[r % len(targets) :] + targets[: r % len(targets)]:
            t0 = time.perf_counter()
            lat[t.name] += t.sequential(args.requests // rounds)
            busy[t.name] += time.perf_counter() - t0
    piped: dict[str, list[float]] = {t.name: [] for t in targets}
    for r in range(args.pipelined_rounds):
        for t in targets[r % len(targets) :] + targets[: r % len(targets)]:
            piped[t.name].append(t.pipelined(args.pipelined))
    rows = []
    for t in targets:
        ls = sorted(lat[t.name])
        rows.append(
            Row(
                t.name,
                seq_rps=len(ls) / busy[t.name],
                p50_us=ls[len(ls) // 2] / 1e3,
                p99_us=ls[int(len(ls) * 0.99)] / 1e3,
                pipelined_rps=statistics.median(piped[t.name]),
            )
        )
    return rows


def spawn_to_first_answer(argv: Sequence[str], times: int) -> float:
    """Median ms from spawn to the reply of ``initialize``."""
    samples = []
    for _ in range(times):
        t0 = time.perf_counter()
        child = Child(argv)
        try:
            child.round_trip(b'{"jsonrpc":"2.0","id":1,"method":"initialize"}\n')
            samples.append((time.perf_counter() - t0) * 1e3)
        finally:
            child.close()
    return statistics.median(samples)


def profile_service(argv: Sequence[str], args: argparse.Namespace) -> None:
    """Run the service under cProfile for a sequential run and print its top functions."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "service.prof")
        module_args = list(argv[1:])  # ["-m", "harness.services.planning"] or ["-c", code]
        target = PipeTarget("profiled", [sys.executable, "-m", "cProfile", "-o", out, *module_args])
        try:
            target.sequential(args.warmup + args.requests)
        finally:
            target.close()
        print(f"\ncProfile of the service during {args.requests} sequential pings (by own time):")
        pstats.Stats(out).sort_stats("tottime").print_stats(18)
    profile_client(argv)


def profile_client(argv: Sequence[str], n: int = 20_000) -> None:
    """cProfile our client's two threads (caller and reader) over ``n`` pipelined requests."""
    from harness.rpc import ServiceProcess, _client

    reader_prof, caller_prof = cProfile.Profile(), cProfile.Profile()
    original = _client.Peer._read_loop

    def profiled_read_loop(self: _client.Peer) -> None:
        reader_prof.runcall(original, self)

    _client.Peer._read_loop = profiled_read_loop  # type: ignore[method-assign]
    try:
        service = ServiceProcess(argv, name="bench")
    finally:
        _client.Peer._read_loop = original  # type: ignore[method-assign]
    try:

        def burst() -> None:
            futures = [service.peer.request_async("ping", timeout=60) for _ in range(n)]
            for fut in futures:
                fut.result(60)

        caller_prof.runcall(burst)
    finally:
        service.stop()
    for title, prof in (("calling thread", caller_prof), ("reader thread", reader_prof)):
        print(f"cProfile of the client's {title}, {n} pipelined pings (by own time):")
        pstats.Stats(prof).sort_stats("tottime").print_stats(8)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def print_table(rows: list[Row], raw: Row) -> None:
    header = f"{'target':<44} {'seq rt/s':>9} {'p50 µs':>7} {'p99 µs':>7} {'vs raw':>7} {'pipelined/s':>12}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.name:<44} {r.seq_rps:>9,.0f} {r.p50_us:>7.0f} {r.p99_us:>7.0f} "
            f"{r.seq_rps / raw.seq_rps:>7.2f} {r.pipelined_rps:>12,.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="sequential round trips per target")
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--pipelined", type=int, default=50_000, help="requests in each pipelined run")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved sequential rounds")
    parser.add_argument("--pipelined-rounds", type=int, default=3, help="pipelined runs per target (median)")
    parser.add_argument("--spawns", type=int, default=10, help="spawns per service (median)")
    parser.add_argument("--profile", action="store_true", help="cProfile the planning service and the client")
    args = parser.parse_args(argv)

    service_name, service = planning_argv()
    print(
        f"python {sys.version.split()[0]} on {os.cpu_count()} cores; per target {args.requests} sequential "
        f"round trips in {args.rounds} interleaved rounds, {args.pipelined_rounds} x {args.pipelined} pipelined\n"
    )
    targets: list[Target] = []
    try:
        targets.append(PipeTarget("raw stdlib echo (python -c)", [sys.executable, "-c", RAW_ECHO]))
        targets.append(PipeTarget("harness.rpc Server, built-in ping", [sys.executable, "-c", BARE_SERVER]))
        targets.append(PipeTarget(service_name, service))
        targets.append(PeerTarget(f"{service_name.split(' (')[0]} via ServiceProcess.request", service))
        rows = measure_all(targets, args)
    finally:
        for t in targets:
            t.close()
    raw = rows[0]
    print_table(rows, raw)

    print(f"\n{'spawn -> first answer (initialize)':<44} {'median ms':>9}")
    raw_argv, bare_argv = [sys.executable, "-c", RAW_ECHO], [sys.executable, "-c", BARE_SERVER]
    spawn_rows: list[tuple[str, float | None]] = [
        ("raw stdlib echo (python -c, json only)", spawn_to_first_answer(raw_argv, args.spawns)),
        ("harness.rpc Server, bare", spawn_to_first_answer(bare_argv, args.spawns)),
    ]
    for name in SERVICES:
        spawn_rows.append((name, spawn_to_first_answer(service_argv(name), args.spawns) if runnable(name) else None))
    for name, ms in spawn_rows:
        print(f"{name:<44} {'missing' if ms is None else f'{ms:9.1f}':>9}")

    svc, client = rows[2], rows[3]
    ratio = svc.seq_rps / raw.seq_rps
    piped = f">= {PIPELINED_TARGET:,.0f}/s"
    checks = [
        (f"{svc.name}: sequential >= {SEQ_RATIO_TARGET} of raw", f"{ratio:.2f}", ratio >= SEQ_RATIO_TARGET),
        (f"{svc.name}: p99 < {P99_TARGET_US:.0f} µs", f"{svc.p99_us:.0f}", svc.p99_us < P99_TARGET_US),
        (f"{svc.name}: pipelined {piped}", f"{svc.pipelined_rps:,.0f}", svc.pipelined_rps >= PIPELINED_TARGET),
        (f"{client.name}: pipelined {piped}", f"{client.pipelined_rps:,.0f}", client.pipelined_rps >= PIPELINED_TARGET),
    ]
    for name, ms in spawn_rows[2:]:
        if ms is not None:
            checks.append((f"spawn {name} < {SPAWN_TARGET_MS:.0f} ms", f"{ms:.1f}", ms < SPAWN_TARGET_MS))
    print("\ntargets:")
    for label, value, ok in checks:
        print(f"  {label:<62} {value:>9}  {verdict(ok)}")
    if args.profile:
        profile_service(service, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
