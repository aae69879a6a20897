"""The driver: one run through PLAN -> GATE -> BOOTSTRAP -> EXECUTE -> RECOVER -> LOG.

The driver owns what has side effects: the run's lock, signals, the services, the task threads
and the terminal. What to do next is decided by :mod:`._decide` from the folded state alone; the
driver carries its actions out. Every decision is an event first: :meth:`Supervisor.emit` appends
to the log and folds the same event into ``self.state``; nothing else changes the state, so
``fold(log)`` is the run. Questions nobody can answer (no flag, rule, earlier decision or
terminal) make the run record that it waits and exit 3: gates fail closed.
"""

from __future__ import annotations

import functools
import getpass
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import eventlog
from ..agents.plan import apply_agents, bypass_problems
from ..commands import DEFAULT, HOOK_PREFIX, NOT_IN_APPROVED_PLAN, Check, CheckSource, Intercept, Intercepted, screen
from ..config import Config, ConfigError
from ..events import LOG_FORMAT, LogFormatError, PlannerCall, describe_call
from ..events import EventType as E
from ..hooks import HookRun, Hooks, payload
from ..planlog import compact_plan
from ..planner import call_timeout
from ..recovery import Recovery
from ..rpc import ClientClosed, InvalidPlan, RPCError, UpstreamFailed
from ..state import RunState, RunStatus, fold
from ..trust import real_path, trusted_root, worker_id_for_key
from ..vocab import CheckVerdict, Decision, ExitCode, HookPoint, HookVerdict, Mode, Source, TaskOutcome, WaitReason
from ..worktrees import GitError, MergeConflict, NotARepository
from . import _decide as decide
from ._agents import AgentWork
from ._mesh import ServiceMesh, kill_stale
from ._replay import ReplayIndex, RunPaths, from_wire
from ._service import ServiceFatal, SupervisedService
from ._ui import UI

logger = logging.getLogger(__name__)

#: An event to log: (type, data, task_id, worker_id).
EventSpec = tuple[E, Any, str | None, str | None]

#: Seconds a held worker waits for its release (the log's sync) before it fails unrun.
HOLD_SECONDS = 60.0
#: Seconds a held worker's events may wait for the answer of its spawn_and_run: a run that ends
#: sooner sends two messages instead of four, a longer one is seen as it goes.
DEFER_SECONDS = 0.1

#: What the gate says about the run's mode, before the plan.
MODE_LINES = {
    Mode.plan: "Mode: plan. Approving runs nothing: each task's commands, agent and tests are shown instead.",
    Mode.explore: "Mode: explore. Tasks run on a copy of the workspace (a git worktree of the run); "
    "your files stay as they are until `harness apply`.",
    Mode.execute: "Mode: execute. Tasks run in the workspace (agent tasks in worktrees of their own).",
}


class PlanRejected(Exception):
    """The plan (generated or from a file) has errors; ``problems`` lists all of them."""

    def __init__(self, problems: list[dict[str, Any]], message: str = "the plan is invalid") -> None:
        self.problems = problems
        super().__init__(message)

    @classmethod
    def from_planning(cls, exc: InvalidPlan | UpstreamFailed) -> PlanRejected:
        """The planning service's refusal (every problem of an invalid plan) or its planner's
        failure (a model or agent that failed), as the run's reason to stop."""
        data = exc.data if isinstance(exc.data, dict) else {}
        if isinstance(exc, InvalidPlan):
            problems = data.get("problems") or [{"severity": "error", "code": "invalid_plan", "message": exc.message}]
            return cls(problems, f"no valid plan: {exc.message}")
        problem = {"severity": "error", "code": f"planner_{data.get('kind') or 'failed'}", "message": exc.message}
        return cls([problem], f"the planner failed: {exc.message}")


class PlanChanged(Exception):
    """The plan a run would go on with is not the content recorded or approved for it: its plan file
    was edited since, or the log's plan is not the one its approval named. Nothing was run."""


class RunLocked(Exception):
    """Another supervisor is driving this run right now."""


def user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER", "unknown")


