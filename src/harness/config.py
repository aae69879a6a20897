"""Configuration: service specs, restart policies, the gate policy, recovery settings.

A config file (``--config FILE``, else ``harness.yaml`` or ``.harness/config.yaml`` in the
workspace) may override any part; a policy file (``--policy FILE``) replaces the policy. Every
field has a default, so the embedded default needs no file at all.

```yaml
services:
  planning:
    command: ["node", "examples/node/planning-service.js"]   # relative to this file
    restart: {max_restarts: 3, within_seconds: 60, backoff: [0.1, 0.5, 2.0]}
policy:
  trusted_roots: ["."]
  rules:
    - {name: ship-it, gate: trust, tasks: [deploy], decision: trust}
```
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._spawn import DEFAULT_MODULES, WORKSPACE_CONFIG_FILES, default_command
from .models import Budget
from .sandbox import SandboxPolicy
from .vocab import ANSWERS, Decision, HookPoint, Question

SERVICE_NAMES = tuple(DEFAULT_MODULES)


class ConfigError(Exception):
    """A config or policy file is missing or invalid; ``problems`` lists every issue."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RestartPolicy(_Strict):
    """OTP-style intensity: more than ``max_restarts`` within ``within_seconds`` -> fatal."""

    max_restarts: int = Field(default=3, ge=0)
    within_seconds: float = Field(default=60.0, gt=0)
    backoff: list[float] = Field(default_factory=lambda: [0.05, 0.5, 2.0])
    start_timeout: float = Field(default=15.0, gt=0, description="Seconds to answer initialize.")

    def delay(self, attempt: int) -> float:
        if not self.backoff:
            return 0.0
        return self.backoff[min(attempt - 1, len(self.backoff) - 1)]


class ServiceSpec(_Strict):
    name: str
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    restart: RestartPolicy = Field(default_factory=RestartPolicy)
    request_timeout: float = Field(default=60.0, gt=0)


class ServiceOverride(_Strict):
    command: list[str] | None = None
    env: dict[str, str] | None = None
    restart: RestartPolicy | None = None
    request_timeout: float | None = None


class PolicyRule(_Strict):
    """A named, explicit decision. Empty matchers match everything."""

    name: str = Field(min_length=1)
    gate: Question
    decision: Decision = Field(
        description="plan: approve|reject; trust: trust; escalation: retry|skip|abort; manual: done|skip"
    )
    tasks: list[str] = Field(default_factory=list, description="Task ids or glob patterns.")
    risky: bool | None = Field(default=None, description="Match only risky (true) or only safe (false) tasks.")
    max_tasks: int | None = Field(default=None, description="plan gate: only plans this small.")
    failure_types: list[str] = Field(default_factory=list, description="escalation gate: failure classes.")
    note: str | None = None

    @model_validator(mode="after")
    def _answers_its_gate(self) -> PolicyRule:
        allowed = ANSWERS[self.gate]
        if self.decision not in allowed:
            raise ValueError(f"a {self.gate} rule decides {' | '.join(allowed)}, not {self.decision}")
        return self

    def matches_task(self, task_id: str, risky: bool) -> bool:
        if self.tasks and not any(fnmatch.fnmatchcase(task_id, pat) for pat in self.tasks):
            return False
        return self.risky is None or self.risky == risky


class ToolRule(_Strict):
    """A named rule about agents' tools, as the agent CLIs write them (``Bash(npm test:*)``,
    ``Write``, ``WebFetch``): ``allow`` lets agents use it without asking, ``deny`` forbids it,
    ``bypass`` names the agents that may run in their bypass-everything mode (Claude Code
    ``bypassPermissions``, Codex ``danger-full-access``, Gemini ``yolo``), which is refused
    otherwise. ``tasks`` limits the rule to those tasks (empty: every task)."""

    name: str = Field(min_length=1)
    allow: str | None = None
    deny: str | None = None
    bypass: list[str] = Field(default_factory=list)
    tasks: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_kind(self) -> ToolRule:
        kinds = [k for k in (self.allow, self.deny, self.bypass or None) if k]
        if len(kinds) != 1:
            raise ValueError(f"tool rule {self.name!r} needs exactly one of allow, deny or bypass")
        return self

    def applies_to(self, task_id: str) -> bool:
        return not self.tasks or any(fnmatch.fnmatchcase(task_id, t) for t in self.tasks)


class CommandRule(_Strict):
    """A named glob over a command line (``fnmatch``: ``*`` matches anything, spaces and slashes
    included). It is tried on the whole command and on each part of it between shell operators
    (``;``, ``&&``, ``||``, ``|``, ``&``, ``$(...)``), with and without a leading ``sudo``/``env``."""

    name: str = Field(min_length=1)
    pattern: str = Field(min_length=1)
    reason: str | None = Field(default=None, description="Why, as the denial or the question says it.")


