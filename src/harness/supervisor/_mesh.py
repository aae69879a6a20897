"""The run's three services as one group: started together, checked, stopped, and the stale ones
of a crashed supervisor found by (pid, start time) and stopped."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import IO, Any

from .._spawn import ServiceChild, services_log, start_time
from ..config import SERVICE_NAMES, Config
from ..rpc import kill_group
from ..state import RunState, ServiceState
from ._service import Emit, NotificationSink, ServiceFatal, SupervisedService

logger = logging.getLogger(__name__)

ReplaySources = Callable[[str], Callable[[], list[dict[str, Any]]]]


class ServiceMesh:
    def __init__(self, config: Config, workspace: str, prespawned: dict[str, ServiceChild]) -> None:
        self.config = config
        self.workspace = workspace
        # Default services the CLI started early (harness._spawn.prespawn): adopted, then removed
        # from this dict, so the caller can stop whatever was not adopted.
        self._prespawned = prespawned
        self.services: dict[str, SupervisedService] = {}
        self._stderr: IO[bytes] | None = None

    def __getitem__(self, name: str) -> SupervisedService:
        return self.services[name]

    def start(self, emit: Emit, on_notification: NotificationSink, replay: ReplaySources) -> None:
        """Start the services concurrently; each counts as started once it answers initialize."""
        self._stderr = services_log(self.workspace)
        errors: list[BaseException] = []

        def start(name: str) -> None:
            spec = self.config.service_spec(name)
            early = self._prespawned.pop(name, None)
            if early is not None and early.args != spec.command:
                self._prespawned[name] = early  # not what the spec runs: leave it to be stopped
                early = None
            svc = SupervisedService(
                spec,
                emit=emit,
                on_notification=on_notification,
                replay_source=replay(name),
                stderr=self._stderr,
                cwd=self.workspace,
                prespawned=early,
            )
            self.services[name] = svc
            try:
                svc.start()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,), name=f"start-{n}") for n in SERVICE_NAMES]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        if errors:
            raise errors[0]

    def check(self) -> None:
        """A service that went fatal (even one nobody is calling) pauses the run."""
        for svc in self.services.values():
            if svc.fatal is not None:
                raise svc.fatal

    def stop(self) -> list[str]:
        """Stop every service (bounded); returns the names that were stopped, not fatal."""
        threads = [threading.Thread(target=svc.stop) for svc in self.services.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        stopped = [name for name, svc in self.services.items() if svc.state is not ServiceState.fatal]
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return stopped


def stale_services(state: RunState) -> list[tuple[str, int]]:
    """(name, pid) of the services an earlier supervisor of this run left running: the pid must
    still name the very process the log recorded (same start time), never a reused pid."""
    out = []
    for info in state.services.values():
        pid = info.pid
        if not pid or info.state in (ServiceState.stopped, ServiceState.fatal):
            continue
        if info.start_time is None:
            logger.warning("service %s (pid %s) has no recorded start time: left alone", info.name, pid)
            continue
        if start_time(pid) != info.start_time:
            continue  # gone, or the pid now names another process
        out.append((info.name, pid))
    return out


def kill_stale(state: RunState) -> list[str]:
    """Stop the stale services of a crashed supervisor; returns a note per service stopped."""
    notes = []
    for name, pid in stale_services(state):
        kill_group(pid, signal.SIGKILL)
        notes.append(f"stopped a stale {name} service left by an earlier supervisor (pid {pid})")
    return notes


__all__ = ["ServiceFatal", "ServiceMesh", "kill_stale", "stale_services"]
