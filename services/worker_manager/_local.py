"""Local processes: the one execution backend for now.

Each step is ``/bin/sh -c <command>`` (an agent's argv for an agent step) in its own session, so
its own process group, with stdin from /dev/null (or a pipe for an agent's prompt). Its stdout
and stderr are pipes, read in the same ``poll`` that waits for the step's exit on a pidfd with
the remaining deadline as its timeout: it wakes the moment the step prints or exits, where
``Popen.wait(timeout=...)`` would poll with sleeps and double the cost of a short step (without
a pidfd, the poll of the pipes gets a short timeout between checks of the process). Output is
appended to the worker's ``stdout.log``/``stderr.log`` as it arrives (``tail -f`` follows a long
step), but the worker's folder and each file are created by their first byte, and each step's
``$ COMMAND`` line goes to ``stdout.log`` just before that step's first byte on either stream:
a worker that prints nothing leaves no folder and no file. The tails of the last step (its last
TAIL_BYTES on each stream) are kept in memory. An agent step's stdout is read by a thread of its
own (:class:`_AgentWatch`: its parser, usage caps and tool-permission channel) through the same
writer; its stderr is a pipe like a shell step's.

A background child may hold a step's pipes after the step's shell exited: what they hold then is
read at once, they stay in the poll during the later steps, and when the job ends, after every
process group it started was SIGKILLed (so no background child outlives its worker), they are
read to their end for at most :data:`DRAIN_WAIT` seconds (a child that left the group may hold
them) and closed. Each step's group id is appended, right after the step started, as a
``WORKER_ID PGID TIME`` line to its run folder's ``workers/pgids`` (one file per run folder,
opened once by this process and kept open), so a later manager can reap the groups if this one
dies (the time tells a recycled pid apart). A job with a sandbox runs each step under it
(:mod:`harness.sandbox`): bubblewrap is then the group leader, and its ``--unshare-pid`` ends
whatever the step left behind when the step ends.
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
from typing import IO

from harness._spawn import open_pidfd as _open_pidfd  # one name, so tests can take it away
from harness._spawn import start_time

from ._executor import TAIL_BYTES, Job, Outcome, Step, scope_problem
from ._models import FailureReason, StepKind

#: Seconds between SIGTERM and SIGKILL when a step outlives the worker's deadline.
TERM_GRACE = 2.0
#: Bound on waiting for a SIGKILLed process to be reaped (a process in uninterruptible sleep).
KILL_WAIT = 5.0
#: Bound on reading, once the job's groups were killed, pipes a background child still held.
DRAIN_WAIT = 1.0
_MAX_POLL_MS = 2**31 - 1
#: Without a pidfd, the longest sleep between checks of a step that has pipes to read.
_FALLBACK_TICK = 0.05

_APPEND_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
_SH = "/bin/sh"
_FILES = ("stdout.log", "stderr.log")
_CHUNK = 65536
#: Reads of one pipe in a drain that must not block: 2 MiB, more than a pipe holds.
_DRAIN_READS = 32
_CONTINUATION = bytes(range(0x80, 0xC0))
#: Run folders' ``pgids`` files kept open at once (the oldest is closed past this).
_GROUP_FILES = 64


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False when it is gone (or not ours to signal)."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# -- the worker's output ------------------------------------------------------------------------


class _Tail:
    """The last TAIL_BYTES of one stream of one step, and how much the step wrote in all."""

    __slots__ = ("data", "total")

    def __init__(self) -> None:
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > 2 * TAIL_BYTES:
            del self.data[:-TAIL_BYTES]

    def text(self) -> str:
        data = bytes(self.data[-TAIL_BYTES:])
        if self.total > len(data):  # cut inside the step's output: drop a partial UTF-8 sequence
            data = data.lstrip(_CONTINUATION)
        return data.decode("utf-8", "replace")


class _StepOutput:
    """One step's share of the output: its header until it is written, its tails."""

    __slots__ = ("header", "tails")

    def __init__(self, command: str) -> None:
        self.header: bytes | None = f"$ {command}\n".encode("utf-8", "replace")
        self.tails = (_Tail(), _Tail())


