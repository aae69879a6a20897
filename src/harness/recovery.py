"""Failure classification and recovery recipes, as data.

A failure (what the worker reported: reason, exit code, signal, timeout, output tails) is matched
against ordered rules; the first match names its class and is recorded with the rule's name and
the line of output that matched. The class selects a recipe: how many automatic retries, the
backoff schedule, and what to ask a human when they run out. Users prepend their own rules and
override recipes in the config file:

```yaml
recovery:
  rules:
    - {name: flaky-registry, output: "registry .* busy", failure_type: transient}
  recipes:
    transient: {retries: 2, backoff: [5, 30], jitter: 0.1}
```

The supervisor (``supervisor._run``, section RECOVER) turns a classification into events:

    TASK_FAILED -> FAILURE_DETECTED -> FAILURE_CLASSIFIED {failure_type, rule, evidence}
        -> RECOVERY_APPLIED {recipe, attempt, outcome: retry, delay}        (retries left)
        -> [PERMISSION_REQUIRED] -> RECOVERY_ESCALATION {reason, options, decision}
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import ConfigError
from .vocab import ESCALATION_DECISIONS, Decision


class FailureType(StrEnum):
    transient = "transient"
    permission = "permission"
    invalid_input = "invalid_input"
    logic_error = "logic_error"
    unrecoverable = "unrecoverable"
    budget = "budget"  # an agent reached its turn limit or a usage cap of ours
    conflict = "conflict"  # a task's changes do not merge with the work of other tasks
    unknown = "unknown"


class RecipeName(StrEnum):
    """The ``recipe`` field of RECOVERY_APPLIED: which way a retry came about."""

    retry_with_backoff = "retry_with_backoff"  # automatic, within the recipe's retries
    rerun_interrupted = "rerun_interrupted"  # the supervisor stopped while the task ran
    retry_after_decision = "retry_after_decision"  # a person or a policy rule said retry


#: The worker's failure reason for a task whose supervisor (or worker manager) died mid-run.
INTERRUPTED = "interrupted"
#: The failure reason the supervisor records when a call to the worker manager itself failed.
HARNESS_ERROR = "harness_error"
#: The failure reason of a task refused by a per-command check or a hook (TASK_FAILED.denied_by names it).
DENIED = "denied"
#: The rule name recorded when no rule matched.
NO_RULE = "no-rule-matched"


class Rule(BaseModel):
    """Matches when every matcher it sets matches (an empty rule matches nothing)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    failure_type: FailureType
    reasons: list[str] = Field(default_factory=list, description="Worker failure reasons, e.g. timeout, interrupted.")
    agent_failures: list[str] = Field(
        default_factory=list, description="What went wrong inside an agent (auth, rate_limited, max_turns, ...)."
    )
    exit_codes: list[int] = Field(default_factory=list)
    signals: list[int] = Field(default_factory=list, description="Empty with any_signal: any signal.")
    any_signal: bool = False
    timed_out: bool | None = None
    output: str | None = Field(
        default=None, description="Regex searched (case-insensitively) in stdout and stderr tails."
    )

    @field_validator("output")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    def matches(self, failure: Mapping[str, Any], output: str) -> bool:
        checks = 0
        if self.agent_failures:
            checks += 1
            if failure.get("agent_failure") not in self.agent_failures:
                return False
        if self.reasons:
            checks += 1
            if failure.get("reason") not in self.reasons:
                return False
        if self.exit_codes:
            checks += 1
            if failure.get("exit_code") not in self.exit_codes:
                return False
        if self.signals or self.any_signal:
            checks += 1
            sig = failure.get("signal")
            if sig is None or (self.signals and sig not in self.signals):
                return False
        if self.timed_out is not None:
            checks += 1
            if bool(failure.get("timed_out")) != self.timed_out:
                return False
        if self.output is not None:
            checks += 1
            if not re.search(self.output, output, re.IGNORECASE | re.MULTILINE):
                return False
        return checks > 0

    def evidence(self, output: str, failure: Mapping[str, Any] | None = None) -> str | None:
        """The last output line this rule matched (nearest the error), to show a person what was
        seen; for an agent's failure, what the agent reported; None when the rule sees neither."""
        if self.agent_failures and failure is not None:
            detail = failure.get("agent_detail")
            return str(detail)[:200] if detail else None
        if self.output is None:
            return None
        pattern = re.compile(self.output, re.IGNORECASE | re.MULTILINE)
        for line in reversed(output.splitlines()):
            if pattern.search(line):
                return line.strip()[:200]
        return None


DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "interrupted", "reasons": [INTERRUPTED], "failure_type": "transient"},
    {"name": "denied-by-check", "reasons": [DENIED], "failure_type": "permission"},
    # What an agent's output says went wrong comes first: its exit code hides it.
    {"name": "agent-auth", "agent_failures": ["auth"], "failure_type": "permission"},
    {"name": "agent-tool-denied", "agent_failures": ["tool_denied"], "failure_type": "permission"},
    {
        "name": "agent-api-busy",
        "agent_failures": ["rate_limited", "overloaded", "server_error"],
        "failure_type": "transient",
    },
    {"name": "agent-budget", "agent_failures": ["max_turns", "budget"], "failure_type": "budget"},
    {"name": "budget-exceeded", "reasons": ["budget_exceeded"], "failure_type": "budget"},
    {"name": "merge-conflict", "reasons": ["merge_conflict"], "failure_type": "conflict"},
    # The supervisor closed its own connection to the worker manager (Ctrl-C, shutdown) while
    # the task ran: an interruption too, not a failure of the task.
    {
        "name": "supervisor-stopped",
        "reasons": [HARNESS_ERROR],
        "output": r"^ClientClosed\b",
        "failure_type": "transient",
    },
    {"name": "scope-missing", "reasons": ["scope_missing"], "failure_type": "unrecoverable"},
    {"name": "timed-out", "timed_out": True, "failure_type": "transient"},
    {"name": "killed-by-signal", "any_signal": True, "failure_type": "transient"},
    # The sandbox said no: a write outside the task's writable paths, the network it does not have,
    # or bubblewrap itself refusing (the summary names the path; `network: true` grants the network).
    {
        "name": "sandbox-denied",
        "output": r"read-only file system|\bEROFS\b|network is unreachable|\bENETUNREACH\b|^bwrap: ",
        "failure_type": "permission",
    },
    {
        "name": "network-transient",
        "output": r"connection (timed out|refused|reset)|timed out|temporar(il)?y unavailable|temporary failure"
        r"|\b(429|503)\b|too many requests|service unavailable|could not resolve host|name or service not known"
        r"|ETIMEDOUT|ECONNRESET|ECONNREFUSED|EAI_AGAIN",
        "failure_type": "transient",
    },
    {
        "name": "permission-denied",
        "output": r"permission denied|\b(401|403)\b|unauthori[sz]ed|forbidden|EACCES|EPERM|access denied",
        "failure_type": "permission",
    },
    {"name": "not-executable", "exit_codes": [126], "failure_type": "permission"},
    {"name": "acceptance-failed", "reasons": ["acceptance_failed"], "failure_type": "logic_error"},
    {
        "name": "invalid-input",
        "output": r"malformed|missing required (field|property|argument)|invalid (format|json|yaml|input|syntax)"
        r"|bad format|parse error|could not parse|JSONDecodeError|expecting (value|property name)|unexpected token",
        "failure_type": "invalid_input",
    },
    {
        "name": "resource-gone",
        "output": r"no such file or directory|does not exist|\b404\b|\b410\b|\bgone\b|endpoint (was |has been )?removed",
        "failure_type": "unrecoverable",
    },
]