@dataclass
class RunOptions:
    objective: str | None = None
    plan: dict[str, Any] | None = None  # a plan file, already loaded
    plan_path: str | None = None  # that file's absolute path (resume refuses it once it holds other content)
    approve: bool = False
    parallel: int = 1
    approver: str = field(default_factory=user)
    agent: dict[str, Any] | None = None  # --agent: who does tasks that have no commands
    merge: bool = False  # --merge: a completed run's work goes into the user's branch
    planner: dict[str, Any] | None = None  # the planning context's planner fields (harness.planner)
    mode: Mode = Mode.execute  # --mode: plan (run nothing) | explore (run on a copy) | execute


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
        self.config = config
        self.ui = ui
        self.options = options or RunOptions()
        self.policy = config.policy
        self._trusted_roots = self.policy.resolved_roots(self.workspace)
        self._run_dir: tuple[str, Path] | None = None
        self._jobs = _Workers()  # the task threads, kept for the next task
        self.recovery = Recovery(config.recovery)
        self.state = RunState()
        self.replay = ReplayIndex()
        self.run_id = ""
        self.log: eventlog.EventLog | None = None
        self.mesh = ServiceMesh(config, str(self.workspace), prespawned if prespawned is not None else {})
        self._lock = threading.RLock()  # the state and the log's order: held to append and to decide
        self._prompt_lock = threading.Lock()  # one question on the terminal at a time
        self._done: queue.Queue[tuple[TaskOutcome, Any]] = queue.Queue()  # a task thread's hand-over
        self._launched: set[str] = set()  # tasks a thread of ours runs an attempt of (lock held)
        self._parallel = 1
        self._predicted: dict[str, bool] = {}  # scope_path -> trusted at spawn, as predicted (this run)
        self._lock_fd: int | None = None
        self._interrupted = False
        self._executing = False
        self._agents: AgentWork | None = None
        self.hooks = Hooks(config.hooks, cwd=str(self.workspace), resolve=config.resolve_command)

    @property
    def agents(self) -> AgentWork:
        if self._agents is None:
            self._agents = AgentWork(
                self.workspace, self.run_id, self.emit, lambda: self.state, explore=self.mode is Mode.explore
            )
        return self._agents

    @property
    def mode(self) -> Mode:
        """The run's mode, as recorded when it started (a resumed run keeps it)."""
        recorded = self.state.options.get("mode") if self.state.options else None
        return Mode(recorded) if recorded else self.options.mode

    @property
    def rules(self) -> decide.Rules:
        return decide.Rules(
            run_id=self.run_id,
            policy=self.policy,
            recovery=self.recovery,
            approve=self.options.approve,
            approver=self.options.approver,
            rng=self.recovery.rng,
        )

    # -- paths ----------------------------------------------------------------------------------
    @functools.cached_property
    def _hooked(self) -> bool:
        """Whether any hook is configured, at any point."""
        return any(self.hooks.configured(point) for point in HookPoint)

    @functools.cached_property
    def executor(self) -> dict[str, Any] | None:
        """The executor every worker of this session is spawned with (None: local processes)."""
        return self.config.ray.params() if self.config.executor == "ray" else None

    @property
    def run_dir(self) -> Path:
        known = self._run_dir
        if known is None or known[0] != self.run_id:
            known = self._run_dir = (self.run_id, eventlog.run_dir(self.workspace, self.run_id))
        return known[1]

    @property
    def log_path(self) -> Path:
        return self.run_dir / "events.jsonl"

    def svc(self, name: str) -> SupervisedService:
        return self.mesh[name]

    # -- the one way state changes ----------------------------------------------------------------
    def emit(
        self,
        etype: E,
        data: Any = None,
        *,
        task_id: str | None = None,
        worker_id: str | None = None,
        durable: bool = False,
    ) -> dict[str, Any]:
        """Append one event and fold it. Returns once it is durable when ``durable`` is set;
        the fsync happens after the lock is released, so other threads keep appending."""
        return self.emit_many([(etype, data, task_id, worker_id)], durable=durable)[0]

    def emit_many(self, specs: Sequence[EventSpec], *, durable: bool = False) -> list[dict[str, Any]]:
        """Append ``(type, data, task_id, worker_id)`` events with one write, in order, and fold them."""
        if not specs:
            return []
        with self._lock:
            assert self.log is not None, "the run's log is opened before anything happens"
            events = self.log.append_many(
                [(etype, dict(data or {}), task_id, worker_id) for etype, data, task_id, worker_id in specs],
                durable=False,
            )
            self._fold(self.log.take_foreign(look=False), show=False)  # the append caught up already
            self._fold(events, show=True)
        if durable:
            self.log.sync()
        for (etype, *_), event in zip(specs, events, strict=True):
            point = _ANNOUNCED.get(etype)
            if point is not None and self.hooks.configured(point):
                self._announce(point, event)
        return events

    def _fold(self, events: Iterable[dict[str, Any]], *, show: bool) -> None:
        for event in events:
            self.state.apply(event)
            self.replay.apply(event)
            if show:
                self.ui.on_event(event, self.state)

    def _absorb_foreign(self) -> None:
        """Fold events other processes appended (``harness decide``/``approve``/``amend``)."""
        with self._lock:
            if self.log is not None:
                self._fold(self.log.take_foreign(), show=True)

    def perform(self, actions: Iterable[decide.Action]) -> ExitCode | None:
        """Carry out what the decision layer said; the exit code of a Finish among them, if any."""
        for action in actions:
            if isinstance(action, decide.Record):
                self.emit(
                    action.type,
                    action.data,
                    task_id=action.task_id,
                    worker_id=action.worker_id,
                    durable=action.durable,
                )
            elif isinstance(action, decide.Say):
                self.ui.say(action.text)
            elif isinstance(action, decide.Summary):
                self.ui.summary(self.state, str(self.log_path))
            elif isinstance(action, decide.Ask):
                self.answer(action)
            elif isinstance(action, decide.Finish):
                return action.code
            else:
                raise TypeError(f"the driver cannot perform {action!r} here")
        return None

    def answer(self, ask: decide.Ask) -> decide.Answer | None:
        """The one answer chain: a flag, a policy rule or an earlier decision (decided purely),
        then the terminal, else the question is recorded and the run will wait."""
        with self._lock:
            found = decide.resolve(ask, self.state, self.rules)
        answer = found if isinstance(found, decide.Answer) else None
        if answer is None and self.ui.interactive:
            with self._prompt_lock:
                answer = self.ui.ask(ask, self.options.approver, list(self.state.tasks))
        if answer is not None:
            self.perform(decide.answer_events(ask, answer, self.state))
        else:
            assert isinstance(found, decide.Unanswered)
            self.perform(decide.wait_events(ask, found, self.state, self.rules))
        return answer

    # -- the run's lock and log -------------------------------------------------------------------
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
            self.emit_many(self._worker_specs([params], service))
            return
        elif method == "phase_started":
            self.emit(E.BOOTSTRAP_PHASE_STARTED, params)
            return
        elif method == "phase_completed":
            self.emit(E.BOOTSTRAP_PHASE_COMPLETED, params)
            return
        elif method == "tool_permission" and service == "worker-manager":
            # answered on a thread of its own: asking a person must not stop this reader
            threading.Thread(target=self._tool_permission, args=(params,), name="tool-permission", daemon=True).start()
            return
        elif method == "planner_call" and service == "planning":
            self.emit(E.PLANNER_CALL, planner_call(params))
            self.ui.note(describe_call(params))
            return
        self.emit(E.SERVICE_NOTIFICATION, {"service": service, "method": method, "params": params})

    def _log_now(self, specs: list[EventSpec]) -> None:
        """Log events kept back to go with a later one, now; the list is emptied."""
        self.emit_many(specs)
        specs.clear()

    def _worker_specs(self, events: Sequence[Any], service: str = "worker-manager") -> list[EventSpec]:
        """What to log for a service's worker events (the worker manager's notifications, or those
        it held back for an answer): a kind unknown to this version as a SERVICE_NOTIFICATION."""
        specs: list[EventSpec] = []
        for params in events:
            params = params if isinstance(params, dict) else {"value": params}
            logged = from_wire(params, self.state.revision, self.replay.paths)
            if logged is None:
                notice = {"service": service, "method": "worker_event", "params": params}
                specs.append((E.SERVICE_NOTIFICATION, notice, None, None))
            else:
                specs.append(logged)
        return specs

    def _replay_source(self, service: str) -> Callable[[], list[dict[str, Any]]]:
        def events() -> list[dict[str, Any]]:
            with self._lock:
                if service == "worker-manager":
                    return self.replay.worker_events()
                if service == "bootstrap":
                    return self.replay.phase_events()
                return []

        return events

    def _start_services(self) -> None:
        self.mesh.start(self.emit, self._on_notification, self._replay_source)

    def _stop_services(self) -> None:
        stopped = self.mesh.stop()
        if self.log is not None:
            for name in stopped:
                self.emit(E.SERVICE_STOPPED, {"service": name})

    # -- entry points ---------------------------------------------------------------------------
    def start(self) -> int:
        """A new run: record it, start the services, then plan (or load), gate and execute."""
        self._require_sandbox()  # before the run exists: a refused run leaves nothing behind
        self.run_id = eventlog.new_run_id()
        self.replay.paths = self._paths()
        return self._session(self._begin)

    def resume(self, run_id: str) -> int:
        """Continue a run from its log alone."""
        self.run_id = run_id
        self.replay.paths = self._paths()
        if not self.log_path.is_file():
            raise FileNotFoundError(f"no run {run_id} in {self.workspace / '.harness' / 'runs'}")
        return self._session(self._continue)

    def _paths(self) -> RunPaths:
        return RunPaths.of(self.run_id, self.workspace, self.run_dir)

    # -- the sandbox ----------------------------------------------------------------------------
    @functools.cached_property
    def sandbox(self) -> dict[str, Any]:
        """This session's OS sandbox (SandboxInfo), decided once from the policy and the machine."""
        from ..sandbox import choose

        return choose(self.policy.sandbox)

    def _require_sandbox(self) -> None:
        """``sandbox: required`` without a usable bubblewrap: refused (exit 2) before anything runs."""
        if self.policy.sandbox == "required" and self.sandbox["mode"] != "bwrap":
            raise ConfigError(
                f"policy {self.policy.name}",
                [
                    f"sandbox: required, but {self.sandbox['reason']}; install bubblewrap "
                    "(apt-get install bubblewrap, dnf install bubblewrap) or set sandbox: auto"
                ],
            )

    def _sandbox_params(self, packet: dict[str, Any], workdir: str | None) -> dict[str, Any]:
        """SpawnWorkerParams.sandbox of one attempt: its worktree (an agent's) and the run's folder
        writable, the run's log and the workspace not; the network as the task says, else on for
        an agent (its model endpoint), else as the policy says."""
        network = packet.get("network")
        if network is None:
            network = True if workdir else self.policy.network
        return {
            "mode": "bwrap",
            "network": bool(network),
            "writable": [*([workdir] if workdir else []), str(self.run_dir)],
            "readonly": [str(self.log_path), str(self.workspace)],
        }

    def _session(self, body: Callable[[], int]) -> int:
        """Hold the run's lock, drive it, and always stop the services; a fatal service pauses."""
        self._lock_run()
        try:
            return body()
        except ServiceFatal as exc:
            self.ui.note(f"error: {exc}")
            waiting = {"reason": WaitReason.service_fatal, "service": exc.service, "message": str(exc)}
            self.emit(E.RUN_WAITING, waiting, durable=True)
            return ExitCode.WAITING
        finally:
            self._shutdown()

    def _begin(self) -> int:
        self._open_log(create=True)
        options: dict[str, Any] = {
            "parallel": self.options.parallel,
            "approve": self.options.approve,
            "policy": self.policy.name,
        }
        if self.options.agent is not None:
            options["agent"] = self.options.agent
        if self.options.planner is not None:
            options["planner"] = self.options.planner  # names and endpoints only, never a key
        if self.options.mode is not Mode.execute:
            options["mode"] = self.options.mode
        data: dict[str, Any] = {
            "log_format": LOG_FORMAT,
            "objective": (self.options.plan or {}).get("objective") or self.options.objective or "",
            "workspace": str(self.workspace),
            "options": options,
            "supervisor_pid": os.getpid(),
        }
        if self.options.plan is not None:
            data["plan_file"] = compact_plan(self.options.plan)
        if self.options.plan is not None and self.options.plan_path is not None:
            from ..plandiff import plan_hash
            from ..planfile import PlanFileError, load_plan_file

            data["plan_path"] = self.options.plan_path
            data["plan_file_hash"] = plan_hash(self.options.plan)
            if self.options.objective:  # the command line's objective replaced the file's: hash the file's own
                try:
                    on_disk: dict[str, Any] | None = load_plan_file(self.options.plan_path).model_dump(mode="json")
                except PlanFileError:
                    on_disk = None
                if (
                    on_disk is not None
                    and {**on_disk, "objective": self.options.plan.get("objective")} == self.options.plan
                ):
                    data["plan_file_hash"] = plan_hash(on_disk)  # else edited meanwhile: resume will refuse it
        data["sandbox"] = self.sandbox
        if self.executor is not None:
            data["executor"] = self.executor
        if self.sandbox["mode"] == "off" and self.sandbox["policy"] == "auto":
            self.ui.note(f"note: no sandbox ({self.sandbox['reason']}): tasks run unconfined; see README, Sandbox")
        self.emit(E.RUN_STARTED, data, durable=True)
        self._start_services()
        return self._drive()

    def _continue(self) -> int:
        past = eventlog.read_events(self.log_path).events
        state = fold(past)
        if state.log_format != LOG_FORMAT:
            raise LogFormatError(
                f"run {self.run_id} was recorded in log format {state.log_format}; this version continues "
                f"only runs in format {LOG_FORMAT}. Its log can still be read (harness log, status, report); "
                "start a new run to go on"
            )
        if state.status is not RunStatus.completed:
            from ..plandiff import file_plan_hash, resume_refusal

            refusal = resume_refusal(state, file_plan_hash(state.plan_path) if state.plan_path else None)
            if refusal is not None:
                raise PlanChanged(refusal)  # before the log is opened or a service started
        self._open_log(create=False)  # a torn tail (left out of the read above) is cut here
        self.state = state
        for event in past:
            self.replay.apply(event)
        if self.state.plan is None and self.state.problems:
            raise PlanRejected(self.state.problems, f"run {self.run_id} ended with an invalid plan; start a new run")
        if self.state.status is RunStatus.completed:
            self.ui.say(f"Run {self.run_id} is already complete.")
            self.ui.summary(self.state, str(self.log_path))
            return ExitCode.OK
        for note in kill_stale(self.state):
            self.ui.note(note)
        self._require_sandbox()
        resumed: dict[str, Any] = {"supervisor_pid": os.getpid(), "sandbox": self.sandbox}
        if self.executor is not None:
            resumed["executor"] = self.executor
        self.emit(E.RUN_RESUMED, resumed, durable=True)
        for note in self.agents.reconcile():
            self.ui.note(note)
        self._start_services()
        return self._drive()

    def _shutdown(self) -> None:
        if self.state.integration is not None:
            self.agents.finish()
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
            if self.mode is Mode.plan:
                return self._preview()
            result = self._execute()
            if self.mode is Mode.explore and self.state.status in (RunStatus.completed, RunStatus.failed):
                self._explore_result()
            return result
        except KeyboardInterrupt:
            self.ui.note("interrupted: the run can be continued with `harness resume " + self.run_id + "`")
            self.emit(E.RUN_WAITING, {"reason": WaitReason.interrupted}, durable=True)
            return ExitCode.INTERRUPTED
        finally:
            restore()

    def _trap_signals(self) -> Callable[[], None]:
        """Ctrl-C or SIGTERM during EXECUTE: stop at the scheduler's next safe point (never in the
        middle of an append), record that the run waits, exit 130. A second signal, or one
        outside EXECUTE, interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, frame: Any) -> None:
            if self._interrupted or not self._executing:
                raise KeyboardInterrupt
            self._interrupted = True
            self._done.put((TaskOutcome.interrupted, None))

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore

    # -- PLAN -----------------------------------------------------------------------------------
    def _context(self) -> dict[str, Any]:
        return {"workspace": str(self.workspace), **(self.state.options.get("planner") or {})}

    def _planning_call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """decompose_plan or refine, waiting as long as the run's planner may take."""
        timeout = call_timeout(params.get("context") or {})
        result: dict[str, Any] = self.svc("planning").call(method, params, timeout=timeout)
        return result

    def _plan(self) -> None:
        """PLAN: decompose the objective (or validate the plan file); an invalid plan ends the run."""
        try:
            plan, report = self._initial_plan()
            plan = self._with_agents(plan)
        except PlanRejected as exc:
            self.emit(E.PLAN_INVALID, {"problems": exc.problems, "message": str(exc)}, durable=True)
            failed = {"status": "failed", "reason": str(exc), **self.state.counts()}
            self.emit(E.EXECUTION_COMPLETE, failed, durable=True)
            raise
        created: dict[str, Any] = {"revision": plan.get("revision", 1), "report": report}
        if plan == self.state.options_plan:
            created["from_plan_file"] = True  # RUN_STARTED holds it already: not recorded twice
        else:
            created["plan"] = compact_plan(plan)
        self.emit(E.PLAN_CREATED, created, durable=True)

    def _with_agents(self, plan: dict[str, Any]) -> dict[str, Any]:
        """Every task's agent resolved (definitions, the policy's tool rules); an agent in a
        bypass-everything mode that no policy rule names makes the plan invalid."""
        definitions = {name: d.model_dump() for name, d in self.config.agents.items()}
        default = self.options.agent or self.state.options.get("agent")
        resolved = apply_agents(plan, default, definitions, self.policy.tools)
        problems = bypass_problems(resolved, self.policy.tools)
        if problems:
            raise PlanRejected(problems, "an agent would run with its permission checks off")
        return resolved

    def _initial_plan(self) -> tuple[dict[str, Any], dict[str, Any]]:
        planning = self.svc("planning")
        started = self.state.options_plan
        if started is not None:
            plan = dict(started)
            params = {"plan": plan, "workspace": str(self.workspace), "strictness": "file"}
            report = planning.call("validate", params)
            if not report.get("valid"):
                raise PlanRejected(report.get("problems", []), "the plan file is invalid")
            return _flag_risks(plan, report), report
        try:
            result = self._planning_call(
                "decompose_plan", {"objective": self.state.objective, "context": self._context()}
            )
        except (InvalidPlan, UpstreamFailed) as exc:
            raise PlanRejected.from_planning(exc) from exc
        if (self.state.options.get("planner") or {}).get("backend", "heuristic") != "heuristic":
            for note in result.get("notes") or []:
                self.ui.note(f"planner: {note}")
        return result["plan"], result.get("report") or {}

    def _refine(self, rejection: Any) -> None:
        """The next revision after a rejection; a planner that cannot make one leaves the current
        revision at the gate again (PLAN_REFINE_FAILED says why), never a half-made plan."""
        params = {"plan": self.state.plan, "feedback": rejection.get("feedback", ""), "context": self._context()}
        try:
            result = self._planning_call("refine", params)
            plan = self._with_agents(result["plan"])
        except (InvalidPlan, UpstreamFailed, PlanRejected) as exc:
            rejected = exc if isinstance(exc, PlanRejected) else PlanRejected.from_planning(exc)
            failed = {
                "revision": self.state.revision,
                "feedback": rejection.get("feedback"),
                "message": str(rejected),
                "problems": rejected.problems,
            }
            self.ui.note(f"the plan could not be revised: {rejected}")
            self.emit(E.PLAN_REFINE_FAILED, failed, durable=True)
            return
        plan["revision"] = self.state.revision + 1
        revised = {
            "plan": compact_plan(plan),
            "revision": plan["revision"],
            "report": result.get("report"),
            "feedback": rejection.get("feedback"),
            "applied": result.get("applied", []),
        }
        self.emit(E.PLAN_CREATED, revised, durable=True)

    # -- GATE -----------------------------------------------------------------------------------
    def _gate(self) -> ExitCode | None:
        while True:
            with self._lock:
                actions = decide.gate_step(self.state, self.rules)
            if not actions:
                return None
            for action in actions:
                if isinstance(action, decide.Refine):
                    self._refine(action.rejection)
                elif isinstance(action, decide.Ask):
                    if self.answer(action) is None:
                        return ExitCode.WAITING
                else:
                    if isinstance(action, decide.Record) and action.type is E.GATE_APPROVAL_REQUESTED:
                        changes = action.data.get("changes")
                        self.ui.say(MODE_LINES[self.mode])
                        self.ui.show_plan(
                            self.state.plan or {},
                            self.state.report,
                            self.state.revision,
                            changes=changes,
                            previous=self.state.previous_plan,
                        )
                    self.perform([action])

    # -- agents' tool requests -------------------------------------------------------------------
    def _tool_permission(self, params: dict[str, Any]) -> None:
        """An agent asks to run a tool its mode and rules did not settle: a policy tool rule, else
        the person at the terminal, else no (nobody can be asked: fail closed). Both the question
        and the answer are events; then the worker manager passes the answer on."""
        tid, wid = str(params.get("task_id")), params.get("worker_id")
        asked: dict[str, Any] = {
            "request_id": str(params.get("request_id")),
            "attempt": int(params.get("attempt") or 0),
            "tool": str(params.get("tool")),
            "call": str(params.get("call") or params.get("tool")),
        }
        try:
            self.emit(E.TOOL_PERMISSION_REQUESTED, asked, task_id=tid, worker_id=wid)
            decided: dict[str, Any] = {k: asked[k] for k in ("request_id", "tool", "call")}
            rule = decide.tool_rule_for(self.policy.tools, tid, asked["tool"], asked["call"])
            in_scope = decide.edit_in_scope(asked["tool"], params.get("input") or {}, str(params.get("workdir") or ""))
            if rule is not None:
                decided.update(decision="allow" if rule.allow else "deny", source=Source.policy, rule=rule.name)
            elif in_scope:
                decided.update(
                    decision="allow", source=Source.supervisor, rule="scope", reason="an edit inside the task's scope"
                )
            elif self.ui.interactive:
                with self._prompt_lock:
                    yes = self.ui.prompt_choice(f"Let {tid}'s agent run {asked['call']}?", ["allow", "deny"]) == "allow"
                decided.update(decision="allow" if yes else "deny", source=Source.tty, approver=self.options.approver)
            else:
                from_cli = self._await_tool_decision(asked["request_id"], tid, asked["call"])
                if from_cli is not None:
                    decided = from_cli  # recorded by `harness decide` from another terminal
                else:
                    decided.update(
                        decision="deny",
                        source=Source.supervisor,
                        reason="no policy tool rule covers it and no one can be asked",
                    )
            if decided.get("source") != Source.cli:
                self.emit(E.TOOL_PERMISSION_DECIDED, decided, task_id=tid, worker_id=wid, durable=True)
            allow = decided["decision"] == "allow"
            message = (
                ""
                if allow
                else f"denied by the harness: {decided.get('rule') or decided.get('reason') or 'a person said no'}"
            )
        except Exception as exc:  # fail closed: the agent is told no
            logger.warning("tool request of %s could not be decided: %s", tid, exc)
            allow, message = False, "denied: the harness could not decide"
        try:
            self.svc("worker-manager").call(
                "answer_tool_permission",
                {"worker_id": wid, "request_id": asked["request_id"], "allow": allow, "message": message},
            )
        except RPCError as exc:
            logger.warning("the answer to %s's tool request was not delivered: %s", tid, exc)

    def _await_tool_decision(self, request_id: str, tid: str, call: str) -> dict[str, Any] | None:
        """With ``policy.tool_wait``: wait that long (bounded) for ``harness decide RUN TASK
        allow|deny`` from another terminal; its TOOL_PERMISSION_DECIDED, or None."""
        if self.policy.tool_wait <= 0:
            return None
        self.ui.note(
            f"{tid}'s agent asks to run {call}: `harness decide {self.run_id} {tid} allow|deny` "
            f"within {self.policy.tool_wait:g} s, else it is denied"
        )
        deadline = time.monotonic() + self.policy.tool_wait
        while time.monotonic() < deadline:
            self._absorb_foreign()
            with self._lock:
                found = self.state.tool_decisions.get(request_id)
            if found is not None:
                return dict(found)
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return None

    # -- modes ----------------------------------------------------------------------------------
    def _task_workspace(self, agent: bool) -> str:
        """Where a task's scope is taken from: the workspace, or in explore mode the run's copy
        (agent tasks have worktrees of their own, made from that copy, inside the workspace)."""
        if self.mode is Mode.explore and not agent:
            return self.agents.explore_tree()
        return str(self.workspace)

    def _preview(self) -> int:
        """Plan mode: record and print what each task would run, then end; nothing is run, no
        worktree or branch is made, nothing is written outside the run's folder."""
        from ._preview import preview

        tasks = preview(self.state, self.workspace, self.run_id, self.config)
        for task in tasks:  # how each would be confined (nothing is started to find out)
            packet = self.state.packets[task["id"]]
            if self.sandbox["mode"] != "bwrap":
                task["sandbox"] = f"none ({self.sandbox.get('reason') or self.sandbox['mode']})"
            else:
                params = self._sandbox_params(packet, task.get("worktree"))
                task["sandbox"] = "bwrap, network " + ("on" if params["network"] else "off")
        self.emit(E.TASKS_PREVIEWED, {"tasks": tasks}, durable=True)
        self.ui.show_preview(tasks)
        planned = {"status": "planned", "reason": "plan mode: nothing was run", **self.state.counts()}
        self.emit(E.EXECUTION_COMPLETE, planned, durable=True)
        self.ui.say("Plan mode: nothing was run. To run it, start the run again without --mode plan.")
        return ExitCode.OK

    def _explore_result(self) -> None:
        """Explore mode, at the end: the patch of what the run changed in its copy."""
        result = self.agents.explore_diff(self.run_dir)
        if result is None:
            return
        self.emit(E.EXPLORE_DIFF, result, durable=True)
        self.ui.show_explore(result, self.run_id)

    # -- BOOTSTRAP ------------------------------------------------------------------------------
    def _bootstrap(self) -> ExitCode | None:
        plan = self.state.plan or {}
        context: dict[str, Any] = {
            "workspace": str(self.workspace),
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "objective": plan.get("objective"),
            "requires": plan.get("requires") or {"env": [], "tools": []},
        }
        phases = self.svc("bootstrap").call("plan", {"context": context})["phases"]
        for phase in phases:
            name = phase["name"]
            result = self._run_phase(name, context)
            if not result.get("success"):
                failed = {"phase": name, "diagnostics": result.get("diagnostics", [])}
                self.emit(E.BOOTSTRAP_FAILED, failed, durable=True)
                reason = f"bootstrap phase {name} failed"
                self.emit(
                    E.EXECUTION_COMPLETE, {"status": "failed", "reason": reason, **self.state.counts()}, durable=True
                )
                self.ui.summary(self.state, str(self.log_path))
                return ExitCode.FAILED
        return None

    def _run_phase(self, name: str, context: dict[str, Any]) -> dict[str, Any]:
        """One phase. The worker-manager check sees the manager as it is now: if the manager died
        or was restarted while the phase looked at it, the phase runs again against the new one."""
        wm = self.svc("worker-manager")
        result: dict[str, Any] = {}
        for _ in range(3):
            wm.call("ping", timeout=10)  # a dead manager is restarted before it is inspected
            pid = wm.pid
            context = {**context, "worker_manager": {"pid": pid, "methods": wm.info.get("methods", [])}}
            params = {"phase": name, "context": context, "idempotency_key": f"{self.run_id}:{name}"}
            result = self.svc("bootstrap").call("execute_phase", params)
            if result.get("success"):
                return result
            wm.call("ping", timeout=10)  # one that died during the phase, not yet seen, is restarted now
            if wm.pid == pid:
                return result  # the same manager, alive: the failure is the phase's
        return result

    # -- EXECUTE --------------------------------------------------------------------------------
    def _execute(self) -> int:
        """The scheduler: ask the decision layer, carry out what it says, wait for a thread."""
        self._executing = True
        if any(p.get("agent") and not p.get("commands") for p in self.state.packets.values()):
            try:
                self.agents.trees.require_repository()
            except NotARepository as exc:
                failed = {"status": "failed", "reason": str(exc), **self.state.counts()}
                self.emit(E.EXECUTION_COMPLETE, failed, durable=True)
                raise
        self._parallel = max(1, self.options.parallel)
        try:
            return self._schedule()
        finally:
            self._jobs.stop()

    def _next_actions(self) -> list[decide.Action]:
        """What the decision layer says next, its launches claimed under the lock it decides
        under (no other thread launches them again)."""
        with self._lock:
            view = decide.View(frozenset(self._launched), time.time(), self._parallel)
            actions = decide.execute_step(self.state, view, self.rules)
            self._launched.update(a.task_id for a in actions if isinstance(a, decide.Launch))
        return actions

    def _schedule(self) -> int:
        while True:
            if self._interrupted:
                raise KeyboardInterrupt
            self.mesh.check()
            self._absorb_foreign()
            actions = self._next_actions()
            if not actions:
                self._wait_for_task(timeout=0.5)
                continue
            for action in actions:
                if isinstance(action, decide.Launch):
                    self._jobs.submit(self._task_thread, action.task_id, action.attempt, busy=len(self._launched))
                elif isinstance(action, decide.Pause):  # awake now and then for decisions made elsewhere
                    self._wait_for_task(timeout=min(0.5, max(0.0, action.until - time.time())))
                elif isinstance(action, decide.Drain):
                    while self._launched:
                        self._wait_for_task(timeout=1.0)  # each task is bounded by its own timeout
                    code = self.perform(decide.finish(self.state, self.rules, aborted=True))
                    return int(code if code is not None else ExitCode.FAILED)
                else:
                    code = self.perform([action])
                    if code is not None:
                        return int(code)

    def _wait_for_task(self, timeout: float) -> None:
        """Wait (bounded) for a task thread to hand over; an interrupt wakes it too."""
        try:
            outcome, payload = self._done.get(timeout=timeout)
        except queue.Empty:
            return
        if outcome is TaskOutcome.error:
            raise payload

    def _task_thread(self, tid: str, attempt: int) -> None:
        """Run an attempt, then the next ones this thread claims (see :meth:`_next_launch`)."""
        step: tuple[str, int] | None = (tid, attempt)
        while step is not None:
            tid, attempt = step
            outcome, payload = self._attempt(tid, attempt)
            step = self._next_launch(tid, outcome, payload)

    def _next_launch(self, tid: str, outcome: TaskOutcome, payload: Any) -> tuple[str, int] | None:
        """After an attempt: its task is no longer launched, and the decision layer is asked
        what next here. Launches are claimed and this thread runs the first (no hand-over to the
        scheduler and back); anything else (a record, a question, a pause, the end, an error, or
        nothing to do yet) wakes the scheduler."""
        actions: list[decide.Action] = []
        with self._lock:
            self._launched.discard(tid)
            if outcome in (TaskOutcome.completed, TaskOutcome.failed) and not self._interrupted:
                actions = self._next_actions()
        launches = [a for a in actions if isinstance(a, decide.Launch)]
        if not launches or len(launches) < len(actions):
            self._done.put((outcome, payload))
        for other in launches[1:]:
            self._jobs.submit(self._task_thread, other.task_id, other.attempt, busy=len(self._launched))
        return (launches[0].task_id, launches[0].attempt) if launches else None

    def _attempt(self, tid: str, attempt: int) -> tuple[TaskOutcome, Any]:
        """One attempt of a task, on a task thread: how it ended, and the error for the scheduler."""
        payload: Any = None
        try:
            packet = self.state.packets[tid]
            if self.mode is Mode.explore and (packet.get("commands") or not packet.get("agent")):
                # a shell task runs in the run's worktree: never while another one or a merge uses it
                with self.agents.tree_lock:
                    outcome = self._run_task(tid, attempt)
                    self.agents.keep_shell_work(tid, attempt, outcome.value)  # later tasks start from it
            else:
                outcome = self._run_task(tid, attempt)
        except ServiceFatal as exc:
            outcome, payload = TaskOutcome.error, exc
        except ClientClosed:
            outcome = TaskOutcome.interrupted  # we are shutting down (Ctrl-C): resume re-runs it
        except (RPCError, GitError) as exc:  # the machinery failed, not the task: recorded, then classified
            outcome = TaskOutcome.failed
            message = exc.message if isinstance(exc, RPCError) else str(exc)
            failure = decide.harness_failure(attempt, f"{type(exc).__name__}: {message}")
            self.emit(E.TASK_FAILED, failure, task_id=tid, durable=True)
            if self.state.tasks[tid].worktree:
                try:
                    self.agents.settle(tid, attempt, accepted=False, worker_dir=None)
                except GitError as cleanup:
                    logger.warning("could not remove the worktree of %s: %s", tid, cleanup)
        except BaseException as exc:  # never leave the scheduler waiting
            outcome, payload = TaskOutcome.error, exc
        return outcome, payload

    def _run_task(self, tid: str, attempt: int) -> TaskOutcome:
        """One attempt: (a worktree), spawn (idempotent), the trust gate, (the prompt), TASK_STARTED,
        run, the verdict of the acceptance tests, (commit and merge), TASK_COMPLETED or TASK_FAILED."""
        packet = self.state.packets[tid]
        screened = self._screen(tid, attempt, packet)  # the per-command checks and pre_task hooks
        if isinstance(screened, TaskOutcome):
            return screened
        packet, checked = screened  # what the worker gets: the checked commands
        agent = bool(packet.get("agent")) and not packet.get("commands")
        workdir = self.agents.prepare(tid, attempt) if agent else None
        key = f"{self.run_id}:{tid}:{attempt}"
        wm = self.svc("worker-manager")
        spawn: dict[str, Any] = {
            "task_packet": packet,
            "workspace": self._task_workspace(agent),
            "run_dir": str(self.run_dir),
            "attempt": attempt,
            "idempotency_key": key,
            "trusted_roots": self._trusted_roots,  # the trust gate tried at once by policy
        }
        if self.sandbox["mode"] == "bwrap":
            spawn["sandbox"] = self._sandbox_params(packet, workdir)
        if self.executor is not None:
            spawn["executor"] = self.executor
        if agent:
            spawn["workdir"] = workdir
            with self._lock:
                plan_cap = (self.state.plan or {}).get("budget")
                policy_cap = self.policy.budget.model_dump(exclude_none=True) if self.policy.budget else None
                budget = decide.attempt_budget(self.state, tid, plan_cap or policy_cap)
            if budget:
                spawn["budget"] = budget
        started: dict[str, Any] = {"attempt": attempt}  # the worker: the event's worker_id
        if checked:
            started["checked"] = checked
        timeout = float(packet.get("timeout") or 600) + 60
        worker_events: list[EventSpec] = []  # held back by the manager for its answer, not yet logged
        if not agent and self._trusted_at_spawn(wm, packet):
            # One round trip: the worker's id follows from its key and its trust from the roots
            # (the contract's rules), so TASK_STARTED can be recorded before the call that runs it.
            wid = worker_id_for_key(key)
            hold = "release_worker" in (wm.info.get("methods") or ())
            if not self._started(tid, wid, started, sync=not hold):
                return TaskOutcome.held
            if hold:
                # The manager gets the worker ready while TASK_STARTED is made durable here; its
                # first process starts only on the release that follows the sync.
                spawn["hold"] = HOLD_SECONDS
                spawn["defer_events"] = DEFER_SECONDS  # a short run's events come with its answer
                final = wm.call("spawn_and_run", spawn, timeout=timeout, sent=self._release(wid))
                # The events the manager held for its answer go with the verdict, in one write,
                # unless something is logged between them.
                worker_events = self._worker_specs(final.pop("events", None) or ())
                if self.hooks.configured(HookPoint.post_command):
                    self._log_now(worker_events)
            else:
                final = wm.call("spawn_and_run", spawn, timeout=timeout)
            info = final
            if final.get("state") == "trust_required":
                self._predicted.pop(str(packet.get("scope_path") or "."), None)  # it changed: ask again next time
                why = f"the worker manager left {wid} untrusted, though a trusted root holds its scope"
                failed = (E.TASK_FAILED, decide.harness_failure(attempt, why), tid, wid)
                self.emit_many([*worker_events, failed], durable=True)
                return TaskOutcome.failed
        else:
            info = wm.call("spawn_worker", spawn)
            wid = info["worker_id"]
            if not info.get("trusted") and not self._trust(tid, wid):
                return TaskOutcome.waiting
            if agent:
                assert workdir is not None
                worker_dir = f"{self.run_dir}/workers/{wid}"
                started.update(self.agents.prompt(tid, info.get("scope_dir") or workdir, worker_dir))
            if not self._started(tid, wid, started):
                return TaskOutcome.held
            final = wm.call("run_worker", {"worker_id": wid, "idempotency_key": key}, timeout=timeout)
        worker_dir = f"{self.run_dir}/workers/{wid}"
        report = (final.get("result") or {}).get("agent")
        if report:
            usage = decide.agent_usage(attempt, report, (packet.get("agent") or {}).get("model"))
            self.emit(E.AGENT_USAGE, usage, task_id=tid, worker_id=wid)
        try:
            verdict = decide.task_result(attempt, wid, final)
            verdict = self._post_commands(tid, attempt, wid, final, verdict, info.get("scope_dir"))
        except BaseException:
            self._log_now(worker_events)  # what the worker did is logged whatever follows
            raise
        data = dict(verdict.data)
        if agent and verdict.type is E.TASK_COMPLETED:
            try:
                data["commit"], data["merged"] = self.agents.land(tid, attempt, report)
            except MergeConflict as conflict:
                verdict = decide.Record(E.TASK_FAILED, decide.conflict_failure(attempt, wid, conflict))
                data = dict(verdict.data)
        # A shell task's TASK_COMPLETED is made durable by the next sync (group commit): the one
        # before any other worker's process starts (_started), before the run ends or waits. No
        # side effect follows it meanwhile, unless a hook runs (one may hear of it, or run before
        # the next sync) or an agent task's worktree is settled: then it is durable at once.
        durable = agent or verdict.type is not E.TASK_COMPLETED or self._hooked
        self.emit_many([*worker_events, (verdict.type, data, tid, wid)], durable=durable)
        if agent:
            self.agents.settle(tid, attempt, accepted=verdict.type is E.TASK_COMPLETED, worker_dir=worker_dir)
        self._post_task(tid, attempt, verdict.type, data, final, info.get("scope_dir"))
        return TaskOutcome.completed if verdict.type is E.TASK_COMPLETED else TaskOutcome.failed

    # -- per-command checks and hooks ----------------------------------------------------------------
    def _screen(self, tid: str, attempt: int, packet: dict[str, Any]) -> tuple[dict[str, Any], int] | TaskOutcome:
        """Before a task's worker is spawned: each of its commands and acceptance tests through
        the checks (harness.commands), in order, each decision a COMMAND_CHECKED event; the ask
        rules' confirmation through the one answer chain; then the pre_task hooks. Returns the
        packet to send (with what pre_command hooks put in place of a command), or how the
        attempt ended: denied (TASK_FAILED, a permission failure), or waiting for a confirmation.
        With the packet comes the number of checks that allowed by default and were not recorded."""
        with self._lock:
            approved = decide.approved_commands(self.state, tid)
        cwd = _scope_dir(self.workspace, packet)
        sent = {name: list(packet.get(name) or []) for name, _ in decide.CHECKED_LISTS}
        asked: list[tuple[str, int, Check]] = []
        # Checks that allowed a command by default, replacing nothing, are counted in TASK_STARTED
        # (``checked``); from the first check that decided anything on, each is recorded, in order.
        by_default: list[tuple[str, int, Check]] = []
        recording = False
        for name, kind in decide.CHECKED_LISTS:
            held = approved[name]
            for index in range(max(len(sent[name]), len(held))):
                if index >= len(sent[name]):  # the approved revision holds a command the packet lost
                    why = "the approved plan holds it here; the task's packet does not"
                    check = Check(held[index], CheckVerdict.deny, NOT_IN_APPROVED_PLAN, CheckSource.plan, why)
                else:
                    check = screen(
                        sent[name][index],
                        approved=held[index] if index < len(held) else None,
                        rules=self.policy.commands,
                        intercept=self._pre_command(tid, attempt, kind, index, cwd),
                    )
                if recording or not _by_default(check):
                    for k, i, c in by_default:
                        self._record_check(tid, attempt, k, i, c)
                    by_default, recording = [], True
                    self._record_check(tid, attempt, kind, index, check)
                else:
                    by_default.append((kind, index, check))
                if check.verdict is CheckVerdict.deny:
                    step = {"kind": kind, "index": index, "command": check.command}
                    return self._deny(tid, attempt, check.rule, _denial(kind, check), check.reason, step)
                if check.verdict is CheckVerdict.ask:
                    asked.append((kind, index, check))
                sent[name][index] = check.final
        if asked:
            with self._lock:
                ask = decide.command_question(
                    self.state, self.rules, tid, [(c.final, c.rule, c.reason) for _, _, c in asked]
                )
            answer = self.answer(ask)
            if answer is None or answer.decision is not Decision.trust:
                return TaskOutcome.waiting  # TRUST_REQUIRED is recorded: `harness decide RUN TASK trust`
            source = f"policy:{answer.rule}" if answer.source is Source.policy else answer.source.value
            for kind, index, check in asked:
                allowed = Check(check.command, CheckVerdict.allow, check.rule, CheckSource.policy, "", check.rewrites)
                self._record_check(tid, attempt, kind, index, allowed, source=source, approver=answer.approver)
        if self.hooks.configured(HookPoint.pre_task):
            agent = (packet.get("agent") or {}) if not sent["commands"] else {}
            blocked = self._task_hook(
                HookPoint.pre_task,
                f"Run {self.run_id}: task {tid} ({packet.get('title') or tid}) is about to start, attempt {attempt}",
                tid,
                attempt,
                {},
                title=packet.get("title"),
                objective=packet.get("objective"),
                commands=sent["commands"],
                acceptance_tests=sent["acceptance_tests"],
                agent=agent.get("name") or (" ".join(agent.get("command") or []) or None),
                cwd=cwd,
            )
            if blocked is not None:
                summary = f"task denied by hook {blocked.hook} (pre_task): {_hook_reason(blocked)}"
                return self._deny(tid, attempt, HOOK_PREFIX + blocked.hook, summary, blocked.message or "")
        changed = {name: sent[name] for name, _ in decide.CHECKED_LISTS if sent[name] != (packet.get(name) or [])}
        return ({**packet, **changed} if changed else packet), len(by_default)

    def _pre_command(self, tid: str, attempt: int, kind: str, index: int, cwd: str) -> Intercept | None:
        """The pre_command hooks of one command, as the checks call them; None when there are none."""
        if not self.hooks.configured(HookPoint.pre_command):
            return None

        def intercept(command: str) -> Intercepted:
            done = self._task_hook(
                HookPoint.pre_command,
                f"Run {self.run_id}: task {tid} is about to run `{command}`",
                tid,
                attempt,
                {"command": command},
                kind=kind,
                index=index,
                command=command,
                cwd=cwd,
            )
            if done is None:
                return Intercepted()
            if done.blocks:
                return Intercepted(rule=HOOK_PREFIX + done.hook, reason=_hook_reason(done))
            return Intercepted(replacement=done.replacement)

        return intercept

    def _post_commands(
        self, tid: str, attempt: int, wid: str, final: dict[str, Any], verdict: decide.Record, cwd: str | None
    ) -> decide.Record:
        """The post_command hooks of each command that ran, before the verdict is recorded: one
        that denies (or fails) turns a passing verdict into a permission failure naming it."""
        if not self.hooks.configured(HookPoint.post_command):
            return verdict
        result = final.get("result") or {}
        steps = list(result.get("steps") or [])
        tails = _step_tails(result, steps)
        seen: dict[str, int] = {}
        for i, step in enumerate(steps):
            kind = str(step.get("kind"))
            if kind not in ("command", "acceptance"):
                continue  # an agent's turn is not a command
            index = seen[kind] = seen.get(kind, -1) + 1
            command = str(step.get("command") or "")
            code = step.get("exit_code")
            done = self._task_hook(
                HookPoint.post_command,
                f"Run {self.run_id}: task {tid} ran `{command}`: exit {code}",
                tid,
                attempt,
                {"command": command},
                kind=kind,
                index=index,
                command=command,
                cwd=cwd,
                exit_code=code,
                duration_ms=step.get("duration_ms"),
                output_tail=tails[i],
                stderr_tail=(result.get("stderr_tail") or "") if i == len(steps) - 1 else None,
            )
            if done is not None and done.blocks:
                if verdict.type is not E.TASK_COMPLETED:
                    return verdict  # it failed anyway: the hook's word is in its HOOK_RAN
                summary = f"{'test' if kind == 'acceptance' else 'command'} `{_short(command)}` denied afterwards "
                summary += f"by hook {done.hook} (post_command): {_hook_reason(done)}"
                where = {"kind": kind, "index": index, "command": command}
                failure = decide.denied_failure(attempt, HOOK_PREFIX + done.hook, summary, done.message or "", where)
                failure["duration_ms"] = result.get("duration_ms")
                return decide.Record(E.TASK_FAILED, failure, worker_id=wid)
        return verdict

    def _post_task(
        self, tid: str, attempt: int, etype: E, data: dict[str, Any], final: dict[str, Any], cwd: str | None
    ) -> None:
        """The post_task hooks, after the verdict is recorded: they observe; a deny is recorded only."""
        if not self.hooks.configured(HookPoint.post_task):
            return
        result = final.get("result") or {}
        outcome = "completed" if etype is E.TASK_COMPLETED else "failed"
        summary = data.get("summary") if outcome == "failed" else None
        tail = ((result.get("stdout_tail") or "") + (result.get("stderr_tail") or ""))[-2000:]
        self._task_hook(
            HookPoint.post_task,
            f"Run {self.run_id}: task {tid} {outcome}" + (f": {summary}" if summary else ""),
            tid,
            attempt,
            {"outcome": outcome},
            outcome=outcome,
            summary=summary,
            exit_code=data.get("exit_code", result.get("exit_code")),
            duration_ms=data.get("duration_ms"),
            output_tail=tail,
            cwd=cwd,
        )

    def _announce(self, point: HookPoint, event: dict[str, Any]) -> None:
        """on_waiting (the run recorded that it waits for a person) and on_run_end, after the event."""
        d = dict(event.get("data") or {})
        if point is HookPoint.on_waiting and d.get("reason") == WaitReason.interrupted:
            return  # the person who stopped it knows
        if point is HookPoint.on_waiting:
            if d.get("tasks"):
                what = "; ".join(f"{t['task_id']} ({t['kind']}): `{t['how']}`" for t in d["tasks"])
            else:
                what = f"`{d['how']}`" if d.get("how") else str(d.get("message") or "")
            text = f"Run {self.run_id} waits for {d.get('reason')}: {what}".rstrip(": ")
        else:
            text = (
                f"Run {self.run_id} {d.get('status')}: {d.get('completed', 0)} completed, "
                f"{d.get('failed', 0)} failed, {d.get('skipped', 0)} skipped"
            ) + (f" ({d['reason']})" if d.get("reason") else "")
        data = payload(point, text, run_id=self.run_id, objective=self.state.objective, **d)
        self.hooks.run(point, data, self._record_hook(None, None))

    def _task_hook(
        self, point: HookPoint, text: str, tid: str, attempt: int, about: dict[str, Any], **fields: Any
    ) -> HookRun | None:
        """Run the hooks of ``point`` for one attempt of a task (payload: the run, the task, the
        attempt and ``fields``); each run is a HOOK_RAN event carrying ``about``."""
        data = payload(point, text, run_id=self.run_id, task_id=tid, attempt=attempt, **fields)
        return self.hooks.run(point, data, self._record_hook(tid, attempt, **about))

    def _record_hook(self, tid: str | None, attempt: int | None, **about: Any) -> Callable[[HookRun], None]:
        def record(run: HookRun) -> None:
            self.emit(E.HOOK_RAN, run.event(attempt=attempt, **about), task_id=tid)
            if run.blocks:
                self.ui.note(f"hook {run.hook} ({run.point}): {run.verdict}: {run.message or 'no reason given'}")
            elif run.message:
                self.ui.note(f"hook {run.hook} ({run.point}): {run.message}")

        return record

    def _record_check(
        self,
        tid: str,
        attempt: int,
        kind: str,
        index: int,
        check: Check,
        *,
        source: str | None = None,
        approver: str | None = None,
    ) -> None:
        data: dict[str, Any] = {
            "attempt": attempt,
            "kind": kind,
            "index": index,
            "command": check.command,
            "decision": check.verdict,
            "rule": check.rule,
            "source": source or check.source.value,
        }
        if check.reason:
            data["reason"] = check.reason
        if check.rewrites:
            data["replaced_by"] = check.final
        if approver:
            data["approver"] = approver
        self.emit(E.COMMAND_CHECKED, data, task_id=tid)  # made durable with TASK_STARTED or TASK_FAILED

    def _deny(
        self, tid: str, attempt: int, rule: str, summary: str, reason: str, step: dict[str, Any] | None = None
    ) -> TaskOutcome:
        """The attempt is refused before anything ran: a permission failure naming what refused it."""
        failure = decide.denied_failure(attempt, rule, summary, reason, step)
        self.emit(E.TASK_FAILED, failure, task_id=tid, durable=True)
        return TaskOutcome.failed

    def _started(self, tid: str, wid: str, data: dict[str, Any], *, sync: bool = True) -> bool:
        """TASK_STARTED, durable before the worker's process starts (here, or by the caller
        before it releases the worker when not ``sync``); False (nothing recorded) when the run
        halted meanwhile (a sibling that failed for good while we set up holds us)."""
        with self._lock:
            if self.state.halted():
                return False
            self.emit(E.TASK_STARTED, data, task_id=tid, worker_id=wid)
        if sync:
            assert self.log is not None
            self.log.sync()
        return True

    def _release(self, wid: str) -> Callable[[Callable[[str, Any], None]], None]:
        """What follows each sending of a held spawn_and_run: the log made durable (TASK_STARTED
        with it), then the worker released. A sync that fails raises: the worker stays held
        until the manager's bound, and never starts."""

        def release(notify: Callable[[str, Any], None]) -> None:
            assert self.log is not None
            self.log.sync()
            notify("release_worker", {"worker_id": wid})

        return release

    def _trusted_at_spawn(self, wm: SupervisedService, packet: dict[str, Any]) -> bool:
        """Whether the worker manager will trust this packet's worker at its spawn (a trusted root
        holds its real scope, and it is not high risk) and can run it in the same call."""
        if not self._trusted_roots or packet.get("risk") == "high":
            return False
        if "spawn_and_run" not in (wm.info.get("methods") or ()):
            return False  # a manager of an earlier contract: spawn, then run
        scope_path = str(packet.get("scope_path") or ".")
        known = self._predicted.get(scope_path)
        if known is not None:
            return known
        workspace = real_path(self._task_workspace(False))  # as the manager resolves them
        scope = real_path(os.path.join(workspace, scope_path))
        trusted = trusted_root(scope, self._trusted_roots) is not None
        if os.path.isdir(scope):  # kept for the run's next tasks once it exists (the manager still decides)
            self._predicted[scope_path] = trusted
        return trusted

    def _trust(self, tid: str, wid: str) -> bool:
        """The trust gate of one worker, through the one answer chain."""
        wm = self.svc("worker-manager")
        check = wm.call("check_trust", {"worker_id": wid, "trusted_roots": self._trusted_roots})
        if check.get("trusted"):
            return True
        with self._lock:
            ask = decide.trust_question(self.state, self.rules, tid, wid, str(check.get("reason") or ""))
        answer = self.answer(ask)
        if answer is None or answer.decision is not Decision.trust:
            return False
        source = f"policy:{answer.rule}" if answer.source is Source.policy else answer.source.value
        approver = self.policy.name if answer.source is Source.policy else self.options.approver
        wm.call("mark_trusted", {"worker_id": wid, "approval_source": source, "approver": approver})
        return True