class _Output:
    """A job's output: the lazily created files, the steps' pipes still open, the last step's tails.

    ``write`` may be called from any thread (an agent's reader); the pipes are read, and
    ``close`` called, by the thread that runs the job. After ``close``, writes only feed the tails.
    """

    __slots__ = ("out_dir", "pipes", "last", "error", "_lock", "_fds", "_paths", "_closed")

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.pipes: dict[int, tuple[_StepOutput, int]] = {}  # read end -> (its step, 0 stdout | 1 stderr)
        self.last: _StepOutput | None = None  # the step started last
        self.error: OSError | None = None  # the first failure to write a file: the files stop there
        self._lock = threading.Lock()
        self._fds: list[int | None] = [None, None]
        self._paths: list[str | None] = [None, None]
        self._closed = False

    @property
    def paths(self) -> tuple[str | None, str | None]:
        """The stdout and stderr files, each None when nothing was written to it."""
        return self._paths[0], self._paths[1]

    def tails(self) -> tuple[str, str]:
        last = self.last
        if last is None:
            return "", ""
        with self._lock:
            return last.tails[0].text(), last.tails[1].text()

    def begin(self, command: str) -> _StepOutput:
        self.last = _StepOutput(command)
        return self.last

    def write(self, step: _StepOutput, stream: int, data: bytes) -> None:
        """Append a step's bytes to a stream's file (after the step's header) and to its tail."""
        with self._lock:
            step.tails[stream].add(data)
            if self._closed or self.error is not None:
                return
            try:
                if step.header is not None:
                    self._append(0, step.header)
                    step.header = None
                self._append(stream, data)
            except OSError as exc:
                self.error = exc

    def _append(self, stream: int, data: bytes) -> None:
        fd = self._fds[stream]
        if fd is None:
            path = f"{self.out_dir}/{_FILES[stream]}"
            try:
                fd = os.open(path, _APPEND_FLAGS, 0o644)
            except FileNotFoundError:  # the first file of the worker: its folder too
                os.makedirs(self.out_dir, exist_ok=True)
                fd = os.open(path, _APPEND_FLAGS, 0o644)
            self._fds[stream], self._paths[stream] = fd, path
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    # -- pipes: read by the job's thread ---------------------------------------------------------
    def watch(self, fd: int, step: _StepOutput, stream: int) -> None:
        self.pipes[fd] = (step, stream)

    def read(self, fd: int) -> int:
        """One read of a (non-blocking) pipe: the bytes read, 0 if it held none, -1 at its end
        (it is then closed and forgotten)."""
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if not data:
            del self.pipes[fd]
            os.close(fd)
            return -1
        step, stream = self.pipes[fd]
        self.write(step, stream, data)
        return len(data)

    def drain(self) -> None:
        """Read, without blocking, what each pipe holds now; close those at their end."""
        for fd in list(self.pipes):
            for _ in range(_DRAIN_READS):
                if self.read(fd) <= 0:
                    break

    def close(self, wait: float) -> None:
        """Read the pipes to their end for at most ``wait`` seconds, then close them and the files."""
        try:
            self.drain()
            if self.pipes:
                poller = select.poll()
                for fd in self.pipes:
                    poller.register(fd, select.POLLIN)
                deadline = time.monotonic() + wait
                while self.pipes:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    for fd, _ in poller.poll(math.ceil(remaining * 1000)):
                        if fd in self.pipes and self.read(fd) < 0:
                            poller.unregister(fd)
        finally:
            for fd in self.pipes:
                os.close(fd)
            self.pipes.clear()
            with self._lock:
                self._closed = True
                for file_fd in self._fds:
                    if file_fd is not None:
                        os.close(file_fd)
                self._fds = [None, None]


