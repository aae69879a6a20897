"""The transport: a service as a child process speaking JSON-RPC on its pipes.

Each child runs in its own session so that a signal to its process group reaches everything it
started. Stopping escalates and every step is bounded: close stdin (a well-behaved service exits on
EOF), wait a grace period, SIGTERM the group, wait, SIGKILL the group, reap.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import IO, Any

from .._spawn import ForkedService, ServiceChild, open_pidfd, readable, spawn_child
from ._client import CloseCallback, NotificationCallback, Peer
from ._framing import DEFAULT_MAX_LINE


def kill_group(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal the process group led by ``pid``; False when it no longer exists."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


class ServiceProcess:
    """A started child process and the Peer that talks to it."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        stderr: IO[Any] | int | None = None,
        on_notification: NotificationCallback | None = None,
        on_close: CloseCallback | None = None,
        max_line: int = DEFAULT_MAX_LINE,
        started: ServiceChild | None = None,
    ) -> None:
        """Spawn ``argv``, or adopt ``started``, a child already started with the same pipes:
        exec'd by ``harness._spawn.spawn_child`` or forked by ``harness._spawn.fork_service``."""
        self.argv = list(argv)
        self.name = name or os.path.basename(self.argv[0])
        self.proc: ServiceChild = (
            started if started is not None else spawn_child(self.argv, env=env, cwd=cwd, stderr=stderr)
        )
        #: How the process was started: ``fork`` (a fork of the CLI running ``argv``'s service) or ``exec``.
        self.launch = "fork" if isinstance(self.proc, ForkedService) else "exec"
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        # Replies are read through a buffer (one read per chunk, not per byte): a raw pipe (as
        # spawn_child makes them) gets one. Requests are written unbuffered, each line in one write.
        reader: IO[bytes] = io.BufferedReader(stdout, 65536) if isinstance(stdout, io.RawIOBase) else stdout
        self.peer = Peer(
            reader,
            stdin,
            name=self.name,
            on_notification=on_notification,
            on_close=on_close,
            max_line=max_line,
        ).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(self, method: str, params: Any = None, *, timeout: float = 30.0) -> Any:
        return self.peer.request(method, params, timeout=timeout)

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        """SIGKILL the whole group and reap."""
        kill_group(self.proc.pid, signal.SIGKILL)
        self._wait(5.0)

    def stop(self, grace: float = 2.0, term_grace: float = 2.0) -> int | None:
        """Escalating, bounded shutdown; returns the exit status (negative: killed by a signal)."""
        try:
            self.peer.close()
        except Exception:
            pass
        if self._wait(grace) is None:
            kill_group(self.proc.pid, signal.SIGTERM)
            if self._wait(term_grace) is None:
                kill_group(self.proc.pid, signal.SIGKILL)
                self._wait(5.0)
        self.peer.wait_closed(1.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def _wait(self, timeout: float) -> int | None:
        """Wait (bounded) for the exit. On a pidfd the wait wakes the moment the child exits;
        ``Popen.wait(timeout)`` would poll with growing sleeps (up to tens of milliseconds late)."""
        if self.proc.returncode is None and timeout > 0:
            fd = open_pidfd(self.proc.pid)
            if fd is not None:
                try:
                    readable(fd, timeout)
                finally:
                    os.close(fd)
                return self.proc.poll()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
