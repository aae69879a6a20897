"""The supervisor: one run through PLAN -> GATE -> BOOTSTRAP -> EXECUTE -> RECOVER -> LOG.

Every decision is an event first. :meth:`Supervisor.emit` appends to the log and folds the same
event into ``self.state``; nothing else changes the state, so ``fold(log)`` is the run. The main
thread schedules; one thread per running task talks to the worker manager and reports back on a
queue. Questions that have no answer (no terminal, no policy rule, no decision in the log) make the
run record that it waits and exit 3: gates fail closed.
"""

from __future__ import annotations

import getpass
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import eventlog
from .._spawn import services_log
from ..config import SERVICE_NAMES, Config
from ..recovery import (
    INTERRUPTED,
    FailureType,
    RecipeName,
    Recovery,
    decide_command,
    escalation_reason,
    summarize,
    transitive_dependents,
    was_interrupted,
)
from ..rpc import ClientClosed, InvalidPlan, RPCError, kill_group
from ..state import TERMINAL_TASK, RunState, RunStatus, TaskStatus, fold
from ._service import ServiceFatal, SupervisedService
from ._ui import UI

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING = 0, 1, 2, 3


class PlanRejected(Exception):
    """The plan (generated or from a file) has errors; ``problems`` lists all of them."""

    def __init__(self, problems: list[dict[str, Any]], message: str = "the plan is invalid") -> None:
        self.problems = problems
        super().__init__(message)


class RunLocked(Exception):
    """Another supervisor is driving this run right now."""


@dataclass
class RunOptions:
    objective: str | None = None
    plan: dict[str, Any] | None = None  # a plan file, already loaded
    approve: bool = False
    parallel: int = 1
    approver: str = field(default_factory=lambda: _user())


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER", "unknown")


def worker_event_type(event: str) -> str:
    """worker_started -> WORKER_STARTED, trust_resolved -> WORKER_TRUST_RESOLVED."""
    return "WORKER_" + (event[len("worker_") :] if event.startswith("worker_") else event).upper()


