"""Planners that ask a model: ``llm`` (an HTTP endpoint) and ``agent`` (a coding-agent CLI, read-only).

Both get the same brief (:func:`brief`): the job, the packet fields and what they mean, the size
guidance (3 to ``max_tasks`` tasks), the rule that every acceptance test must be able to fail, and
a map of the workspace (:mod:`.context_map`). Both answer the same JSON (:data:`PROPOSAL_SCHEMA`),
which :func:`to_plan` turns into a :class:`Plan` or into the list of what is wrong with it. They
only propose: :mod:`.backend` validates every proposal like any other plan and sends the problems
back for a repair round (:meth:`repair`), which is why both keep their conversation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from harness.models import Plan, Problem, Requirements, Scope, Severity, TaskPacket
from harness.rpc import UpstreamFailed

from .backend import Unusable
from .context_map import workspace_map
from .heuristic import tools_of
from .llm import FailureKind, ModelClient, ModelError, Observer, Secrets, extract_json, resolve
from .schemas import PlanningContext

__all__ = [
    "PROPOSAL_SCHEMA",
    "AgentBackend",
    "LLMBackend",
    "Unusable",
    "brief",
    "to_plan",
]

_TASK_FIELDS = {
    "id": {"type": "string", "description": "t1, t2, ... in execution order"},
    "title": {"type": "string", "description": "a short name, at most 80 characters"},
    "objective": {"type": "string", "description": "what the task must achieve, concretely"},
    "scope_path": {"type": "string", "description": "working directory relative to the workspace root"},
    "depends_on": {"type": "array", "items": {"type": "string"}},
    "commands": {"type": "array", "items": {"type": "string"}},
    "acceptance_tests": {"type": "array", "items": {"type": "string"}},
    "confirmation": {"type": ["string", "null"]},
    "timeout": {"type": ["number", "null"]},
}

#: What a model answers. Every field is required (null where optional) so that endpoints with a
#: strict structured-output mode accept the schema as it is.
PROPOSAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": _TASK_FIELDS,
                "required": list(_TASK_FIELDS),
                "additionalProperties": False,
            },
        },
        "notes": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["tasks", "notes"],
    "additionalProperties": False,
}

SYSTEM = """\
You plan software work for a harness that gates, executes and verifies it. Turn the objective into
a plan: a small DAG of tasks. Coding agents (or people) do the tasks; the harness runs the checks.

Each task has:
- id: t1, t2, ... in the order they can run.
- title: a short name. objective: what the task must achieve, concretely (files, behaviour).
- scope_path: the directory the task works in, relative to the workspace root ("." for all of it).
  Never absolute, never "..".
- depends_on: ids of the tasks that must finish first. No cycles.
- commands: shell commands the harness runs itself, for deterministic steps only (generate, build,
  format). Leave empty for work that needs judgement (writing code, tests, docs): an agent does it.
- acceptance_tests: shell commands run in scope_path after the task. Every one must exit 0 for the
  task to count as done: they are the verdict. Each must be able to FAIL when the work is not done:
  the project's tests, a grep for what must now exist, `test -f` on a file that must be created, a
  compile or type check. Never `true`, `exit 0`, `echo`, `ls`, `test -d .`, anything ending in
  `|| true`, and never `cd ..` or a path outside scope_path.
- confirmation: null, unless no automated check exists for the step: then acceptance_tests is empty,
  commands is empty, and confirmation says what a person must confirm.
- timeout: seconds, or null.

