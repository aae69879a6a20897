"""The `harness` command line.

Exit codes: 0 done, 1 the run failed or was aborted, 2 usage error or invalid plan (every problem
listed), 3 the run waits for a human decision (approve, decide, then resume). Errors become a
message on stderr and an exit code in one place (:func:`main`), never a traceback. Imports are
lazy so that ``harness --help`` stays cheap.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from ._logging import configure_logging
from .vocab import TASK_DECISIONS, ExitCode, Mode, Source

if TYPE_CHECKING:
    from .events import EventType

EXIT_OK, EXIT_FAILED, EXIT_USAGE = ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE


class UsageError(Exception):
    """A bad call: a message, exit code 2."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        self.details = details or []
        super().__init__(message)


# -- helpers --------------------------------------------------------------------------------------
def _workspace(args: argparse.Namespace) -> str:
    ws = os.path.abspath(args.workspace or os.getcwd())
    if not os.path.isdir(ws):
        raise UsageError(f"workspace {ws} is not a directory")
    return ws


def _interactive() -> bool:
    if os.environ.get("CI") or os.environ.get("HARNESS_NONINTERACTIVE"):
        return False
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _confirm(what: str, question: str) -> bool:
    """A yes on the terminal; without one, a usage error naming --yes (never a silent default)."""
    if not _interactive():
        raise UsageError(f"{what} needs confirmation: pass --yes (no terminal to ask on)")
    if input(f"{question} [y/N] ").strip().lower() in ("y", "yes"):
        return True
    print("Nothing changed.")
    return False


def _require_run(workspace: str, run_id: str):
    """The run's log path; a clear usage error naming the latest run when there is no such run."""
    from . import eventlog

    path = eventlog.run_dir(workspace, run_id) / "events.jsonl"
    if not path.is_file():
        runs = eventlog.list_runs(workspace)
        hint = f" (latest: {runs[-1]})" if runs else " (no runs in this workspace)"
        raise UsageError(f"no run {run_id!r} in {workspace}{hint}")
    return path


def _load_state(workspace: str, run_id: str):
    from . import eventlog
    from .state import fold

    path = _require_run(workspace, run_id)
    result = eventlog.read_events(path)
    result.events = _readable(result.events)
    return path, fold(result.events), result


def _readable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A log's events in the current format (older formats are upgraded in memory, never misread)."""
    from .events import LogFormatError, upgrade

    try:
        return upgrade(events)
    except LogFormatError as exc:
        raise UsageError(str(exc)) from exc


def _append(workspace: str, run_id: str, events: list[tuple[EventType, dict[str, Any], str | None]]) -> None:
    """Record events in a run's log (safe while a supervisor also appends: the log locks)."""
    from .decisions import record

    with _refusals():
        record(workspace, run_id, events)


def _user() -> str:
    from .supervisor._run import user

    return user()


def _config(args: argparse.Namespace, workspace: str):
    from .config import load_config

    config = load_config(workspace, getattr(args, "config", None), getattr(args, "policy", None))
    executor, address = getattr(args, "executor", None), getattr(args, "ray_address", None)
    if address:
        if executor == "local":
            raise UsageError("--ray-address names a Ray cluster: it goes with --executor ray, not local")
        executor = "ray"
        config.ray.address = address
    if executor:
        config.executor = executor
    if config.executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("the ray executor needs Ray in this environment: pip install 'harness[ray]'")
    return config


def _make_ui(args: argparse.Namespace):
    from .supervisor import UI, JsonUI

    interactive = _interactive()
    return JsonUI(interactive=interactive) if getattr(args, "json", False) else UI(interactive=interactive)


# -- commands -------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if not args.plan and (not args.objective or not args.objective.strip()):
        raise UsageError('give an objective (harness run "add dark mode") or a plan file (--plan FILE)')
    if args.plan and not os.path.isfile(args.plan):
        raise UsageError(f"no plan file {args.plan}")
    with _early_services(workspace, args) as early:
        from .supervisor import RunOptions, Supervisor

        plan = None
        if args.plan:
            from .planfile import load_plan_file

            plan = load_plan_file(args.plan).model_dump(mode="json")
            if args.objective:
                plan["objective"] = args.objective
        config = _config(args, workspace)
        agent = _agent_option(args.agent, config) if args.agent else None
        ui = _make_ui(args)
        planner = None
        mode = Mode(args.mode)
        if plan is None:
            planner, warnings = _planner_option(config, args.planner, agent)
            for line in warnings:
                print(line, file=sys.stderr)
        options = RunOptions(
            objective=args.objective,
            plan=plan,
            plan_path=os.path.abspath(args.plan) if args.plan else None,
            approve=args.approve,
            parallel=args.parallel,
            agent=agent,
            merge=args.merge,
            planner=planner,
            mode=mode,
        )
        code = Supervisor(workspace, config, ui, options, prespawned=early).start()
    if code == EXIT_OK and args.merge:
        from . import eventlog

        return _merge(workspace, eventlog.list_runs(workspace)[-1], yes=True)
    return code