class CommandRules(_Strict):
    """The policy's per-command checks (harness.commands): ``deny`` refuses a command, ``ask`` has
    a person (or a ``gate: trust`` rule naming the task) confirm it before it runs."""

    deny: list[CommandRule] = Field(default_factory=list)
    ask: list[CommandRule] = Field(default_factory=list)


class Policy(_Strict):
    name: str = "default"
    trusted_roots: list[str] = Field(
        default_factory=lambda: ["."],
        description="Workers whose scope lies inside one of these (real paths; relative to the workspace) are trusted.",
    )
    rules: list[PolicyRule] = Field(default_factory=list)
    budget: Budget | None = Field(default=None, description="Caps on what a run's agents may spend together.")
    commands: CommandRules = Field(default_factory=CommandRules, description="Per-command deny and ask globs.")
    tools: list[ToolRule] = Field(
        default_factory=list, description="Agents' tool permissions: allow, deny, and bypass modes by name."
    )
    tool_wait: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="Seconds an agent's tool request that no rule settles and no terminal can answer waits for "
        "`harness decide RUN TASK allow|deny` before it is denied (0: denied at once).",
    )
    sandbox: SandboxPolicy = Field(
        default="auto",
        description="Run each step under bubblewrap: auto uses it when installed (RUN_STARTED records when it was "
        "not), required refuses to run without it, off runs steps unconfined.",
    )
    network: bool = Field(
        default=False,
        description="Whether a task's steps reach the network when the task does not say (agent tasks: always on "
        "by default, for their model endpoint).",
    )

    def rule_for(self, gate: Question, **facts: Any) -> PolicyRule | None:
        """The first rule of this gate whose matchers accept the facts."""
        for rule in self.rules:
            if rule.gate != gate:
                continue
            if gate == "plan":
                if rule.max_tasks is not None and facts.get("n_tasks", 0) > rule.max_tasks:
                    continue
                if rule.risky is False and facts.get("risky"):
                    continue
                return rule
            task_id = str(facts.get("task_id", ""))
            if not rule.matches_task(task_id, bool(facts.get("risky"))):
                continue
            if gate == "escalation" and rule.failure_types and facts.get("failure_type") not in rule.failure_types:
                continue
            return rule
        return None

    def resolved_roots(self, workspace: str | os.PathLike[str]) -> list[str]:
        base = Path(workspace)
        return [str((base / root).resolve()) for root in self.trusted_roots]


class AgentDefinition(_Strict):
    """A named agent as this workspace runs it: another path or program, more arguments, and the
    environment variables (names) it may see, e.g. its API key."""

    command: list[str] | None = Field(default=None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list)
    model: str | None = None


_ENV_REF = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")


class PlannerConfig(_Strict):
    """The planner runs use unless ``--planner`` says otherwise, and where a model planner calls.

    ``HARNESS_LLM_PROVIDER``, ``_BASE_URL``, ``_MODEL`` (and ``_TIMEOUT``, ``_RETRIES``) override
    the file. The key is read from the variable ``api_key_env`` names (default
    ``HARNESS_LLM_API_KEY``); ``api_key: ${NAME}`` means the same. A key written inline works but
    is warned about: a committed file would hold the secret."""

    backend: Literal["heuristic", "llm", "agent"] = "heuristic"
    provider: Literal["openai", "anthropic"] | None = None
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    api_key: str | None = Field(default=None, repr=False)
    timeout: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0, le=10)
    max_tokens: int | None = Field(default=None, gt=0)
    repair_rounds: int = Field(default=1, ge=0, le=5)
    agent: str | None = Field(default=None, description="The agent that plans with backend agent (default: --agent).")

    @model_validator(mode="after")
    def _key_reference(self) -> PlannerConfig:
        match = _ENV_REF.match(self.api_key or "")
        if match:
            self.api_key_env, self.api_key = match.group(1), None
        return self

    @property
    def inline_key(self) -> bool:
        return bool(self.api_key)


class HookSpec(_Strict):
    """One hook: a program (``command``: argv, never through a shell; relative paths are taken
    relative to the config file) that gets the payload as JSON on stdin, or a ``url`` the payload
    is POSTed to. ``name`` is how events and messages call it (default: the argv, or the URL's
    scheme and host, never its path)."""

    command: list[str] | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+")
    timeout: float = Field(
        default=10.0, gt=0, le=3600, description="Seconds before it is killed (a URL: per network operation)."
    )
    name: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_target(self) -> HookSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("a hook has either a command or a url")
        return self


class HooksConfig(_Strict):
    """``hooks:`` in harness.yaml: the hooks of each point (harness.hooks), run in order."""

    pre_task: list[HookSpec] = Field(default_factory=list)
    pre_command: list[HookSpec] = Field(default_factory=list)
    post_command: list[HookSpec] = Field(default_factory=list)
    post_task: list[HookSpec] = Field(default_factory=list)
    on_waiting: list[HookSpec] = Field(default_factory=list)
    on_run_end: list[HookSpec] = Field(default_factory=list)

    def at(self, point: HookPoint) -> list[HookSpec]:
        hooks: list[HookSpec] = getattr(self, HookPoint(point).value)
        return hooks


