"""Local processes: the one execution backend for now.

Each step is ``/bin/sh -c <command>`` in its own session (so its own process group), with stdin
from /dev/null and stdout/stderr appended to the worker's log files. The wait for a step is a
blocking ``poll`` on a pidfd with the remaining deadline as its timeout: it wakes the moment the
step exits, where ``Popen.wait(timeout=...)`` would poll with sleeps and double the cost of a
short step. Every process group a job started is SIGKILLed when the job ends, so a background
child never outlives its worker; the group ids are also written, one per line, to
``<out_dir>/pgid`` so a later manager can reap them if this one dies. A job with a sandbox runs
each step under it (:mod:`harness.sandbox`): bubblewrap is then the group leader, and its
``--unshare-pid`` ends whatever the step left behind when the step ends.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from harness._spawn import start_time

from ._executor import TAIL_BYTES, Job, Outcome, Step
from ._models import FailureReason, StepKind

#: Seconds between SIGTERM and SIGKILL when a step outlives the worker's deadline.
TERM_GRACE = 2.0
#: Bound on waiting for a SIGKILLed process to be reaped (a process in uninterruptible sleep).
KILL_WAIT = 5.0
_MAX_POLL_MS = 2**31 - 1

_WRITE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
_SH = "/bin/sh"


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False when it is gone (or not ours to signal)."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def wait_exit(proc: subprocess.Popen[bytes], pidfd: int | None, timeout: float) -> bool:
    """Block until ``proc`` exits or ``timeout`` seconds pass; True when it exited.

    With a pidfd this is one ``poll`` that wakes at the exit; without one (old kernels, other
    systems) it falls back to ``Popen.wait``.
    """
    if pidfd is None:
        try:
            proc.wait(timeout=max(timeout, 0.0))
            return True
        except subprocess.TimeoutExpired:
            return False
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while True:  # poll() takes at most ~24 days at once; a longer deadline takes several rounds
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bool(poller.poll(0))
        if poller.poll(min(math.ceil(remaining * 1000), _MAX_POLL_MS)):
            return True


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _tail(fd: int, start: int) -> str:
    """The last TAIL_BYTES of a file from offset ``start`` on, decoded leniently."""
    end = os.fstat(fd).st_size
    begin = max(start, end - TAIL_BYTES)
    if end <= begin:
        return ""
    data = os.pread(fd, end - begin, begin)
    if begin > start:  # cut inside the step's output: drop a partial UTF-8 sequence
        data = data.lstrip(bytes(range(0x80, 0xC0)))
    return data.decode("utf-8", "replace")


def _failure_reason(kind: StepKind) -> FailureReason:
    return FailureReason.acceptance_failed if kind is StepKind.acceptance else FailureReason.command_failed


class LocalExecution:
    """One job's run on this machine; see :class:`._executor.Execution`."""

    __slots__ = ("job", "_lock", "_proc", "_groups", "_reason")

    def __init__(self, job: Job) -> None:
        self.job = job
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._groups: list[int] = []
        self._reason: str | None = None

    # -- control from other threads -------------------------------------------------------------
    def cancel(self, reason: str) -> None:
        with self._lock:
            if self._reason is None:
                self._reason = reason
            proc = self._proc
        if proc is not None and proc.returncode is None:
            signal_group(proc.pid, signal.SIGTERM)

    def kill_now(self) -> None:
        for pgid in list(self._groups):
            signal_group(pgid, signal.SIGKILL)

    # -- the run ------------------------------------------------------------------------------
    def run(self, on_started: Callable[[int], None]) -> Outcome:
        job = self.job
        t0 = time.monotonic()
        problem = self._check_scope()
        if problem is not None:
            problem.duration_ms = _ms(t0)
            return problem
        fds: list[int] = []
        try:
            os.makedirs(job.out_dir, exist_ok=True)
            for path, flags in (
                (job.stdout_path, _WRITE_FLAGS),
                (job.stderr_path, _WRITE_FLAGS),
                (job.pgid_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC),
            ):
                fds.append(os.open(path, flags, 0o644))
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            return Outcome(
                ok=False,
                reason=FailureReason.spawn_error,
                duration_ms=_ms(t0),
                message=f"cannot open the worker's files: {exc}",
            )
        try:
            if job.sandbox is not None:
                job.sandbox.open()
            outcome = self._run_steps(fds[0], fds[1], fds[2], t0, on_started)
        finally:
            self.kill_now()
            for fd in fds:
                os.close(fd)
            if job.sandbox is not None:
                job.sandbox.close()
        outcome.duration_ms = _ms(t0)
        return outcome

    def _check_scope(self) -> Outcome | None:
        """The scope must exist and, now that it does, still resolve inside the workspace."""
        job = self.job
        if not os.path.isdir(job.cwd):
            return Outcome(
                ok=False, reason=FailureReason.scope_missing, message=f"scope directory does not exist: {job.cwd}"
            )
        real = os.path.realpath(job.cwd)
        if os.path.commonpath([real, job.workspace]) != job.workspace:
            return Outcome(
                ok=False,
                reason=FailureReason.spawn_error,
                message=f"scope directory {real} resolves outside the workspace",
            )
        if job.sandbox is not None and job.sandbox.problem:
            return Outcome(ok=False, reason=FailureReason.spawn_error, message=job.sandbox.problem)
        return None

    def _run_steps(self, out: int, err: int, pgfile: int, t0: float, on_started: Callable[[int], None]) -> Outcome:
        job = self.job
        deadline = t0 + job.timeout
        result = Outcome(ok=True, stdout_path=job.stdout_path, stderr_path=job.stderr_path)
        offsets = (0, 0)
        started = False
        for step in job.steps:
            if self._reason is not None:
                return self._fail(result, FailureReason.cancelled, None, out, err, offsets, self._reason)
            if time.monotonic() >= deadline:
                result.timed_out = True
                return self._fail(result, FailureReason.timeout, step, out, err, offsets)
            os.write(out, f"$ {step.command}\n".encode("utf-8", "replace"))
            offsets = (os.fstat(out).st_size, os.fstat(err).st_size)
            ts = time.monotonic()
            agent = step.argv is not None
            env = {**job.env, **step.env} if step.env else job.env
            argv = step.argv if step.argv is not None else [_SH, "-c", step.command]
            try:
                if job.sandbox is not None:
                    argv = job.sandbox.argv(argv, job.cwd, env, agent=agent)
                proc = subprocess.Popen(
                    argv,
                    cwd=job.cwd,
                    env=env,
                    stdin=subprocess.PIPE if step.stdin is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE if agent else out,
                    stderr=err,
                    start_new_session=True,
                )
            except (OSError, ValueError) as exc:
                os.write(err, f"harness: cannot start step: {exc}\n".encode("utf-8", "replace"))
                result.steps.append(_step_record(step, None, ts))
                return self._fail(result, FailureReason.spawn_error, step, out, err, offsets, str(exc))
            with self._lock:
                self._proc = proc
                self._groups.append(proc.pid)
                cancelled = self._reason is not None
            if cancelled:  # the cancel came between the check above and the start
                signal_group(proc.pid, signal.SIGTERM)
            os.write(pgfile, b"%d\n" % proc.pid)
            if not started:
                started = True
                on_started(proc.pid)
            watch = _AgentWatch(proc, step, out, ts) if agent else None
            step_deadline = deadline
            if watch is not None and step.budget.get("minutes"):
                step_deadline = min(deadline, ts + float(step.budget["minutes"]) * 60.0)
            rc, timed_out = self._wait(proc, step_deadline)
            if agent and job.sandbox is not None and rc is not None and 128 < rc <= 128 + 64:
                rc = 128 - rc  # bwrap reports an agent killed by signal N as 128+N; no shell stood between
            with self._lock:
                self._proc = None
            result.steps.append(_step_record(step, rc, ts))
            if watch is not None:
                over = watch.finish(rc, budget_timeout=timed_out and step_deadline < deadline)
                result.agent = watch.report
                if over is not None:
                    result.exit_code = rc if rc is not None and rc >= 0 else None
                    return self._fail(result, FailureReason.budget_exceeded, step, out, err, offsets, over)
                if not timed_out and self._reason is None and rc is not None and rc >= 0:
                    continue  # the agent's exit code is not the verdict: the acceptance tests are
                # killed by a signal, timed out or cancelled: its work is cut off, handled as a step
            if rc == 0 and not timed_out:
                continue
            result.exit_code = rc if rc is not None and rc >= 0 else None
            result.signal = -rc if rc is not None and rc < 0 else None
            if self._reason is not None:
                return self._fail(result, FailureReason.cancelled, step, out, err, offsets, self._reason)
            if timed_out:
                result.timed_out = True
                return self._fail(result, FailureReason.timeout, step, out, err, offsets)
            reason = FailureReason.signal if result.signal is not None else _failure_reason(step.kind)
            return self._fail(result, reason, step, out, err, offsets)
        if self._reason is not None:  # cancelled during the last step, which still succeeded
            return self._fail(result, FailureReason.cancelled, None, out, err, offsets, self._reason)
        if job.steps:
            result.stdout_tail, result.stderr_tail = _tail(out, offsets[0]), _tail(err, offsets[1])
        return result

    def _wait(self, proc: subprocess.Popen[bytes], deadline: float) -> tuple[int | None, bool]:
        """Wait for the step until the deadline; past it, SIGTERM the group, grace, SIGKILL."""
        pidfd = _open_pidfd(proc.pid)
        try:
            if wait_exit(proc, pidfd, deadline - time.monotonic()):
                return proc.wait(), False
            signal_group(proc.pid, signal.SIGTERM)
            if not wait_exit(proc, pidfd, TERM_GRACE):
                signal_group(proc.pid, signal.SIGKILL)
                if not wait_exit(proc, pidfd, KILL_WAIT):
                    return None, True
            return proc.wait(), True
        finally:
            if pidfd is not None:
                os.close(pidfd)

    @staticmethod
    def _fail(
        result: Outcome,
        reason: FailureReason,
        step: Step | None,
        out: int,
        err: int,
        offsets: tuple[int, int],
        message: str | None = None,
    ) -> Outcome:
        result.ok = False
        result.reason = reason
        result.failed_step = step
        result.message = message
        result.stdout_tail, result.stderr_tail = _tail(out, offsets[0]), _tail(err, offsets[1])
        return result


