"""Starting service processes, kept free of heavy imports.

``harness run`` starts the three default services before it imports anything heavy, so that
their start-up overlaps the command's own (`prespawn`). The supervisor adopts them as their first
start; anything it does not adopt is stopped.

A default service starts one of two ways:

* **fork** (where it is safe, see :func:`fork_is_safe`): the CLI imports what every service
  imports anyway (pydantic, the shared models, :mod:`harness.rpc`: :data:`SHARED_MODULES`) once,
  then forks each service, which imports only its own modules and runs its ``main()``, set up
  first as an exec'd child would be: its own session, only its wire pipes (on 0 and 1) and its
  stderr, the signal dispositions of a new interpreter, fresh stdio and logging; it ends with
  ``os._exit``. A new interpreter costs a service about 150 ms of CPU before its first answer; a
  forked one about 10 ms.
* **exec**: a new interpreter runs the service's command (:func:`default_command`). Commands from
  a config file, every restart after a crash (the supervisor has threads by then) and every start
  with ``HARNESS_SERVICE_LAUNCH=exec`` go this way.

The supervisor treats both alike (:class:`ServiceChild`); SERVICE_STARTED records a forked one's
command with ``"launch": "fork"``.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from importlib import import_module
from importlib.util import find_spec
from typing import IO, Any, NoReturn, Protocol

#: The embedded default command of each service (a config file may replace any of them).
DEFAULT_MODULES = {
    "planning": "harness.services.planning",
    "bootstrap": "harness.services.bootstrap",
    "worker-manager": "harness.services.worker_manager",
}


def default_command(name: str) -> list[str]:
    """Started by absolute interpreter path, never through a PATH shim."""
    return [sys.executable, "-m", DEFAULT_MODULES[name]]


#: Imported by the CLI before it forks the default services: what all three import (and the CLI
#: needs too), so that a forked service only imports its own modules.
SHARED_MODULES = ("harness.models", "harness.rpc")

#: What a default service imports on its first calls of a run (planning's validation rules,
#: bootstrap's phases). An exec'd service imports them then, to answer ``initialize`` sooner; a
#: forked one, started long before its first call, imports them before it serves, which takes
#: them off the run's path. Never required: a module that fails here is left to its first use.
PRELOAD = {
    "planning": ("harness.services.planning.validation",),
    "bootstrap": ("harness.services.bootstrap._engine",),
    "worker-manager": (),
}

#: ``exec`` makes every service start a new interpreter (``fork`` or unset: fork where safe).
LAUNCH_ENV = "HARNESS_SERVICE_LAUNCH"

logger = logging.getLogger(__name__)


class ServiceChild(Protocol):
    """A started service process as the supervisor uses it: ``subprocess.Popen`` (exec) and
    :class:`ForkedService` (fork) both are one."""

    @property
    def args(self) -> Any: ...
    @property
    def pid(self) -> int: ...
    @property
    def stdin(self) -> IO[bytes] | None: ...
    @property
    def stdout(self) -> IO[bytes] | None: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...


def spawn_child(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    stderr: IO[Any] | int | None = None,
) -> subprocess.Popen[bytes]:
    """A service child: pipes for the wire, unbuffered writes, its own session (process group)."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        cwd=cwd,
        bufsize=0,
        start_new_session=True,
    )


#: Where a workspace keeps its own config file, in the order they are looked for.
WORKSPACE_CONFIG_FILES = ("harness.yaml", os.path.join(".harness", "config.yaml"))


def config_may_override(workspace: str, config_path: str | None) -> bool:
    """True when a config file could change the service commands (then nothing is prespawned)."""
    if config_path:
        return True
    return any(os.path.isfile(os.path.join(workspace, rel)) for rel in WORKSPACE_CONFIG_FILES)


def services_log(workspace: str) -> IO[bytes]:
    """Where the services' stderr goes: ``WORKSPACE/.harness/logs/services.log``."""
    folder = os.path.join(workspace, ".harness", "logs")
    os.makedirs(folder, exist_ok=True)
    return open(os.path.join(folder, "services.log"), "ab")


def launch_mode() -> str:
    """``exec`` when ``HARNESS_SERVICE_LAUNCH=exec``, else ``fork`` (used where :func:`fork_is_safe`)."""
    value = os.environ.get(LAUNCH_ENV, "").strip().lower()
    if value not in ("", "fork", "exec"):
        logger.warning("%s=%s is neither fork nor exec: using fork", LAUNCH_ENV, value)
    return "exec" if value == "exec" else "fork"


def fork_is_safe() -> bool:
    """True where a fork without exec is sound: a POSIX ``os.fork`` but not macOS (its system
    frameworks are not fork-safe), called on the main thread of a process that has no other
    thread, Python's or a native library's (a lock another thread held at the fork would stay
    held in the child for good). Depends only on the state of this process, never on timing."""
    if not hasattr(os, "fork") or sys.platform == "darwin":
        return False
    if threading.current_thread() is not threading.main_thread() or threading.active_count() != 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:  # no /proc: Python's own count has to do
        return True


