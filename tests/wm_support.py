"""Helpers for the worker-manager tests: a driven service process and process-table probes."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import cache
from pathlib import Path
from typing import Any

from harness.rpc import ServiceProcess

_REPO = Path(__file__).resolve().parents[1]

#: argv of the service, by absolute interpreter path (no PATH shim on the start path).
SERVICE_CMD = [sys.executable, "-m", "harness.services.worker_manager"]
#: Bound on every wait in these tests (a healthy run answers in milliseconds).
WAIT = 10.0

_validators: dict[str, Any] = {}


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A generated schema, through the package data (or the source tree when the installed
    package does not map ``harness.schemas``, as in an editable install made before it existed)."""
    from harness import resources

    try:
        return resources.load_schema(name)
    except ModuleNotFoundError:
        return json.loads((_REPO / "schemas" / f"{name}.json").read_text(encoding="utf-8"))


@cache
def load_contract(service: str) -> dict[str, Any]:
    """A service contract, found the same way as :func:`load_schema`."""
    from harness import resources

    try:
        return resources.load_contract(service)
    except ModuleNotFoundError:
        import yaml

        return yaml.safe_load((_REPO / "contracts" / f"{service}.yaml").read_text(encoding="utf-8"))


def validate(schema_name: str, value: Any) -> None:
    """Raise jsonschema.ValidationError unless ``value`` fits ``schemas/<schema_name>.json``."""
    validator = _validators.get(schema_name)
    if validator is None:
        import jsonschema

        validator = _validators[schema_name] = jsonschema.Draft202012Validator(load_schema(schema_name))
    validator.validate(value)


def result_schema(method: str) -> str:
    return load_contract("worker-manager")["methods"][method]["result"]


def packet(task_id: str = "t1", **fields: Any) -> dict[str, Any]:
    """A TaskPacket as wire data; ``fields`` override the defaults (title, commands, ...)."""
    return {"id": task_id, "title": f"task {task_id}", **fields}


class Manager:
    """A worker-manager child process whose replies and notifications are schema-checked."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.bad_events: list[str] = []
        self._cv = threading.Condition()
        self.svc = ServiceProcess(SERVICE_CMD, env=env, on_notification=self._on_notification)

    @property
    def pid(self) -> int:
        return self.svc.pid

    def _on_notification(self, method: str, params: Any) -> None:
        try:
            assert method == "worker_event", method
            validate("WorkerEvent", params)
        except Exception as exc:  # recorded, asserted by the fixture: a callback must not raise
            self.bad_events.append(f"{method}: {exc}")
        with self._cv:
            self.events.append(params)
            self._cv.notify_all()

    def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = WAIT) -> Any:
        result = self.svc.request(method, params if params is not None else {}, timeout=timeout)
        validate(result_schema(method), result)
        return result

    def call_async(self, method: str, params: dict[str, Any], *, timeout: float = WAIT) -> Future[Any]:
        return self.svc.peer.request_async(method, params, timeout=timeout)

    def spawn(self, tmp_path: Any, pkt: dict[str, Any], **params: Any) -> dict[str, Any]:
        """spawn_worker with the test's workspace and run dir."""
        args = {"task_packet": pkt, "workspace": str(tmp_path / "ws"), "run_dir": str(tmp_path / "run"), **params}
        return self.call("spawn_worker", args)

    def trusted_worker(self, tmp_path: Any, pkt: dict[str, Any], **params: Any) -> str:
        wid = self.spawn(tmp_path, pkt, **params)["worker_id"]
        self.call("mark_trusted", {"worker_id": wid, "approval_source": "test"})
        return wid

    def wait_event(self, pred: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for event in self.events:
                    if pred(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no matching worker_event in time")
                self._cv.wait(remaining)

    def events_of(self, worker_id: str) -> list[str]:
        with self._cv:
            return [e["event"] for e in self.events if e["worker_id"] == worker_id]

    def stop(self) -> None:
        self.svc.stop(grace=3.0)


# -- process table ------------------------------------------------------------------------------


def _stat(pid: str) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()


def live_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in group ``pgid``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(name)
            if fields and fields[0] != b"Z" and int(fields[2]) == pgid:
                found.append(int(name))
    return found


def processes_with_env(needle: bytes) -> list[int]:
    """Pids of live processes whose environment has an entry starting with ``needle``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if any(entry.startswith(needle) for entry in env.split(b"\0")):
            fields = _stat(name)
            if fields and fields[0] != b"Z":
                found.append(int(name))
    return found


def wait_until(pred: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll ``pred`` until true or the bound passes (for deaths, which the kernel makes async)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def assert_no_worker_left(run_root: Path) -> None:
    """Fail if a process started with HARNESS_RUN_DIR under ``run_root`` outlives the test (it is
    killed first, so one leak does not spill into the next test)."""
    needle = f"HARNESS_RUN_DIR={run_root}".encode()
    gone = wait_until(lambda: not processes_with_env(needle), 1.0)
    left = processes_with_env(needle)
    kill_pids(left)
    assert gone, f"worker processes left behind: {left}"
