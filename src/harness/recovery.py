"""Failure classification and recovery recipes, as data.

A failure (what the worker reported: reason, exit code, signal, timeout, output tails) is matched
against ordered rules; the first match names its class and is recorded. The class selects a recipe:
how many automatic retries, the backoff schedule, and what to ask a human when they run out.
Users prepend their own rules and override recipes in the config file:

```yaml
recovery:
  rules:
    - {name: flaky-registry, output: "registry .* busy", failure_type: transient}
  recipes:
    transient: {retries: 2, backoff: [5, 30], jitter: 0.1}
```
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FailureType(StrEnum):
    transient = "transient"
    permission = "permission"
    invalid_input = "invalid_input"
    logic_error = "logic_error"
    unrecoverable = "unrecoverable"
    unknown = "unknown"


class Rule(BaseModel):
    """Matches when every matcher it sets matches (an empty rule matches nothing)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    failure_type: FailureType
    reasons: list[str] = Field(default_factory=list, description="Worker failure reasons, e.g. timeout, interrupted.")
    exit_codes: list[int] = Field(default_factory=list)
    signals: list[int] = Field(default_factory=list, description="Empty with any_signal: any signal.")
    any_signal: bool = False
    timed_out: bool | None = None
    output: str | None = Field(default=None, description="Regex searched in stdout and stderr tails.")

    def matches(self, failure: dict[str, Any], output: str) -> bool:
        checks = 0
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


DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "interrupted", "reasons": ["interrupted"], "failure_type": "transient"},
    {"name": "scope-missing", "reasons": ["scope_missing"], "failure_type": "unrecoverable"},
    {"name": "timed-out", "timed_out": True, "failure_type": "transient"},
    {"name": "killed-by-signal", "any_signal": True, "failure_type": "transient"},
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
    model_config = ConfigDict(extra="forbid")

    retries: int = Field(default=0, ge=0, description="Automatic retries before escalating.")
    backoff: list[float] = Field(default_factory=list, description="Seconds before retry 1, 2, ...")
    jitter: float = Field(default=0.0, ge=0, le=1, description="Up to this fraction added at random.")
    retries_after_decision: int = Field(default=1, ge=0, description="Retries a human's 'retry' buys.")
    options: list[str] = Field(default_factory=lambda: ["retry", "skip", "abort"])
    permission_required: bool = False
    needs_input: bool = False

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        if not self.backoff:
            return 0.0
        base = self.backoff[min(retry - 1, len(self.backoff) - 1)]
        if self.jitter:
            base += base * self.jitter * (rng or random).random()
        return base


DEFAULT_RECIPES: dict[str, dict[str, Any]] = {
    "transient": {"retries": 2, "backoff": [5.0, 30.0]},
    "permission": {"retries": 0, "permission_required": True},
    "invalid_input": {"retries": 0, "needs_input": True},
    "logic_error": {"retries": 1, "backoff": [0.0]},
    "unrecoverable": {"retries": 0, "options": ["skip", "abort"], "retries_after_decision": 0},
    "unknown": {"retries": 0},
}


@dataclass(frozen=True)
class Classification:
    failure_type: FailureType
    rule: str


class Recovery:
    """Classifier and recipes built from defaults plus the config's ``recovery`` section."""

    def __init__(self, config: dict[str, Any] | None = None, *, rng: random.Random | None = None) -> None:
        config = config or {}
        user_rules = [Rule.model_validate(r) for r in config.get("rules", [])]
        self.rules = user_rules + [Rule.model_validate(r) for r in DEFAULT_RULES]
        recipes = {k: dict(v) for k, v in DEFAULT_RECIPES.items()}
        for name, override in (config.get("recipes") or {}).items():
            FailureType(name)  # unknown class names are a config error
            recipes[name] = {**recipes.get(name, {}), **override}
        self.recipes = {FailureType(k): Recipe.model_validate(v) for k, v in recipes.items()}
        self.rng = rng or random.Random()

    def classify(self, failure: dict[str, Any]) -> Classification:
        output = "\n".join(str(failure.get(k) or "") for k in ("stderr_tail", "stdout_tail", "message"))
        for rule in self.rules:
            if rule.matches(failure, output):
                return Classification(rule.failure_type, rule.name)
        return Classification(FailureType.unknown, "no-rule-matched")

    def recipe(self, failure_type: FailureType | str) -> Recipe:
        return self.recipes[FailureType(failure_type)]


def summarize(failure: dict[str, Any]) -> str:
    """One line for the terminal: why the task failed."""
    reason = failure.get("reason") or "failed"
    if failure.get("timed_out"):
        return "timed out"
    if failure.get("signal"):
        return f"killed by signal {failure['signal']}"
    tail = (failure.get("stderr_tail") or failure.get("stdout_tail") or "").strip().splitlines()
    last = tail[-1][:120] if tail else ""
    step = failure.get("failed_step") or {}
    what = f"{step.get('kind', '')} `{step.get('command', '')}`".strip() if step else reason
    code = failure.get("exit_code")
    out = f"{what} exited {code}" if code is not None else what
    return f"{out}: {last}" if last else out