class Recipe(BaseModel):
    """What to do with one class of failure."""

    model_config = ConfigDict(extra="forbid")

    retries: int = Field(default=0, ge=0, description="Automatic retries before escalating.")
    backoff: list[float] = Field(default_factory=list, description="Seconds before retry 1, 2, ...; the last repeats.")
    jitter: float = Field(default=0.0, ge=0, le=1, description="Up to this fraction added at random.")
    options: list[Decision] = Field(
        default_factory=lambda: [Decision.retry, Decision.skip, Decision.abort],
        min_length=1,
        description="What an escalation offers. A 'retry' decision buys one more attempt; if it fails the same way, the task escalates again.",
    )
    policy_retries: int = Field(
        default=1,
        ge=0,
        description="How many 'retry' answers a policy rule may give one task beyond `retries` before a person is asked, so a policy can never loop.",
    )
    permission_required: bool = Field(
        default=False, description="Emit PERMISSION_REQUIRED (what was denied) before escalating."
    )
    needs_input: bool = Field(
        default=False, description="The escalation asks for a correction (harness decide ... retry --note)."
    )
    ask: str = Field(default="", description="The question put to a person, after the failure's summary.")

    @field_validator("options")
    @classmethod
    def _escalation_answers(cls, value: list[Decision]) -> list[Decision]:
        wrong = [str(v) for v in value if v not in ESCALATION_DECISIONS]
        if wrong:
            raise ValueError(f"an escalation offers {' | '.join(ESCALATION_DECISIONS)}, not {', '.join(wrong)}")
        return value

    @field_validator("backoff")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value):
            raise ValueError("backoff delays must be >= 0 seconds")
        return value

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before automatic retry number ``retry`` (1-based)."""
        if not self.backoff:
            return 0.0
        base = self.backoff[min(max(retry, 1) - 1, len(self.backoff) - 1)]
        if self.jitter:
            base += base * self.jitter * (rng or random).random()
        return base


DEFAULT_RECIPES: dict[str, dict[str, Any]] = {
    "transient": {"retries": 2, "backoff": [5.0, 30.0], "ask": "it still fails: retry later, skip or abort"},
    "permission": {
        "retries": 0,
        "permission_required": True,
        "ask": "access was denied: grant it, then retry (or skip or abort)",
    },
    "invalid_input": {
        "retries": 0,
        "needs_input": True,
        "ask": "its input needs a correction: fix it, then retry with --note saying what changed (or skip or abort)",
    },
    "logic_error": {
        "retries": 1,
        "backoff": [0.0],
        "ask": "its acceptance tests fail: fix the work or the tests, then retry (or skip or abort)",
    },
    "unrecoverable": {
        "retries": 0,
        "options": ["skip", "abort"],
        "policy_retries": 0,
        "ask": "a resource it needs is gone: skip it or abort the run",
    },
    "budget": {"retries": 0, "ask": "it reached its budget: raise the budget and retry, or skip or abort"},
    "conflict": {
        "retries": 0,
        "ask": "its changes conflict with work merged before it: retry (it re-runs on top of that work), skip or abort",
    },
    "unknown": {
        "retries": 0,
        "ask": "no rule recognised the failure, so it is not retried blindly: retry, skip or abort",
    },
}


@dataclass(frozen=True)
class Classification:
    failure_type: FailureType
    rule: str
    evidence: str | None = None

    def as_event(self) -> dict[str, Any]:
        """The data of FAILURE_CLASSIFIED."""
        data: dict[str, Any] = {"failure_type": self.failure_type.value, "rule": self.rule}
        if self.evidence:
            data["evidence"] = self.evidence
        return data


class Recovery:
    """Classifier and recipes built from defaults plus the config's ``recovery`` section.

    A bad section raises :class:`harness.config.ConfigError` listing every problem (exit 2 in the
    CLI), never a half-built classifier.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, *, rng: random.Random | None = None) -> None:
        config = dict(config or {})
        problems = [
            f"recovery.{k}: unknown key (known: rules, recipes)" for k in config if k not in ("rules", "recipes")
        ]
        user_rules: list[Rule] = []
        for i, raw in enumerate(config.get("rules") or []):
            try:
                user_rules.append(Rule.model_validate(raw))
            except ValidationError as exc:
                problems += _problems(f"recovery.rules[{i}]", exc)
        recipes = {k: dict(v) for k, v in DEFAULT_RECIPES.items()}
        for name, override in (config.get("recipes") or {}).items():
            if name not in FailureType.__members__:
                problems.append(f"recovery.recipes.{name}: unknown failure class (known: {', '.join(FailureType)})")
            elif not isinstance(override, Mapping):
                problems.append(f"recovery.recipes.{name}: must be a mapping")
            else:
                recipes[name] = {**recipes[name], **override}
        built: dict[FailureType, Recipe] = {}
        for name, data in recipes.items():
            try:
                built[FailureType(name)] = Recipe.model_validate(data)
            except ValidationError as exc:
                problems += _problems(f"recovery.recipes.{name}", exc)
        if problems:
            raise ConfigError("recovery", problems)
        self.rules = user_rules + [Rule.model_validate(r) for r in DEFAULT_RULES]
        self.recipes = built
        self.rng = rng or random.Random()

    def classify(self, failure: Mapping[str, Any]) -> Classification:
        output = failure_output(failure)
        for rule in self.rules:
            if rule.matches(failure, output):
                return Classification(rule.failure_type, rule.name, rule.evidence(output, failure))
        return Classification(FailureType.unknown, NO_RULE)

    def recipe(self, failure_type: FailureType | str) -> Recipe:
        return self.recipes[FailureType(failure_type)]

    def policy_may_retry(self, failure_type: FailureType | str, retries_so_far: int) -> bool:
        """Whether a policy rule's 'retry' still applies to a task that has had this many retries."""
        recipe = self.recipe(failure_type)
        return Decision.retry in recipe.options and retries_so_far < recipe.retries + recipe.policy_retries