def prespawn(workspace: str, config_path: str | None) -> dict[str, ServiceChild]:
    """Start the default services now, when no config file can override them: forked after
    importing :data:`SHARED_MODULES` when :func:`launch_mode` and :func:`fork_is_safe` allow it,
    else exec'd. The caller must not have started a thread yet for the fork to be taken."""
    if config_may_override(workspace, config_path):
        return {}
    fork = launch_mode() == "fork"
    if fork:
        _preload_shared()
        fork = fork_is_safe()  # after the imports: they must not have started a thread either
    children: dict[str, ServiceChild] = {}
    with services_log(workspace) as err:
        try:
            for name in DEFAULT_MODULES:
                children[name] = (
                    fork_service(name, cwd=workspace, stderr=err)
                    if fork
                    else spawn_child(default_command(name), cwd=workspace, stderr=err)
                )
        except BaseException:
            discard(children)  # those already started
            raise
    return children


def _preload_shared() -> None:
    """Import :data:`SHARED_MODULES` as a preloading parent should: without collections (an
    import makes long-lived objects; collecting meanwhile costs ~10 % of the imports' time and
    finds almost nothing), then frozen, so that no later collection of this process or of the
    children walks them again (and the children's copies of those pages stay shared)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        for module in SHARED_MODULES:
            import_module(module)
        gc.freeze()
    finally:
        if enabled:
            gc.enable()


def discard(children: dict[str, ServiceChild]) -> None:
    """Stop prespawned services nobody adopted: end of input makes a service exit; bounded."""
    for proc in children.values():
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
    for proc in children.values():
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- fork ------------------------------------------------------------------------------------------
class ForkedService:
    """A default service started by :func:`fork_service`: the part of ``subprocess.Popen``'s
    interface the supervisor uses, with the same meaning (``args`` is the command the service
    stands for, :func:`default_command`; ``returncode`` is negative for a signal)."""

    def __init__(self, args: list[str], pid: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.args = args
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None
        self._reaping = threading.Lock()  # one waitpid at a time, as Popen

    def poll(self) -> int | None:
        """The exit status if the child has exited (reaping it), else None."""
        if self.returncode is None and self._reaping.acquire(blocking=False):
            try:
                if self.returncode is None:
                    self._reap(os.WNOHANG)
            finally:
                self._reaping.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit; ``subprocess.TimeoutExpired`` after ``timeout`` seconds. On a pidfd
        the wait wakes the moment the child exits; without one it polls with growing sleeps."""
        if timeout is None:
            with self._reaping:
                while (code := self.returncode) is None:
                    self._reap(0)
            return code
        deadline = time.monotonic() + timeout
        pidfd = open_pidfd(self.pid) if self.returncode is None else None
        exited = False
        try:
            delay = 0.0005
            while (code := self.poll()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                if pidfd is not None and not exited:
                    exited = readable(pidfd, remaining)
                    continue
                # No pidfd, or the child has exited and another thread is reaping it right now.
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.05)
            return code
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped behind our back (SIGCHLD ignored): the status is lost
            self.returncode = 0  # as subprocess.Popen says then
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)

    def send_signal(self, sig: int) -> None:
        """Signal the child, never a process that took over its pid after it was reaped."""
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def open_pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once it exits), or None where the system has none."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def readable(fd: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds (at least 1 ms) for ``fd`` to be readable: a pidfd's process
    to exit. True when it is."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(1, int(timeout * 1000))))


def fork_service(name: str, *, cwd: str, stderr: IO[Any] | None) -> ForkedService:
    """Start default service ``name`` as a fork of this process, which must be single-threaded
    (:func:`fork_is_safe`). Its stderr goes to ``stderr`` (None: this process's)."""
    err = stderr.fileno() if stderr is not None else None
    ends: list[int] = []
    try:
        # Both pipes are close-on-exec: nothing this process execs later inherits an end.
        ends.extend(os.pipe())
        ends.extend(os.pipe())
        _flush_stdio()  # nothing buffered here may be written twice
        pid = os.fork()
    except BaseException:
        for fd in ends:
            os.close(fd)
        raise
    to_child, to_service, from_service, to_parent = ends
    if pid == 0:  # the child: never returns into the caller's code
        _run_forked(name, to_child, to_parent, err, cwd)
    os.close(to_child)
    os.close(to_parent)
    return ForkedService(
        default_command(name), pid, open(to_service, "wb", buffering=0), open(from_service, "rb", buffering=0)
    )


#: The parent's stdio objects, kept referenced in a forked child: never finalised there, so it
#: never writes what the parent had buffered.
_inherited_stdio: list[Any] = []


