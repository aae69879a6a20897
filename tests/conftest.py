"""Fixtures shared by the whole suite.

* ``service_cmd``: the argv that starts one of the harness services with this interpreter, by
  absolute path (a shim on PATH would cost tens of milliseconds per spawn).
* ``rpc_fixture_cmd``: the argv of one of the tiny test services under ``tests/rpc_fixtures``.
* A module-level guard that fails a test module which leaves a child process behind: every test
  must stop and reap what it starts, so a leak is a bug in the test or in the code it drives.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).parent / "rpc_fixtures"

#: The harness services, by module name under ``harness.services``.
SERVICE_MODULES = ("planning", "bootstrap", "worker_manager")

#: How long a module's teardown waits for exiting children to disappear before it complains.
_LEAK_GRACE_SECONDS = 1.0


def service_cmd(name: str) -> list[str]:
    """argv running ``harness.services.<name>`` (``worker-manager`` and ``worker_manager`` alike)."""
    module = name.replace("-", "_")
    if module not in SERVICE_MODULES:
        raise ValueError(f"unknown service {name!r}; expected one of {SERVICE_MODULES}")
    return [sys.executable, "-m", f"harness.services.{module}"]


def rpc_fixture_cmd(name: str, *args: str) -> list[str]:
    """argv running the test service ``tests/rpc_fixtures/<name>.py`` with extra arguments."""
    path = FIXTURES_DIR / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(path)
    return [sys.executable, str(path), *args]


@pytest.fixture(name="service_cmd", scope="session")
def service_cmd_fixture() -> Callable[[str], list[str]]:
    """The :func:`service_cmd` helper, for tests that cannot import this module."""
    return service_cmd


@pytest.fixture(name="rpc_fixture_cmd", scope="session")
def rpc_fixture_cmd_fixture() -> Callable[..., list[str]]:
    return rpc_fixture_cmd


# -- leaked child processes ------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state letter) for every process visible in /proc."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # the process ended while we looked
            continue
        # The command name is in parentheses and may itself hold spaces or parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), fields[0].decode())
    return table


def descendants(root: int | None = None) -> dict[int, str]:
    """Every live or unreaped descendant of ``root`` (default: this process) -> its state letter."""
    root = os.getpid() if root is None else root
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found[pid] = table[pid][1]
        stack.extend(children.get(pid, []))
    return found


def _describe(pid: int, state: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = "?"
    return f"pid {pid} state {state}: {cmd or '(zombie)'}"


def _reap_all(pids: dict[int, str]) -> None:
    """Kill and reap what a module left, so the next module starts clean."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our direct child: its own parent reaps it
            pass


@pytest.fixture(autouse=True, scope="module")
def no_leaked_children(request: pytest.FixtureRequest):
    """Fail the module if a child process of the test process outlives it (bounded, quick)."""
    yield
    deadline = time.monotonic() + _LEAK_GRACE_SECONDS
    left = descendants()
    while left and time.monotonic() < deadline:
        time.sleep(0.02)  # processes killed just now may still be on their way out
        left = descendants()
    if left:
        report = "\n  ".join(_describe(pid, state) for pid, state in sorted(left.items()))
        _reap_all(left)
        pytest.fail(f"{request.module.__name__} left child processes behind:\n  {report}", pytrace=False)