class RayConfig(_Strict):
    """``ray:`` in harness.yaml: the cluster that ``executor: ray`` runs tasks on."""

    address: str | None = Field(
        default=None,
        description="The cluster to join (ray://HOST:PORT, HOST:PORT or auto); default: a local Ray started for the run.",
    )
    shared_fs: bool = Field(
        default=False,
        description="The workspace path is the same shared file system on every node: tasks run in place, "
        "nothing is bundled.",
    )
    bundle_cap_mb: int = Field(
        default=256, gt=0, description="The largest bundle of a task's files sent to (or back from) a node, in MiB."
    )

    def params(self) -> dict[str, Any]:
        """The executor as the worker manager's spawn_worker takes it."""
        return {"kind": "ray", **self.model_dump()}


class Config(_Strict):
    services: dict[str, ServiceOverride] = Field(default_factory=dict)
    executor: Literal["local", "ray"] = Field(
        default="local", description="Where tasks run: local processes, or Ray tasks on a cluster (harness[ray])."
    )
    ray: RayConfig = Field(default_factory=RayConfig)
    agents: dict[str, AgentDefinition] = Field(default_factory=dict, description="Named agents, defined or adjusted.")
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    policy: Policy = Field(default_factory=Policy)
    recovery: dict[str, Any] = Field(default_factory=dict, description="Classification rules and recipes.")
    hooks: HooksConfig = Field(default_factory=HooksConfig, description="Programs and URLs run at points of a run.")
    source: str | None = Field(default=None, exclude=True)
    base_dir: str | None = Field(default=None, exclude=True)

    def service_spec(self, name: str) -> ServiceSpec:
        """The spec for a service: the embedded default, overridden by the config file."""
        spec = ServiceSpec(name=name, command=default_command(name))
        if name == "planning" and self.planner.api_key:
            # an inline key reaches the planning service through its environment, never a request
            spec.env[self.planner.api_key_env or "HARNESS_LLM_API_KEY"] = self.planner.api_key
        override = self.services.get(name)
        if override is None:
            return spec
        data = spec.model_dump()
        if override.command:
            data["command"] = self._resolve_command(override.command)
        for key in ("env", "restart", "request_timeout"):
            value = getattr(override, key)
            if value is not None:
                data[key] = value.model_dump() if isinstance(value, BaseModel) else value
        data["env"] = {**spec.env, **(override.env or {})}
        return ServiceSpec.model_validate(data)

    def resolve_command(self, command: list[str]) -> list[str]:
        """A service's or hook's argv as it is run: relative paths from the config file's folder."""
        return self._resolve_command(command)

    def _resolve_command(self, command: list[str]) -> list[str]:
        """Relative paths in a command are taken relative to the config file's folder."""
        base = Path(self.base_dir or ".")
        out = []
        for part in command:
            if not os.path.isabs(part) and ("/" in part) and (base / part).exists():
                out.append(str((base / part).resolve()))
            else:
                out.append(part)
        if out and out[0] in ("python", "python3"):
            out[0] = sys.executable  # never through a PATH shim
        return out


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from exc
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(path), [f"{where}{getattr(exc, 'problem', exc)}"]) from exc


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top)"
        out.append(f"{loc}: {err['msg']}")
    return out


def load_config(
    workspace: str | os.PathLike[str], config_path: str | None = None, policy_path: str | None = None
) -> Config:
    """Read the config (explicit file, or the workspace's own) and the policy file."""
    path: Path | None = Path(config_path) if config_path else None
    if path is None:
        for candidate in (Path(workspace) / rel for rel in WORKSPACE_CONFIG_FILES):
            if candidate.is_file():
                path = candidate
                break
    data: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(path)
        if not isinstance(raw, dict):
            raise ConfigError(str(path), ["the file must hold a mapping"])
        data = {k: v for k, v in raw.items() if k in Config.model_fields}
        unknown = [k for k in raw if k not in Config.model_fields]
        if unknown:
            raise ConfigError(str(path), [f"{k}: unknown section" for k in unknown])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), _problems(exc)) from exc
    unknown_services = [n for n in config.services if n not in SERVICE_NAMES]
    if unknown_services:
        raise ConfigError(
            str(path), [f"services.{n}: unknown service (known: {', '.join(SERVICE_NAMES)})" for n in unknown_services]
        )
    if path is not None:
        config.source = str(path)
        config.base_dir = str(path.resolve().parent)
    if policy_path:
        config.policy = load_policy(policy_path)
    return config


def load_policy(path: str | os.PathLike[str]) -> Policy:
    raw = _read_yaml(Path(path))
    if isinstance(raw, dict) and "policy" in raw and isinstance(raw["policy"], dict):
        raw = raw["policy"]
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(str(path), _problems(exc)) from exc