def _problems(where: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        out.append(f"{where}{'.' + loc if loc else ''}: {err['msg']}")
    return out


def was_interrupted(failure: Mapping[str, Any], classification: Classification) -> bool:
    """True when the task did not fail but was cut off: its supervisor or worker manager stopped."""
    return failure.get("reason") == INTERRUPTED or classification.rule == "supervisor-stopped"


def failure_output(failure: Mapping[str, Any]) -> str:
    """The text the output matchers search: stderr tail, stdout tail, then the worker's message."""
    return "\n".join(str(failure.get(k) or "") for k in ("stderr_tail", "stdout_tail", "message", "agent_detail"))


_READ_ONLY = re.compile(r"read-only file system|\bEROFS\b", re.IGNORECASE)
_QUOTED = re.compile(r"""[\'"‘`]([^\'"’`]+)[\'"’`]""")
_PATHLIKE = re.compile(r"(?:^|\s)((?:/|\.\.?/|~/)[^\s:'\"]*)")


def read_only_path(output: str) -> str | None:
    """The path a write was refused on, from the last "Read-only file system" line of ``output``
    that names one (coreutils and shells, Python's OSError, Node's EROFS, git); None otherwise."""
    for line in reversed(output.splitlines()):
        if not _READ_ONLY.search(line):
            continue
        quoted = [q for q in _QUOTED.findall(line) if "/" in q or "." in q]
        if quoted:
            return quoted[-1]
        bare = _PATHLIKE.findall(line)
        if bare:
            return bare[-1]
        head = line.split(":")  # `sh: 1: cannot create /p: Read-only...` and `bash: /p: Read-only...`
        candidates = [h.strip().removeprefix("cannot create ").strip() for h in head[:-1]]
        named = [c for c in candidates if c.startswith(("/", "./", "../"))]
        if named:
            return named[-1]
    return None


def summarize(failure: Mapping[str, Any]) -> str:
    """One line for the terminal: why the task failed."""
    reason = failure.get("reason") or "failed"
    if failure.get("timed_out"):
        return "timed out"
    if failure.get("signal"):
        return f"killed by signal {failure['signal']}"
    tail = (failure.get("stderr_tail") or failure.get("stdout_tail") or "").strip().splitlines()
    last = tail[-1][:120] if tail else ""
    if not last and failure.get("message"):
        last = str(failure["message"]).strip().splitlines()[-1][:120] if str(failure["message"]).strip() else ""
    step = failure.get("failed_step") or {}
    what = f"{step.get('kind', '')} `{step.get('command', '')}`".strip() if step else reason
    code = failure.get("exit_code")
    out = f"{what} exited {code}" if code is not None else what
    out = f"{out}: {last}" if last else out
    if failure.get("agent_failure"):
        detail = " ".join(str(failure.get("agent_detail") or "").split())[:120]
        out += f" (the agent: {failure['agent_failure']}{': ' + detail if detail else ''})"
    denied = read_only_path(failure_output(failure))
    if denied and denied not in out:
        out += f" (write refused, read-only: {denied})"
    return out


def escalation_reason(failure_type: FailureType | str, recipe: Recipe, retries: int) -> str:
    """Why a person is asked, in one line: the class, the retries spent, the recipe's question."""
    ftype = FailureType(failure_type).value
    spent = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
    return f"{ftype} failure{spent}: {recipe.ask}" if recipe.ask else f"{ftype} failure{spent}"


def decide_command(run_id: str, task_id: str, options: Sequence[str], *, needs_input: bool = False) -> str:
    """The command line that answers an escalation."""
    note = " --note 'what you corrected'" if needs_input and Decision.retry in options else ""
    return f"harness decide {run_id} {task_id} {'|'.join(str(o) for o in options)}{note}"


def transitive_dependents(depends_on: Mapping[str, Sequence[str]], task_id: str) -> list[str]:
    """Every task that depends on ``task_id`` directly or through others, in the mapping's order."""
    found: set[str] = set()
    frontier = {task_id}
    while frontier:
        frontier = {t for t, deps in depends_on.items() if t not in found and frontier.intersection(deps)}
        found |= frontier
    return [t for t in depends_on if t in found]