#: The events that hooks are told about after they are recorded.
_ANNOUNCED = {E.RUN_WAITING: HookPoint.on_waiting, E.EXECUTION_COMPLETE: HookPoint.on_run_end}


class _Workers:
    """The task threads of a run: a thread that finished its task takes the next one, so a task
    costs a hand-over rather than a new thread. A thread is added whenever every thread is busy
    (never more than the tasks running at once); all are daemons, told to end with the run."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._threads = 0

    def submit(self, fn: Callable[..., Any], *args: Any, busy: int) -> None:
        """Run ``fn(*args)`` on a task thread; ``busy`` counts the tasks launched and not yet
        reported back, this one included (each holds a thread, or soon gives it back)."""
        self._queue.put((fn, args))
        if busy > self._threads:
            self._threads += 1
            threading.Thread(target=self._serve, name=f"task-{self._threads}", daemon=True).start()

    def _serve(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job[0](*job[1])
            except Exception:  # the job reports its own failures: this only keeps the thread serving
                logger.exception("a task thread's job raised")

    def stop(self) -> None:
        for _ in range(self._threads):
            self._queue.put(None)
        self._threads = 0


def _by_default(check: Check) -> bool:
    """A check that decided nothing: allowed by default, the command unchanged."""
    return check.verdict is CheckVerdict.allow and check.rule == DEFAULT and not check.rewrites


def _scope_dir(workspace: Path, packet: dict[str, Any]) -> str:
    """A task's scope directory in the workspace: the cwd hooks are told about before it runs."""
    return os.path.normpath(os.path.join(str(workspace), str(packet.get("scope_path") or ".")))