def wait_exit(proc: subprocess.Popen[bytes], pidfd: int | None, timeout: float, output: _Output | None = None) -> bool:
    """Block until ``proc`` exits or ``timeout`` seconds pass, reading ``output``'s pipes as they
    fill; True when it exited.

    With a pidfd this is one ``poll`` on it and on the pipes, which wakes at the exit (and when
    output comes, to read it). Without one (old kernels, other systems) it falls back to
    ``Popen.wait`` or, while there are pipes to read, to a poll of the pipes with a short timeout
    (growing from 1 to 50 ms) between checks of the process.
    """
    pipes = output.pipes if output is not None else {}
    deadline = time.monotonic() + timeout
    poller = select.poll()
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    for fd in pipes:
        poller.register(fd, select.POLLIN)
    tick = 0.001
    while True:
        remaining = deadline - time.monotonic()
        if pidfd is None:
            if proc.poll() is not None:
                return True
            if not pipes:
                try:
                    proc.wait(timeout=max(remaining, 0.0))
                    return True
                except subprocess.TimeoutExpired:
                    return False
            if remaining <= 0:
                return False
            wait_ms = math.ceil(min(remaining, tick) * 1000)
            tick = min(tick * 2, _FALLBACK_TICK)
        else:  # poll() takes at most ~24 days at once; a longer deadline takes several rounds
            wait_ms = min(math.ceil(remaining * 1000), _MAX_POLL_MS) if remaining > 0 else 0
        exited = False
        for fd, _ in poller.poll(wait_ms):
            if fd == pidfd:
                exited = True
            elif output is not None and fd in pipes and output.read(fd) < 0:
                poller.unregister(fd)
        if exited:
            return True
        if remaining <= 0 and pidfd is not None:
            return False


# -- process groups, recorded for a later manager -----------------------------------------------

_group_files: dict[str, int] = {}  # pgids path -> fd open for appending
_group_lock = threading.Lock()


def pgids_path(worker_dir: str) -> str:
    """The run folder's record of process groups (``<run_dir>/workers/pgids``) for a worker's folder."""
    return f"{os.path.dirname(worker_dir)}/pgids"


def _group_file(path: str) -> int:
    """``path`` open for appending (lock held): opened, with its folder, on first use and kept
    open; opened again if it was deleted since."""
    fd = _group_files.get(path)
    if fd is not None:
        if os.fstat(fd).st_nlink:
            return fd
        os.close(_group_files.pop(path))
    try:
        fd = os.open(path, _APPEND_FLAGS, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, _APPEND_FLAGS, 0o644)
    if len(_group_files) >= _GROUP_FILES:
        os.close(_group_files.pop(next(iter(_group_files))))
    _group_files[path] = fd
    return fd


#: The pgid of the line a job writes before its first step starts: it began (no group yet).
BEGUN = 0


def record_group(worker_id: str, worker_dir: str, pgid: int) -> None:
    """Append ``WORKER_ID PGID TIME`` to the run folder's ``pgids``: for a step that just started,
    or with :data:`BEGUN` before the job's first step (raises OSError if the file cannot be
    appended to)."""
    line = f"{worker_id} {pgid} {time.time():.3f}\n".encode()
    with _group_lock:
        os.write(_group_file(pgids_path(worker_dir)), line)


def record_begun(job: Job) -> str | None:
    """The job's BEGUN line, written after its go and before any process of it: a replay after
    this manager dies must know the job began, even if it dies between a step's start and the
    record of its group (a held job never released did not begin: its key may still run).
    None once written, else why the job cannot start."""
    try:
        record_group(job.worker_id, job.out_dir, BEGUN)
    except OSError as exc:
        return f"cannot open the run's record of process groups: {exc}"
    return None


#: The last ``pgids`` file parsed: ((path, inode, size, mtime), worker id -> {pgid: recorded at}).
_parsed: tuple[tuple[str, int, int, int], dict[bytes, dict[int, float]]] | None = None