class _AgentWatch:
    """Reads an agent's stdout as it comes: into the worker's log, into the adapter's parser, and
    against the step's usage caps (tokens, usd, turns), stopping the agent's group at the first
    cap reached. The prompt, when it goes on stdin, is written by a thread of its own."""

    def __init__(self, proc: subprocess.Popen[bytes], step: Step, out: int, started: float) -> None:
        self.proc = proc
        self.step = step
        self.out = out
        self.started = started
        self.over: str | None = None
        self.report: dict[str, object] | None = None
        self.denied: list[str] = []  # tools refused through the channel
        self._stdin_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="agent-stdout", daemon=True)
        self._reader.start()
        if step.stdin is not None:
            target = self._open_channel if step.channel is not None else self._feed
            threading.Thread(target=target, name="agent-stdin", daemon=True).start()

    def _open_channel(self) -> None:
        """The first message of a channel session; stdin stays open for the answers."""
        self._write(self.step.stdin or b"")

    def _write(self, data: bytes) -> None:
        stdin = self.proc.stdin
        if stdin is None:
            return
        with self._stdin_lock:
            try:
                stdin.write(data)
                stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass

    def _close_stdin(self) -> None:
        with self._stdin_lock:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            except OSError:
                pass

    def _on_line(self, raw: bytes) -> None:
        """Channel sessions: answer tool requests (blocking until decided) and close stdin at the end."""
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        adapter = self.step.channel.adapter
        request = adapter.tool_request(event)
        if request is not None:
            try:
                allow, message = self.step.channel.ask(request)
            except Exception as exc:  # whoever decides failed: the call is refused (fail closed)
                allow, message = False, f"no decision could be made: {exc}"
            if not allow:
                self.denied.append(request.tool)
            self._write(adapter.tool_answer(request, allow, message))
        elif adapter.ends_session(event):
            self._close_stdin()

    def _feed(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(self.step.stdin or b"")
        except (BrokenPipeError, OSError):
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        parser = self.step.parser
        for raw in stdout:
            os.write(self.out, raw)
            if self.step.channel is not None:
                self._on_line(raw)
            if parser is None:
                continue
            try:
                parser.feed(raw.decode("utf-8", "replace"))
            except Exception:  # an adapter's bug must not lose the agent's output
                continue
            if self.over is None:
                self.over = _over_budget(parser.state, self.step.budget)
                if self.over is not None:
                    signal_group(self.proc.pid, signal.SIGKILL)

    def finish(self, rc: int | None, *, budget_timeout: bool) -> str | None:
        """The report once the agent ended; the cap that stopped it, if one did."""
        self._reader.join(KILL_WAIT)
        if budget_timeout and self.over is None:
            self.over = f"the agent ran past its budget of {self.step.budget['minutes']:g} minutes"
        parser = self.step.parser
        if parser is None:
            return self.over
        report = parser.report(rc)
        from harness.agents import AgentFailure

        if self.denied:  # what the harness refused is a denial whatever the CLI reports
            report.denied_tools = list(dict.fromkeys([*report.denied_tools, *self.denied]))
            if report.failure is None:
                report.failure = AgentFailure.tool_denied
                report.failure_detail = "denied: " + ", ".join(report.denied_tools)
        if self.over is not None:
            report.failure, report.failure_detail = AgentFailure.budget, self.over
        report_dict = report.as_dict()
        report_dict["duration_ms"] = _ms(self.started)
        self.report = report_dict
        return self.over


def _over_budget(report: object, budget: dict[str, object]) -> str | None:
    """The first cap of ``budget`` that ``report`` (an AgentReport) has reached, in words."""
    if not budget:
        return None
    tokens = getattr(report, "tokens_in", 0) + getattr(report, "tokens_out", 0)
    cost = getattr(report, "cost_usd", None)
    turns = getattr(report, "turns", 0)
    cap = budget.get("tokens")
    if isinstance(cap, int | float) and tokens >= cap:
        return f"{tokens} tokens used, budget {cap:g}"
    cap = budget.get("usd")
    if isinstance(cap, int | float) and cost is not None and cost >= cap:
        return f"${cost:.4f} spent, budget ${cap:g}"
    cap = budget.get("turns")
    if isinstance(cap, int | float) and turns >= cap:
        return f"{turns} turns taken, budget {cap:g}"
    return None


def _step_record(step: Step, rc: int | None, started: float) -> dict[str, object]:
    return {
        "kind": step.kind.value,
        "command": step.command,
        "exit_code": rc if rc is not None and rc >= 0 else None,
        "duration_ms": _ms(started),
    }


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000.0, 3)