def _short(command: str, limit: int = 120) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."


def _denial(kind: str, check: Check) -> str:
    """TASK_FAILED's summary for a command a check refused: the command and the rule."""
    what = "test" if kind == "acceptance" else "command"
    if check.source is CheckSource.builtin:
        by = f"the built-in deny list ({check.rule})"
    elif check.source is CheckSource.policy:
        by = f"policy rule {check.rule}"
    elif check.rule.startswith(HOOK_PREFIX):
        by = f"hook {check.rule[len(HOOK_PREFIX) :]} (pre_command)"
    else:
        by = f"rule {check.rule}"
    instead = f" (in place of `{_short(check.command)}`)" if check.rewrites else ""
    return f"{what} `{_short(check.final)}`{instead} denied by {by}" + (f": {check.reason}" if check.reason else "")


def _hook_reason(run: HookRun) -> str:
    if run.verdict is HookVerdict.deny:
        return run.message or "denied"
    return f"the hook {'timed out' if run.verdict is HookVerdict.timeout else 'failed'}: {run.message or 'no detail'}"


def _step_tails(result: dict[str, Any], steps: list[dict[str, Any]], limit: int = 2000) -> list[str]:
    """The tail of each step's stdout, read from the worker's stdout file, where each step's output
    follows a ``$ COMMAND`` line written just before the step's first byte (a step that printed
    nothing has none); the last step's is the result's own tail. Empty for a step that printed
    nothing, and where the file is absent (the worker printed nothing), gone or too large to read
    here."""
    tails = ["" for _ in steps]
    if steps:
        tails[-1] = (result.get("stdout_tail") or "")[-limit:]
    path = result.get("stdout_path")
    try:
        if not path or len(steps) < 2 or os.path.getsize(path) > 8 << 20:
            return tails
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return tails
    heads: list[tuple[int, int, int]] = []  # (step, where its header starts, where its output starts)
    pos = 0
    for i, step in enumerate(steps):
        marker = f"$ {step.get('command')}\n"
        found = text.find(marker, pos)
        if found >= 0:  # else the step printed nothing: its header was never written
            pos = found + len(marker)
            heads.append((i, found, pos))
    for (i, _, start), after in zip(heads, [*heads[1:], None], strict=True):
        if i < len(steps) - 1:
            tails[i] = text[start : after[1] if after is not None else len(text)][-limit:]
    return tails