def _run_forked(name: str, wire_in: int, wire_out: int, err: int | None, cwd: str) -> NoReturn:
    """The forked child: become what an exec'd service would be, then run the service's ``main()``.
    Ends with ``os._exit``: the parent's atexit handlers and buffers are not this process's."""
    code = 70  # EX_SOFTWARE: the set-up failed
    try:
        _detach(wire_in, wire_out, err, cwd)
        code = _run_main(DEFAULT_MODULES[name], PRELOAD[name])
    except BaseException:
        try:
            traceback.print_exc()
            sys.stderr.flush()
        except BaseException:
            pass
    os._exit(code)


def _detach(wire_in: int, wire_out: int, err: int | None, cwd: str) -> None:
    """Leave the parent behind: session, descriptors, signals, stdio, logging, directory."""
    # The parent's objects (garbage among them, maybe holding descriptors closed below) are never
    # collected here: a file object finalised later could close a descriptor reused by then.
    gc.freeze()
    gc.enable()  # as in a new interpreter, whatever the parent did
    sys.settrace(None)  # a profiler or debugger of the parent does not follow
    sys.setprofile(None)
    os.setsid()
    # Lift the three descriptors above 2 first, so that no dup2 below overwrites another's source.
    import fcntl

    lifted = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in (wire_in, wire_out, 2 if err is None else err)]
    for target, fd in enumerate(lifted):
        os.dup2(fd, target)  # inheritable, as an exec'd child's 0, 1 and 2
    _close_fds_above(2)
    _reset_signals()
    _fresh_stdio()
    root = logging.getLogger()
    for handler in list(root.handlers):  # the CLI's handler writes to the CLI's stderr object
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    logging.disable(logging.NOTSET)
    os.chdir(cwd)


def _close_fds_above(low: int) -> None:
    """Close every descriptor above ``low`` (one close_range call where the kernel has it)."""
    try:
        top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    except (OSError, ValueError):
        top = os.sysconf("SC_OPEN_MAX") - 1
    os.closerange(low + 1, top + 1)


def _reset_signals() -> None:
    """The dispositions an exec'd Python service starts with: exec resets caught signals to their
    default and keeps ignored ones ignored; Python then ignores SIGPIPE and SIGXFSZ and, when
    SIGINT is at its default, raises KeyboardInterrupt on it."""
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP) or signal.getsignal(sig) in (signal.SIG_DFL, signal.SIG_IGN):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # a signal the platform reserves
            pass
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    if signal.getsignal(signal.SIGINT) == signal.SIG_DFL:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _fresh_stdio() -> None:
    """New ``sys.stdin``/``stdout``/``stderr`` on descriptors 0, 1 and 2, configured as the
    interpreter configures them (encoding and errors as the parent's, which came from the same
    environment; stderr line-buffered; ``PYTHONUNBUFFERED`` honoured)."""
    _inherited_stdio.extend((sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__))
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))  # what an exec'd child's interpreter reads

    def stream(fd: int, like: Any, *, write: bool) -> io.TextIOWrapper:
        buffered = not (write and unbuffered)
        binary: Any = open(fd, "wb" if write else "rb", buffering=-1 if buffered else 0, closefd=False)
        return io.TextIOWrapper(
            binary,
            encoding=getattr(like, "encoding", None),
            errors=getattr(like, "errors", None) if fd != 2 else "backslashreplace",
            newline="\n",
            line_buffering=write and buffered and (fd == 2 or os.isatty(fd)),
            write_through=not buffered,
        )

    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        fresh = stream(fd, getattr(sys, f"__{name}__"), write=fd > 0)
        setattr(sys, name, fresh)
        setattr(sys, f"__{name}__", fresh)  # this program's original streams (Final to type checkers)


def _run_main(module: str, preload: Sequence[str] = ()) -> int:
    """``module.main()`` with the exit status ``python -m module`` would end with, after importing
    ``preload``."""
    try:
        main = import_module(module).main
        spec = find_spec(module + ".__main__")
        sys.argv = [spec.origin if spec is not None and spec.origin else module]
        for name in preload:
            try:
                import_module(name)
            except Exception:  # the call that needs it fails as it would in an exec'd service
                logger.warning("%s: could not preload %s", module, name, exc_info=True)
        main()
    except SystemExit as exc:
        status = exc.code
        if status is None:
            code = 0
        elif isinstance(status, int):
            code = status
        else:
            print(status, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:  # as the interpreter: die of SIGINT
        _flush_stdio()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    else:
        code = 0
    _flush_stdio()
    return code


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def start_time(pid: int) -> int | None:
    """When a process started, in clock ticks since boot (``/proc/PID/stat`` field 22); None when
    there is no such process or no /proc. With the pid it names one process for good: a pid can be
    reused, a (pid, start time) pair cannot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last.
    rest = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(rest[19])  # fields 3.. are rest[0..]; starttime is field 22
    except (IndexError, ValueError):
        return None