class LocalExecutor:
    """Runs jobs as local process groups; see :class:`._executor.Executor`."""

    name = "local"

    def prepare(self, job: Job) -> LocalExecution:
        return LocalExecution(job)

    def reap(self, worker_id: str, out_dir: str, pids: list[int]) -> list[int]:
        path = f"{out_dir}/pgid"
        groups: list[int] = []
        written_at: float | None = None
        try:
            with open(path, "rb") as f:
                groups = [int(x) for x in f.read().split() if x.isdigit()]
            written_at = os.stat(path).st_mtime
        except (OSError, ValueError):
            pass
        marker = f"HARNESS_WORKER_ID={worker_id}".encode()
        killed = []
        for pgid in dict.fromkeys(groups + [p for p in pids if p > 1]):
            if _group_is_ours(pgid, written_at, marker) and signal_group(pgid, signal.SIGKILL):
                killed.append(pgid)
        return killed


def _group_is_ours(pgid: int, written_at: float | None, marker: bytes) -> bool:
    """Guard against a recycled pid: is group ``pgid`` still the one a worker's step started?

    If no process has the pid, the group (if any) can only be the step's orphans: a pid is not
    reused while its group lives. If one has it, it is the step only if it started no later than
    the pgid file was written (one second of slack for the boot-time granularity); without that
    file, only if its environment carries the worker's id.
    """
    if not os.path.isdir("/proc/self"):
        return True  # no procfs: nothing to check against
    ticks = start_time(pgid)
    if ticks is None:
        return not os.path.exists(f"/proc/{pgid}")  # gone: only the step's orphans can hold the group
    if written_at is None:
        try:
            with open(f"/proc/{pgid}/environ", "rb") as f:
                return marker in f.read().split(b"\0")
        except OSError:
            return False
    try:
        started = _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return False
    return started <= written_at + 1.0


def _boot_time() -> float:
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise ValueError("no btime in /proc/stat")
