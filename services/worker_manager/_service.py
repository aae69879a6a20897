"""The worker manager on the wire: its methods registered on a harness.rpc Server."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import NoReturn

from harness import __version__, _cpus
from harness.rpc import Server, configure_logging

from ._manager import WorkerManager

SERVICE = "worker-manager"


def build_server() -> tuple[Server, WorkerManager]:
    """A Server answering the worker-manager contract, and the manager behind it."""
    server = Server(
        SERVICE,
        __version__,
        contract=SERVICE,
        notifications=["worker_event", "tool_permission"],
        max_threads=64,
        pool_initializer=_cpus.widen,  # what a job starts gets every CPU of the run (harness._cpus)
    )
    manager = WorkerManager(lambda event: server.notify("worker_event", event), notify=server.notify)
    server.add_method("spawn_worker", manager.spawn_worker)
    server.add_method("check_trust", manager.check_trust)
    server.add_method("mark_trusted", manager.mark_trusted)
    # Long calls run on the server's pool so that get_worker and friends are served meanwhile.
    server.add_method("run_worker", manager.run_worker, blocking=True)
    # spawn_and_run spawns on the reader (a release that follows finds its worker) and runs on the pool
    server.add_method("spawn_and_run", manager.spawn_then_run)
    server.add_method("release_worker", manager.release_worker)
    server.add_method("cancel_worker", manager.cancel_worker, blocking=True)
    server.add_method("get_worker", manager.get_worker)
    server.add_method("list_workers", manager.list_workers)
    server.add_method("replay", manager.replay)
    server.add_method("answer_tool_permission", manager.answer_tool_permission)
    server.on_input_end = manager.end_of_input  # held workers will not be released now
    return server, manager


def _die_with_workers(manager: WorkerManager) -> None:
    """On SIGTERM/SIGINT/SIGHUP kill the workers' process groups (they live in their own
    sessions, so the signal did not reach them), then die of the same signal. No event is sent:
    the next manager's replay fails those workers as interrupted."""

    def handler(signum: int, frame: FrameType | None) -> None:
        manager.kill_all()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)


def main() -> NoReturn:
    """Serve on stdin/stdout until EOF or ``shutdown``; diagnostics go to stderr."""
    configure_logging()
    _cpus.enter_worker_manager()  # the reader onto the CPU the supervisor keeps off, if it named one
    server, manager = build_server()
    _die_with_workers(manager)
    server.run_stdio_and_exit(before_exit=manager.close)