def _read_record(path: str) -> dict[bytes, dict[int, float]]:
    """The groups a ``pgids`` file records, by worker id; parsed again only when the file changed
    (a replay asks about each worker of a run in turn)."""
    global _parsed
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
            cached = _parsed
            if cached is not None and cached[0] == key:
                return cached[1]
            data = f.read()
    except OSError:
        return {}
    record: dict[bytes, dict[int, float]] = {}
    for line in data.splitlines():
        fields = line.rsplit(b" ", 2)
        try:
            wid, pgid, written_at = fields[0], int(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            continue  # a torn or foreign line
        groups = record.setdefault(wid, {})  # a BEGUN line names the worker with no group
        if pgid > 1:  # never 0 (our own group) or 1
            groups.setdefault(pgid, written_at)
    _parsed = (key, record)
    return record


def recorded_groups(worker_id: str, worker_dir: str) -> dict[int, float]:
    """The process groups recorded for a worker's steps, each with when it was recorded (epoch
    seconds): the lines of the run folder's ``pgids`` that name it, and the worker's own ``pgid``
    file as an earlier version wrote it (one group per line, recorded by the file's time)."""
    groups = dict(_read_record(pgids_path(worker_dir)).get(worker_id.encode("utf-8", "surrogateescape"), {}))
    legacy = f"{worker_dir}/pgid"
    try:
        with open(legacy, "rb") as f:
            old = [int(x) for x in f.read().split() if x.isdigit()]
        written_at = os.stat(legacy).st_mtime
    except (OSError, ValueError):
        old = []
    for pgid in old:
        if pgid > 1:
            groups.setdefault(pgid, written_at)
    return groups


def began_running(worker_id: str, worker_dir: str) -> bool:
    """True when the worker's job began: the run folder's ``pgids`` names it (its BEGUN line is
    written before the first process starts), or the worker has the ``pgid`` file an earlier
    version created before its first step."""
    named = worker_id.encode("utf-8", "surrogateescape") in _read_record(pgids_path(worker_dir))
    return named or os.path.exists(f"{worker_dir}/pgid")


def output_files(worker_dir: str) -> tuple[str | None, str | None]:
    """A worker's stdout and stderr files, each None when it does not exist (nothing was printed)."""
    paths = [f"{worker_dir}/{name}" for name in _FILES]
    found = [path if os.path.exists(path) else None for path in paths]
    return found[0], found[1]


def _failure_reason(kind: StepKind) -> FailureReason:
    return FailureReason.acceptance_failed if kind is StepKind.acceptance else FailureReason.command_failed


class LocalExecution:
    """One job's run on this machine; see :class:`._executor.Execution`."""

    __slots__ = ("job", "_lock", "_proc", "_groups", "_reason", "_launcher", "_preexec")

    def __init__(self, job: Job, *, launcher: tuple[str, ...] = (), preexec: Callable[[], None] | None = None) -> None:
        self.job = job
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._groups: list[int] = []
        self._reason: str | None = None
        # How a cluster node ties each step to the thread that starts it (a parent-death signal):
        # ``launcher`` goes before each step's argv (``setpriv --pdeathsig KILL --``), ``preexec``
        # runs in the child before its exec. Neither is set here: a preexec_fn rules out the fast
        # vfork path.
        self._launcher = launcher
        self._preexec = preexec

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
        output = _Output(job.out_dir)
        try:
            if job.sandbox is not None:
                job.sandbox.open()
            if job.steps and job.gate is not None:
                unreleased = job.gate()  # all is ready: the first process waits for the go
                if unreleased is not None:
                    return Outcome(ok=False, reason=FailureReason.cancelled, duration_ms=_ms(t0), message=unreleased)
                t0 = time.monotonic()  # the worker's deadline counts from its go
            unrecorded = record_begun(job) if job.steps else None
            if unrecorded is not None:
                return Outcome(ok=False, reason=FailureReason.spawn_error, duration_ms=_ms(t0), message=unrecorded)
            outcome = self._run_steps(output, t0, on_started)
        finally:
            self.kill_now()
            try:
                output.close(DRAIN_WAIT)
            finally:
                if job.sandbox is not None:
                    job.sandbox.close()
        outcome.stdout_path, outcome.stderr_path = output.paths
        if output.error is not None and outcome.message is None:
            outcome.message = f"the worker's output could not be saved: {output.error}"
        outcome.duration_ms = _ms(t0)
        return outcome

    def _check_scope(self) -> Outcome | None:
        """The scope must exist and, now that it does, still resolve inside the workspace."""
        job = self.job
        problem = scope_problem(job)
        if problem is not None:
            return problem
        if job.sandbox is not None and job.sandbox.problem:
            return Outcome(ok=False, reason=FailureReason.spawn_error, message=job.sandbox.problem)
        return None

    def _run_steps(self, output: _Output, t0: float, on_started: Callable[[int], None]) -> Outcome:
        job = self.job
        deadline = t0 + job.timeout
        result = Outcome(ok=True)
        started = False
        for step in job.steps:
            if self._reason is not None:
                return self._fail(result, FailureReason.cancelled, None, output, self._reason)
            if time.monotonic() >= deadline:
                result.timed_out = True
                return self._fail(result, FailureReason.timeout, step, output)
            mine = output.begin(step.command)
            ts = time.monotonic()
            agent = step.argv is not None
            env = {**job.env, **step.env} if step.env else job.env
            argv = step.argv if step.argv is not None else [_SH, "-c", step.command]
            try:
                if job.sandbox is not None:
                    argv = job.sandbox.argv(argv, job.cwd, env, agent=agent)
                if self._launcher:
                    argv = [*self._launcher, *argv]
                proc = self._start(argv, env, step, output, mine)
            except (OSError, ValueError) as exc:
                output.write(mine, 1, f"harness: cannot start step: {exc}\n".encode("utf-8", "replace"))
                result.steps.append(_step_record(step, None, ts))
                return self._fail(result, FailureReason.spawn_error, step, output, str(exc))
            with self._lock:
                self._proc = proc
                self._groups.append(proc.pid)
                cancelled = self._reason is not None
            if cancelled:  # the cancel came between the check above and the start
                signal_group(proc.pid, signal.SIGTERM)
            try:
                record_group(job.worker_id, job.out_dir, proc.pid)
            except OSError as exc:  # a group a later manager could not find: not run
                signal_group(proc.pid, signal.SIGKILL)
                rc, _ = self._wait(proc, time.monotonic() + KILL_WAIT, output)
                with self._lock:
                    self._proc = None
                result.steps.append(_step_record(step, rc, ts))
                message = f"cannot record the step's process group: {exc}"
                return self._fail(result, FailureReason.spawn_error, step, output, message)
            if not started:
                started = True
                on_started(proc.pid)
            watch = _AgentWatch(proc, step, output, mine, ts) if agent else None
            step_deadline = deadline
            if watch is not None and step.budget.get("minutes"):
                step_deadline = min(deadline, ts + float(step.budget["minutes"]) * 60.0)
            rc, timed_out = self._wait(proc, step_deadline, output)
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
                    return self._fail(result, FailureReason.budget_exceeded, step, output, over)
                if not timed_out and self._reason is None and rc is not None and rc >= 0:
                    continue  # the agent's exit code is not the verdict: the acceptance tests are
                # killed by a signal, timed out or cancelled: its work is cut off, handled as a step
            if rc == 0 and not timed_out:
                continue
            result.exit_code = rc if rc is not None and rc >= 0 else None
            result.signal = -rc if rc is not None and rc < 0 else None
            if self._reason is not None:
                return self._fail(result, FailureReason.cancelled, step, output, self._reason)
            if timed_out:
                result.timed_out = True
                return self._fail(result, FailureReason.timeout, step, output)
            reason = FailureReason.signal if result.signal is not None else _failure_reason(step.kind)
            return self._fail(result, reason, step, output)
        if self._reason is not None:  # cancelled during the last step, which still succeeded
            return self._fail(result, FailureReason.cancelled, None, output, self._reason)
        result.stdout_tail, result.stderr_tail = output.tails()
        return result

    def _start(
        self, argv: list[str], env: dict[str, str], step: Step, output: _Output, mine: _StepOutput
    ) -> subprocess.Popen[bytes]:
        """Start a step with its output on pipes that ``output`` reads: stdout and stderr for a
        shell step, stderr for an agent (its stdout is read by its :class:`_AgentWatch`)."""
        job = self.job
        agent = step.argv is not None
        streams = (1,) if agent else (0, 1)
        reads: list[int] = []
        writes: list[int] = []
        try:
            for _ in streams:
                r, w = os.pipe()  # both ends close-on-exec: the child gets its end as fd 1 or 2
                reads.append(r)
                writes.append(w)
                os.set_blocking(r, False)
            proc = subprocess.Popen(
                argv,
                cwd=job.cwd,
                env=env,
                stdin=subprocess.PIPE if step.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE if agent else writes[0],
                stderr=writes[-1],
                start_new_session=True,
                preexec_fn=self._preexec,
            )
        except BaseException:
            for fd in reads:
                os.close(fd)
            raise
        finally:
            for fd in writes:
                os.close(fd)
        for fd, stream in zip(reads, streams, strict=True):
            output.watch(fd, mine, stream)
        return proc

    def _wait(self, proc: subprocess.Popen[bytes], deadline: float, output: _Output) -> tuple[int | None, bool]:
        """Wait for the step until the deadline, reading the output; past it, SIGTERM the group,
        grace, SIGKILL. Then read, without blocking, what the pipes still hold."""
        pidfd = _open_pidfd(proc.pid)
        try:
            if wait_exit(proc, pidfd, deadline - time.monotonic(), output):
                return proc.wait(), False
            signal_group(proc.pid, signal.SIGTERM)
            if not wait_exit(proc, pidfd, TERM_GRACE, output):
                signal_group(proc.pid, signal.SIGKILL)
                if not wait_exit(proc, pidfd, KILL_WAIT, output):
                    return None, True
            return proc.wait(), True
        finally:
            if pidfd is not None:
                os.close(pidfd)
            output.drain()

    @staticmethod
    def _fail(
        result: Outcome,
        reason: FailureReason,
        step: Step | None,
        output: _Output,
        message: str | None = None,
    ) -> Outcome:
        result.ok = False
        result.reason = reason
        result.failed_step = step
        result.message = message
        result.stdout_tail, result.stderr_tail = output.tails()
        return result


class _AgentWatch:
    """Reads an agent's stdout as it comes: into the worker's log (through the job's
    :class:`_Output`, which creates the file at the first byte), into the adapter's parser, and
    against the step's usage caps (tokens, usd, turns), stopping the agent's group at the first
    cap reached. The prompt, when it goes on stdin, is written by a thread of its own."""

    def __init__(
        self, proc: subprocess.Popen[bytes], step: Step, output: _Output, mine: _StepOutput, started: float
    ) -> None:
        self.proc = proc
        self.step = step
        self.output = output
        self.mine = mine
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
        try:
            self._consume(stdout)
        finally:  # the pipe is this thread's: closed when it ends, however it ends
            try:
                stdout.close()
            except OSError:
                pass

    def _consume(self, stdout: IO[bytes]) -> None:
        parser = self.step.parser
        for raw in stdout:
            self.output.write(self.mine, 0, raw)
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
        groups = recorded_groups(worker_id, out_dir)
        marker = f"HARNESS_WORKER_ID={worker_id}".encode()
        killed = []
        for pgid in dict.fromkeys([*groups, *(p for p in pids if p > 1)]):
            if _group_is_ours(pgid, groups.get(pgid), marker) and signal_group(pgid, signal.SIGKILL):
                killed.append(pgid)
        return killed


def _group_is_ours(pgid: int, written_at: float | None, marker: bytes) -> bool:
    """Guard against a recycled pid: is group ``pgid`` still the one a worker's step started?

    If no process has the pid, the group (if any) can only be the step's orphans: a pid is not
    reused while its group lives. If one has it, it is the step only if it started no later than
    the group was recorded (``written_at``, one second of slack for the boot-time granularity);
    when it was not recorded, only if its environment carries the worker's id.
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