Plan {min_tasks} to {max_tasks} tasks unless the objective truly needs more. Prefer the workspace's
own test, build and lint commands (listed below). notes: short remarks for the person who approves
the plan (assumptions, risks, open questions).
"""


def brief(context: PlanningContext) -> str:
    """The system text: the job and its rules, then the map of the workspace."""
    rules = SYSTEM.format(min_tasks=3, max_tasks=context.max_tasks)
    return rules + "\n" + workspace_map(context.workspace)


def objective_turn(objective: str) -> str:
    return f"Objective: {objective}\n\nAnswer with the plan as one JSON object."


def repair_turn(problems: list[Problem]) -> str:
    lines = [f"- {p.path or p.task_id or 'plan'}: {p.message} ({p.code})" for p in problems]
    return (
        "The plan cannot be used as it is. Problems:\n"
        + "\n".join(lines)
        + "\n\nAnswer the whole corrected plan as one JSON object (all tasks, not only the changed ones)."
    )


def refine_turn(plan: Plan, feedback: str) -> str:
    current = {"objective": plan.objective, "revision": plan.revision, "tasks": [_task_view(t) for t in plan.tasks]}
    return (
        f"Objective: {plan.objective}\n\nThe current plan (revision {plan.revision}):\n{json.dumps(current, indent=1)}\n\n"
        f"The person reviewing it answered:\n{feedback.strip() or '(no text)'}\n\n"
        "Answer the whole revised plan as one JSON object. Keep the ids of tasks you keep; in notes, "
        "say what you changed and answer any question asked."
    )


def _task_view(task: TaskPacket) -> dict[str, Any]:
    data = task.model_dump(mode="json", include=set(_TASK_FIELDS))
    return {k: data.get(k) for k in _TASK_FIELDS}


def _problem(code: str, message: str, path: str | None = None, task_id: str | None = None) -> Problem:
    return Problem(severity=Severity.error, code=code, message=message, path=path, task_id=task_id)


def to_plan(text: str, objective: str) -> tuple[Plan, list[str]]:
    """A model's answer as a plan and its notes; Unusable listing every reason it is not one."""
    try:
        data = extract_json(text)
    except ValueError:
        excerpt = " ".join(text.split())[:200]
        raise Unusable([_problem("not_json", f"the answer is not a JSON object: {excerpt!r}")]) from None
    if isinstance(data, dict) and "plan" in data and isinstance(data["plan"], dict):
        data = data["plan"]
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise Unusable([_problem("no_tasks", "the answer has no 'tasks' list", "tasks")])
    notes = [str(n) for n in data.get("notes") or [] if str(n).strip()] if isinstance(data.get("notes"), list) else []
    problems: list[Problem] = []
    tasks: list[TaskPacket] = []
    for i, raw in enumerate(data["tasks"]):
        if not isinstance(raw, dict):
            problems.append(_problem("not_an_object", f"tasks[{i}] is not an object", f"tasks[{i}]"))
            continue
        fields = {k: v for k, v in raw.items() if k in _TASK_FIELDS and v is not None}
        ignored = sorted(set(raw) - set(_TASK_FIELDS))
        if ignored:
            notes.append(f"tasks[{i}]: ignored fields {', '.join(ignored)}")
        path = str(fields.get("scope_path") or ".")
        fields["scope"] = Scope.workspace if path in (".", "./", "") else Scope.module
        try:
            tasks.append(TaskPacket.model_validate(fields))
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(part) for part in err["loc"])
                problems.append(
                    _problem(
                        "invalid_field",
                        f"tasks[{i}]{'.' + where if where else ''}: {err['msg']}",
                        f"tasks[{i}]" + (f".{where}" if where else ""),
                        str(raw.get("id")) if raw.get("id") else None,
                    )
                )
    if problems:
        raise Unusable(problems)
    commands = [c for t in tasks for c in (*t.commands, *t.acceptance_tests)]
    plan = Plan(
        objective=objective,
        tasks=tasks,
        revision=1,
        source="generated",
        requires=Requirements(tools=tools_of(commands)),
    )
    return plan, notes


def upstream(exc: ModelError, **where: Any) -> UpstreamFailed:
    """A failed model call as the wire error (the message was scrubbed of the key already)."""
    data = {"kind": exc.kind.value, **where}
    if exc.status is not None:
        data["status"] = exc.status
    return UpstreamFailed(str(exc), data)


# -- llm ----------------------------------------------------------------------------------------------


class LLMBackend:
    """Plans with a model endpoint (see :mod:`.llm` for providers, retries and fallbacks)."""

    name = "llm"

    def __init__(self, context: PlanningContext, observe: Observer | None = None) -> None:
        raw = context.llm.model_dump(exclude_none=True) if context.llm is not None else None
        try:
            self.settings = resolve(raw)
        except ModelError as exc:
            raise upstream(
                exc, provider=(raw or {}).get("provider") or os.environ.get("HARNESS_LLM_PROVIDER") or "openai"
            ) from None
        self.observe = observe
        self.client: ModelClient | None = None
        self.objective = ""

    def _where(self) -> dict[str, Any]:
        return {"provider": self.settings.provider.value, "model": self.settings.model, "host": self.settings.host}

    def _ask(self, text: str, purpose: str) -> tuple[Plan, list[str]]:
        assert self.client is not None
        try:
            reply = self.client.ask(text, purpose=purpose)
        except ModelError as exc:
            raise upstream(exc, **self._where()) from None
        plan, notes = to_plan(reply.text, self.objective)
        how = f"planned by {self.settings.provider.value} model {self.settings.model} ({reply.mode.value} output)"
        return plan, [how, *notes]

    def _start(self, context: PlanningContext) -> None:
        self.client = ModelClient(self.settings, brief(context), PROPOSAL_SCHEMA, observe=self.observe)

    def decompose(self, objective: str, context: PlanningContext) -> tuple[Plan, list[str]]:
        self.objective = objective
        self._start(context)
        return self._ask(objective_turn(objective), "decompose")

    def repair(self, problems: list[Problem]) -> tuple[Plan, list[str]]:
        return self._ask(repair_turn(problems), "repair")

    def refine(self, plan: Plan, feedback: str, context: PlanningContext) -> tuple[Plan, list[str]]:
        self.objective = plan.objective
        self._start(context)
        revised, notes = self._ask(refine_turn(plan, feedback), "refine")
        return revised, notes[1:] or ["revised by the model"]


