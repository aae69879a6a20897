"""A small Ray cluster on this machine for the Ray executor's tests, bound to loopback only.

:func:`start_cluster` starts a head (1 CPU and the custom resource ``head-pool``) and a second
node (1 CPU and the custom resource ``remote-pool``) with ``ray.cluster_utils.Cluster`` and connects this process to it; its state
(HOME, Ray's temporary folder with its unix sockets) lives in a short folder under /tmp, which
:meth:`LocalCluster.stop` removes after every process of the cluster ended.

What keeps it to 127.0.0.1, each for a reason found in Ray 2.60:

* ``node_ip_address`` 127.0.0.1 on every node: the GCS, raylets, workers and agents listen there.
* ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (and the constant it sets, in this process, which
  imported Ray already): ``ray.init(address="127.0.0.1:PORT")`` otherwise swaps the loopback
  address for the host's outward one (a UDP probe towards 8.8.8.8) and cannot reach the GCS.
* ``RAY_AUTH_MODE=disabled``: a cluster started by ``ray.init`` turns token authentication on by
  default and writes a token under HOME; the cluster here is reachable from this machine only.
* ``RAY_USAGE_STATS_ENABLED=0`` and ``RAY_USAGE_STATS_REPORT_URL`` at a closed loopback port:
  even disabled, the head's usage module posts a "disabled" report to Ray's server.
* ``$HOME/ray_bootstrap_config.yaml`` (empty): without it that module asks the cloud metadata
  address (169.254.169.254) which cloud it runs on.
* ``include_dashboard=False``, ``dashboard_host`` 127.0.0.1: no dashboard server.

:data:`NODE_ARGS` and :func:`prepare_base` hold that recipe without pytest, for
``bench/bench_ray.py`` too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

#: Bound on every wait for the cluster (its start takes a few seconds on two cores).
CLUSTER_WAIT = 60.0
#: The custom resource only the second node has.
POOL = "remote-pool"
#: The custom resource only the head has.
HEAD_POOL = "head-pool"

#: Every node's arguments: on 127.0.0.1, no dashboard, a small object store.
NODE_ARGS: dict[str, Any] = {
    "node_ip_address": "127.0.0.1",
    "dashboard_host": "127.0.0.1",
    "include_dashboard": False,
    "object_store_memory": 80 * 1024 * 1024,
}


def cluster_env(base: str) -> dict[str, str]:
    """The environment the cluster's processes (and this one) run with."""
    return {
        "HOME": base,
        "RAY_TMPDIR": base,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(0.02)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def processes_under(base: str) -> list[int]:
    """Live processes whose command line names ``base`` (every process of the cluster does: its
    session folder, sockets or logs are there), this one excepted."""
    needle = base.encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid() and needle in _cmdline(int(name)):
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != b"Z":
                found.append(int(name))
    return found


def _reap_children() -> None:
    """Collect this process's exited children (the cluster's processes were started by it)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class LocalCluster:
    """The running cluster: its Cluster object, nodes and folder."""

    def __init__(self, base: str, monkeypatch: pytest.MonkeyPatch) -> None:
        import ray
        from ray.cluster_utils import Cluster

        self.base = base
        self.monkeypatch = monkeypatch
        self.cluster = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 1, "resources": {HEAD_POOL: 1}, **NODE_ARGS}
        )
        self.head = self.cluster.head_node
        self.second = self.cluster.add_node(num_cpus=1, resources={POOL: 1}, **NODE_ARGS)
        self.extra: list[Any] = []
        ray.init(address=self.cluster.address, namespace="harness", log_to_driver=False, include_dashboard=False)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_node(self, **args: Any) -> Any:
        node = self.cluster.add_node(**{**NODE_ARGS, **args})
        self.extra.append(node)
        return node

    def pids(self) -> list[int]:
        return processes_under(self.base)

    def stop(self) -> list[int]:
        """Disconnect, stop every node, make sure no process of the cluster is left, reap them
        and remove the folder. Returns the processes still alive after the bound (then killed,
        by pid): none when the cluster stopped as it should."""
        import ray

        left: list[int] = []
        try:
            ray.shutdown()
            self.cluster.shutdown()
        finally:
            try:
                wait_for(lambda: not self.pids(), 15.0, "the cluster's processes to end")
            except TimeoutError:
                left = self.pids()
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            _reap_children()
            self.monkeypatch.undo()
            shutil.rmtree(self.base, ignore_errors=True)
        return left


def prepare_base(base: str) -> dict[str, str]:
    """Make ``base`` the cluster's home (its empty ``ray_bootstrap_config.yaml``) and return the
    environment the cluster's processes, and this one, must run with."""
    with open(f"{base}/ray_bootstrap_config.yaml", "w", encoding="utf-8") as f:
        f.write("{}\n")  # else Ray asks the cloud metadata address which cloud it runs on
    return cluster_env(base)


def start_cluster() -> LocalCluster:
    """A loopback-only two-node cluster with this process connected (see the module docstring)."""
    import pytest

    base = tempfile.mkdtemp(prefix="hr", dir="/tmp")  # short: unix socket paths stop at 107 bytes
    monkeypatch = pytest.MonkeyPatch()
    for name, value in prepare_base(base).items():
        monkeypatch.setenv(name, value)
    from ray._private import ray_constants

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    try:
        return LocalCluster(base, monkeypatch)
    except BaseException:
        import ray

        ray.shutdown()
        for pid in processes_under(base):
            os.kill(pid, signal.SIGKILL)
        _reap_children()
        monkeypatch.undo()
        shutil.rmtree(base, ignore_errors=True)
        raise


def running_cluster() -> Iterator[LocalCluster]:
    """A module fixture's body: the cluster for the module's tests, then stopped, with a failure
    if any of its processes outlived the shutdown (and had to be killed)."""
    started = start_cluster()
    try:
        yield started
    finally:
        assert started.stop() == [], "processes of the Ray cluster outlived its shutdown"


def foreign_sockets(pids: list[int]) -> list[str]:
    """Lines of ``ss`` for TCP sockets of ``pids`` with an address that is not loopback."""
    out = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True, check=True).stdout
    wanted = {f"pid={pid}," for pid in pids}
    loopback = ("127.", "[::ffff:127.", "[::1]", "*", "0.0.0.0")
    bad = []
    for line in out.splitlines():
        if not any(w in line for w in wanted):
            continue
        fields = line.split()
        local, peer = fields[3], fields[4]
        state = fields[0]
        if state == "LISTEN":
            if not local.startswith(("127.", "[::ffff:127.", "[::1]")):
                bad.append(line)
        elif not (local.startswith(loopback) and peer.startswith(loopback)):
            bad.append(line)
    return bad
