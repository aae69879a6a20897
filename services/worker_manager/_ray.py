"""Ray: each attempt of a worker is one Ray task on a cluster node, run there by the local executor.

The manager side (:class:`RayExecution`) does what the local executor does before a first process
(the scope must exist inside the workspace; the run folder's ``pgids`` gets the job's BEGUN line),
then submits ONE task with ``max_retries=0`` (only the supervisor retries an attempt) and the
packet's resources (``cpus`` -> ``num_cpus``, ``memory_mb`` -> ``memory`` in bytes, ``custom`` ->
``resources``). The task is a streaming generator: it yields ``started`` (node id, task id, pid)
when the first step's process starts, which becomes ``on_started(pid)``, and ``done`` with the
outcome, the output files and the changes. The manager waits on it in slices of :data:`SLICE`
seconds, never longer in all than the job's timeout plus :data:`ANSWER_GRACE`.

On the node (:func:`_attempt_on_node`), the job runs through :class:`._local.LocalExecution` in a
scratch folder of its own, ``<tempdir>/harness-ray/<worker_id>/``:

    work/                   the scope, unpacked from its bundle: the steps' cwd and workspace
    run/workers/<id>/       the node's worker folder: stdout.log, stderr.log, files the argv names
    run/workers/pgids       the process groups of the steps, for the watcher
    tmp/                    the sandbox's private /tmp, when the job has a sandbox

Each step is in a session of its own with a parent-death signal (SIGKILL when the Ray worker
thread that started it dies; ``setpriv --pdeathsig`` before its argv, else a prctl preexec_fn),
and a watcher (a ``/bin/sh`` loop, in a session of its own) kills
every group recorded in ``pgids`` and removes the scratch folder if the Ray worker dies without
telling it the attempt ended: a parent-death signal reaches only the step's first process, not
what it started. The job runs in a thread of the task; the task's main thread waits for it in
slices, so that Ray's polite cancel (a KeyboardInterrupt in the main thread) stops the steps'
groups (SIGTERM, a grace, SIGKILL) and ends the task. A forced cancel kills the Ray worker: the
parent-death signal and the watcher end the steps.

Files: unless ``shared_fs``, the scope is bundled (a tar, at most ``bundle_cap`` bytes of files;
its sha256 and size go in the placement) without any ``.git`` entry at any depth, folder or a
linked worktree's file, nor the workspace's ``.harness`` folder (a node must not write to the
manager's repository or the run's log through a shared path;
``GIT_CEILING_DIRECTORIES`` keeps git from finding one above the scratch folder). What the steps
added, changed (content, type or mode) and deleted, relative to the bundle, comes back as a
changes bundle, saved as ``changes.tar`` and ``changes.json`` (its sha256, the deletions) in the
worker's folder, and is applied to the scope only by :meth:`RayExecution.promote`, once (a
``changes.promoted`` marker makes a second call do nothing). With ``shared_fs`` the steps run in
place on the scope and ``promote`` has nothing to do.

Environment on the node: values naming the scope or the worker's folder (or paths inside them) are
rewritten to the scratch copies; ``HARNESS_WORKSPACE`` names ``work/`` (the only tree the node
has) and ``HARNESS_RUN_DIR`` names ``run/``. With ``shared_fs`` the environment is unchanged.

Output files come back capped at ``log_cap`` bytes each (their end is kept) and are written in the
worker's folder here, so ``stdout_path``/``stderr_path`` are local (None when nothing was printed).
A cancelled attempt's output stays on the node and is removed with its scratch folder.

Agent steps run on the node with their parser (pickled with the step; its report comes back in
``Outcome.agent``). A tool-permission channel is bridged: the node's reader asks an actor of this
executor (:class:`_Mailbox`, on this process's node), a thread here takes the request, asks the manager's channel and
posts the answer. A sandbox is rebuilt on the node for its scratch paths, with the node's
bubblewrap; a node without one refuses the job (spawn_error), never runs it unconfined.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import io
import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ._executor import Job, Outcome, Step, ToolChannel, scope_problem
from ._local import DRAIN_WAIT, KILL_WAIT, TERM_GRACE, LocalExecution, LocalExecutor, record_begun
from ._models import FailureReason, StepKind

__all__ = [
    "ANSWER_GRACE",
    "BUNDLE_CAP",
    "DEFAULT_CPUS",
    "LOG_CAP",
    "BundleTooLarge",
    "RayExecution",
    "RayExecutor",
    "make_bundle",
    "promote_changes",
    "ray_options",
]

#: Bytes of files a bundle may hold, either way (the scope to a node, the changes back).
BUNDLE_CAP = 256 * 1024 * 1024
#: Bytes of each output file brought back from a node (its end is kept).
LOG_CAP = 16 * 1024 * 1024
#: Logical CPUs a job reserves when its packet names none: a job runs builds, test suites or an
#: agent CLI, each of which keeps a core busy, so a node runs no more jobs at once than it has
#: CPUs, as the local executor's parallelism assumes. A packet with light steps asks for less.
DEFAULT_CPUS = 1.0
#: Seconds the manager waits for a task past its job's timeout: queueing, the bundles' transfers,
#: the node's own grace for stopping the steps.
ANSWER_GRACE = 30.0
#: Seconds between checks while waiting, on both sides (how soon a cancel lands in the task).
SLICE = 0.2
#: Bytes of a file under the worker's folder that an agent's argv names, sent along with the job.
_ARG_FILE_CAP = 1024 * 1024
#: The names of the changes of an attempt in its worker's folder.
CHANGES_TAR, CHANGES_JSON, PROMOTED = "changes.tar", "changes.json", "changes.promoted"
#: The harness's folder in a workspace (runs, event logs, worktrees): never bundled, never changed.
HARNESS_DIR = ".harness"
_PR_SET_PDEATHSIG = 1
_SH = "/bin/sh"
#: The node's watcher, started in the background of a shell that exits at once, so that it is no
#: child of the Ray worker (Ray kills a worker's children when the worker exits) and in a session
#: of its own. Its input is a pipe from the worker: "done" says the attempt ended and its groups
#: were killed; the end of input without it says the worker died: it kills every group the steps
#: recorded, then removes the scratch folder. Builtins only until then: nothing it starts outlives it.
_WATCH = """exec 3<&0
{
  IFS= read -r word
  [ "$word" = done ] && exit 0
  while read -r _ pgid _; do
    [ "$pgid" -gt 1 ] 2>/dev/null && kill -s KILL -- "-$pgid" 2>/dev/null
  done < "$1"
  rm -rf -- "$2"
} <&3 3<&- >/dev/null 2>&1 &
"""


class BundleTooLarge(ValueError):
    """The scope (or an attempt's changes) holds more bytes of files than the bundle cap."""


# -- the executor (manager side) -----------------------------------------------------------------


class RayExecutor:
    """Runs each job as one Ray task; see :class:`._executor.Executor` and the module docstring.

    ``address`` is the cluster to join (None: a local Ray started on first use), ``init_kwargs``
    more arguments of ``ray.init``. ``scratch`` is the folder under which nodes make each
    attempt's scratch folder (default: their temporary folder). ``grace`` is :data:`ANSWER_GRACE`.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        shared_fs: bool = False,
        bundle_cap: int = BUNDLE_CAP,
        init_kwargs: dict[str, Any] | None = None,
        default_cpus: float = DEFAULT_CPUS,
        log_cap: int = LOG_CAP,
        scratch: str | None = None,
        grace: float = ANSWER_GRACE,
    ) -> None:
        self.address = address
        self.shared_fs = shared_fs
        self.bundle_cap = bundle_cap
        self.init_kwargs = dict(init_kwargs or {})
        self.default_cpus = default_cpus
        self.log_cap = log_cap
        self.scratch = scratch
        self.grace = grace
        self._lock = threading.Lock()
        self._ray: Any = None  # the ray module, once connected
        self._owns_ray = False  # this executor called ray.init (and shutdown ends it)
        self._mailbox: Any = None  # the actor that carries agents' tool requests, made on first use

    def connect(self) -> None:
        """Join (or start) Ray now, when the caller holds no lock that others wait on: the first
        connection takes from a fraction of a second to seconds. A failure is left for
        :meth:`prepare` to report as the execution's spawn_error."""
        try:
            self._connect()
        except Exception:
            pass

    def prepare(self, job: Job) -> RayExecution:
        """An execution of ``job``; connects to Ray on first use (a failure to connect is the
        execution's spawn_error, so the caller's worker still ends visibly)."""
        try:
            self._connect()
            problem = None
        except Exception as exc:
            where = f" at {self.address}" if self.address else ""
            problem = f"cannot connect to Ray{where}: {type(exc).__name__}: {exc}"
        return RayExecution(self, job, problem)

    def reap(self, worker_id: str, out_dir: str, pids: list[int]) -> list[int]:
        """After a manager crash, Ray already ended the dead driver's tasks (their owner died) and
        each node's watcher their process groups; what may be left is local (a node on this
        machine): those groups are killed as the local executor would, and returned."""
        return LocalExecutor().reap(worker_id, out_dir, pids)

    def shutdown(self) -> None:
        """Let go of the mailbox actor, and of Ray if this executor started it."""
        with self._lock:
            ray, mailbox = self._ray, self._mailbox
            self._mailbox = None
            if ray is None:
                return
            if mailbox is not None:
                try:
                    ray.kill(mailbox)
                except Exception:  # the cluster is gone already
                    pass
            if self._owns_ray:
                ray.shutdown()
                self._owns_ray = False
            self._ray = None

    # -- internals --------------------------------------------------------------------------------
    def _connect(self) -> Any:
        with self._lock:
            if self._ray is not None:
                return self._ray
            import ray

            if not ray.is_initialized():
                kwargs: dict[str, Any] = {
                    "address": self.address,
                    "namespace": "harness",
                    "log_to_driver": False,
                    "include_dashboard": False,
                    "ignore_reinit_error": True,
                    **self.init_kwargs,
                }
                ray.init(**kwargs)
                self._owns_ray = True
            self._ray = ray
            return ray

    def _mailbox_actor(self) -> Any:
        """The mailbox, made on first use on this process's own node: it stands for the manager,
        and a node that may be lost (or that the cluster still counts alive after it was) would
        take every agent's channel with it."""
        with self._lock:
            if self._mailbox is None:
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                here = NodeAffinitySchedulingStrategy(self._ray.get_runtime_context().get_node_id(), soft=False)
                self._mailbox = _remote_mailbox(self._ray).options(scheduling_strategy=here).remote()
            return self._mailbox

    def _mailbox_lost(self, mailbox: Any) -> None:
        """The mailbox died: the next job that needs one makes a new one."""
        with self._lock:
            if self._mailbox is mailbox:
                self._mailbox = None


_REMOTE: dict[str, Any] = {}  # the task function and the actor class, made remote once per process


def _remote_attempt(ray: Any) -> Any:
    fn = _REMOTE.get("attempt")
    if fn is None:
        fn = _REMOTE["attempt"] = ray.remote(max_retries=0, retry_exceptions=False)(_attempt_on_node)
    return fn


def _remote_mailbox(ray: Any) -> Any:
    cls = _REMOTE.get("mailbox")
    if cls is None:
        cls = _REMOTE["mailbox"] = ray.remote(num_cpus=0, max_restarts=0)(_Mailbox)
    return cls


def ray_options(resources: dict[str, Any] | None, default_cpus: float) -> dict[str, Any]:
    """Ray's task options for a packet's Resources (``cpus``, ``memory_mb``, ``custom``; a None
    value is not named); ValueError for anything else."""
    options: dict[str, Any] = {"num_cpus": default_cpus}
    for key, value in (resources or {}).items():
        if value is None:
            continue
        if key == "cpus":
            options["num_cpus"] = float(value)
        elif key == "memory_mb":
            options["memory"] = int(float(value) * 1024 * 1024)
        elif key == "custom":
            if not isinstance(value, dict):
                raise ValueError(f"resources.custom must map names to amounts, not {value!r}")
            if value:
                options["resources"] = {str(name): float(amount) for name, amount in value.items()}
        else:
            raise ValueError(f"unknown resource {key!r}: a job may ask for cpus, memory_mb and custom")
    return options


class RayExecution:
    """One attempt as a Ray task; see :class:`._executor.Execution`.

    ``node_id`` and ``ray_task_id`` are set as soon as the task says where it runs (before
    ``on_started`` is called) and ``placement`` (also in the Outcome) once it ended.
    """

    def __init__(self, executor: RayExecutor, job: Job, problem: str | None = None) -> None:
        self.job = job
        self.node_id: str | None = None
        self.ray_task_id: str | None = None
        self.placement: dict[str, Any] | None = None
        self._executor = executor
        self._ray: Any = executor._ray  # the ray module (None when it could not connect)
        self._problem = problem
        self._gen: Any = None  # the task's ObjectRefGenerator, once submitted
        self._reason: str | None = None
        self._forced = False

    # -- control from other threads: attribute writes and a non-blocking ray.cancel, no locks ----
    def cancel(self, reason: str) -> None:
        if self._reason is None:
            self._reason = reason
        self._send_cancel(force=False)

    def kill_now(self) -> None:
        self._forced = True
        self._send_cancel(force=True)

    def _send_cancel(self, *, force: bool) -> None:
        gen, ray = self._gen, self._ray
        if gen is None or ray is None:
            return  # not submitted yet: run checks the flags right after it submits
        try:
            ray.cancel(gen, force=force)
        except Exception:  # finished, or the cluster is gone: nothing left to stop
            pass

    # -- the attempt's changes ----------------------------------------------------------------------
    def promote(self) -> dict[str, Any]:
        """Apply the attempt's changes to the scope (deletions included), once; see
        :func:`promote_changes`. With ``shared_fs`` the steps ran in place: nothing to apply."""
        if self._executor.shared_fs:
            return {"files": 0, "deleted": 0, "refused": [], "sha256": None, "already": False}
        return promote_changes(self.job.out_dir, self.job.cwd)

    # -- the run ------------------------------------------------------------------------------------
    def run(self, on_started: Callable[[int], None]) -> Outcome:
        job = self.job
        t0 = time.monotonic()
        if not job.steps:  # nothing to place: the local executor checks the scope and ends
            return LocalExecution(job).run(on_started)
        outcome = self._check()
        bundle: bytes | None = None
        digest: str | None = None
        if outcome is None and not self._executor.shared_fs:
            try:
                bundle, digest = make_bundle(job.cwd, self._executor.bundle_cap)
            except BundleTooLarge as exc:
                outcome = _failed(FailureReason.spawn_error, str(exc))
            except OSError as exc:
                outcome = _failed(FailureReason.spawn_error, f"cannot bundle the scope {job.cwd}: {exc}")
        if outcome is None and job.gate is not None:
            unreleased = job.gate()  # bundled: the task is recorded as begun and submitted on the go
            if unreleased is not None:
                outcome = _failed(FailureReason.cancelled, unreleased)
        if outcome is None:
            unrecorded = record_begun(job)  # before the task is submitted
            if unrecorded is not None:
                outcome = _failed(FailureReason.spawn_error, unrecorded)
        if outcome is None:
            placement: dict[str, Any] = {"executor": "ray", "node_id": None, "task_id": None}
            if digest is not None and bundle is not None:
                placement["bundle_sha256"], placement["bundle_bytes"] = digest, len(bundle)
            self.placement = placement
            outcome = self._submit(bundle, on_started)
            outcome.placement = self.placement
        outcome.duration_ms = round((time.monotonic() - t0) * 1000.0, 3)
        return outcome

    def _check(self) -> Outcome | None:
        """What stops the job before it is submitted, as its outcome."""
        job = self.job
        if self._problem is not None:
            return _failed(FailureReason.spawn_error, self._problem)
        problem = scope_problem(job)
        if problem is not None:
            return problem
        try:
            ray_options(job.resources, self._executor.default_cpus)
        except (TypeError, ValueError) as exc:
            return _failed(FailureReason.spawn_error, f"the job's resources cannot be asked of Ray: {exc}")
        return None

    def _spec(self) -> dict[str, Any]:
        """What the node needs of the job, as plain data (the steps' parsers and adapters pickled)."""
        job, executor = self.job, self._executor
        files: dict[str, bytes] = {}
        steps = []
        for position, step in enumerate(job.steps):
            if step.argv is not None and not executor.shared_fs:
                files.update(_argv_files(step.argv, job.out_dir))
            steps.append(
                {
                    "position": position,
                    "kind": step.kind.value,
                    "index": step.index,
                    "command": step.command,
                    "argv": step.argv,
                    "stdin": step.stdin,
                    "env": step.env,
                    "parser": step.parser,
                    "budget": step.budget,
                    "adapter": step.channel.adapter if step.channel is not None else None,
                }
            )
        sandbox = job.sandbox
        return {
            "worker_id": job.worker_id,
            "cwd": job.cwd,
            "workspace": job.workspace,
            "out_dir": job.out_dir,
            "env": job.env,
            "timeout": job.timeout,
            "steps": steps,
            "files": files,
            "sandbox": None
            if sandbox is None
            else {
                "writable": list(sandbox.writable),
                "protected": list(sandbox.protected),
                "network": bool(sandbox.network),
                "private_tmp": sandbox.private_tmp is not None,
            },
            "shared_fs": executor.shared_fs,
            "scratch": executor.scratch,
            "bundle_cap": executor.bundle_cap,
            "log_cap": executor.log_cap,
        }

    def _submit(self, bundle: bytes | None, on_started: Callable[[int], None]) -> Outcome:
        job, executor, ray = self.job, self._executor, self._ray
        if self._reason is not None or self._forced:  # stopped before anything was submitted
            return self._cancelled(None)
        spec = self._spec()
        asks = {s["position"]: job.steps[s["position"]].channel.ask for s in spec["steps"] if s["adapter"] is not None}
        mailbox = executor._mailbox_actor() if asks else None
        bridge = _ChannelBridge(executor, mailbox, job.worker_id, asks) if mailbox is not None else None
        options = ray_options(job.resources, executor.default_cpus)
        try:
            self._gen = (
                _remote_attempt(ray).options(name=f"harness:{job.worker_id}", **options).remote(spec, bundle, mailbox)
            )
        except Exception as exc:
            return _failed(FailureReason.spawn_error, f"cannot submit the Ray task: {type(exc).__name__}: {exc}")
        if self._forced:  # a stop that came while it was being submitted
            self._send_cancel(force=True)
        elif self._reason is not None:
            self._send_cancel(force=False)
        if bridge is not None:
            bridge.start()
        try:
            outcome = self._wait(on_started, time.monotonic() + job.timeout + executor.grace)
        finally:
            if bridge is not None:
                bridge.stop()
        self._gen = None  # ended: nothing left to cancel, and its objects can go
        return outcome

    def _wait(self, on_started: Callable[[int], None], deadline: float) -> Outcome:
        ray, gen = self._ray, self._gen
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._send_cancel(force=True)
                if self._reason is not None:
                    return self._cancelled(None)
                where = f"on node {self.node_id}" if self.node_id else "before any node started it"
                outcome = _failed(
                    FailureReason.timeout,
                    f"the Ray task gave no answer within {self.job.timeout + self._executor.grace:g} s ({where})",
                )
                outcome.timed_out = True
                return outcome
            try:
                ready, _ = ray.wait([gen], timeout=min(SLICE, remaining))
            except Exception as exc:  # this process lost Ray: where the task is, is unknown
                self._send_cancel(force=True)
                outcome = _failed(FailureReason.interrupted, f"lost Ray while waiting: {type(exc).__name__}: {exc}")
                outcome.interrupted = True
                return outcome
            if not ready:
                continue
            try:
                kind, payload = ray.get(next(gen))
            except StopIteration:  # it ends early only when interrupted: a cancel (its steps are stopped)
                if self._reason is not None or self._forced:
                    return self._cancelled(None)
                return _failed(FailureReason.cancelled, "the Ray task was cancelled outside the harness")
            except Exception as exc:
                return self._from_error(exc)
            self.node_id, self.ray_task_id = payload["node_id"], payload["task_id"]
            if self.placement is not None:
                self.placement.update(node_id=self.node_id, task_id=self.ray_task_id)
            if kind == "started":
                on_started(payload["pid"])
            else:
                return self._finish(payload)

    def _finish(self, payload: dict[str, Any]) -> Outcome:
        """The node's outcome with local output files and the changes saved for :meth:`promote`."""
        job = self.job
        outcome = _outcome_from_wire(payload["outcome"], job.steps)
        placement = self.placement if self.placement is not None else {}
        if payload.get("resources"):
            placement["resources"] = payload["resources"]
        try:
            outcome.stdout_path = _save_log(job.out_dir, "stdout.log", payload.get("stdout"))
            outcome.stderr_path = _save_log(job.out_dir, "stderr.log", payload.get("stderr"))
        except OSError as exc:
            outcome.message = outcome.message or f"the worker's output could not be saved: {exc}"
        changes = payload.get("changes")
        if changes is not None or payload.get("deleted"):
            try:
                placement["changes_sha256"], placement["changes_bytes"] = _save_changes(
                    job.out_dir, changes or b"", payload.get("deleted") or []
                )
            except OSError as exc:
                outcome.ok, outcome.reason = False, FailureReason.spawn_error
                outcome.message = f"the attempt's changes could not be saved: {exc}"
        if self._reason is not None or self._forced:
            return self._cancelled(outcome)
        return outcome

    def _from_error(self, exc: Exception) -> Outcome:
        """The outcome of a task that raised: cancelled when we stopped it, interrupted when its
        node (or its worker, or its owner) was lost, else a spawn_error saying what failed."""
        import ray.exceptions as rex

        if self._reason is not None or self._forced:
            return self._cancelled(None)
        name = type(exc).__name__
        cause = getattr(exc, "cause", None)
        if isinstance(exc, rex.TaskCancelledError) or isinstance(cause, rex.TaskCancelledError):
            return _failed(FailureReason.cancelled, "the Ray task was cancelled outside the harness")
        lost = (
            rex.NodeDiedError,
            rex.WorkerCrashedError,
            rex.LocalRayletDiedError,
            rex.ObjectLostError,  # OwnerDiedError and the other lost-object errors
            rex.RayActorError,
        )
        if isinstance(exc, lost):
            node = f"Ray node {self.node_id}" if self.node_id else "the Ray node of the task"
            outcome = _failed(FailureReason.interrupted, f"{node} was lost ({name}): {_first_line(exc)}")
            outcome.interrupted = True
            return outcome
        if isinstance(exc, rex.RayTaskError) and cause is not None:
            name, exc = type(cause).__name__, cause
        return _failed(FailureReason.spawn_error, f"the Ray task failed: {name}: {_first_line(exc)}")

    def _cancelled(self, base: Outcome | None) -> Outcome:
        message = self._reason if self._reason is not None else "killed"
        if base is None:
            return _failed(FailureReason.cancelled, message)
        base.ok, base.reason, base.message = False, FailureReason.cancelled, message
        return base


def _failed(reason: FailureReason, message: str) -> Outcome:
    return Outcome(ok=False, reason=reason, message=message)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _save_log(out_dir: str, name: str, data: bytes | None) -> str | None:
    """Append a node's output file to the worker's folder; its path, None when there was none."""
    if not data:
        return None
    os.makedirs(out_dir, exist_ok=True)
    path = f"{out_dir}/{name}"
    with open(path, "ab") as f:
        f.write(data)
    return path


def _save_changes(out_dir: str, tar: bytes, deleted: list[str]) -> tuple[str, int]:
    """Keep an attempt's changes in its folder for :func:`promote_changes`: the tar, then its
    manifest (sha256, deletions), each written whole before it is renamed into place."""
    digest = hashlib.sha256(tar).hexdigest()
    os.makedirs(out_dir, exist_ok=True)
    _write_atomic(f"{out_dir}/{CHANGES_TAR}", tar)
    manifest = {"sha256": digest, "bytes": len(tar), "deleted": deleted}
    _write_atomic(f"{out_dir}/{CHANGES_JSON}", json.dumps(manifest).encode())
    return digest, len(tar)


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _argv_files(argv: list[str], out_dir: str) -> dict[str, bytes]:
    """Small files inside the worker's folder that an argv names (a prompt file), by their path
    relative to it: the node writes them into its own worker folder."""
    found: dict[str, bytes] = {}
    for arg in argv:
        if not arg.startswith(out_dir + "/"):
            continue
        try:
            if os.path.getsize(arg) <= _ARG_FILE_CAP:
                with open(arg, "rb") as f:
                    found[os.path.relpath(arg, out_dir)] = f.read()
        except OSError:
            continue
    return found


# -- the wire form of an outcome --------------------------------------------------------------------


def _outcome_to_wire(o: Outcome) -> dict[str, Any]:
    step = o.failed_step
    return {
        "ok": o.ok,
        "reason": o.reason.value if o.reason is not None else None,
        "exit_code": o.exit_code,
        "signal": o.signal,
        "timed_out": o.timed_out,
        "failed_step": [step.kind.value, step.index] if step is not None else None,
        "steps": o.steps,
        "stdout_tail": o.stdout_tail,
        "stderr_tail": o.stderr_tail,
        "interrupted": o.interrupted,
        "message": o.message,
        "agent": o.agent,
    }


def _outcome_from_wire(data: dict[str, Any], steps: tuple[Step, ...]) -> Outcome:
    reason = data.get("reason")
    o = Outcome(
        ok=bool(data["ok"]),
        reason=FailureReason(reason) if reason is not None else None,
        interrupted=bool(data.get("interrupted")),
        message=data.get("message"),
    )
    o.exit_code, o.signal, o.timed_out = data.get("exit_code"), data.get("signal"), bool(data.get("timed_out"))
    o.steps = list(data.get("steps") or [])
    o.stdout_tail, o.stderr_tail = data.get("stdout_tail") or "", data.get("stderr_tail") or ""
    o.agent = data.get("agent")
    failed = data.get("failed_step")
    if failed is not None:
        kind, index = failed
        o.failed_step = next((s for s in steps if s.kind.value == kind and s.index == index), None)
    return o


# -- tool-permission requests across the cluster ------------------------------------------------------


class _Mailbox:
    """An async Ray actor (one per executor) between agents on nodes and the manager's channels:
    ``ask`` (from a node) waits for the answer that ``answer`` (from the manager) posts to what
    ``take`` handed over."""

    def __init__(self) -> None:
        self._pending: dict[str, list[tuple[int, int, Any]]] = {}  # key -> [(token, position, request)]
        self._answers: dict[int, asyncio.Future[tuple[bool, str]]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._next = 0

    def _event(self, key: str) -> asyncio.Event:
        event = self._wake.get(key)
        if event is None:
            event = self._wake[key] = asyncio.Event()
        return event

    async def ask(self, key: str, position: int, request: Any) -> tuple[bool, str]:
        self._next += 1
        token = self._next
        answer: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        self._answers[token] = answer
        self._pending.setdefault(key, []).append((token, position, request))
        self._event(key).set()
        try:
            return await answer
        finally:
            self._answers.pop(token, None)

    async def take(self, key: str, timeout: float) -> list[tuple[int, int, Any]]:
        event = self._event(key)
        if not self._pending.get(key):
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                return []
        event.clear()
        return self._pending.pop(key, [])

    async def answer(self, token: int, allow: bool, message: str) -> None:
        answer = self._answers.get(token)
        if answer is not None and not answer.done():
            answer.set_result((allow, message))

    async def drop(self, key: str, tokens: list[int]) -> None:
        """The run ended: questions still open are refused, the key forgotten."""
        for token in tokens:
            await self.answer(token, False, "the worker's run ended")
        self._pending.pop(key, None)
        self._wake.pop(key, None)


class _ChannelBridge:
    """The manager's side of the tool channels of one attempt: a thread takes the requests its
    agents sent to the mailbox and answers each (in a thread of its own: a person may take
    minutes) with the step's own ``ask``; a failing ``ask`` is a refusal (fail closed)."""

    def __init__(
        self, executor: RayExecutor, mailbox: Any, key: str, asks: dict[int, Callable[[Any], tuple[bool, str]]]
    ) -> None:
        self._executor = executor
        self._ray = executor._ray
        self._mailbox = mailbox
        self._key = key
        self._asks = asks
        self._stopped = threading.Event()
        self._open: set[int] = set()  # tokens asked and not answered yet
        self._open_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"ray-channel-{key}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(SLICE * 5)
        with self._open_lock:
            tokens = sorted(self._open)
        try:
            self._mailbox.drop.remote(self._key, tokens)
        except Exception:
            pass

    def _loop(self) -> None:
        from ray.exceptions import RayActorError

        while not self._stopped.is_set():
            try:
                taken = self._ray.get(self._mailbox.take.remote(self._key, SLICE), timeout=SLICE * 10)
            except RayActorError:  # the agents' questions are refused on the node
                self._executor._mailbox_lost(self._mailbox)
                return
            except Exception:
                if self._stopped.wait(SLICE):
                    return
                continue
            for token, position, request in taken:
                with self._open_lock:
                    self._open.add(token)
                args = (token, position, request)
                threading.Thread(target=self._answer, args=args, name="ray-channel-ask", daemon=True).start()

    def _answer(self, token: int, position: int, request: Any) -> None:
        try:
            allow, message = self._asks[position](request)
        except Exception as exc:
            allow, message = False, f"no decision could be made: {exc}"
        try:
            self._mailbox.answer.remote(token, bool(allow), str(message or ""))
        except Exception:
            pass
        with self._open_lock:
            self._open.discard(token)


#: The fields of a tool request that name a file: asked about by the path the manager knows.
_PATH_FIELDS = ("file_path", "notebook_path", "path")


class _RemoteAsk:
    """A node's stand-in for a channel's ``ask``: the request goes to the mailbox, the answer comes
    back, within the job's timeout (past it the agent's reader refuses the call). Paths in the
    request that lie in the node's copies are named as their originals (``back``: copy, origin),
    so that whoever decides judges the file the change will land in (a write inside the task's
    worktree is in scope)."""

    def __init__(self, mailbox: Any, key: str, position: int, bound: float, back: list[tuple[str, str]]) -> None:
        self.mailbox = mailbox
        self.key = key
        self.position = position
        self.bound = bound
        self.back = back

    def __call__(self, request: Any) -> tuple[bool, str]:
        import dataclasses

        import ray

        fields = getattr(request, "input", None)
        if (
            self.back
            and isinstance(fields, dict)
            and dataclasses.is_dataclass(request)
            and not isinstance(request, type)
        ):
            named = {k: _moved(v, self.back) for k, v in fields.items() if k in _PATH_FIELDS and isinstance(v, str)}
            if named:
                request = dataclasses.replace(request, input={**fields, **named})
        allow, message = ray.get(self.mailbox.ask.remote(self.key, self.position, request), timeout=self.bound)
        return bool(allow), str(message)


# -- bundles ------------------------------------------------------------------------------------------


def _walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every folder, file and symlink under ``root`` (not following links) by its path relative
    to it, in name order, leaving out every ``.git`` entry and its content, the harness's own
    folder at the top (``.harness``: run folders, event logs, worktrees), and sockets, fifos and
    devices."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
            entries = sorted(it, key=lambda e: e.name, reverse=True)
        for entry in reversed(entries):
            if entry.name == ".git" or (not rel_dir and entry.name == HARNESS_DIR):
                continue
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                yield rel, st
                stack.append(rel)
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                yield rel, st


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _tar(root: str, names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in names:
            tar.add(os.path.join(root, rel), arcname=rel, recursive=False, filter=_anonymous)
    return buf.getvalue()


def make_bundle(root: str, cap: int) -> tuple[bytes, str]:
    """The scope at ``root`` as a tar (see :func:`_walk` for what it leaves out) and its sha256;
    BundleTooLarge when its files hold more than ``cap`` bytes."""
    entries = list(_walk(root))
    size = sum(st.st_size for _, st in entries if stat.S_ISREG(st.st_mode))
    if size > cap:
        raise BundleTooLarge(
            f"the scope {root} holds {size} bytes of files, over the Ray bundle cap of {cap} bytes "
            "(raise the cap, or run with shared_fs on a file system the nodes share)"
        )
    data = _tar(root, [rel for rel, _ in entries])
    return data, hashlib.sha256(data).hexdigest()


def _snapshot(root: str) -> dict[str, tuple[int, ...]]:
    """What tells a path's change: a folder's mode; a file's or link's type and mode, inode, size,
    mtime and ctime (ctime moves with every write and cannot be set back)."""
    snap: dict[str, tuple[int, ...]] = {}
    for rel, st in _walk(root):
        if stat.S_ISDIR(st.st_mode):
            snap[rel] = (st.st_mode,)
        else:
            snap[rel] = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return snap


def _diff(before: dict[str, tuple[int, ...]], after: dict[str, tuple[int, ...]]) -> tuple[list[str], list[str]]:
    """(added or changed, deleted) paths, each sorted (a folder before its content)."""
    changed = sorted(rel for rel, sig in after.items() if before.get(rel) != sig)
    deleted = sorted(rel for rel in before if rel not in after)
    return changed, deleted


def _contained(root: str, rel: str) -> str | None:
    """``root/rel`` when ``rel`` is a plain relative path whose folder lies inside ``root`` (no
    absolute path, no ``..``, no symlinked folder leading out); None otherwise."""
    if not rel or rel.startswith("/") or os.path.normpath(rel) != rel or rel.split("/")[0] == "..":
        return None
    parts = rel.split("/")
    if ".git" in parts or parts[0] == HARNESS_DIR:  # never the repository's, nor the harness's own files
        return None
    path = os.path.join(root, rel)
    parent = os.path.realpath(os.path.dirname(path))
    if parent != root and not parent.startswith(root + "/"):
        return None
    return path


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def promote_changes(out_dir: str, target: str) -> dict[str, Any]:
    """Apply the changes an attempt saved in ``out_dir`` to ``target``, once.

    The tar must match the sha256 its manifest recorded (ValueError otherwise). Deletions go
    first, deepest first (a folder only when empty); then each added or changed entry replaces
    what is at its path, extracted with tarfile's ``data`` filter (no absolute or escaping paths,
    no links out of the scope, no device files; setuid bits and group/other write bits dropped).
    An entry refused is listed in ``refused``. A ``changes.promoted`` marker records the summary:
    a second call returns it with ``already`` true and changes nothing. An attempt that saved no
    changes promotes to nothing and leaves no marker (its worker's folder is not made for it).
    """
    marker = f"{out_dir}/{PROMOTED}"
    try:
        with open(marker, encoding="utf-8") as f:
            done: dict[str, Any] = json.load(f)
        done["already"] = True
        return done
    except FileNotFoundError:
        pass
    summary: dict[str, Any] = {"files": 0, "deleted": 0, "refused": [], "sha256": None}
    try:
        with open(f"{out_dir}/{CHANGES_JSON}", encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:  # nothing changed: nothing to apply, nothing to remember
        summary["already"] = False
        return summary
    if manifest is not None:
        with open(f"{out_dir}/{CHANGES_TAR}", "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != manifest.get("sha256"):
            raise ValueError(f"{out_dir}/{CHANGES_TAR} does not match the sha256 recorded for it: not applied")
        root = os.path.realpath(target)
        refused: list[str] = summary["refused"]
        for rel in sorted(manifest.get("deleted") or [], key=lambda r: r.count("/"), reverse=True):
            path = _contained(root, rel)
            if path is None:
                refused.append(rel)
                continue
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError:  # a folder that holds something new
                refused.append(rel)
                continue
            summary["deleted"] += 1
        if data:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar.getmembers():
                    path = _contained(root, member.name)
                    if path is None:
                        refused.append(member.name)
                        continue
                    keep_folder = member.isdir() and os.path.isdir(path) and not os.path.islink(path)
                    if os.path.lexists(path) and not keep_folder:
                        _remove(path)
                    try:
                        tar.extract(member, root, filter="data")
                    except tarfile.FilterError:
                        refused.append(member.name)
                        continue
                    if not member.isdir():
                        summary["files"] += 1
        summary["sha256"] = digest
    os.makedirs(out_dir, exist_ok=True)
    _write_atomic(marker, json.dumps(summary).encode())
    summary["already"] = False
    return summary


# -- the node side ------------------------------------------------------------------------------------


_DEATH: dict[str, Any] = {}  # this process's way to give steps a parent-death signal, found once


def _parent_death() -> tuple[tuple[str, ...], Callable[[], None] | None]:
    """How this node gives each step SIGKILL when the thread that started it dies: as
    LocalExecution's (launcher, preexec). ``setpriv --pdeathsig`` (util-linux) where it exists: one
    more exec, where a preexec_fn forks a Ray worker (dozens of threads, large mappings) for ~6 ms
    more per step; else a preexec_fn calling prctl."""
    found = _DEATH.get("way")
    if found is None:
        setpriv = shutil.which("setpriv")
        usable = False
        if setpriv is not None:
            try:
                shown = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=KILL_WAIT)
                usable = "--pdeathsig" in shown.stdout
            except (OSError, subprocess.SubprocessError):
                usable = False
        if usable and setpriv is not None:
            found = ((setpriv, "--pdeathsig", "KILL", "--"), None)
        else:
            found = ((), _prctl_death_signal(signal.SIGKILL))
        _DEATH["way"] = found
    return found


def _prctl_death_signal(sig: int) -> Callable[[], None] | None:
    """A preexec_fn that arms ``sig`` for when the thread that starts the step dies (None where
    prctl cannot be found). If that thread's process died before it was armed, the child kills
    itself."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def arm() -> None:  # in the child, between fork and exec
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return arm


def _moved(value: str, moves: list[tuple[str, str]]) -> str:
    """``value`` with a leading origin path (or the path itself) replaced by its node copy."""
    for origin, copy in moves:
        if value == origin:
            return copy
        if value.startswith(origin + "/"):
            return copy + value[len(origin) :]
    return value


def _start_watcher(pgids: str, root: str) -> int:
    """Start the node's watcher (see :data:`_WATCH`); the write end of its input."""
    read_end, write_end = os.pipe()  # both close-on-exec: only the watcher gets the read end
    try:
        launcher = subprocess.Popen(
            [_SH, "-c", _WATCH, "harness-ray-watch", pgids, root],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    launcher.wait(KILL_WAIT)  # at once: the watcher went on in its background
    return write_end


def _read_log(path: str, cap: int, node_id: str) -> bytes | None:
    """A node's output file, its last ``cap`` bytes when longer (after a line saying so)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= cap:
                return f.read() or None
            f.seek(size - cap)
            tail = f.read()
    except FileNotFoundError:
        return None
    return f"[harness: the first {size - cap} bytes of this file stayed on Ray node {node_id}]\n".encode() + tail


def _run_job(execution: LocalExecution, events: queue.SimpleQueue[tuple[str, Any]]) -> None:
    """The job's thread: its start and its end (or the exception that ended it) as events."""
    try:
        outcome = execution.run(lambda pid: events.put(("started", pid)))
    except BaseException as exc:
        events.put(("error", exc))
        return
    events.put(("done", outcome))


def _attempt_on_node(spec: dict[str, Any], bundle: bytes | None, mailbox: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """The Ray task: one attempt on this node (see the module docstring)."""
    import ray

    ctx = ray.get_runtime_context()
    attempt = _NodeAttempt(spec, ctx.get_node_id(), ctx.get_task_id() or "", ctx.get_assigned_resources())
    yield from attempt.run(bundle, mailbox)


class _NodeAttempt:
    """One attempt in its scratch folder on a node."""

    def __init__(self, spec: dict[str, Any], node_id: str, task_id: str, resources: dict[str, float]) -> None:
        self.spec = spec
        self.node_id = node_id
        self.task_id = task_id
        self.resources = dict(resources)
        base = spec.get("scratch") or tempfile.gettempdir()
        self.root = f"{base}/harness-ray/{spec['worker_id']}"
        self.work = f"{self.root}/work"
        self.run_dir = f"{self.root}/run"
        self.out_dir = f"{self.run_dir}/workers/{spec['worker_id']}"
        self.before: dict[str, tuple[int, ...]] | None = None  # the bundle as unpacked
        self.execution: LocalExecution | None = None
        self.watch_fd: int | None = None  # the write end of the watcher's input

    def where(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "task_id": self.task_id}

    def run(self, bundle: bytes | None, mailbox: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        runner: threading.Thread | None = None
        try:
            shutil.rmtree(self.root, ignore_errors=True)  # a leftover of the same attempt
            os.makedirs(f"{self.run_dir}/workers")
            self.watch_fd = _start_watcher(f"{self.run_dir}/workers/pgids", self.root)
            job, problem = self._job(bundle, mailbox)
            if job is None:
                yield "done", self._payload(problem or _failed(FailureReason.spawn_error, "no job"))
                return
            launcher, preexec = _parent_death()
            self.execution = LocalExecution(job, launcher=launcher, preexec=preexec)
            events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
            runner = threading.Thread(target=_run_job, args=(self.execution, events), name="harness-job", daemon=True)
            runner.start()
            while True:
                try:
                    kind, value = events.get(timeout=SLICE)  # Ray's polite cancel lands between slices
                except queue.Empty:
                    continue
                if kind == "started":
                    yield "started", {**self.where(), "pid": value}
                elif kind == "error":
                    raise value
                else:
                    break
            yield "done", self._payload(value)
        except KeyboardInterrupt:  # cancelled through Ray: the steps are stopped on the way out
            return
        finally:
            self._end(runner)

    def _job(self, bundle: bytes | None, mailbox: Any) -> tuple[Job | None, Outcome | None]:
        """The job with the node's paths, or the outcome that refuses it."""
        spec = self.spec
        moves: list[tuple[str, str]] = []
        cwd, workspace = spec["cwd"], spec["workspace"]
        env = dict(spec["env"])
        if bundle is not None:
            os.makedirs(self.work)
            with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
                tar.extractall(self.work, filter="tar")
            self.before = _snapshot(self.work)
            moves = [(spec["cwd"], self.work), (spec["out_dir"], self.out_dir)]
            cwd = workspace = self.work
            env = {name: _moved(value, moves) for name, value in env.items()}
            env["HARNESS_WORKSPACE"] = self.work
            env["HARNESS_RUN_DIR"] = self.run_dir
            env["GIT_CEILING_DIRECTORIES"] = self.root
        for rel, data in spec["files"].items():
            path = f"{self.out_dir}/{rel}"
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        key = spec["worker_id"]
        steps = tuple(self._step(s, moves, mailbox, key) for s in spec["steps"])
        sandbox = None
        if spec["sandbox"] is not None:
            from harness.sandbox import Confinement

            sb = spec["sandbox"]
            writable = [p for p in (_moved(w, moves) for w in sb["writable"]) if os.path.isdir(p)]
            sandbox = Confinement(
                writable=writable,
                protected=[_moved(p, moves) for p in sb["protected"]],
                network=sb["network"],
                private_tmp=f"{self.root}/tmp" if sb["private_tmp"] else None,
            )
            if sandbox.problem:
                return None, _failed(FailureReason.spawn_error, f"on Ray node {self.node_id}: {sandbox.problem}")
        job = Job(
            worker_id=spec["worker_id"],
            steps=steps,
            cwd=cwd,
            workspace=workspace,
            env=env,
            timeout=spec["timeout"],
            out_dir=self.out_dir,
            sandbox=sandbox,
        )
        return job, None

    def _step(self, s: dict[str, Any], moves: list[tuple[str, str]], mailbox: Any, key: str) -> Step:
        channel = None
        if s["adapter"] is not None and mailbox is not None:
            back = [(copy, origin) for origin, copy in moves]  # the request names the node's copies
            ask = _RemoteAsk(mailbox, key, s["position"], float(self.spec["timeout"]), back)
            channel = ToolChannel(s["adapter"], ask)
        return Step(
            StepKind(s["kind"]),
            s["index"],
            s["command"],
            argv=[_moved(a, moves) for a in s["argv"]] if s["argv"] is not None else None,
            stdin=s["stdin"],
            env={name: _moved(value, moves) for name, value in s["env"].items()},
            parser=s["parser"],
            budget=s["budget"],
            channel=channel,
        )

    def _payload(self, outcome: Outcome) -> dict[str, Any]:
        """The ``done`` message: the outcome, the output files, the changes against the bundle."""
        log_cap = int(self.spec["log_cap"])
        payload: dict[str, Any] = {
            **self.where(),
            "resources": self.resources,
            "stdout": _read_log(f"{self.out_dir}/stdout.log", log_cap, self.node_id),
            "stderr": _read_log(f"{self.out_dir}/stderr.log", log_cap, self.node_id),
            "changes": None,
            "deleted": [],
        }
        if self.before is not None and os.path.isdir(self.work):
            after = _snapshot(self.work)
            changed, deleted = _diff(self.before, after)
            picked = set(changed)
            size = sum(sig[2] for rel, sig in after.items() if rel in picked and len(sig) > 1)
            cap = int(self.spec["bundle_cap"])
            if size > cap:
                outcome.ok, outcome.reason = False, FailureReason.spawn_error
                outcome.message = f"the attempt changed {size} bytes of files, over the Ray bundle cap of {cap} bytes"
            elif changed or deleted:
                payload["changes"] = _tar(self.work, changed)
                payload["deleted"] = deleted
        payload["outcome"] = _outcome_to_wire(outcome)
        return payload

    def _end(self, runner: threading.Thread | None) -> None:
        """Stop the job if it still runs (SIGTERM, grace, SIGKILL), then tell the watcher and
        remove the scratch folder; Ray's cancel retries are held off meanwhile."""
        held = _hold_interrupts()
        try:
            ended = True
            if runner is not None and runner.is_alive() and self.execution is not None:
                self.execution.cancel("cancelled through Ray")
                runner.join(TERM_GRACE)
                if runner.is_alive():
                    self.execution.kill_now()
                    runner.join(KILL_WAIT + DRAIN_WAIT + 1.0)
                ended = not runner.is_alive()
            if self.watch_fd is not None:
                try:
                    if ended:  # else the end of its input makes it kill the groups and clean up
                        os.write(self.watch_fd, b"done\n")
                except OSError:
                    pass
                os.close(self.watch_fd)
                self.watch_fd = None
            if ended:
                shutil.rmtree(self.root, ignore_errors=True)
        finally:
            _release_interrupts(held)


def _hold_interrupts() -> Any:
    """Ignore SIGINT (how Ray's polite cancel reaches the task's main thread) while the attempt
    is being cleaned up; returns what to restore (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, signal.SIG_IGN)


def _release_interrupts(held: Any) -> None:
    if held is not None:
        signal.signal(signal.SIGINT, held)
