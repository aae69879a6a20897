"""Starting service processes, kept free of heavy imports.

``harness run`` starts the three default services before it imports anything heavy, so that
their interpreter start-up and imports overlap the command's own (`prespawn`). The supervisor
adopts them as their first start; anything it does not adopt is stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import IO, Any

#: The embedded default command of each service (a config file may replace any of them).
DEFAULT_MODULES = {
    "planning": "harness.services.planning",
    "bootstrap": "harness.services.bootstrap",
    "worker-manager": "harness.services.worker_manager",
}


def default_command(name: str) -> list[str]:
    """Started by absolute interpreter path, never through a PATH shim."""
    return [sys.executable, "-m", DEFAULT_MODULES[name]]


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


def prespawn(workspace: str, config_path: str | None) -> dict[str, subprocess.Popen[bytes]]:
    """Start the default services now, when no config file can override them."""
    if config_may_override(workspace, config_path):
        return {}
    with services_log(workspace) as err:
        return {name: spawn_child(default_command(name), cwd=workspace, stderr=err) for name in DEFAULT_MODULES}


def discard(children: dict[str, subprocess.Popen[bytes]]) -> None:
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