# -- agent --------------------------------------------------------------------------------------------

#: How each named CLI plans without changing anything: its read-only permission mode or flag.
READ_ONLY: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "claude": ("plan", ()),
    "codex": ("read-only", ()),
    "gemini": ("plan", ()),
    "opencode": (None, ("--agent", "plan")),
    "aider": (None, ("--dry-run", "--no-git", "--no-detect-urls")),
}
DEFAULT_AGENT_TIMEOUT = 600.0
TAIL = 2000


class AgentBackend:
    """Plans with the coding agent named in ``context.agent``, read-only, on its own login.

    Claude Code answers through ``--output-format json --json-schema`` (the plan is the result's
    ``structured_output``), Codex through ``--output-schema`` (its last message); the others are
    asked for the JSON in their final message. A repair round runs the agent again with the
    previous answer and its problems.
    """

    name = "agent"

    def __init__(self, context: PlanningContext, observe: Observer | None = None) -> None:
        from harness.agents import adapter_for

        spec = context.agent
        if spec is None or not (spec.name or spec.command):
            raise UpstreamFailed(
                "the agent planner needs an agent: --agent NAME (claude, codex, gemini, opencode, aider) or a command",
                {"kind": FailureKind.config.value, "provider": "agent"},
            )
        try:
            self.adapter = adapter_for(spec.name, spec.command)
        except (KeyError, ValueError) as exc:
            raise UpstreamFailed(str(exc), {"kind": FailureKind.config.value, "provider": "agent"}) from None
        self.spec = spec
        self.observe = observe or (lambda _d: None)
        self.timeout = context.timeout or DEFAULT_AGENT_TIMEOUT
        self.workspace = context.workspace or os.getcwd()
        self.context = context
        self.objective = ""
        self.turns: list[str] = []
        self.answers: list[str] = []
        self.calls = 0
        self.scrub = Secrets()

    @property
    def agent_name(self) -> str:
        return self.spec.name or self.adapter.name

    def decompose(self, objective: str, context: PlanningContext) -> tuple[Plan, list[str]]:
        self.objective = objective
        self.turns, self.answers = [objective_turn(objective)], []
        return self._run("decompose")

    def repair(self, problems: list[Problem]) -> tuple[Plan, list[str]]:
        self.turns.append(repair_turn(problems))
        return self._run("repair")

    def refine(self, plan: Plan, feedback: str, context: PlanningContext) -> tuple[Plan, list[str]]:
        self.objective = plan.objective
        self.turns, self.answers = [refine_turn(plan, feedback)], []
        revised, notes = self._run("refine")
        return revised, notes[1:] or ["revised by the agent"]

    def _prompt(self) -> str:
        parts = [
            brief(self.context),
            "",
            "You are planning only: read what you need, change nothing.",
            "Your final message must be the plan as one JSON object following this JSON Schema:",
            json.dumps(PROPOSAL_SCHEMA),
            "",
        ]
        for i, turn in enumerate(self.turns):
            if i:
                parts += [f"Your previous answer was:\n{self.answers[i - 1]}", ""]
            parts.append(turn)
        return "\n".join(parts)

    def _argv(self, call: Any, schema_file: str, out_file: str) -> list[str]:
        name = self.adapter.name
        if name == "claude":
            argv = self.adapter.base(call) + ["-p", call.prompt, "--output-format", "json"]
            argv += ["--json-schema", json.dumps(PROPOSAL_SCHEMA), "--permission-mode", "plan"]
            if call.model:
                argv += ["--model", call.model]
            return argv + list(call.extra_args)
        if name == "codex":
            extra = ("--output-schema", schema_file, "-o", out_file, *call.extra_args)
            return self.adapter.argv(replace(call, extra_args=extra))
        return self.adapter.argv(call)

    def _run(self, purpose: str) -> tuple[Plan, list[str]]:
        from harness.agents import AgentCall

        self.calls += 1
        prompt = self._prompt()
        permission, extra = READ_ONLY.get(self.adapter.name, (None, ()))
        with tempfile.TemporaryDirectory(prefix="harness-plan-") as tmp:
            prompt_file = os.path.join(tmp, "prompt.md")
            schema_file = os.path.join(tmp, "plan.schema.json")
            out_file = os.path.join(tmp, "answer.txt")
            with open(prompt_file, "w") as fh:
                fh.write(prompt)
            with open(schema_file, "w") as fh:
                json.dump(PROPOSAL_SCHEMA, fh)
            call = AgentCall(
                prompt=prompt,
                prompt_file=prompt_file,
                workdir=self.workspace,
                model=self.spec.model,
                permission=self.spec.permission or permission,
                extra_args=tuple(extra) + tuple(self.spec.extra_args),
                command=tuple(self.spec.command) if self.spec.command and self.spec.name else None,
            )
            argv = self._argv(call, schema_file, out_file)
            env = dict(os.environ)  # the agent plans on its own login: the service's whole environment
            env["COLUMNS"] = "100000"  # CLIs that print through a console library must not wrap the JSON
            started = time.monotonic()
            record: dict[str, Any] = {
                "provider": "agent",
                "agent": self.agent_name,
                "model": self.spec.model,
                "purpose": purpose,
                "call": self.calls,
                "attempt": 1,
            }
            stdout, code, timed_out = self._spawn(argv, env, prompt if self.adapter.wants_stdin() else None)
            record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
            parser = self.adapter.parser()
            for line in stdout.splitlines():
                parser.feed(line + "\n")
            report = parser.report(code)
            record.update(
                tokens_in=report.tokens_in,
                tokens_out=report.tokens_out,
                exit_code=code,
                model=report.model or self.spec.model,
            )
            if report.cost_usd is not None:
                record["cost_usd"] = report.cost_usd
            answer = self._answer(stdout, "" if parser.TEXT_TAIL else report.final_message, out_file)
        where = {"provider": "agent", "agent": self.agent_name}
        if timed_out:
            record["outcome"] = "timeout"
            self.observe(record)
            raise UpstreamFailed(
                f"the {self.agent_name} agent did not finish planning within {self.timeout:g} s",
                {"kind": FailureKind.timeout.value, **where},
            )
        if report.failure is not None and not answer.strip():
            record.update(outcome="failed", error=self.scrub(report.failure_detail or report.failure.value)[:300])
            self.observe(record)
            kind = FailureKind.permission if report.failure.value == "auth" else FailureKind.unavailable
            raise UpstreamFailed(
                f"the {self.agent_name} agent failed while planning ({report.failure.value}): "
                + self.scrub(str(report.failure_detail or ""))[:300],
                {"kind": kind.value, **where, "failure": report.failure.value},
            )
        self.answers.append(answer)
        try:
            plan, notes = to_plan(answer, self.objective)
        except Unusable:
            record["outcome"] = "unusable"
            self.observe(record)
            raise
        record["outcome"] = "ok"
        self.observe(record)
        return plan, [f"planned by the {self.agent_name} agent (read-only)", *notes]

    def _answer(self, stdout: str, final_message: str, out_file: str) -> str:
        """The plan's JSON text: Claude's structured_output, Codex's last-message file, else the
        final message of a CLI with a structured stream, else (plain-text agents) all it printed."""
        if self.adapter.name == "claude":
            for line in reversed(stdout.splitlines()):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("type") == "result":
                    if isinstance(event.get("structured_output"), dict):
                        return json.dumps(event["structured_output"])
                    return str(event.get("result") or "")
        if os.path.isfile(out_file):
            with open(out_file, errors="replace") as fh:
                text = fh.read()
            if text.strip():
                return text
        return final_message or stdout

    def _spawn(self, argv: list[str], env: dict[str, str], stdin_text: str | None) -> tuple[str, int | None, bool]:
        """Run the agent in its own process group, bounded by the timeout; (stdout, exit code, timed out)."""
        try:
            proc = subprocess.Popen(
                argv,
                cwd=self.workspace,
                env=env,
                stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise UpstreamFailed(
                f"cannot start the {self.agent_name} agent ({argv[0]}): {exc.strerror or exc}",
                {"kind": FailureKind.config.value, "provider": "agent", "agent": self.agent_name},
            ) from None
        try:
            out, _err = proc.communicate(stdin_text, timeout=self.timeout)
            return out, proc.returncode, False
        except subprocess.TimeoutExpired:
            _kill(proc)
            out, _err = proc.communicate()
            return out or "", None, True


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
