"""The worker manager: confinement, the trust gate and each worker's lifecycle.

Every change to a worker is an event: the manager builds it, applies it to its
:class:`WorkerTable` and hands it to ``emit`` (the ``worker_event`` notification), all under one
lock, so the table always equals the fold of the events sent so far and a restarted manager
rebuilds it with ``replay``. What is not in the table is process-local and expendable: the
executions in flight and the full output tails of recent results.

    (spawn_worker)  -> trust_required       worker_spawned
    trust_required  -> ready_for_prompt     trust_resolved   (check_trust by trusted root, mark_trusted)
    ready_for_prompt -> running             worker_started   (run_worker, first process started)
    running         -> finished | failed    worker_finished | worker_failed
    trust_required | ready_for_prompt -> failed   worker_failed (cancel_worker, scope missing, spawn error)
    running (manager dead) -> failed        worker_failed    (replay: interrupted)
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from harness.models import Empty, Risk, WorkerEvent, WorkerEventType, WorkerState
from harness.rpc import GateBlocked, InvalidParams, InvalidTransition, Later, NotFound, RequestTimeout
from harness.trust import TRUSTED_ROOT, is_inside, real_path, trusted_root, worker_id_for_key

from ._executor import Execution, Executor, Job, Outcome, Step, ToolChannel
from ._local import KILL_WAIT, TERM_GRACE, LocalExecutor, began_running, output_files
from ._models import (
    AnswerToolParams,
    AnswerToolResult,
    CancelWorkerParams,
    CheckTrustParams,
    FailureReason,
    GetWorkerParams,
    MarkTrustedParams,
    ReleaseWorkerParams,
    RunWorkerParams,
    SpawnWorkerParams,
    StepKind,
    WorkerReplayParams,
)
from ._table import WorkerRecord, WorkerTable

#: Variables a worker inherits from the manager's environment; anything else must be named.
BASE_ENV = (
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "USER", "LOGNAME", "SHELL", "TZ",
    "PYTHONPATH", "VIRTUAL_ENV",
)  # fmt: skip
#: Seconds a worker may run when its packet sets no timeout.
DEFAULT_TIMEOUT = 600.0
#: Seconds an agent's tool request waits for an answer before it is denied.
TOOL_WAIT = 900.0
#: Seconds between the polite and the forced stop of a cancelled worker.
CANCEL_GRACE = 1.0
#: Characters of each output tail (and of a message) kept in events; replies carry ~2 KiB.
EVENT_TAIL = 200
#: Full results kept in memory for replies (older ones answer with the compact logged result).
FULL_RESULTS = 1024
#: Holds kept at most: a release that comes before the spawn it names waits here for it.
HOLDS = 1024
#: Seconds the thread that sends deferred events sleeps when none are held (it wakes for new ones).
FLUSH_IDLE = 5.0

Emit = Callable[[dict[str, Any]], None]
logger = logging.getLogger(__name__)


class _Hold:
    """A held run's go (spawn_and_run with ``hold``): released by release_worker, or stopped by a
    cancel, the end of the caller's input or its bound, saying why it will not start. The first
    of the two counts. Changed under the manager's lock."""

    __slots__ = ("event", "released", "why")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.released = False
        self.why: str | None = None

    def release(self) -> None:
        if self.why is None:
            self.released = True
            self.event.set()

    def stop(self, why: str) -> None:
        if not self.released and self.why is None:
            self.why = why
            self.event.set()


class _Deferred:
    """A spawn_and_run's worker events held back for its answer (``defer_events``), until
    ``due`` (monotonic seconds): then they are sent as notifications and the rest flow live."""

    __slots__ = ("due", "events")

    def __init__(self, due: float) -> None:
        self.due = due
        self.events: list[dict[str, Any]] = []


class _Run:
    """A worker being run by this manager: its execution and who waits for it."""

    __slots__ = ("execution", "timeout", "done")

    def __init__(self, execution: Execution, timeout: float) -> None:
        self.execution = execution
        self.timeout = timeout
        self.done = threading.Event()


