"""What running tasks on Ray costs per task, against local processes, in the same invocation.

    python bench/bench_ray.py [--quick] [--tasks N] [--rounds R]

A Ray cluster of one node (this machine, 2 CPUs, bound to 127.0.0.1) is started once and its
start is timed apart. Then, interleaved in each round, the same plan of N no-op tasks (a `true`
command and a `true` acceptance test, a 10-file scope) runs three ways, each a fresh
``harness run --plan --approve`` without a sandbox:

* local:          ``--executor local`` (the baseline);
* ray, shared fs: ``--executor ray`` with ``ray: {shared_fs: true}``: each attempt one Ray task
                  that runs in place;
* ray, bundled:   ``--executor ray``: each attempt's scope bundled to the node's scratch and its
                  changes bundled back (the default).

The per-task figure is marginal, (wall of N tasks - wall of 1) / (N - 1), so that the services'
start and the first connection to the cluster drop out; medians of the rounds. The aim is at
most 10 ms more per task on Ray than locally.

The cluster runs with Ray's token authentication, usage reporting and dashboard off and every
process on 127.0.0.1 (the tests' recipe, from tests/ray_support.py), HOME and Ray's temp folder
in a scratch folder removed at the end.
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
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

import bench_run  # noqa: E402
from ray_support import NODE_ARGS, prepare_base  # noqa: E402

WAYS = ("local", "ray, shared fs", "ray, bundled")


def start_cluster(base: str) -> tuple[Any, float]:
    """A one-node cluster on loopback, and the seconds its start took."""
    os.environ.update(prepare_base(base))
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    ray_constants.ENABLE_RAY_CLUSTER = False  # keep 127.0.0.1 rather than the outward address
    t = time.perf_counter()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, **NODE_ARGS, "object_store_memory": 100 * 1024 * 1024},
    )
    cluster.wait_for_nodes()
    return cluster, time.perf_counter() - t


def workspace(root: Path, name: str, n: int, way: str, address: str) -> tuple[Path, list[str]]:
    ws = root / name
    ws.mkdir()
    for i in range(10):
        (ws / f"file_{i}.txt").write_text("x" * 1024)
    tasks = bench_run.noop_tasks(n)
    for task in tasks:
        task["resources"] = {"cpus": 0.5}
    plan = bench_run.write_plan(ws, tasks, "json")
    config: dict[str, Any] = {"policy": {"sandbox": "off"}}
    argv = bench_run.harness_argv() + ["run", "--plan", str(plan), "--approve", "--workspace", str(ws)]
    if way != "local":
        config["executor"] = "ray"
        config["ray"] = {"address": address, "shared_fs": way == "ray, shared fs"}
    (ws / "harness.yaml").write_text(json.dumps(config))
    return ws, argv


def timed(root: Path, name: str, n: int, way: str, address: str) -> float:
    ws, argv = workspace(root, name, n, way, address)
    wall, proc = bench_run.timed_cmd(argv, cwd=ws, env={**os.environ, "CI": "true"}, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{way}: exit {proc.returncode}\n{proc.stdout.decode()[-2000:]}\n{proc.stderr.decode()[-2000:]}"
        )
    events = bench_run.read_log(bench_run.log_of(ws))
    done = sum(1 for e in events if e["type"] == "TASK_COMPLETED")
    if done != n:
        raise RuntimeError(f"{way}: {done} of {n} tasks completed")
    if way != "local" and not all("placement" in e["data"] for e in events if e["type"] == "WORKER_STARTED"):
        raise RuntimeError(f"{way}: a task did not run on Ray")
    shutil.rmtree(ws, ignore_errors=True)
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 tasks, one round")
    parser.add_argument("--tasks", type=int, default=None, help="tasks per run (default 50; quick 20)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    args = parser.parse_args(argv)
    n = args.tasks or (20 if args.quick else 50)
    rounds = args.rounds or (1 if args.quick else 3)
    try:
        import ray
    except ImportError:
        print("ray is not installed: pip install -e '.[ray]'")
        return 0
    base = tempfile.mkdtemp(prefix="hb", dir="/tmp")  # short: Ray's unix sockets stop at 107 bytes
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    cluster = None
    try:
        cluster, start_s = start_cluster(base)
        address = str(cluster.address)
        print(f"cluster start {start_s:.2f}s (one node, 2 CPUs, loopback)")
        per_task: dict[str, list[float]] = {w: [] for w in WAYS}
        ones: dict[str, list[float]] = {w: [] for w in WAYS}
        for r in range(rounds):
            order = WAYS[r % len(WAYS) :] + WAYS[: r % len(WAYS)]
            for way in order:
                tag = way.replace(", ", "-").replace(" ", "")
                one = timed(root, f"{tag}-1-{r}", 1, way, address)
                many = timed(root, f"{tag}-{n}-{r}", n, way, address)
                ones[way].append(one)
                per_task[way].append((many - one) / (n - 1) * 1000)
        base_ms = statistics.median(per_task["local"])
        print(f"{'way':<16} {'ms/task':>8} {'spread':>14} {'more than local':>16} {'1-task wall s':>14}")
        for way in WAYS:
            med = statistics.median(per_task[way])
            lo, hi = min(per_task[way]), max(per_task[way])
            more = f"{med - base_ms:+.2f} ms" if way != "local" else "(baseline)"
            print(f"{way:<16} {med:8.2f} {lo:6.2f}–{hi:<7.2f} {more:>16} {statistics.median(ones[way]):14.3f}")
        for way in WAYS[1:]:
            print(f"{way} - local per task: {statistics.median(per_task[way]) - base_ms:.2f} ms")
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
