"""Phase daemon_worker_fastpath: is the worker manager there, and does it speak what we need?

Given ``worker_manager {pid, methods}`` (what the supervisor learned from its ``initialize``), the
pid must be a live process (not a zombie) and the methods must include every one in
``WORKER_MANAGER_METHODS``. Given ``worker_manager {command}`` instead, the manager is started,
asked ``initialize`` within a bounded time, and stopped again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from harness.models import PhaseName, PhaseStatus

from ._models import WORKER_MANAGER_METHODS, WorkerManagerInfo
from ._phase import Outcome, Phase, PhaseCall

INITIALIZE_TIMEOUT = 5.0


def process_state(pid: int) -> dict[str, Any]:
    """Whether ``pid`` is a live process, with its start time (so a reused pid reads as new)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return {"alive": False, "reason": "no such process"}
    except PermissionError:
        pass  # it exists but belongs to someone else
    state: dict[str, Any] = {"alive": True}
    stat = Path(f"/proc/{pid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return state
    # After the command name: state is field 3, starttime field 22 (proc(5)).
    if fields[0] in ("Z", "X"):
        return {"alive": False, "reason": "exited (zombie, not yet reaped)"}
    state["started"] = fields[19]
    return state


def initialize_command(command: list[str], timeout: float = INITIALIZE_TIMEOUT) -> dict[str, Any]:
    """Start ``command`` as a service, ask ``initialize``, stop it; what it announced."""
    from harness.rpc import RPCError, ServiceProcess

    try:
        service = ServiceProcess(command, name="worker-manager-probe", stderr=subprocess.DEVNULL)
    except OSError as exc:
        return {"ok": False, "error": f"cannot start {command[0]!r}: {exc.strerror or exc}"}
    try:
        reply = service.request("initialize", {}, timeout=timeout)
    except RPCError as exc:
        return {"ok": False, "error": f"initialize failed: {exc.message}", "code": exc.code}
    finally:
        exit_code = service.stop(grace=1.0, term_grace=1.0)
    methods = reply.get("methods") if isinstance(reply, dict) else None
    if not isinstance(methods, list):
        return {"ok": False, "error": "initialize answered without a method list", "exit_code": exit_code}
    return {"ok": True, "methods": [str(m) for m in methods], "name": reply.get("name"), "exit_code": exit_code}


class DaemonWorkerFastpath(Phase):
    name = PhaseName.daemon_worker_fastpath
    context_fields = ("worker_manager",)
    description = (
        "Check that the worker manager is reachable: its pid is alive and its methods include spawn_worker, "
        "check_trust, mark_trusted, run_worker, get_worker, list_workers, cancel_worker and replay (or start "
        "worker_manager.command, ask initialize within 5 s and stop it)."
    )

    def probe(self, call: PhaseCall) -> dict[str, Any]:
        wm = call.context.worker_manager
        if wm is None:
            return {"given": False}
        facts: dict[str, Any] = {"given": True}
        if wm.pid is not None:
            facts["process"] = process_state(wm.pid)
        elif wm.command:
            facts["resolved"] = shutil.which(wm.command[0]) if os.sep not in wm.command[0] else wm.command[0]
        return facts

    def run(self, call: PhaseCall, facts: dict[str, Any]) -> Outcome:
        wm = call.context.worker_manager
        if wm is None:
            return Outcome.failed(
                "no worker manager given: the context needs worker_manager {pid, methods} or {command}",
                reachable=False,
            )
        if wm.pid is not None:
            return self._check_pid(wm, facts["process"])
        if wm.command:
            return self._check_command(wm.command)
        return Outcome.failed(
            "worker_manager has neither a pid nor a command: cannot tell whether it is running", reachable=False
        )

    @staticmethod
    def _check_pid(wm: WorkerManagerInfo, process: dict[str, Any]) -> Outcome:
        artifacts: dict[str, Any] = {"via": "pid", "pid": wm.pid, "alive": process["alive"]}
        if not process["alive"]:
            reason = f"worker manager pid {wm.pid} is not running: {process['reason']}"
            return Outcome.failed(reason, reachable=False, **artifacts)
        return _methods_verdict(wm.methods, artifacts)

    @staticmethod
    def _check_command(command: list[str]) -> Outcome:
        reply = initialize_command(command)
        artifacts: dict[str, Any] = {"via": "command", "command": command, **reply}
        if not reply["ok"]:
            return Outcome.failed(f"worker manager {command[0]!r}: {reply['error']}", reachable=False, **artifacts)
        return _methods_verdict(reply["methods"], artifacts)


def _methods_verdict(methods: list[str], artifacts: dict[str, Any]) -> Outcome:
    missing = [m for m in WORKER_MANAGER_METHODS if m not in methods]
    artifacts.update(methods=sorted(methods), missing_methods=missing)
    if not methods:
        reason = "worker manager methods unknown: pass worker_manager.methods from its initialize"
        return Outcome.failed(reason, reachable=False, **artifacts)
    if missing:
        return Outcome.failed("worker manager lacks methods: " + ", ".join(missing), reachable=True, **artifacts)
    return Outcome(PhaseStatus.ok, [], {"reachable": True, **artifacts})