def confine(workspace: str, scope_path: str) -> str:
    """The real scope directory of a packet, refused unless it lies inside the real workspace."""
    try:
        scope = real_path(os.path.join(workspace, scope_path))
    except ValueError as exc:  # e.g. a NUL byte
        raise InvalidParams(f"scope_path is not a usable path: {exc}", {"scope_path": scope_path}) from exc
    if not is_inside(scope, workspace):
        raise InvalidParams(
            f"scope_path {scope_path!r} resolves to {scope}, outside the workspace {workspace}",
            {"scope_path": scope_path, "resolved": scope, "workspace": workspace},
        )
    return scope


def compact(result: dict[str, Any]) -> dict[str, Any]:
    """A result small enough for the log: tails and message cut to their last EVENT_TAIL chars."""
    small = dict(result)
    for key in ("stdout_tail", "stderr_tail", "message"):
        text = small.get(key)
        if text and len(text) > EVENT_TAIL:
            small[key] = text[-EVENT_TAIL:]
    return small


def ray_available() -> bool:
    """Whether Ray can be imported here (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


class WorkerManager:
    """The worker manager's behaviour, free of the wire: each public method is one RPC method."""

    def __init__(
        self,
        emit: Emit,
        *,
        executor: Executor | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        notify: Callable[[str, dict[str, Any]], None] | None = None,
        tool_wait: float = TOOL_WAIT,
    ) -> None:
        self._emit_event = emit
        self._notify = notify or (lambda method, params: None)
        self._tool_wait = tool_wait
        self._pending_tools: dict[tuple[str, str], list[Any]] = {}  # (worker, request) -> [Event, answer]
        self._executor: Executor = executor or LocalExecutor()
        self._cluster: dict[tuple[Any, ...], Executor] = {}  # (kind, address, shared_fs, cap) -> executor
        self._cluster_lock = threading.Lock()
        self._environ = dict(os.environ if environ is None else environ)
        self._base_env = {k: self._environ[k] for k in BASE_ENV if k in self._environ}
        self._clock = clock
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._holds: dict[str, _Hold] = {}  # worker id -> the go of its held run (or an early release)
        self._input_ended = False
        self._deferred: dict[str, _Deferred] = {}  # worker id -> its events held for the answer
        self._flush_wake = threading.Condition(self._lock)
        self._flusher: threading.Thread | None = None
        self._flush_due: float | None = None  # when that thread wakes next (None: when told)
        self._closed = False
        self._full: dict[str, dict[str, Any]] = {}
        self.table = WorkerTable()

    # -- events -----------------------------------------------------------------------------
    def _emit(
        self, kind: WorkerEventType, rec_or_id: WorkerRecord | tuple[str, str], state: WorkerState, data: dict[str, Any]
    ) -> WorkerRecord:
        """Apply and send one event; the caller holds the lock."""
        wid, task_id = (rec_or_id.worker_id, rec_or_id.task_id) if isinstance(rec_or_id, WorkerRecord) else rec_or_id
        now = self._clock()
        event = WorkerEvent.model_construct(
            event=kind, worker_id=wid, task_id=task_id, state=state, time=now, data=data
        )
        rec = self.table.apply(event)
        assert rec is not None
        wire = {
            "event": kind.value,
            "worker_id": wid,
            "task_id": task_id,
            "state": state.value,
            "time": now,
            "data": data,
        }
        deferred = self._deferred.get(wid)
        if deferred is not None:
            deferred.events.append(wire)
        else:
            self._emit_event(wire)
        return rec

    # -- events held for an answer (spawn_and_run with defer_events) -----------------------------
    def _defer(self, worker_id: str, seconds: float) -> bool:
        """Hold the worker's events for the answer of the call that asks (lock held); False when
        another call holds them already (that call's answer carries them)."""
        if worker_id in self._deferred:
            return False
        due = time.monotonic() + seconds
        self._deferred[worker_id] = _Deferred(due)
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="deferred-events", daemon=True)
            self._flusher.start()
        elif self._flush_due is None or due < self._flush_due:
            self._flush_wake.notify()  # it would wake too late for this one
        return True

    def _undefer(self, worker_id: str) -> None:
        """Send a worker's held events now, in order; later ones flow live (lock held)."""
        for wire in self._take_deferred(worker_id):
            self._emit_event(wire)

    def _take_deferred(self, worker_id: str) -> list[dict[str, Any]]:
        """The worker's events still held, for the answer; later ones flow live (lock held)."""
        deferred = self._deferred.pop(worker_id, None)
        return deferred.events if deferred is not None else []

    def _flush_loop(self) -> None:
        """Send the events of each run that outlasts its deferral as notifications, so a caller
        watching a long run sees it as it goes."""
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                due: float | None = None
                for worker_id, deferred in list(self._deferred.items()):
                    if deferred.due <= now:
                        self._undefer(worker_id)
                    elif due is None or deferred.due < due:
                        due = deferred.due
                self._flush_due = due
                self._flush_wake.wait(FLUSH_IDLE if due is None else due - now)

    def _end(self, rec: WorkerRecord, result: dict[str, Any]) -> WorkerRecord:
        """Emit the final event of a worker and keep its full result for replies (lock held)."""
        kind, state = (
            (WorkerEventType.worker_finished, WorkerState.finished)
            if result["ok"]
            else (WorkerEventType.worker_failed, WorkerState.failed)
        )
        rec = self._emit(kind, rec, state, compact(result))
        self._full[rec.worker_id] = result
        if len(self._full) > FULL_RESULTS:
            del self._full[next(iter(self._full))]
        return rec

    # -- lookups ----------------------------------------------------------------------------
    def _get(self, worker_id: str) -> WorkerRecord:
        rec = self.table.workers.get(worker_id)
        if rec is None:
            raise NotFound(f"no worker {worker_id!r}: spawn_worker first (or replay the log)", {"worker_id": worker_id})
        return rec

    def _info(self, rec: WorkerRecord) -> dict[str, Any]:
        return rec.info(self._full.get(rec.worker_id))

    @staticmethod
    def _refuse_ended(rec: WorkerRecord, action: str) -> None:
        if rec.ended:
            raise InvalidTransition(
                f"worker {rec.worker_id} already {rec.state.value}: cannot {action} it; spawn a new attempt instead",
                {"worker_id": rec.worker_id, "state": rec.state.value},
            )

    # -- methods ----------------------------------------------------------------------------
    def spawn_worker(self, p: SpawnWorkerParams) -> dict[str, Any]:
        """Register a worker in trust_required; the same idempotency key returns the same worker.

        Defaults make a bare packet enough: the workspace is the manager's working directory,
        the run folder ``<workspace>/.harness/workers-adhoc``, and a packet sent without an id
        (named by its content) is keyed by that id, its attempt and its real scope directory, so
        sending the same packet again returns the same worker.
        """
        packet = p.task_packet
        if p.executor is not None and p.executor.kind == "ray" and not ray_available():
            raise InvalidParams(
                "executor ray: Ray is not installed where the worker manager runs (pip install 'harness[ray]')",
                {"executor": "ray"},
            )
        workspace = real_path(p.workspace if p.workspace is not None else os.getcwd())
        base = os.path.relpath(confine(workspace, p.workdir), workspace) if p.workdir else "."
        scope_dir = confine(workspace, os.path.join(base, packet.scope_path))
        key = p.idempotency_key
        if key is None and p.derived_id:
            key = f"{packet.id}/{p.attempt}@{scope_dir}"
        run_dir = os.path.abspath(p.run_dir) if p.run_dir else os.path.join(workspace, ".harness", "workers-adhoc")
        with self._lock:
            if key is not None:
                known = self.table.by_key.get(key)
                if known is not None:
                    return self._info(self.table.workers[known])
                wid = worker_id_for_key(key)
                if wid in self.table.workers:
                    raise InvalidParams(f"idempotency key {key!r} collides with worker {wid}", {"worker_id": wid})
            else:
                wid = self.table.next_adhoc_id(packet.id, p.attempt)
            data = {
                "packet": packet.model_dump(mode="json"),
                "workspace": workspace,
                "run_dir": run_dir,
                "attempt": p.attempt,
                "idempotency_key": key,
                "scope_dir": scope_dir,
                "env_allow": list(p.env_allow),
            }
            if p.budget is not None:
                data["budget"] = p.budget.model_dump(exclude_none=True)
            if p.sandbox is not None:
                data["sandbox"] = p.sandbox.model_dump()
            if p.executor is not None and p.executor.kind != "local":
                data["executor"] = p.executor.model_dump()
            # Trust resolved at once by a trusted root is part of the spawn: one event, not two.
            # (never a high-risk packet: it needs its own confirmation, as check_trust says)
            trusting = p.trusted_roots and packet.risk != Risk.high
            root = trusted_root(scope_dir, p.trusted_roots) if trusting else None  # a real path already
            state = WorkerState.trust_required
            if root is not None:
                data["trust"] = {"source": TRUSTED_ROOT, "approver": root}
                state = WorkerState.ready_for_prompt
            rec = self._emit(WorkerEventType.worker_spawned, (wid, packet.id), state, data)
            return self._info(rec)

    def spawn_and_run(self, p: SpawnWorkerParams) -> dict[str, Any]:
        """``spawn_worker``, then ``run_worker`` when the spawn itself resolved the trust gate (a
        trusted root holds the scope): one round trip for a worker the caller expects to run. A
        worker left in trust_required is returned as the spawn left it, not run; the same key again
        joins the run in progress or returns the ended worker, as ``run_worker`` does."""
        first = self.spawn_then_run(p)
        return first.rest() if isinstance(first, Later) else first

    def spawn_then_run(self, p: SpawnWorkerParams) -> dict[str, Any] | Later:
        """spawn_and_run in two parts, as the service runs it: the spawn at once (on the reader, in
        order with a release that follows), then the run, which blocks, as the :class:`Later` it
        returns (on a pool thread, whose start overlaps the caller's sync before its release).

        worker_spawned is always sent at once: it names the worker's key, which a manager
        restarted mid-run needs from the caller's replay to know the worker (and never run that
        key again). With ``defer_events``, the events after it may wait for the answer."""
        info = self.spawn_worker(p)
        if info["state"] not in (WorkerState.ready_for_prompt.value, WorkerState.running.value):
            return info  # untrusted, or a known worker that already ended
        worker_id = info["worker_id"]
        deferred: str | None = None  # the worker whose events this call holds for its answer
        if p.defer_events is not None and p.idempotency_key is not None:
            with self._lock:
                if self._defer(worker_id, p.defer_events):
                    deferred = worker_id

        def rest() -> dict[str, Any]:
            try:
                result = self._run(worker_id, p.hold)
            except BaseException:
                self._send_held(deferred)
                raise
            return self._with_held(deferred, result)

        return Later(rest)

    def _with_held(self, deferred: str | None, answer: dict[str, Any]) -> dict[str, Any]:
        """The answer with the events held for it; later events of the worker flow live."""
        if deferred is None:
            return answer
        with self._lock:
            events = self._take_deferred(deferred)
        return {**answer, "events": events} if events else answer

    def _send_held(self, deferred: str | None) -> None:
        """An error answers: the events held for it go first, as notifications."""
        if deferred is not None:
            with self._lock:
                self._undefer(deferred)

    def release_worker(self, p: ReleaseWorkerParams) -> dict[str, Any]:
        """Let a held worker start its first process. Usually sent as a notification, right after
        the spawn_and_run it answers; handled on the reader, it may overtake that spawn, so a
        release that names no held worker yet is kept for it."""
        with self._lock:
            self._hold(p.worker_id).release()
        return {}

    def end_of_input(self) -> None:
        """The caller's input ended: nobody will release a held worker; each fails unrun."""
        with self._lock:
            self._input_ended = True
            for hold in self._holds.values():
                hold.stop("the caller's input ended before it released the worker")

    def _hold(self, worker_id: str) -> _Hold:
        """The go of a worker's held run, made on first use (lock held)."""
        hold = self._holds.get(worker_id)
        if hold is None:
            hold = self._holds[worker_id] = _Hold()
            if self._input_ended:
                hold.stop("the caller's input ended before it released the worker")
            if len(self._holds) > HOLDS:
                del self._holds[next(iter(self._holds))]
        return hold

    def _await_release(self, worker_id: str, seconds: float) -> str | None:
        """Wait (bounded) for a held worker's release; None once released, else why it will not start."""
        with self._lock:
            hold = self._hold(worker_id)
        hold.event.wait(seconds)
        with self._lock:
            hold.stop(f"not released within {seconds:g} s of its spawn (release_worker)")  # unless it was
            return None if hold.released else hold.why

    def check_trust(self, p: CheckTrustParams) -> dict[str, Any]:
        """Resolve the trust gate by policy when the scope lies under a trusted root."""
        with self._lock:
            rec = self._get(p.worker_id)
            trusted, reason = self._trust_decision(rec, p.trusted_roots)
            return {"worker_id": rec.worker_id, "trusted": trusted, "state": rec.state.value, "reason": reason}

    def _trust_decision(self, rec: WorkerRecord, roots: list[str]) -> tuple[bool, str]:
        if rec.trusted:
            return True, f"trust already resolved ({rec.trust_source}, approver {rec.approver})"
        if rec.ended:
            return False, f"the worker {rec.state.value} before its trust was resolved"
        if rec.packet.get("risk") == Risk.high.value:
            why = ", ".join(rec.packet.get("risk_reasons") or []) or "flagged high risk"
            return False, f"risky task ({why}) needs its own confirmation: mark_trusted, even under a trusted root"
        scope = real_path(rec.scope_dir)
        root = trusted_root(scope, roots)
        if root is not None:
            data = {"source": TRUSTED_ROOT, "approver": root}
            self._emit(WorkerEventType.trust_resolved, rec, WorkerState.ready_for_prompt, data)
            return True, f"scope {scope} is inside trusted root {root}"
        return False, f"scope {scope} is inside no trusted root: a decision is required (mark_trusted)"

    def mark_trusted(self, p: MarkTrustedParams) -> dict[str, Any]:
        """Resolve the trust gate by an explicit decision (human, flag or policy rule)."""
        with self._lock:
            rec = self._get(p.worker_id)
            self._refuse_ended(rec, "trust")
            if not rec.trusted:
                data = {"source": p.approval_source, "approver": p.approver}
                rec = self._emit(WorkerEventType.trust_resolved, rec, WorkerState.ready_for_prompt, data)
            return self._info(rec)

    def run_worker(self, p: RunWorkerParams) -> dict[str, Any]:
        """Run a trusted worker to its end (blocking); a repeated call joins the same run."""
        return self._run(p.worker_id, None)

    def _run(self, worker_id: str, hold: float | None) -> dict[str, Any]:
        """run_worker; with ``hold``, the run that starts here waits for its release first."""
        with self._lock:
            rec = self._get(worker_id)
        connect = getattr(self._executor_for(rec), "connect", None)
        if connect is not None:
            connect()  # a cluster's first connection, before the table's lock is taken
        with self._lock:
            rec = self._get(worker_id)
            if rec.ended:
                return self._info(rec)
            run = self._runs.get(rec.worker_id)
            owner = run is None
            if run is None:
                if not rec.trusted:
                    raise GateBlocked(
                        f"worker {rec.worker_id} is not trusted: resolve its trust gate first (check_trust or mark_trusted)",
                        {"worker_id": rec.worker_id, "state": rec.state.value},
                    )
                if rec.state is WorkerState.running:
                    raise InvalidTransition(
                        f"worker {rec.worker_id} was running under a manager that died: replay the log to settle it",
                        {"worker_id": rec.worker_id, "state": rec.state.value},
                    )
                job = self._job(rec)
                if hold is not None:
                    self._hold(rec.worker_id)  # before the lock is let go: a cancel finds it
                    job.gate = functools.partial(self._await_release, rec.worker_id, hold)
                run = self._runs[rec.worker_id] = _Run(self._executor_for(rec).prepare(job), job.timeout)
        if owner:
            return self._execute(rec, run)
        if not run.done.wait(run.timeout + TERM_GRACE + KILL_WAIT + 5.0):
            raise RequestTimeout(f"worker {rec.worker_id} did not end in time", {"worker_id": rec.worker_id})
        with self._lock:
            return self._info(rec)

    def _job(self, rec: WorkerRecord) -> Job:
        packet = rec.packet
        work = tuple(Step(StepKind.command, i, c) for i, c in enumerate(packet.get("commands") or ()))
        if not work and packet.get("agent"):
            work = (self._agent_step(rec),)
        steps = work + tuple(
            Step(StepKind.acceptance, i, c) for i, c in enumerate(packet.get("acceptance_tests") or ())
        )
        env = dict(self._base_env)
        for name in rec.env_allow:
            if name in self._environ:
                env[name] = self._environ[name]
        env.update(packet.get("env") or {})
        env["HARNESS_TASK_ID"] = rec.task_id
        env["HARNESS_WORKER_ID"] = rec.worker_id
        env["HARNESS_ATTEMPT"] = str(rec.attempt)
        env["HARNESS_WORKSPACE"] = rec.workspace
        env["HARNESS_RUN_DIR"] = rec.run_dir
        return Job(
            worker_id=rec.worker_id,
            steps=steps,
            cwd=rec.scope_dir,
            workspace=rec.workspace,
            env=env,
            timeout=float(packet.get("timeout") or DEFAULT_TIMEOUT),
            out_dir=rec.worker_dir,
            sandbox=self._confinement(rec),
            resources=packet.get("resources"),
        )

    def _executor_for(self, rec: WorkerRecord) -> Executor:
        """The backend of a worker: its spawn's executor (one per cluster and settings, connected
        on first use), else local processes."""
        spec = rec.executor
        if not spec or spec.get("kind", "local") == "local":
            return self._executor
        key = (
            spec.get("kind"),
            spec.get("address"),
            bool(spec.get("shared_fs")),
            int(spec.get("bundle_cap_mb") or 256),
        )
        with self._cluster_lock:  # (callers may hold the table's lock)
            found = self._cluster.get(key)
            if found is None:
                from ._ray import RayExecutor

                found = self._cluster[key] = RayExecutor(
                    spec.get("address"), shared_fs=key[2], bundle_cap=key[3] * 1024 * 1024
                )
            return found

    def close(self) -> None:
        """Let go of cluster executors (a Ray started for this manager stops with it) and of the
        thread sending deferred events."""
        with self._lock:
            self._closed = True
            self._flush_wake.notify()
        for executor in list(self._cluster.values()):
            shutdown = getattr(executor, "shutdown", None)
            if shutdown is not None:
                shutdown()
        self._cluster.clear()

    @staticmethod
    def _confinement(rec: WorkerRecord) -> Any:
        """The worker's sandbox (:class:`harness.sandbox.Confinement`), or None: its scope and the
        paths the spawn named are writable, the workspace and the named read-only paths are not."""
        spec = rec.sandbox or {}
        if spec.get("mode") != "bwrap":
            return None
        from harness.sandbox import Confinement

        return Confinement(
            writable=[rec.scope_dir, *(spec.get("writable") or ())],
            protected=[rec.workspace, *(spec.get("readonly") or ())],
            network=bool(spec.get("network")),
            private_tmp=f"{rec.worker_dir}/tmp",
        )

    def _agent_step(self, rec: WorkerRecord) -> Step:
        """The agent's turn: its adapter's argv, the prompt the supervisor saved in the worker's
        folder (on stdin or as an argument, never through a shell), its CLI's environment."""
        from harness.agents import AgentCall, GenericAdapter, adapter_for, passes_through

        spec = rec.packet["agent"]
        prompt_file = f"{rec.worker_dir}/prompt.md"
        try:
            with open(prompt_file, encoding="utf-8") as f:
                prompt = f.read()
        except OSError as exc:
            raise InvalidParams(
                f"worker {rec.worker_id} has no prompt at {prompt_file}: write it before run_worker ({exc.strerror})",
                {"worker_id": rec.worker_id},
            ) from exc
        command = spec.get("command")
        adapter = adapter_for(spec.get("name"), command)
        named = not isinstance(adapter, GenericAdapter)
        call = AgentCall(
            prompt=prompt,
            prompt_file=prompt_file,
            workdir=rec.scope_dir,
            model=spec.get("model"),
            max_turns=spec.get("max_turns"),
            permission=spec.get("permission"),
            extra_args=tuple(spec.get("extra_args") or ()),
            command=tuple(command) if named and command else None,
            allowed_tools=tuple(spec.get("allowed_tools") or ()),
            denied_tools=tuple(spec.get("denied_tools") or ()),
        )
        channel = None
        if spec.get("channel") and adapter.has_channel:
            call = replace(call, channel=True)
            channel = ToolChannel(adapter, lambda request: self._ask_tool(rec, request))
        argv = adapter.argv(call)
        env = passes_through(adapter, list(spec.get("env") or ()), self._environ)
        budget = rec.budget if rec.budget is not None else (spec.get("budget") or {})
        return Step(
            StepKind.agent,
            0,
            " ".join(argv[:1] + [f"<{len(argv) - 1} args>"]),
            argv=argv,
            stdin=adapter.channel_input(prompt)
            if channel is not None
            else (prompt.encode("utf-8") if adapter.wants_stdin() else None),
            env=env,
            parser=adapter.parser(),
            budget=dict(budget),
            channel=channel,
        )

    # -- agents' tool-permission requests -------------------------------------------------------
    def _ask_tool(self, rec: WorkerRecord, request: Any) -> tuple[bool, str]:
        """Relay an agent's tool request to the caller (``tool_permission``) and wait for
        ``answer_tool_permission``; no answer within the bound is a denial (fail closed)."""
        key = (rec.worker_id, request.request_id)
        slot: list[Any] = [threading.Event(), None]
        with self._lock:
            self._pending_tools[key] = slot
            self._undefer(rec.worker_id)  # the caller knows the worker before it hears its request
        self._notify(
            "tool_permission",
            {
                "worker_id": rec.worker_id,
                "task_id": rec.task_id,
                "attempt": rec.attempt,
                "request_id": request.request_id,
                "tool": request.tool,
                "call": request.summary(),
                "description": request.description[:300],
                "workdir": rec.scope_dir,  # where the agent works: edits inside it are in scope
                "input": {
                    k: v
                    for k, v in request.input.items()
                    if k in ("file_path", "notebook_path", "command", "url", "path")
                },
            },
        )
        try:
            if not slot[0].wait(self._tool_wait):
                return False, f"no decision within {self._tool_wait:g} s: denied"
            allow, message = slot[1]
            return bool(allow), str(message or "")
        finally:
            with self._lock:
                self._pending_tools.pop(key, None)

    def answer_tool_permission(self, p: AnswerToolParams) -> AnswerToolResult:
        """Answer a pending tool-permission request of a running agent."""
        with self._lock:
            slot = self._pending_tools.get((p.worker_id, p.request_id))
        if slot is not None:
            slot[1] = (p.allow, p.message)
            slot[0].set()
        return AnswerToolResult(
            worker_id=p.worker_id, request_id=p.request_id, allow=p.allow, delivered=slot is not None
        )

    def _execute(self, rec: WorkerRecord, run: _Run) -> dict[str, Any]:
        execution = run.execution

        def started(pid: int) -> None:
            data: dict[str, Any] = {"pid": pid}
            placement = getattr(execution, "placement", None)  # a cluster executor's: set before this call
            if placement is not None:
                data["placement"] = dict(placement)  # the node and the cluster's task id, before it can be lost
            with self._lock:
                self._emit(WorkerEventType.worker_started, rec, WorkerState.running, data)

        try:
            try:
                result = execution.run(started).as_dict()
            except Exception as exc:  # a backend fault still ends the worker, visibly
                execution.kill_now()
                message = f"executor failed: {type(exc).__name__}: {exc}"
                result = Outcome(ok=False, reason=FailureReason.spawn_error, message=message).as_dict()
            with self._lock:
                if rec.ended:  # settled meanwhile (a replay, a cancel): a late result is dropped, never applied
                    logger.warning("worker %s: a late result after it %s was dropped", rec.worker_id, rec.state.value)
                    return self._info(rec)
                promote = getattr(execution, "promote", None)
                if promote is not None and result.get("ok"):
                    # the attempt's own area becomes the worker's files only now that it is accepted
                    try:
                        promote()
                    except (OSError, ValueError) as exc:
                        result.update(ok=False, reason=FailureReason.spawn_error.value)
                        result["message"] = f"the attempt's changes could not be applied: {exc}"
                rec = self._end(rec, result)
                return rec.info(result)
        finally:
            with self._lock:
                self._runs.pop(rec.worker_id, None)
                self._holds.pop(rec.worker_id, None)
            run.done.set()

    def get_worker(self, p: GetWorkerParams) -> dict[str, Any]:
        with self._lock:
            return self._info(self._get(p.worker_id))

    def list_workers(self, p: Empty) -> dict[str, Any]:
        with self._lock:
            return {"workers": [self._info(rec) for rec in self.table.workers.values()]}

    def cancel_worker(self, p: CancelWorkerParams) -> dict[str, Any]:
        """End a worker as failed/cancelled: at once if it is not running, else stop its processes."""
        with self._lock:
            rec = self._get(p.worker_id)
            self._refuse_ended(rec, "cancel")
            run = self._runs.get(rec.worker_id)
            if run is None:
                if rec.state is WorkerState.running:  # orphaned by a dead manager
                    self._executor_for(rec).reap(rec.worker_id, rec.worker_dir, [rec.pid] if rec.pid else [])
                result = Outcome(ok=False, reason=FailureReason.cancelled, message=p.reason).as_dict()
                return self._info(self._end(rec, result))
            held = self._holds.get(rec.worker_id)
            if held is not None:
                held.stop(p.reason)  # a held run never starts
        run.execution.cancel(p.reason)
        if not run.done.wait(CANCEL_GRACE):
            run.execution.kill_now()
            run.done.wait(KILL_WAIT + 5.0)
        with self._lock:
            return self._info(rec)

    def replay(self, p: WorkerReplayParams) -> dict[str, Any]:
        """Rebuild the table from a dead manager's events, then reap the workers it left running."""
        try:
            rebuilt = WorkerTable.from_events(p.events)
        except (KeyError, TypeError, ValueError) as exc:  # all or nothing: the table is untouched
            raise InvalidParams(f"events do not fold into a worker table: {type(exc).__name__}: {exc}") from exc
        reaped: list[str] = []
        with self._lock:
            if not self.table.workers:
                self.table = rebuilt
            else:  # what this manager already knows is newer than any log
                for rec in rebuilt.workers.values():
                    if rec.worker_id not in self.table.workers:
                        self.table.add(rec)
            for rec in list(self.table.workers.values()):
                if rec.worker_id in self._runs or rec.ended:
                    continue
                # Each step's process group is recorded in the run folder's pgids file right after
                # it starts: if one of this worker's is, the dead manager had begun running it even
                # when no event said so yet.
                began = rec.state is WorkerState.ready_for_prompt and began_running(rec.worker_id, rec.worker_dir)
                if rec.state is WorkerState.running or began:
                    self._executor_for(rec).reap(rec.worker_id, rec.worker_dir, [rec.pid] if rec.pid else [])
                    stdout_path, stderr_path = output_files(rec.worker_dir)  # None: nothing printed
                    result = Outcome(
                        ok=False,
                        reason=FailureReason.interrupted,
                        interrupted=True,
                        stdout_path=stdout_path,
                        stderr_path=stderr_path,
                        message="the worker's manager died while it ran",
                    ).as_dict()
                    self._end(rec, result)
                    reaped.append(rec.worker_id)
            return {"workers": len(self.table.workers), "reaped": reaped}

    # -- process exit -----------------------------------------------------------------------
    def kill_all(self) -> None:
        """Force-stop every running worker at once (the manager is being killed). No locks."""
        for run in list(self._runs.values()):
            run.execution.kill_now()
