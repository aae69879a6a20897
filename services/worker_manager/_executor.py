"""The execution backend as a small interface, so another engine can replace local processes.

The manager hands an :class:`Executor` a :class:`Job` (what to run, where, with which
environment, for how long) and gets back an :class:`Execution`: ``run`` blocks until the job
ended and returns an :class:`Outcome`; ``cancel`` (polite) and ``kill_now`` (forced) may be called
from any thread at any time and never wait, so the caller owns the grace period between them;
``kill_now`` is also safe in a signal handler (no locks). ``Executor.reap`` cleans up after a
manager that died mid-run. Local processes (:mod:`._local`) are the one implementation; a
cluster backend would implement the same calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from harness.trust import is_inside, real_path

from ._models import FailureReason, StepKind

#: Cut applied to output tails in replies (bytes of output, before decoding).
TAIL_BYTES = 2048


# Plain classes rather than dataclasses: a dataclass compiles its methods at import time, which
# the service pays on every start.


class Step:
    """One step of a job: a command from ``commands`` or ``acceptance_tests``, and its position.

    An agent step is an argv (never a shell string), with the prompt on stdin or none, its own
    extra environment (the agent CLI's variables, which the acceptance tests never see), a parser
    that reads its stdout line by line, and usage caps checked as it goes.
    """

    __slots__ = ("kind", "index", "command", "argv", "stdin", "env", "parser", "budget", "channel")

    def __init__(
        self,
        kind: StepKind,
        index: int,
        command: str,
        *,
        argv: list[str] | None = None,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        parser: Any = None,
        budget: dict[str, Any] | None = None,
        channel: Any = None,
    ) -> None:
        self.kind = kind
        self.index = index
        self.command = command
        self.argv = argv
        self.stdin = stdin
        self.env = env or {}
        self.parser = parser
        self.budget = budget or {}
        self.channel = channel  # ToolChannel: the agent asks about tools and waits for the answer


class ToolChannel:
    """An agent's two-way permission channel: its adapter (which reads requests and writes answers)
    and ``ask``, which returns (allow, message) for a request, waiting for whoever decides."""

    __slots__ = ("adapter", "ask")

    def __init__(self, adapter: Any, ask: Any) -> None:
        self.adapter = adapter
        self.ask = ask


class Job:
    """One worker's work: its steps in order (commands, then acceptance tests) and its limits.

    ``out_dir`` is the worker's folder, ``<run_dir>/workers/<worker_id>``: its output files
    (``stdout.log``, ``stderr.log``) go there, created by their first byte, so a worker that
    prints nothing has none.
    """

    __slots__ = ("worker_id", "steps", "cwd", "workspace", "env", "timeout", "out_dir", "sandbox", "resources", "gate")

    def __init__(
        self,
        *,
        worker_id: str,
        steps: tuple[Step, ...],
        cwd: str,
        workspace: str,
        env: dict[str, str],
        timeout: float,
        out_dir: str,
        sandbox: Any = None,
        resources: dict[str, Any] | None = None,
        gate: Callable[[], str | None] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.steps = steps
        self.cwd = cwd
        self.workspace = workspace
        self.env = env
        self.timeout = timeout
        self.out_dir = out_dir
        self.sandbox = sandbox  # harness.sandbox.Confinement: every step is wrapped by it (None: none)
        self.resources = resources  # the packet's Resources (cpus, memory_mb, custom): a cluster's placement
        # Asked once the job is ready and before its first process starts (its clock starts after):
        # None lets it start; a reason ends it cancelled, with nothing run (a held worker's release).
        self.gate = gate


class Outcome:
    """How a job ended; ``as_dict`` is the WorkerResult wire shape."""

    __slots__ = (
        "ok", "reason", "exit_code", "signal", "timed_out", "failed_step", "steps", "duration_ms",
        "stdout_tail", "stderr_tail", "stdout_path", "stderr_path", "interrupted", "message", "agent",
        "placement",
    )  # fmt: skip

    def __init__(
        self,
        ok: bool,
        reason: FailureReason | None = None,
        *,
        stdout_path: str | None = None,
        stderr_path: str | None = None,
        interrupted: bool = False,
        message: str | None = None,
        duration_ms: float = 0.0,
    ) -> None:
        self.ok = ok
        self.reason = reason
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.timed_out = False
        self.failed_step: Step | None = None
        self.steps: list[dict[str, Any]] = []
        self.duration_ms = duration_ms
        self.stdout_tail = ""
        self.stderr_tail = ""
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.interrupted = interrupted
        self.message = message
        self.agent: dict[str, Any] | None = None  # what the agent step did (AgentReport.as_dict())
        self.placement: dict[str, Any] | None = None  # where a cluster executor ran it (None: this machine)

    def as_dict(self) -> dict[str, Any]:
        step = self.failed_step
        result: dict[str, Any] = {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "timed_out": self.timed_out,
            "reason": self.reason.value if self.reason is not None else None,
            "failed_step": (
                {"kind": step.kind.value, "index": step.index, "command": step.command} if step is not None else None
            ),
            "steps": self.steps,
            "duration_ms": self.duration_ms,
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
            "stdout_path": self.stdout_path,
            "stderr_path": self.stderr_path,
            "interrupted": self.interrupted,
            "message": self.message,
            "agent": self.agent,
        }
        if self.placement is not None:  # only a cluster's results carry it: a local one is unchanged
            result["placement"] = self.placement
        return result


def scope_problem(job: Job) -> Outcome | None:
    """What stops a job at its scope, checked again where it runs, whatever the spawn saw: the
    scope must exist and, now that it does, still resolve inside the workspace."""
    if not os.path.isdir(job.cwd):
        return Outcome(
            ok=False, reason=FailureReason.scope_missing, message=f"scope directory does not exist: {job.cwd}"
        )
    real = real_path(job.cwd)
    if not is_inside(real, job.workspace):
        message = f"scope directory {real} resolves outside the workspace"
        return Outcome(ok=False, reason=FailureReason.spawn_error, message=message)
    return None


class Execution(Protocol):
    def run(self, on_started: Callable[[int], None]) -> Outcome:
        """Run the job to its end; call ``on_started(pid)`` once, right after the first process starts."""
        ...

    def cancel(self, reason: str) -> None:
        """Ask the job to stop (SIGTERM for processes); ``run`` then ends with reason cancelled."""
        ...

    def kill_now(self) -> None:
        """Force-stop everything the job started (SIGKILL for processes), without waiting."""
        ...


class Executor(Protocol):
    name: str

    def prepare(self, job: Job) -> Execution:
        """An execution of ``job`` that has not started yet."""
        ...

    def reap(self, worker_id: str, out_dir: str, pids: list[int]) -> list[int]:
        """Kill what a dead manager left running for the worker whose folder is ``out_dir``.

        ``pids`` are extra process ids known from the log (the ``worker_started`` pid). Returns
        the groups that were signalled; a group that may belong to someone else (a recycled pid)
        is left alone.
        """
        ...