def _planner_option(config: Any, backend: str | None, agent: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    from .planner import PlannerChoiceError, planner_context

    if agent is None and config.planner.agent and (backend or config.planner.backend) == "agent":
        agent = _agent_option(config.planner.agent, config)
    if agent is not None:
        from .agents.plan import resolve_agent

        agent = resolve_agent(dict(agent), {name: d.model_dump() for name, d in config.agents.items()})
    try:
        return planner_context(config, backend, agent)
    except PlannerChoiceError as exc:
        raise UsageError(str(exc)) from exc


def cmd_plan(args: argparse.Namespace) -> int:
    """Plan an objective and print the validated plan (YAML, or --json); nothing runs."""
    import json

    workspace = _workspace(args)
    if not args.objective or not args.objective.strip():
        raise UsageError('give an objective: harness plan "add dark mode"')
    config = _config(args, workspace)
    agent = _agent_option(args.agent, config) if args.agent else None
    planner, warnings = _planner_option(config, args.planner, agent)
    for line in warnings:
        print(line, file=sys.stderr)
    from .events import describe_call
    from .planner import call_timeout
    from .rpc import InvalidPlan, ServiceProcess, UpstreamFailed
    from .supervisor import PlanRejected

    spec = config.service_spec("planning")

    def on_note(method: str, params: Any) -> None:
        if method == "planner_call" and isinstance(params, dict):
            print(f"planner: {describe_call(params)}", file=sys.stderr)

    context = {"workspace": workspace, **planner}
    service = ServiceProcess(spec.command, env={**os.environ, **spec.env}, on_notification=on_note, cwd=workspace)
    try:
        params = {"objective": args.objective, "context": context}
        result = service.request("decompose_plan", params, timeout=call_timeout(context) or spec.request_timeout)
    except (InvalidPlan, UpstreamFailed) as exc:
        raise PlanRejected.from_planning(exc) from exc
    finally:
        service.stop()
    for note in result.get("notes") or []:
        print(f"planner: {note}", file=sys.stderr)
    plan = result["plan"]
    if args.json:
        print(json.dumps(plan, indent=2, ensure_ascii=False))
    else:
        from .planfile import dump_plan_yaml

        sys.stdout.write(dump_plan_yaml(plan))
    return EXIT_OK


def _agent_option(value: str, config: Any) -> dict[str, Any]:
    from .agents import known_names
    from .agents.plan import agent_option

    try:
        return agent_option(value, known_names() | set(config.agents))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _merge(workspace: str, run_id: str, *, yes: bool) -> int:
    """A completed run's integration branch merged into the user's branch, behind a confirmation."""
    from .events import EventType as E
    from .state import RunStatus
    from .worktrees import GitError, Worktrees

    _, state, _ = _load_state(workspace, run_id)
    if state.options.get("mode") == "explore":
        raise UsageError(f"run {run_id} ran in explore mode: bring its work in with `harness apply {run_id}`")
    if state.integration is None:
        raise UsageError(f"run {run_id} has no agent work to merge (no integration branch)")
    if state.status is not RunStatus.completed:
        raise UsageError(f"run {run_id} is {state.status.value}: only a completed run is merged")
    trees = Worktrees(Path(workspace), run_id)
    branch = trees.integration_branch
    tip = trees.tip()
    if tip is None:
        raise UsageError(f"the branch {branch} of run {run_id} is gone (cleaned?)")
    if not yes and not _confirm("merging a run", f"Merge {branch} ({tip[:12]}) into your current branch?"):
        return EXIT_OK
    try:
        into, commit = trees.merge_into_checkout(f"Merge run {run_id}: {state.objective}")
    except GitError as exc:
        raise UsageError(f"the merge did not happen: {exc}") from exc
    merged = {"branch": branch, "into": into, "commit": commit, "by": _user()}
    _append(workspace, run_id, [(E.RUN_MERGED, merged, None)])
    print(f"Merged {branch} into {into} ({commit[:12]}).")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    """An explore run's patch applied to the workspace's files, behind a confirmation."""
    import hashlib

    from .events import EventType as E
    from .explore import apply_patch
    from .state import RunStatus
    from .worktrees import GitError

    workspace = _workspace(args)
    _, state, result = _load_state(workspace, args.run_id)
    if state.options.get("mode") != "explore":
        raise UsageError(f"run {args.run_id} did not run in explore mode: nothing to apply (see `harness merge`)")
    diffs = [e["data"] for e in result.events if e.get("type") == E.EXPLORE_DIFF]
    if not diffs:
        raise UsageError(f"run {args.run_id} has no result yet ({state.status.value}): finish it with `harness resume`")
    if any(e.get("type") == E.RUN_APPLIED for e in result.events):
        raise UsageError(f"run {args.run_id} was already applied")
    found = diffs[-1]
    if not found.get("patch"):
        print(f"Run {args.run_id} changed no file: nothing to apply.")
        return EXIT_OK
    patch = Path(found["patch"])
    if not patch.is_file() or hashlib.sha256(patch.read_bytes()).hexdigest() != found.get("sha256"):
        raise UsageError(f"the patch {patch} is missing or not the one the run recorded: nothing applied")
    if state.status is not RunStatus.completed:
        print(f"note: run {args.run_id} is {state.status.value}; its patch holds the work of the tasks that ran")
    files = list(found.get("files") or [])
    question = f"Apply {len(files)} changed file(s) (+{found.get('insertions', 0)} -{found.get('deletions', 0)}) to {workspace}?"
    if not args.yes and not _confirm("applying a run", question):
        return EXIT_OK
    try:
        apply_patch(Path(workspace), patch, check_only=True)
    except GitError as exc:
        raise UsageError(f"the patch does not apply to the workspace as it is now, nothing changed: {exc}") from exc
    applied = {"patch": str(patch), "sha256": found["sha256"], "files": files, "approver": _user()}
    _append(workspace, args.run_id, [(E.RUN_APPLIED, applied, None)])
    try:
        apply_patch(Path(workspace), patch)
    except GitError as exc:
        raise UsageError(f"the patch did not apply: {exc}") from exc
    print(f"Applied {len(files)} file(s) from run {args.run_id}:")
    for name in files:
        print(f"  {name}")
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    return _merge(workspace, args.run_id, yes=args.yes)


def cmd_clean(args: argparse.Namespace) -> int:
    """A run's worktrees and branches removed (never while a supervisor drives it)."""
    import fcntl

    from . import eventlog
    from .events import EventType as E
    from .worktrees import Worktrees, is_repository

    workspace = _workspace(args)
    _require_run(workspace, args.run_id)
    lock = eventlog.run_dir(workspace, args.run_id) / "lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"run {args.run_id} is being driven by a harness process: stop it first") from None
        if not is_repository(workspace):
            print("Nothing to clean: the workspace is not a git repository.")
            return EXIT_OK
        removed = Worktrees(Path(workspace), args.run_id).clean()
        if removed:
            _append(workspace, args.run_id, [(E.RUN_CLEANED, {"removed": removed, "by": _user()}, None)])
        print("\n".join(f"removed {r}" for r in removed) or f"Run {args.run_id} has no worktrees or branches.")
        return EXIT_OK
    finally:
        os.close(fd)


def cmd_resume(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    _require_run(workspace, args.run_id)
    with _early_services(workspace, args) as early:
        from .supervisor import RunOptions, Supervisor

        config = _config(args, workspace)
        ui = _make_ui(args)
        options = RunOptions(approve=args.approve, parallel=args.parallel)
        return Supervisor(workspace, config, ui, options, prespawned=early).resume(args.run_id)


@contextlib.contextmanager
def _early_services(workspace: str, args: argparse.Namespace):
    """Start the default services before the heavy imports, so their start-up overlaps ours;
    whatever the supervisor does not adopt is stopped on the way out."""
    from ._cpus import keep_to, name_layout
    from ._spawn import discard, prespawn

    cpus = name_layout()  # for the services, before they start
    early = prespawn(workspace, getattr(args, "config", None))
    keep_to(cpus)  # before the supervisor starts a thread: each inherits it
    try:
        yield early
    finally:
        discard(early)


def cmd_approve(args: argparse.Namespace) -> int:
    from . import decisions

    workspace = _workspace(args)
    _require_run(workspace, args.run_id)
    if args.plan:
        _, state, _ = _load_state(workspace, args.run_id)
        if state.plan is None:
            raise UsageError(f"run {args.run_id} has no plan to approve")
        return _approve_plan_file(args, workspace)
    with _refusals():
        data = decisions.approve_plan(
            workspace,
            args.run_id,
            source=Source.cli,
            approver=_user(),
            skip=args.skip,
            keep_dependents=args.keep_dependents,
            order=args.order,
            reject=args.reject,
            clarify=args.clarify,
        )
    if "feedback" in data:
        print(
            f"Rejected revision {data['revision']} of run {args.run_id} with feedback; `harness resume {args.run_id}` revises the plan."
        )
    else:
        print(
            f"Approved revision {data['revision']} of run {args.run_id}. Continue with `harness resume {args.run_id}`."
        )
    return EXIT_OK


@contextlib.contextmanager
def _refusals():
    """A decision the log refuses (harness.decisions.Refused) is a usage error: exit 2, nothing recorded."""
    from .decisions import Refused

    try:
        yield
    except Refused as exc:
        raise UsageError(str(exc), exc.details) from None


def _approval_choices(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """--skip, --keep-dependents and --order into GATE_APPROVED's data."""
    if args.skip:
        data["skip"] = args.skip
        data["keep_dependents"] = args.keep_dependents
    if args.order:
        data["order"] = args.order


def _approve_plan_file(args: argparse.Namespace, workspace: str) -> int:
    """``harness approve RUN --plan FILE``: the file, validated as ``harness run --plan`` validates
    it, becomes the run's next revision (PLAN_CREATED) and is approved at once (GATE_APPROVED);
    only before any task of the run started, and never while a harness process drives the run."""
    import fcntl

    from . import eventlog

    if args.reject or args.clarify:
        raise UsageError("--plan approves a plan file: it does not go with --reject or --clarify")
    fd = os.open(eventlog.run_dir(workspace, args.run_id) / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"run {args.run_id} is being driven by a harness process: stop it first") from None
        return _replace_plan(args, workspace)  # under the run's lock: no task can start meanwhile
    finally:
        os.close(fd)


def _replace_plan(args: argparse.Namespace, workspace: str) -> int:
    from .agents.plan import apply_agents
    from .events import EventType as E
    from .plandiff import describe_changes, plan_diff, plan_hash
    from .planfile import load_plan_file
    from .services.planning import Strictness, validate_plan
    from .state import RunStatus, TaskStatus
    from .supervisor import PlanRejected
    from .supervisor._run import _flag_risks

    run_id = args.run_id
    _, state, _ = _load_state(workspace, run_id)
    if state.plan is None:
        raise UsageError(f"run {run_id} has no plan to replace")
    if state.status in (RunStatus.completed, RunStatus.aborted):
        raise UsageError(f"run {run_id} has ended ({state.status.value})")
    started = [
        t.id for t in state.task_list() if t.attempts or t.status not in (TaskStatus.pending, TaskStatus.skipped)
    ]
    if started:
        raise UsageError(
            f"run {run_id} has already started tasks ({', '.join(started)}): its plan cannot be replaced; "
            "start a new run with the edited file"
        )
    from .planlog import compact_plan

    loaded = load_plan_file(args.plan)  # PlanFileError: every problem of the file, exit 2
    report = validate_plan(loaded, workspace=workspace, strictness=Strictness.file).model_dump(mode="json")
    if not report.get("valid"):
        raise PlanRejected(report.get("problems", []), f"{args.plan} is invalid; run {run_id} is unchanged")
    file_plan = loaded.model_dump(mode="json")
    definitions = {name: d.model_dump() for name, d in _config(args, workspace).agents.items()}
    plan = apply_agents(_flag_risks(file_plan, report), state.options.get("agent"), definitions)
    revision = state.revision + 1
    plan["revision"] = revision
    ids = [t["id"] for t in plan["tasks"]]
    unknown = [t for t in args.skip + args.order if t not in ids]
    if unknown:
        raise UsageError(f"unknown task id(s) in {args.plan}: {', '.join(unknown)}", [f"tasks: {', '.join(ids)}"])
    created = {
        "plan": compact_plan(plan),
        "revision": revision,
        "report": report,
        "plan_path": os.path.abspath(args.plan),
        "plan_file_hash": plan_hash(file_plan),
    }
    approved: dict[str, Any] = {
        "gate": "plan",
        "revision": revision,
        "source": Source.cli,
        "approver": _user(),
        "plan_hash": plan_hash(plan),
    }
    _approval_choices(args, approved)
    _append(workspace, run_id, [(E.PLAN_CREATED, created, None), (E.GATE_APPROVED, approved, None)])
    print(describe_changes(plan_diff(state.plan, plan), state.revision, old=state.plan, new=plan))
    print(
        f"Approved revision {revision} of run {run_id} from {args.plan} ({len(ids)} tasks). "
        f"Continue with `harness resume {run_id}`."
    )
    return EXIT_OK


DECISIONS = [str(d) for d in TASK_DECISIONS] + ["allow", "deny"]  # allow|deny: a tool request of its agent


def cmd_decide(args: argparse.Namespace) -> int:
    from . import decisions

    workspace = _workspace(args)
    _require_run(workspace, args.run_id)
    with _refusals():
        if args.decision in ("allow", "deny"):
            data = decisions.decide_tool(
                workspace, args.run_id, args.task_id, args.decision, source=Source.cli, approver=_user(), note=args.note
            )
            print(f"Recorded '{args.decision}' for {data['call']} of {args.task_id}.")
            return EXIT_OK
        decisions.decide_task(
            workspace,
            args.run_id,
            args.task_id,
            args.decision,
            source=Source.cli,
            approver=_user(),
            note=args.note,
            keep_dependents=args.keep_dependents,
        )
    print(f"Recorded '{args.decision}' for {args.task_id}. Continue with `harness resume {args.run_id}`.")
    return EXIT_OK


def cmd_amend(args: argparse.Namespace) -> int:
    from .events import EventType as E

    workspace = _workspace(args)
    _, state, _ = _load_state(workspace, args.run_id)
    unknown = [t for t in args.skip if t not in state.tasks]
    if unknown:
        raise UsageError(f"unknown task id(s): {', '.join(unknown)}")
    done = [t for t in args.skip if state.tasks[t].status.value in ("completed", "running")]
    if done:
        raise UsageError(
            f"cannot skip task(s) already {', '.join(f'{t} ({state.tasks[t].status.value})' for t in done)}"
        )
    if not args.yes and not _confirm("amending a run", f"Skip {', '.join(args.skip)} in run {args.run_id}?"):
        return EXIT_OK
    _append(
        workspace,
        args.run_id,
        [
            (
                E.PLAN_AMENDED,
                {
                    "skip": args.skip,
                    "keep_dependents": args.keep_dependents,
                    "requested_by": _user(),
                    "confirmed": True,
                },
                None,
            )
        ],
    )
    print(f"Amended run {args.run_id}: skipping {', '.join(args.skip)}.")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from . import eventlog
    from .state import short_node

    workspace = _workspace(args)
    run_id = args.run_id
    if run_id is None:
        runs = eventlog.list_runs(workspace)
        if not runs:
            print(f"No runs in {workspace}.")
            return EXIT_OK
        run_id = runs[-1]
    path, state, result = _load_state(workspace, run_id)
    if args.json:
        import json

        print(json.dumps({**state.snapshot(), "usage": state.usage()}, default=str))
        return EXIT_OK
    print(f"Run {run_id}: {state.status.value}")
    print(f"Objective: {state.objective}")
    if state.plan:
        print(f"Plan revision {state.revision}" + (" (approved)" if state.is_approved() else " (not approved)"))
        if state.status.value == "awaiting_approval" and state.revision > 1 and state.previous_plan is not None:
            from .plandiff import describe_changes, plan_diff

            changes = plan_diff(state.previous_plan, state.plan)
            print(describe_changes(changes, state.revision - 1, old=state.previous_plan, new=state.plan))
        if state.status.value != "completed":
            from .plandiff import file_plan_hash, resume_refusal

            refusal = resume_refusal(state, file_plan_hash(state.plan_path) if state.plan_path else None)
            if refusal:
                print(f"Resume refuses it: {refusal}")
    counts = state.counts()
    print(
        f"Tasks: {counts['completed']}/{len(state.tasks)} completed, {counts['skipped']} skipped, {counts['failed']} failed, {counts['waiting']} waiting"
    )
    for t in state.task_list():
        extra = f" attempts={t.attempts}" if t.attempts > 1 else ""
        if t.node:
            extra += f" node={short_node(t.node)}"
        why = f" ({t.waiting_for})" if t.waiting_for else (f" ({t.skip_reason})" if t.skip_reason else "")
        ftype = f" [{t.failure_type}]" if t.failure_type and t.status.value != "completed" else ""
        if t.tokens or t.cost_usd:
            extra += f" tokens={t.tokens} cost=${t.cost_usd:.4f}"
        print(f"  {t.id:<20} {t.status.value:<10}{why}{ftype}{extra}  {t.title}")
    usage = state.usage()
    if usage["tokens"] or usage["cost_usd"]:
        print(f"Agents: {int(usage['tokens'])} tokens, ${usage['cost_usd']:.4f}, {int(usage['turns'])} turns")
    if state.services:
        print("Services:")
        for s in state.services.values():
            print(f"  {s.name:<15} {s.state.value:<9} pid={s.pid} restarts={s.restarts}")
    if state.waiting:
        print(f"Waiting for: {state.waiting.get('reason')}")
        for ask in state.waiting.get("tasks", []) or []:
            print(f"  {ask['how']}")
        if state.waiting.get("how"):
            print(f"  {state.waiting['how']}")
    if result.torn is not None:
        print(f"Note: the log ends in a torn line ({result.torn.size} bytes), ignored.")
    print(f"Log: {path}")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from . import eventlog
    from .state import fold

    workspace = _workspace(args)
    runs = eventlog.list_runs(workspace)
    if not runs:
        print(f"No runs in {workspace}.")
        return EXIT_OK
    for run_id in runs:
        state = fold(_readable(eventlog.read_events(eventlog.run_dir(workspace, run_id) / "events.jsonl").events))
        c = state.counts()
        print(f"{run_id}  {state.status.value:<18} {c['completed']}/{len(state.tasks)} done  {state.objective[:60]}")
    return EXIT_OK


def _log_line(event: dict[str, Any], titles: dict[str, str]) -> str:
    """`2026-01-15 14:23:45 TASK_COMPLETED t2 Build release (3.2 s)`."""
    from .eventlog import event_time
    from .events import describe

    parts = [
        event_time(event)[:19].replace("T", " "),
        event["type"],
        event.get("task_id") or "",
        describe(event, titles),
    ]
    return " ".join(p for p in parts if p)


def cmd_log(args: argparse.Namespace) -> int:
    import json

    from . import eventlog
    from .events import EventType as E

    workspace = _workspace(args)
    path, state, result = _load_state(workspace, args.run_id)
    if args.verify:
        report = eventlog.verify(path)
        if report.ok:
            print(
                f"OK: {report.count} events, hash chain intact"
                + ("" if result.torn is None else " (a torn last line is ignored)")
            )
            return EXIT_OK
        print(f"BROKEN: {len(report.problems)} problem(s) in {path}", file=sys.stderr)
        for p in report.problems:
            print(f"  {p}", file=sys.stderr)
        return EXIT_FAILED
    titles = {t.id: t.title for t in state.tasks.values()}
    types = {t.upper() for t in args.type} if args.type else None

    def show(event: dict[str, Any]) -> None:
        if types and event["type"] not in types:
            return
        if args.task and event.get("task_id") != args.task:
            return
        if args.json:
            print(json.dumps(event, ensure_ascii=False, separators=(",", ":")), flush=True)
        else:
            print(_log_line(event, titles), flush=True)

    if not args.follow:
        for event in result.events:
            show(event)
        if result.torn is not None:
            print(f"warning: the log ends in a torn line ({result.torn.size} bytes), ignored", file=sys.stderr)
        return EXIT_OK
    import threading

    stop = threading.Event()
    stops = (E.EXECUTION_COMPLETE, E.RUN_WAITING, E.RUN_ABORTED)
    # --until-end: the run's next stop. A run that has already ended ends the output at once.
    finished = bool(result.events) and result.events[-1]["type"] == E.EXECUTION_COMPLETE
    known = 0 if finished else (result.events[-1]["seq"] if result.events else 0)
    try:
        for event in eventlog.follow(path, stop=stop):
            if event["type"] in (E.RUN_STARTED, E.PLAN_CREATED):
                plan = event["data"].get("plan") or event["data"].get("plan_file") or {}
                titles.update({t["id"]: t.get("title", t["id"]) for t in plan.get("tasks", [])})
            show(event)
            if args.until_end and event["type"] in stops and event["seq"] > known:
                break
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    if args.port is not None and not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port (0-65535; 0 picks a free one)")
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"the dashboard needs the ui extra ({exc.name} is missing): pip install 'harness[ui]'"
        ) from None
    from .ui.server import ServeError, serve

    try:
        return serve(
            workspace,
            host=args.host,
            port=args.port,
            read_only=args.read_only,
            open_browser=args.open,
            approver=_user(),
        )
    except ServeError as exc:
        raise UsageError(str(exc)) from None


def cmd_validate(args: argparse.Namespace) -> int:
    import json

    import jsonschema

    from .resources import load_schema, schema_names

    try:
        schema = load_schema(args.schema)
    except KeyError:
        raise UsageError(f"unknown schema {args.schema!r}", [f"schemas: {', '.join(schema_names())}"]) from None
    try:
        text = open(args.file, encoding="utf-8").read()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from exc
    try:
        if args.file.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        print(
            f"{args.file}: not valid {'YAML' if args.file.endswith(('.yaml', '.yml')) else 'JSON'}: {exc}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        print(f"{args.file}: valid {args.schema}")
        return EXIT_OK
    for err in errors:
        print(f"{args.file}: {err.json_path}: {err.message}")
    print(f"{len(errors)} error(s)", file=sys.stderr)
    return EXIT_USAGE


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report (RUN_DIR/report.md, or --output FILE); without --output also print it."""
    from .report import write_report

    workspace = _workspace(args)
    _require_run(workspace, args.run_id)
    text = write_report(workspace, args.run_id, args.output)
    if args.output:
        print(f"Report written to {args.output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def cmd_conformance(args: argparse.Namespace, extra: list[str]) -> int:
    from .conformance import main as conformance_main

    return conformance_main(extra)


# -- the parser -----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="harness",
        description="Plan, gate, bootstrap, execute, recover and log: a planning-execution harness.",
        epilog="Exit codes: 0 done, 1 failed or aborted, 2 usage error or invalid plan, 3 waiting for a decision.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def ws(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workspace", "-w", metavar="DIR", help="the workspace (default: the current directory)")

    def planner_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--planner",
            choices=("heuristic", "llm", "agent"),
            help="who plans: heuristic (default; no network), llm (HARNESS_LLM_* or planner: in harness.yaml), "
            "agent (the --agent CLI, read-only)",
        )

    def executor_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--executor",
            choices=("local", "ray"),
            help="where tasks run: local processes (default), or Ray tasks on a cluster (executor: in harness.yaml)",
        )
        p.add_argument(
            "--ray-address",
            metavar="ADDRESS",
            help="the Ray cluster to join (implies --executor ray; default: a local Ray started for the run)",
        )

    p = sub.add_parser("run", help="plan an objective (or load a plan file), gate it, and execute it")
    p.add_argument("objective", nargs="?", help="what should be done")
    ws(p)
    p.add_argument("--plan", metavar="FILE", help="a plan file (YAML or JSON) instead of generating one")
    p.add_argument("--policy", metavar="FILE", help="a policy file: trusted roots and named gate rules")
    p.add_argument("--config", metavar="FILE", help="a config file (default: harness.yaml in the workspace)")
    p.add_argument("--approve", action="store_true", help="approve the plan explicitly (recorded as the approval)")
    p.add_argument("--parallel", type=int, default=1, metavar="N", help="run at most N tasks at once (default 1)")
    p.add_argument("--json", action="store_true", help="stream every event as NDJSON on stdout")
    p.add_argument(
        "--agent",
        metavar="AGENT",
        help="who does tasks without commands: claude, codex, gemini, opencode, aider, or 'PROGRAM ARGS...'",
    )
    p.add_argument("--merge", action="store_true", help="once the run completed, merge its work into your branch")
    executor_args(p)
    p.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=Mode.execute.value,
        help="plan: show what each task would run and run nothing; explore: run on a copy and show the diff "
        "(harness apply brings it in); execute (default): run in the workspace",
    )
    planner_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("apply", help="apply an explore run's changes to the workspace (asks first)")
    p.add_argument("run_id")
    ws(p)
    p.add_argument("--yes", action="store_true", help="confirm without asking")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("plan", help="plan an objective and print the validated plan; nothing runs")
    p.add_argument("objective", help="what should be done")
    ws(p)
    planner_arg(p)
    p.add_argument("--agent", metavar="AGENT", help="with --planner agent: the agent that plans (read-only)")
    p.add_argument("--config", metavar="FILE", help="a config file (default: harness.yaml in the workspace)")
    p.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("resume", help="continue a run from its event log")
    p.add_argument("run_id")
    ws(p)
    p.add_argument("--policy", metavar="FILE")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--approve", action="store_true", help="approve the pending plan revision")
    p.add_argument("--parallel", type=int, default=1, metavar="N")
    p.add_argument("--json", action="store_true")
    executor_args(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("approve", help="decide on a plan that waits at the gate")
    p.add_argument("run_id")
    ws(p)
    p.add_argument("--skip", action="append", default=[], metavar="TASK", help="approve without this task (repeatable)")
    p.add_argument("--keep-dependents", action="store_true", help="tasks depending on a skipped task still run")
    p.add_argument("--order", nargs="+", default=[], metavar="TASK", help="run ties in this order")
    p.add_argument("--reject", metavar="FEEDBACK", help="reject; the planner revises the plan with this feedback")
    p.add_argument("--clarify", metavar="QUESTION", help="ask the planner to revise the plan to answer a question")
    p.add_argument(
        "--plan",
        metavar="FILE",
        help="approve this plan file as the run's next revision (an edited plan file; before any task started)",
    )
    p.add_argument(
        "--config", metavar="FILE", help="with --plan: a config file (default: harness.yaml in the workspace)"
    )
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("decide", help="answer a question about one task (manual step, trust, failure)")
    p.add_argument("run_id")
    p.add_argument("task_id")
    p.add_argument("decision", choices=DECISIONS)
    ws(p)
    p.add_argument("--note", metavar="TEXT", help="why, or the correction that was made")
    p.add_argument("--keep-dependents", action="store_true", help="with skip: dependents still run")
    p.set_defaults(func=cmd_decide)

    p = sub.add_parser("amend", help="change a run while it runs or waits (skip tasks)")
    p.add_argument("run_id")
    ws(p)
    p.add_argument("--skip", action="append", default=[], required=True, metavar="TASK")
    p.add_argument("--keep-dependents", action="store_true")
    p.add_argument("--yes", action="store_true", help="confirm without asking")
    p.set_defaults(func=cmd_amend)

    p = sub.add_parser("merge", help="merge a completed run's work (branch harness/RUN) into your current branch")
    p.add_argument("run_id")
    ws(p)
    p.add_argument("--yes", action="store_true", help="confirm without asking")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("clean", help="remove a run's worktrees and branches")
    p.add_argument("run_id")
    ws(p)
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("status", help="a run's state, folded from its log (default: the latest run)")
    p.add_argument("run_id", nargs="?")
    ws(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("runs", help="list the runs of a workspace")
    ws(p)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("log", help="show a run's events")
    p.add_argument("run_id")
    ws(p)
    p.add_argument("--type", action="append", metavar="TYPE", help="only events of this type (repeatable)")
    p.add_argument("--task", metavar="ID", help="only events of this task")
    p.add_argument("--json", action="store_true", help="raw events, one JSON object per line")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing events as they are appended")
    p.add_argument("--until-end", action="store_true", help="with --follow: stop when the run stops")
    p.add_argument("--verify", action="store_true", help="check the hash chain")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("report", help="write a run's outcome report (markdown) from its log")
    p.add_argument("run_id")
    ws(p)
    p.add_argument("--output", "-o", metavar="FILE", help="write it here (default: RUN_DIR/report.md, and print it)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "conformance",
        help="check a program against a service contract: harness conformance SERVICE [--json] -- COMMAND...",
        add_help=False,
    )
    p.set_defaults(func=None, conformance=True)

    p = sub.add_parser("ui", help="serve the web dashboard (runs, the DAG, a timeline, live events, gates)")
    ws(p)
    p.add_argument("--port", type=int, metavar="N", help="the port (default 8642, or any free one if it is taken)")
    p.add_argument(
        "--host", default="127.0.0.1", metavar="HOST", help="the address (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--read-only", action="store_true", help="show runs; serve no way to decide anything")
    p.add_argument("--open", action="store_true", help="open the dashboard in a browser")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("validate", help="validate a JSON or YAML file against one of the schemas")
    p.add_argument("file")
    p.add_argument("--schema", required=True, metavar="NAME", help="e.g. Plan, TaskPacket, WorkerEvent")
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["conformance"]:  # everything after it belongs to the kit (including `--`)
        try:
            return cmd_conformance(argparse.Namespace(), argv[1:])
        except KeyboardInterrupt:
            return 130
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging()
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        for line in exc.details:
            print(f"  {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        return _report_error(exc)


def entry() -> NoReturn:
    """The ``harness`` command (and ``python -m harness``): :func:`main`, then an exit that leaves
    the heap to the OS. Tearing down the interpreter would free, object by object and module by
    module, memory the process gives back at once anyway: ~10 ms after a run, more than a no-op
    task costs. What an ordinary exit does that matters still happens: the functions registered
    with atexit (logging's flush, finalizers meant for exit) run and stdout and stderr are flushed.
    The run's own files are closed by then; its services are stopped and reaped."""
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            pass  # the reader left: nothing more can reach it
        except (OSError, ValueError) as exc:  # a full disk, a closed stream: as Python would, say so
            code = code or 120
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"harness: could not flush output: {exc}\n")
    os._exit(code)


def _report_error(exc: BaseException) -> int:
    """Known failures -> a message and their exit code; anything else -> exit 1 without traceback."""
    from .config import ConfigError
    from .events import LogFormatError
    from .supervisor import PlanChanged, PlanRejected, RunLocked
    from .worktrees import NotARepository

    if isinstance(exc, PlanRejected):
        print(f"harness: {exc}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for p in exc.problems:
            where = f" [{p.get('task_id')}]" if p.get("task_id") else ""
            path = f" at {p['path']}" if p.get("path") else ""
            print(f"  {p.get('severity', 'error')}{where}{path}: {p.get('message')}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, PlanChanged):
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, ConfigError):
        print(f"harness: invalid configuration in {exc.source}:", file=sys.stderr)
        for line in exc.problems:
            print(f"  {line}", file=sys.stderr)
        return EXIT_USAGE
    plan_file_error = _plan_file_error_class()
    if plan_file_error is not None and isinstance(exc, plan_file_error):
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, NotARepository):
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, LogFormatError):
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, RunLocked):
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(exc, FileNotFoundError):
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if os.environ.get("HARNESS_DEBUG"):
        raise exc
    print(
        f"harness: internal error: {type(exc).__name__}: {exc} (set HARNESS_DEBUG=1 for a traceback)", file=sys.stderr
    )
    return EXIT_FAILED


def _plan_file_error_class() -> type[BaseException] | None:
    try:
        from .planfile import PlanFileError
    except ImportError:
        return None
    return PlanFileError


if __name__ == "__main__":
    entry()