_CALL_FIELDS = frozenset(PlannerCall.__annotations__)


def planner_call(params: dict[str, Any]) -> dict[str, Any]:
    """A planning service's ``planner_call`` notification as a PLANNER_CALL payload: the known
    fields only (a service in another language may send more), the required ones always there."""
    data = {k: v for k, v in params.items() if k in _CALL_FIELDS}
    data.setdefault("provider", "unknown")
    data.setdefault("model", None)
    data.setdefault("purpose", "decompose")
    data.setdefault("call", 1)
    data.setdefault("attempt", 1)
    data.setdefault("outcome", "unknown")
    data.setdefault("duration_ms", 0.0)
    return data


def _flag_risks(plan: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """The plan with the tasks validation found risky marked high risk (they need their own trust)."""
    risky = set(report.get("risky") or [])
    if not risky:
        return plan
    reasons = {p.get("task_id"): p.get("message") for p in report.get("problems", []) if p.get("code") == "risky_task"}
    tasks = []
    for t in plan["tasks"]:
        if t["id"] in risky and t.get("risk") != "high":
            why = t.get("risk_reasons") or [reasons.get(t["id"]) or "flagged risky by validation"]
            t = {**t, "risk": "high", "risk_reasons": why}
        tasks.append(t)
    return {**plan, "tasks": tasks}


__all__ = ["PlanChanged", "PlanRejected", "RunLocked", "RunOptions", "Supervisor", "user"]