class Supervisor:
    def __init__(
        self,
        workspace: str | os.PathLike[str],
        config: Config,
        ui: UI,
        options: RunOptions | None = None,
        *,
        prespawned: dict[str, Any] | None = None,
    ) -> None:
        self.workspace = Path(workspace).resolve()
        # Default services the CLI started early (harness._spawn.prespawn): adopted, then removed
        # from this dict, so the caller can stop whatever was not adopted.
        self._prespawned = prespawned if prespawned is not None else {}
        self.config = config
        self.ui = ui
        self.options = options or RunOptions()
        self.policy = config.policy
        self._trusted_roots = self.policy.resolved_roots(self.workspace)
        self.recovery = Recovery(config.recovery)
        self.state = RunState()
        self.run_id = ""
        self.log: Any = None
        self._lock = threading.RLock()
        self._prompt_lock = threading.Lock()
        self.services: dict[str, SupervisedService] = {}
        self._done: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self._lock_fd: int | None = None
        self._stderr: Any = None
        self._interrupted = False
        self._executing = False
        # What restarted services are handed back (see _index): derived from the log, never more.
        self._worker_events: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._ended_workers: set[str] = set()
        self._outcome_workers: set[str] = set()
        self._settled_workers: set[str] = set()
        self._phase_events: list[dict[str, Any]] = []

    # -- paths ----------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return eventlog.run_dir(self.workspace, self.run_id)

    @property
    def log_path(self) -> Path:
        return self.run_dir / "events.jsonl"

    # -- the one way state changes ----------------------------------------------------------------
    def emit(
        self,
        etype: str,
        data: dict[str, Any] | None = None,
        *,
        task_id: str | None = None,
        worker_id: str | None = None,
        durable: bool = False,
    ) -> dict[str, Any]:
        """Append one event and fold it. Returns once it is durable when ``durable`` is set;
        the fsync happens after the lock is released, so other threads keep appending."""
        with self._lock:
            assert self.log is not None, "the run's log is opened before anything happens"
            event = self.log.append(etype, data or {}, task_id=task_id, worker_id=worker_id, durable=False)
            for foreign in self.log.take_foreign():
                self.state.apply(foreign)
                self._index(foreign)
            self.state.apply(event)
            self._index(event)
            self.ui.on_event(event, self.state)
        if durable:
            self.log.sync()
        return event

    def _absorb_foreign(self) -> None:
        """Fold events other processes appended (``harness decide``/``approve``/``amend``)."""
        with self._lock:
            if self.log is None:
                return
            for foreign in self.log.take_foreign():
                self.state.apply(foreign)
                self._index(foreign)
                self.ui.on_event(foreign, self.state)

    def _open_log(self, create: bool) -> None:
        self.log = eventlog.EventLog.open(self.log_path, self.run_id, create=create)
        torn = self.log.torn
        if torn is not None:
            self.ui.note(
                f"warning: the log ended in a torn line ({torn.size} bytes at offset {torn.offset}); it was truncated"
            )

    def _lock_run(self) -> None:
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise RunLocked(f"run {self.run_id} is being driven by another harness process") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    # -- services -------------------------------------------------------------------------------
    def _on_notification(self, service: str, method: str, params: Any) -> None:
        params = params if isinstance(params, dict) else {"value": params}
        if method == "worker_event":
            self.emit(
                worker_event_type(str(params.get("event", "event"))),
                params,
                task_id=params.get("task_id"),
                worker_id=params.get("worker_id"),
            )
        elif method == "phase_started":
            self.emit("BOOTSTRAP_PHASE_STARTED", params)
        elif method == "phase_completed":
            self.emit("BOOTSTRAP_PHASE_COMPLETED", params)
        else:
            self.emit("SERVICE_NOTIFICATION", {"service": service, "method": method, "params": params})

    def _index(self, event: dict[str, Any]) -> None:
        """Keep, as a fold of the log, what a restarted service must be handed back.

        The worker manager gets the workers it can still be asked about: a worker that ended and
        whose task outcome is logged is settled for good (retries use new attempts and keys), so
        its events are dropped and a replay stays small however long the run grows. Bootstrap
        gets its completed phases.
        """
        etype = event["type"]
        if etype == "BOOTSTRAP_PHASE_COMPLETED":
            self._phase_events.append(event["data"])
            return
        wid = event.get("worker_id")
        if not wid or wid in self._settled_workers:
            return
        if etype.startswith("WORKER_") and "event" in (event.get("data") or {}):
            self._worker_events.setdefault(wid, []).append((event["seq"], event["data"]))
            if etype in ("WORKER_FINISHED", "WORKER_FAILED"):
                self._ended_workers.add(wid)
        elif etype in ("TASK_COMPLETED", "TASK_FAILED"):
            self._outcome_workers.add(wid)
        if wid in self._ended_workers and wid in self._outcome_workers:
            self._settled_workers.add(wid)
            self._worker_events.pop(wid, None)

    def _replay_source(self, service: str):
        def events() -> list[dict[str, Any]]:
            with self._lock:
                if service == "worker-manager":  # in log order
                    return [data for _, data in sorted(e for evs in self._worker_events.values() for e in evs)]
                if service == "bootstrap":
                    return list(self._phase_events)
                return []

        return events

    def _start_services(self) -> None:
        """Start the three services concurrently; each counts as started once it answers initialize."""
        self._stderr = services_log(str(self.workspace))
        errors: list[BaseException] = []

        def start(name: str) -> None:
            spec = self.config.service_spec(name)
            early = self._prespawned.pop(name, None)
            if early is not None and early.args != spec.command:
                self._prespawned[name] = early  # not what the spec runs: leave it to be stopped
                early = None
            svc = SupervisedService(
                spec,
                emit=self.emit,
                on_notification=self._on_notification,
                replay_source=self._replay_source(name),
                stderr=self._stderr,
                cwd=str(self.workspace),
                prespawned=early,
            )
            self.services[name] = svc
            try:
                svc.start()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,), name=f"start-{n}") for n in SERVICE_NAMES]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        if errors:
            raise errors[0]

    def _stop_services(self) -> None:
        threads = [threading.Thread(target=svc.stop) for svc in self.services.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        for name, svc in self.services.items():
            if (
                self.log is not None
                and self.state.services.get(name)
                and self.state.services[name].state.value != "fatal"
            ):
                self.emit("SERVICE_STOPPED", {"service": name})
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _kill_stale(self) -> None:
        """After a supervisor crash: stop the services of this run still alive (pids from the log)."""
        for info in self.state.services.values():
            pid = info.pid
            if not pid or info.state.value in ("stopped", "fatal"):
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # gone already
            if "harness" not in cmdline and "services" not in cmdline and info.name not in cmdline:
                continue  # the pid was reused by something else
            kill_group(pid, signal.SIGKILL)
            self.ui.note(f"stopped a stale {info.name} service left by an earlier supervisor (pid {pid})")

    def svc(self, name: str) -> SupervisedService:
        return self.services[name]

    # -- entry points ---------------------------------------------------------------------------
    def start(self) -> int:
        """A new run: record it, start the services, then plan (or load), gate and execute."""
        self.run_id = eventlog.new_run_id()
        return self._session(self._begin)

    def resume(self, run_id: str) -> int:
        """Continue a run from its log alone."""
        self.run_id = run_id
        if not self.log_path.is_file():
            raise FileNotFoundError(f"no run {run_id} in {self.workspace / '.harness' / 'runs'}")
        return self._session(self._continue)

    def _session(self, body: Callable[[], int]) -> int:
        """Hold the run's lock, drive it, and always stop the services; a fatal service pauses."""
        self._lock_run()
        try:
            return body()
        except ServiceFatal as exc:
            self.ui.note(f"error: {exc}")
            return self._wait("service_fatal", {"service": exc.service, "message": str(exc)})
        finally:
            self._shutdown()

    def _begin(self) -> int:
        self._open_log(create=True)
        data: dict[str, Any] = {
            "objective": (self.options.plan or {}).get("objective") or self.options.objective or "",
            "workspace": str(self.workspace),
            "options": {"parallel": self.options.parallel, "approve": self.options.approve, "policy": self.policy.name},
            "supervisor_pid": os.getpid(),
        }
        if self.options.plan is not None:
            data["plan_file"] = self.options.plan
        self.emit("RUN_STARTED", data, durable=True)
        self._start_services()
        return self._drive()

    def _continue(self) -> int:
        self._open_log(create=False)
        past = eventlog.read_events(self.log_path).events
        self.state = fold(past)
        for event in past:
            self._index(event)
        if self.state.plan is None and self.state.problems:
            raise PlanRejected(self.state.problems, f"run {self.run_id} ended with an invalid plan; start a new run")
        if self.state.status is RunStatus.completed:
            self.ui.say(f"Run {self.run_id} is already complete.")
            self.ui.summary(self.state, str(self.log_path))
            return EXIT_OK
        self._kill_stale()
        self.emit("RUN_RESUMED", {"supervisor_pid": os.getpid()}, durable=True)
        self._start_services()
        return self._drive()

    def _shutdown(self) -> None:
        self._stop_services()
        if self.log is not None:
            with self._lock:
                self.log.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _drive(self) -> int:
        restore = self._trap_signals()
        try:
            if self.state.plan is None:
                self._plan()
            code = self._gate()
            if code is not None:
                return code
            code = self._bootstrap()
            if code is not None:
                return code
            return self._execute()
        except KeyboardInterrupt:
            self.ui.note("interrupted: the run can be continued with `harness resume " + self.run_id + "`")
            self._wait("interrupted", {})
            return 130
        finally:
            restore()

    def _trap_signals(self):
        """Ctrl-C or SIGTERM during EXECUTE: stop at the scheduler's next safe point (never in the
        middle of an append), record that the run waits, exit 130. A second signal, or one
        outside EXECUTE, interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, frame: Any) -> None:
            if self._interrupted or not self._executing:
                raise KeyboardInterrupt
            self._interrupted = True
            self._done.put(("", "interrupt", None))

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore

    # -- PLAN -----------------------------------------------------------------------------------
    def _context(self) -> dict[str, Any]:
        return {"workspace": str(self.workspace)}

    def _plan(self) -> None:
        """PLAN: decompose the objective (or validate the plan file); an invalid plan ends the run."""
        try:
            plan, report = self._initial_plan()
        except PlanRejected as exc:
            self.emit("PLAN_INVALID", {"problems": exc.problems, "message": str(exc)}, durable=True)
            self.emit(
                "EXECUTION_COMPLETE", {"status": "failed", "reason": str(exc), **self.state.counts()}, durable=True
            )
            raise
        self.emit("PLAN_CREATED", {"plan": plan, "revision": plan.get("revision", 1), "report": report}, durable=True)

    def _initial_plan(self) -> tuple[dict[str, Any], dict[str, Any]]:
        planning = self.svc("planning")
        started = self.state.options_plan
        if started is not None:
            plan = dict(started)
            report = planning.call("validate", {"plan": plan, "workspace": str(self.workspace), "strictness": "file"})
            if not report.get("valid"):
                raise PlanRejected(report.get("problems", []), "the plan file is invalid")
            plan = self._flag_risks(plan, report)
            return plan, report
        try:
            result = planning.call("decompose", {"objective": self.state.objective, "context": self._context()})
        except InvalidPlan as exc:
            problems = (exc.data or {}).get("problems", []) if isinstance(exc.data, dict) else []
            raise PlanRejected(
                problems or [{"severity": "error", "code": "invalid_plan", "message": exc.message}]
            ) from exc
        return result["plan"], result.get("report") or {}

    @staticmethod
    def _flag_risks(plan: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
        risky = set(report.get("risky") or [])
        if not risky:
            return plan
        reasons = {
            p.get("task_id"): p.get("message") for p in report.get("problems", []) if p.get("code") == "risky_task"
        }
        tasks = []
        for t in plan["tasks"]:
            if t["id"] in risky and t.get("risk") != "high":
                t = {
                    **t,
                    "risk": "high",
                    "risk_reasons": t.get("risk_reasons") or [reasons.get(t["id"]) or "flagged risky by validation"],
                }
            tasks.append(t)
        return {**plan, "tasks": tasks}

    # -- GATE -----------------------------------------------------------------------------------
    def _gate(self) -> int | None:
        while not self.state.is_approved():
            if self.state.rejections and int(self.state.rejections[-1].get("revision", -1)) == self.state.revision:
                self._refine(self.state.rejections[-1])
                continue
            plan = self.state.plan or {}
            risky = [t["id"] for t in plan.get("tasks", []) if t.get("risk") == "high"]
            if self.state.gate_requested_revision != self.state.revision:
                self.ui.show_plan(plan, self.state.report, self.state.revision)
                self.emit(
                    "GATE_APPROVAL_REQUESTED",
                    {
                        "gate": "plan",
                        "revision": self.state.revision,
                        "tasks": len(plan.get("tasks", [])),
                        "risky": risky,
                    },
                    durable=True,
                )
            decision = self._plan_decision(len(plan.get("tasks", [])), bool(risky))
            if decision is None:
                self.ui.say(
                    f"The plan is waiting for approval. Approve with `harness approve {self.run_id}` "
                    f'(or `--reject "feedback"`, `--skip TASK`), then `harness resume {self.run_id}`.'
                )
                return self._wait(
                    "approval", {"revision": self.state.revision, "how": f"harness approve {self.run_id}"}
                )
            kind, data = decision
            if kind == "approve":
                self.emit("GATE_APPROVED", data, durable=True)
            elif kind == "wait":
                return self._wait(
                    "approval", {"revision": self.state.revision, "how": f"harness approve {self.run_id}"}
                )
            else:
                self.emit("GATE_REJECTED", data, durable=True)
        return None

    def _plan_decision(self, n_tasks: int, risky: bool) -> tuple[str, dict[str, Any]] | None:
        base = {"gate": "plan", "revision": self.state.revision}
        if self.options.approve:
            return "approve", {**base, "source": "flag", "approver": self.options.approver}
        rule = self.policy.rule_for("plan", n_tasks=n_tasks, risky=risky)
        if rule is not None:
            kind = "approve" if rule.decision == "approve" else "reject"
            return kind, {
                **base,
                "source": "policy",
                "rule": rule.name,
                "approver": self.policy.name,
                "feedback": rule.note or "",
            }
        if not self.ui.interactive:
            return None
        with self._prompt_lock:
            answer = self.ui.prompt_plan(list(self.state.tasks))
        if answer is None or answer.kind == "wait":
            return ("wait", {}) if answer else None
        data = {**base, "source": "tty", "approver": self.options.approver}
        if answer.kind == "approve":
            if answer.skip:
                data["skip"] = answer.skip
            if answer.order:
                data["order"] = answer.order
            return "approve", data
        return "reject", {**data, "feedback": answer.feedback, "kind": answer.kind}

    def _refine(self, rejection: dict[str, Any]) -> None:
        result = self.svc("planning").call(
            "refine",
            {"plan": self.state.plan, "feedback": rejection.get("feedback", ""), "context": self._context()},
        )
        plan = result["plan"]
        plan["revision"] = self.state.revision + 1
        self.emit(
            "PLAN_CREATED",
            {
                "plan": plan,
                "revision": plan["revision"],
                "report": result.get("report"),
                "feedback": rejection.get("feedback"),
                "applied": result.get("applied", []),
            },
            durable=True,
        )

    # -- BOOTSTRAP ------------------------------------------------------------------------------
    def _bootstrap(self) -> int | None:
        plan = self.state.plan or {}
        context: dict[str, Any] = {
            "workspace": str(self.workspace),
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "objective": plan.get("objective"),
            "requires": plan.get("requires") or {"env": [], "tools": []},
        }
        bootstrap = self.svc("bootstrap")
        phases = bootstrap.call("plan", {"context": context})["phases"]
        for phase in phases:
            name = phase["name"]
            result = self._run_phase(name, context)
            if not result.get("success"):
                self.emit(
                    "BOOTSTRAP_FAILED", {"phase": name, "diagnostics": result.get("diagnostics", [])}, durable=True
                )
                self.emit(
                    "EXECUTION_COMPLETE",
                    {"status": "failed", "reason": f"bootstrap phase {name} failed", **self.state.counts()},
                    durable=True,
                )
                self.ui.summary(self.state, str(self.log_path))
                return EXIT_FAILED
        return None

    def _run_phase(self, name: str, context: dict[str, Any]) -> dict[str, Any]:
        """One phase. The worker-manager check sees the manager as it is now: if the manager was
        restarted while the phase looked at it, the phase runs again against the new one."""
        wm = self.svc("worker-manager")
        for _ in range(3):
            wm.call("ping", timeout=10)  # a dead manager is restarted before it is inspected
            pid = wm.pid
            context = {**context, "worker_manager": {"pid": pid, "methods": wm.info.get("methods", [])}}
            result = self.svc("bootstrap").call(
                "execute_phase", {"phase": name, "context": context, "idempotency_key": f"{self.run_id}:{name}"}
            )
            if result.get("success") or wm.pid == pid:
                return result
        return result

    # -- EXECUTE --------------------------------------------------------------------------------
    def _packet(self, tid: str) -> dict[str, Any]:
        for t in (self.state.plan or {}).get("tasks", []):
            if t["id"] == tid:
                return t
        raise KeyError(tid)

    def _execute(self) -> int:
        self._executing = True
        self._recover_interrupted()
        running: set[str] = set()
        parallel = max(1, self.options.parallel)
        while True:
            if self._interrupted:
                raise KeyboardInterrupt
            self._check_services()
            self._absorb_foreign()
            if self._apply_decisions():
                self._drain(running)
                return self._finish(aborted=True)
            self._skip_dependents()
            now = time.time()  # backoff deadlines come from the log (RECOVERY_APPLIED), so they survive a resume
            if not self._halted():
                for tid in self._ready():
                    if len(running) >= parallel:
                        break
                    if tid in running or self.state.tasks[tid].retry_at > now:
                        continue  # launched already (its TASK_STARTED may not be logged yet), or backing off
                    running.add(tid)
                    threading.Thread(target=self._task_thread, args=(tid,), name=f"task-{tid}", daemon=True).start()
            if not running:
                delayed = [t for t in self._ready() if self.state.tasks[t].retry_at > now]
                if delayed and not self._halted():
                    try:  # wait out the backoff, awake for an interrupt
                        self._done.get(timeout=max(0.0, min(self.state.tasks[t].retry_at for t in delayed) - now))
                    except queue.Empty:
                        pass
                    continue
                break
            try:
                tid, outcome, payload = self._done.get(timeout=0.5)
            except queue.Empty:
                continue
            if outcome == "interrupt":
                continue
            running.discard(tid)
            if outcome == "failed":
                self._recover(tid, payload)
            elif outcome == "error":
                raise payload
        return self._finish()

    def _check_services(self) -> None:
        """A service that went fatal (even one nobody is calling) pauses the run."""
        for svc in self.services.values():
            if svc.fatal is not None:
                raise svc.fatal

    def _drain(self, running: set[str]) -> None:
        while running:
            try:
                tid, _, _ = self._done.get(timeout=1.0)
            except queue.Empty:
                continue  # each task is bounded by its own timeout
            running.discard(tid)

    def _ready(self) -> list[str]:
        tasks = self.state.tasks
        out = []
        for tid in self.state.order:
            t = tasks.get(tid)
            if t is None or t.status is not TaskStatus.pending:
                continue
            if all(self._dep_satisfied(d) for d in t.depends_on):
                out.append(tid)
        return out

    def _dep_satisfied(self, dep: str) -> bool:
        d = self.state.tasks.get(dep)
        if d is None:
            return False
        return d.status is TaskStatus.completed or (d.status is TaskStatus.skipped and d.keep_dependents)

    def _skip_dependents(self) -> None:
        changed = True
        while changed:
            changed = False
            for tid in self.state.order:
                t = self.state.tasks[tid]
                if t.status is not TaskStatus.pending:
                    continue
                for dep in t.depends_on:
                    d = self.state.tasks.get(dep)
                    if d is not None and d.status is TaskStatus.skipped and not d.keep_dependents:
                        self.emit(
                            "TASK_SKIPPED",
                            {"reason": f"dependency {dep} was skipped", "dependency": dep},
                            task_id=tid,
                            durable=True,
                        )
                        changed = True
                        break

    def _halted(self) -> bool:
        """Stop on error: a task that failed for good, or awaits an escalation decision, holds new starts."""
        return any(
            t.status is TaskStatus.failed or (t.status is TaskStatus.waiting and t.waiting_for == "escalation")
            for t in self.state.tasks.values()
        )

    def _task_thread(self, tid: str) -> None:
        try:
            outcome, payload = self._run_task(tid)
        except ServiceFatal as exc:
            outcome, payload = "error", exc
        except ClientClosed:
            outcome, payload = "interrupted", None  # we are shutting down (Ctrl-C): resume re-runs it
        except RPCError as exc:
            outcome, payload = (
                "failed",
                {
                    "reason": "harness_error",
                    "message": f"{type(exc).__name__}: {exc.message}",
                    "attempt": self.state.tasks[tid].attempts,
                },
            )
            self.emit("TASK_FAILED", {**payload, "summary": payload["message"]}, task_id=tid, durable=True)
        except BaseException as exc:  # never leave the scheduler waiting
            outcome, payload = "error", exc
        self._done.put((tid, outcome, payload))

    def _run_task(self, tid: str) -> tuple[str, Any]:
        t = self.state.tasks[tid]
        packet = dict(self._packet(tid))
        manual = not packet.get("commands")
        if manual and not t.manual_done:
            if not self._manual_step(tid, packet):
                return "waiting", "manual"
        attempt = t.attempts + 1
        key = f"{self.run_id}:{tid}:{attempt}"
        wm = self.svc("worker-manager")
        info = wm.call(
            "spawn_worker",
            {
                "task_packet": packet,
                "workspace": str(self.workspace),
                "run_dir": str(self.run_dir),
                "attempt": attempt,
                "idempotency_key": key,
                "trusted_roots": self._trusted_roots,  # the trust gate tried at once by policy
            },
        )
        wid = info["worker_id"]
        if not info.get("trusted") and not self._resolve_trust(tid, packet, wid):
            return "waiting", "trust"
        with self._lock:  # stop on error: a sibling that failed for good while we set up holds us
            if self._halted():
                return "held", None
            self.emit("TASK_STARTED", {"attempt": attempt, "worker_id": wid}, task_id=tid, worker_id=wid)
        self.log.sync()  # TASK_STARTED is durable before the worker's process starts
        final = wm.call(
            "run_worker", {"worker_id": wid, "idempotency_key": key}, timeout=float(packet.get("timeout") or 600) + 60
        )
        result = final.get("result") or {}
        if final.get("state") == "finished" and result.get("ok", True):
            self.emit(
                "TASK_COMPLETED",
                {"attempt": attempt, "duration_ms": result.get("duration_ms"), "worker_id": wid},
                task_id=tid,
                worker_id=wid,
                durable=True,
            )
            return "completed", None
        failure = {
            "attempt": attempt,
            "reason": result.get("reason") or "failed",
            "exit_code": result.get("exit_code"),
            "signal": result.get("signal"),
            "timed_out": bool(result.get("timed_out")),
            "failed_step": result.get("failed_step"),
            "duration_ms": result.get("duration_ms"),
            "stderr_tail": (result.get("stderr_tail") or "")[-600:],
            "stdout_tail": (result.get("stdout_tail") or "")[-600:],
            "message": (result.get("message") or "")[-300:],
        }
        failure["summary"] = summarize(failure)
        self.emit("TASK_FAILED", failure, task_id=tid, worker_id=wid, durable=True)
        return "failed", failure

    def _manual_step(self, tid: str, packet: dict[str, Any]) -> bool:
        """A task with no commands: a person does it, says so, then its acceptance tests decide."""
        if self.ui.interactive:
            with self._prompt_lock:
                self.ui.say(f"Manual step {tid}: {packet.get('title')}\n  {packet.get('objective')}")
                for test in packet.get("acceptance_tests", []):
                    self.ui.say(f"  verified by: {test}")
                answer = self.ui.prompt_choice(f"Is {tid} done?", ["done", "skip", "wait"])
            if answer == "done":
                self.emit(
                    "TASK_DECISION",
                    {"decision": "done", "source": "tty", "approver": self.options.approver},
                    task_id=tid,
                    durable=True,
                )
                return True
            if answer == "skip":
                self.emit(
                    "TASK_SKIPPED",
                    {"reason": "skipped by a person at the manual step", "source": "tty"},
                    task_id=tid,
                    durable=True,
                )
                return False
        rule = self.policy.rule_for("manual", task_id=tid, risky=packet.get("risk") == "high")
        if rule is not None and rule.decision == "done":
            self.emit(
                "TASK_DECISION", {"decision": "done", "source": "policy", "rule": rule.name}, task_id=tid, durable=True
            )
            return True
        self.emit(
            "TASK_WAITING",
            {
                "kind": "manual",
                "title": packet.get("title"),
                "objective": packet.get("objective"),
                "how": f"harness decide {self.run_id} {tid} done",
            },
            task_id=tid,
            durable=True,
        )
        return False

    def _resolve_trust(self, tid: str, packet: dict[str, Any], wid: str) -> bool:
        wm = self.svc("worker-manager")
        risky = packet.get("risk") == "high"
        check = wm.call("check_trust", {"worker_id": wid, "trusted_roots": self._trusted_roots})
        if check.get("trusted"):
            return True
        rule = self.policy.rule_for("trust", task_id=tid, risky=risky)
        if rule is not None and rule.decision == "trust":
            wm.call(
                "mark_trusted",
                {"worker_id": wid, "approval_source": f"policy:{rule.name}", "approver": self.policy.name},
            )
            return True
        confirmed = self.state.tasks[tid].confirmed_by
        if confirmed:
            wm.call("mark_trusted", {"worker_id": wid, "approval_source": confirmed, "approver": self.options.approver})
            return True
        if self.ui.interactive:
            with self._prompt_lock:
                self.ui.say(f"Task {tid} needs trust: {check.get('reason')}")
                answer = self.ui.prompt_choice(f"Trust and run {tid}?", ["yes", "no"])
            if answer == "yes":
                self.emit(
                    "TASK_DECISION",
                    {"decision": "trust", "source": "tty", "approver": self.options.approver},
                    task_id=tid,
                    durable=True,
                )
                wm.call("mark_trusted", {"worker_id": wid, "approval_source": "tty", "approver": self.options.approver})
                return True
        self.emit(
            "TRUST_REQUIRED",
            {"reason": check.get("reason"), "risky": risky, "how": f"harness decide {self.run_id} {tid} trust"},
            task_id=tid,
            worker_id=wid,
            durable=True,
        )
        return False

    # -- RECOVER --------------------------------------------------------------------------------
    def _recover_interrupted(self) -> None:
        """Finish, from the log, what an earlier supervisor left half done (runs before any start).

        * A task it had started (TASK_STARTED, no outcome) is failed as interrupted; recovery
          re-runs it as a new attempt (recipe rerun_interrupted), never a completed one.
        * A failure it logged but never classified is classified now, so no task stays failed
          without a recipe or a question.
        * An abort decision that already ended a run is history (RUN_ABORTED cleared it in the
          fold), so a resume after an abort asks again instead of aborting at once.
        """

        for tid in list(self.state.order):
            t = self.state.tasks.get(tid)
            if t is None:
                continue
            if t.status is TaskStatus.running:
                failure = {
                    "attempt": t.attempts,
                    "reason": INTERRUPTED,
                    "interrupted": True,
                    "summary": "interrupted: the supervisor stopped while it ran",
                }
                self.emit("TASK_FAILED", failure, task_id=tid, worker_id=t.worker_id, durable=True)
                self._recover(tid, failure)
            elif t.status is TaskStatus.failed and t.decision is None and t.failure is not None:
                self._recover(tid, dict(t.failure))

    def _recover(self, tid: str, failure: dict[str, Any]) -> None:
        """FAILURE_DETECTED -> FAILURE_CLASSIFIED -> RECOVERY_APPLIED (retry) or an escalation.

        Retries are counted per task across attempts (the fold's ``retries``); the wait before
        automatic retry n is the recipe's backoff[n-1]. An interrupted task is re-run at once:
        there is nothing to wait out, but the re-run still counts, so a task that keeps taking its
        supervisor down ends up in front of a person.
        """

        t = self.state.tasks[tid]
        detected = {k: failure.get(k) for k in ("attempt", "reason", "exit_code", "signal", "timed_out", "summary")}
        self.emit("FAILURE_DETECTED", detected, task_id=tid)
        cls = self.recovery.classify(failure)
        self.emit("FAILURE_CLASSIFIED", {**cls.as_event(), "attempt": failure.get("attempt")}, task_id=tid)
        recipe = self.recovery.recipe(cls.failure_type)
        if t.retries < recipe.retries:
            interrupted = was_interrupted(failure, cls)
            delay = 0.0 if interrupted else recipe.delay(t.retries + 1, self.recovery.rng)
            name = RecipeName.rerun_interrupted if interrupted else RecipeName.retry_with_backoff
            self.emit(
                "RECOVERY_APPLIED",
                {
                    "recipe": name.value,
                    "failure_type": cls.failure_type.value,
                    "attempt": t.retries + 1,
                    "retries": recipe.retries,
                    "next_attempt": t.attempts + 1,
                    "outcome": "retry",
                    "delay": delay,
                },
                task_id=tid,
                durable=True,
            )
            return
        if recipe.permission_required:
            step = failure.get("failed_step") or {}
            self.emit(
                "PERMISSION_REQUIRED",
                {
                    "what": cls.evidence or failure.get("summary"),
                    "command": step.get("command"),
                    "failed_step": step or None,
                    "attempt": failure.get("attempt"),
                },
                task_id=tid,
                durable=True,
            )
        reason = escalation_reason(cls.failure_type, recipe, t.retries)
        self._escalate(
            tid, cls.failure_type, reason, [o.value for o in recipe.options], failure, needs_input=recipe.needs_input
        )

    def _escalate(
        self,
        tid: str,
        ftype: FailureType,
        reason: str,
        options: list[str],
        failure: dict[str, Any],
        *,
        needs_input: bool,
    ) -> None:
        """Ask retry / skip / abort: a policy rule first, then the terminal, else record the
        question; the run then waits (exit 3) for `harness decide` and `harness resume`.

        A policy's 'retry' is bounded by the recipe's ``policy_retries``: past it, a person is asked.
        """

        packet = self._packet(tid)
        how = decide_command(self.run_id, tid, options, needs_input=needs_input)
        rule = self.policy.rule_for(
            "escalation", task_id=tid, risky=packet.get("risk") == "high", failure_type=ftype.value
        )
        base: dict[str, Any] = {
            "failure_type": ftype.value,
            "reason": reason,
            "options": options,
            "needs_input": needs_input,
            "attempt": failure.get("attempt"),
            "summary": failure.get("summary"),
        }
        if rule is not None and rule.decision in options:
            if rule.decision != "retry" or self.recovery.policy_may_retry(ftype, self.state.tasks[tid].retries):
                self.emit(
                    "RECOVERY_ESCALATION",
                    {**base, "decision": rule.decision, "source": "policy", "rule": rule.name},
                    task_id=tid,
                    durable=True,
                )
                self.emit(
                    "TASK_DECISION",
                    {"decision": rule.decision, "source": "policy", "rule": rule.name},
                    task_id=tid,
                    durable=True,
                )
                return
            base["policy_exhausted"] = rule.name
        if self.ui.interactive:
            with self._prompt_lock:
                self.ui.say(f"Task {tid} failed ({reason}): {failure.get('summary')}")
                answer = self.ui.prompt_choice("What now?", options + ["wait"])
                note = None
                if answer == "retry" and needs_input:
                    note = self.ui._ask("The correction (what changed): ") or None
            if answer in options:
                self.emit(
                    "RECOVERY_ESCALATION", {**base, "decision": answer, "source": "tty"}, task_id=tid, durable=True
                )
                self.emit(
                    "TASK_DECISION",
                    {"decision": answer, "source": "tty", "note": note, "approver": self.options.approver},
                    task_id=tid,
                    durable=True,
                )
                return
        self.emit("RECOVERY_ESCALATION", {**base, "decision": None, "how": how}, task_id=tid, durable=True)
        self.ui.say(f"Task {tid} needs a decision ({reason}): {failure.get('summary')}\n  `{how}`")

    def _apply_decisions(self) -> bool:
        """Act on decisions recorded for waiting or failed tasks. True when the run must abort.

        Each decision is consumed by the event that acts on it (RUN_ABORTED, TASK_SKIPPED,
        RECOVERY_APPLIED, TASK_READY). What came with a skip (``keep_dependents``) is read back from
        the log, and the TASK_SKIPPED names the dependents it holds back or lets run. A decision the
        failure's recipe does not offer (retry of an unrecoverable failure) is refused, in the log,
        and the task keeps waiting.
        """

        for tid in list(self.state.order):
            t = self.state.tasks[tid]
            if not t.decision or t.status in (TaskStatus.completed, TaskStatus.running, TaskStatus.skipped):
                continue
            decision = t.decision
            escalated = t.status is TaskStatus.failed or t.waiting_for == "escalation"
            if escalated and t.failure_type and decision in ("retry", "skip", "abort"):
                offered = [o.value for o in self.recovery.recipe(t.failure_type).options]
                if decision not in offered and decision != "abort":  # a run can always be stopped
                    why = f"{t.failure_type} failures offer {' | '.join(offered)}, not {decision}"
                    self.emit(
                        "TASK_DECISION",
                        {"decision": None, "refused": decision, "source": "supervisor", "reason": why},
                        task_id=tid,
                        durable=True,
                    )
                    self.ui.say(f"Refused '{decision}' for {tid}: {why}.")
                    continue
            if decision == "abort":
                self.emit(
                    "RUN_ABORTED",
                    {"task_id": tid, "reason": f"abort decided for {tid}", "note": t.decision_note},
                    durable=True,
                )
                return True
            if decision == "skip":
                keep = t.decision_keep_dependents
                graph = {x: self.state.tasks[x].depends_on for x in self.state.order}
                waiting = [
                    d for d in transitive_dependents(graph, tid) if self.state.tasks[d].status not in TERMINAL_TASK
                ]
                what = (
                    ""
                    if not waiting
                    else f"; dependents {'still run' if keep else 'skipped too'}: {', '.join(waiting)}"
                )
                self.emit(
                    "TASK_SKIPPED",
                    {
                        "reason": f"skipped by decision{what}",
                        "source": t.decision_source,
                        "note": t.decision_note,
                        "keep_dependents": keep,
                        "dependents": waiting,
                    },
                    task_id=tid,
                    durable=True,
                )
            elif decision == "retry" and t.status in (TaskStatus.failed, TaskStatus.waiting):
                self.emit(
                    "RECOVERY_APPLIED",
                    {
                        "recipe": RecipeName.retry_after_decision.value,
                        "failure_type": t.failure_type,
                        "attempt": t.retries + 1,
                        "next_attempt": t.attempts + 1,
                        "outcome": "retry",
                        "delay": 0,
                        "note": t.decision_note,
                    },
                    task_id=tid,
                    durable=True,
                )
            elif decision in ("done", "trust") and t.status is TaskStatus.waiting:
                self.emit("TASK_READY", {"after": decision}, task_id=tid)
        return False

    # -- LOG: the end of a drive ----------------------------------------------------------------
    def _wait(self, reason: str, data: dict[str, Any]) -> int:
        self.emit("RUN_WAITING", {"reason": reason, **data}, durable=True)
        return EXIT_WAITING

    def _finish(self, aborted: bool = False) -> int:
        counts = self.state.counts()
        if aborted:
            self.emit("EXECUTION_COMPLETE", {"status": "aborted", **counts}, durable=True)
            self.ui.summary(self.state, str(self.log_path))
            return EXIT_FAILED
        tasks = self.state.tasks.values()
        if all(t.status in (TaskStatus.completed, TaskStatus.skipped) for t in tasks):
            self.emit("EXECUTION_COMPLETE", {"status": "completed", **counts}, durable=True)
            self.ui.summary(self.state, str(self.log_path))
            return EXIT_OK
        waiting = [t for t in tasks if t.status is TaskStatus.waiting or t.status is TaskStatus.failed]
        if waiting:
            asks = []
            for t in waiting:
                kind = t.waiting_for or "escalation"
                options = (
                    "|".join(str(o) for o in self.recovery.recipe(t.failure_type).options)
                    if t.failure_type
                    else "retry|skip|abort"
                )
                what = {"manual": "done", "trust": "trust"}.get(kind, options)
                asks.append({"task_id": t.id, "kind": kind, "how": f"harness decide {self.run_id} {t.id} {what}"})
            self.ui.summary(self.state, str(self.log_path))
            for a in asks:
                self.ui.say(f"Waiting on {a['task_id']} ({a['kind']}): `{a['how']}`")
            self.ui.say(f"Then continue with `harness resume {self.run_id}`.")
            return self._wait("decision", {"tasks": asks})
        stuck = [t.id for t in tasks if t.status not in TERMINAL_TASK]
        self.emit(
            "EXECUTION_COMPLETE",
            {"status": "failed", "reason": f"tasks could not run: {', '.join(stuck)}", **counts},
            durable=True,
        )
        self.ui.summary(self.state, str(self.log_path))
        return EXIT_FAILED
