"""Params and results of the planning methods, as pydantic models.

These are the one source of the planning schemas under ``schemas/`` (see ``SCHEMAS`` in the
package). Shared types (Plan, TaskPacket, ValidationReport, Problem) come from harness.models.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from harness.models import AgentSpec, Plan, TaskPacket, ValidationReport


class Strictness(StrEnum):
    """Who wrote the plan decides how hard the soft rules (size, vagueness, acceptance tests that
    cannot fail, commands that leave their scope) bite.

    ``generated`` plans come from a planner and must be good: soft rules are errors.
    ``file`` plans were written by a person, who may know better: soft rules are warnings.
    """

    generated = "generated"
    file = "file"


class Level(StrEnum):
    """How a soft rule is reported when the caller overrides the strictness default."""

    error = "error"
    warning = "warning"
    off = "off"


class ValidationConfig(BaseModel):
    """Tunable limits of validation. ``null`` levels mean: the default for the strictness."""

    model_config = ConfigDict(extra="forbid")

    min_tasks: int = Field(default=3, ge=1, description="Fewer tasks than this is a plan_size problem.")
    max_tasks: int = Field(default=7, ge=1, description="More tasks than this is a plan_size problem.")
    size: Level | None = Field(default=None, description="Severity of plan_size (null: by strictness).")
    vague: Level | None = Field(default=None, description="Severity of vague_objective (null: by strictness).")
    vacuous: Level | None = Field(
        default=None, description="Severity of vacuous_acceptance_test, a test that cannot fail (null: by strictness)."
    )
    scope_escape: Level | None = Field(
        default=None, description="Severity of command_leaves_scope, e.g. 'cd ..' (null: by strictness)."
    )

    @model_validator(mode="after")
    def _bounds(self) -> ValidationConfig:
        if self.min_tasks > self.max_tasks:
            raise ValueError(f"min_tasks ({self.min_tasks}) is larger than max_tasks ({self.max_tasks})")
        return self


class LLMOptions(BaseModel):
    """Where the ``llm`` planner calls. Unset fields come from ``HARNESS_LLM_*`` variables of the
    service's environment. The key itself never travels in a request: ``api_key_env`` names the
    variable that holds it."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["openai", "anthropic"] | None = Field(
        default=None,
        description="openai: any OpenAI-compatible chat-completions endpoint (default); anthropic: Messages API.",
    )
    base_url: str | None = Field(
        default=None, description="e.g. https://api.openai.com/v1, http://127.0.0.1:11434/v1, https://api.anthropic.com"
    )
    model: str | None = None
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The variable holding the key (default HARNESS_LLM_API_KEY).",
    )
    timeout: float | None = Field(default=None, gt=0, description="Seconds per call (default 120).")
    retries: int | None = Field(default=None, ge=0, le=10, description="Retries of 429/5xx/529/timeouts (default 3).")
    max_tokens: int | None = Field(
        default=None, gt=0, description="Answer length cap (Anthropic needs one; default 8192)."
    )
    backoff: float | None = Field(
        default=None, ge=0, description="Seconds before the first retry, doubled each time (default 1)."
    )


class PlanningContext(BaseModel):
    """Where the plan will run, how big it may be, and which planner makes it."""

    model_config = ConfigDict(extra="allow")

    workspace: str | None = Field(default=None, description="Workspace directory to inspect for commands and scopes.")
    max_tasks: int = Field(default=7, ge=3, le=50, description="Upper bound on the number of tasks.")
    backend: str = Field(
        default="heuristic",
        description="heuristic (deterministic, no network), llm (a model endpoint) or agent (a coding-agent CLI, read-only).",
    )
    llm: LLMOptions | None = Field(
        default=None, description="The llm planner's endpoint (else HARNESS_LLM_* variables)."
    )
    agent: AgentSpec | None = Field(default=None, description="The agent planner's agent: a name or a command.")
    repair_rounds: int = Field(
        default=1, ge=0, le=5, description="Times a model planner is shown the problems of its plan and asked again."
    )
    timeout: float | None = Field(
        default=None, gt=0, description="Seconds: per llm call (default 120), or for one agent run (default 600)."
    )


class DecomposeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    objective: str = Field(min_length=1, description="What the plan must achieve, in a sentence.")
    context: PlanningContext = Field(default_factory=PlanningContext)


class DecomposeTasks(RootModel[list[TaskPacket]]):
    """The result of ``decompose``: the plan's task packets alone, in order (``.result[0]`` is the
    first). ``decompose_plan`` answers the same plan whole, with its report and notes."""

    root: list[TaskPacket]


class DecomposeResult(BaseModel):
    """The result of ``decompose_plan``: the whole plan, its validation report and the notes."""

    plan: Plan
    report: ValidationReport
    notes: list[str] = Field(
        default_factory=list, description="How the planner read the workspace (commands found, fallbacks used)."
    )


class RefineParams(BaseModel):
    """A plan (or bare packets and their objective) and free-text feedback to apply to it."""

    model_config = ConfigDict(extra="forbid")

    plan: Plan | None = None
    packets: list[TaskPacket] | None = Field(default=None, description="Instead of plan: bare tasks, with objective.")
    objective: str | None = Field(default=None, description="The objective of packets (required with packets).")
    feedback: str = Field(description="Directives and remarks; empty feedback leaves the tasks unchanged.")
    context: PlanningContext = Field(default_factory=PlanningContext)
    strictness: Strictness | None = Field(
        default=None, description="How to validate the result (null: 'file' for file plans, else 'generated')."
    )

    @model_validator(mode="after")
    def _plan_or_packets(self) -> RefineParams:
        if (self.plan is None) == (self.packets is None):
            raise ValueError("give either plan, or packets together with objective")
        if self.packets is not None and not (self.objective or "").strip():
            raise ValueError("packets need their objective")
        return self

    def as_plan(self) -> Plan:
        if self.plan is not None:
            return self.plan
        return Plan(objective=self.objective or "", tasks=list(self.packets or []))


class RefineResult(BaseModel):
    plan: Plan
    applied: list[str] = Field(description="What each piece of feedback did, in order.")
    report: ValidationReport


class ValidateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    packets: list[TaskPacket] | None = None
    plan: Plan | None = Field(
        default=None, description="Instead of packets: a whole plan (its objective is checked too)."
    )
    workspace: str | None = Field(default=None, description="Check scope paths against this directory's real path.")
    strictness: Strictness = Strictness.file
    config: ValidationConfig = Field(default_factory=ValidationConfig)

    @model_validator(mode="after")
    def _plan_or_packets(self) -> ValidateParams:
        if (self.plan is None) == (self.packets is None):
            raise ValueError("give either packets or plan")
        return self


class PlannerCall(BaseModel):
    """The ``planner_call`` notification: one call of a model planner (an HTTP request to a model
    endpoint, or one run of an agent), as the supervisor logs it in PLANNER_CALL. No key, ever."""

    provider: str = Field(description="openai | anthropic | agent")
    model: str | None = None
    purpose: str = Field(description="decompose | repair | refine")
    call: int = Field(ge=1, description="The planner's calls so far in this request, this one included.")
    attempt: int = Field(ge=1, description="1, then each retry of the same call.")
    outcome: str = Field(
        description="ok | retry | format_rejected | permission | quota | timeout | unavailable | rejected | unusable | failed"
    )
    duration_ms: float = Field(ge=0)
    host: str | None = Field(default=None, description="The endpoint's host.")
    agent: str | None = Field(default=None, description="The agent that planned (provider agent).")
    mode: str | None = Field(default=None, description="schema | json | prompt: how JSON was asked for.")
    status: int | None = Field(default=None, description="The HTTP status.")
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    exit_code: int | None = Field(default=None, description="The agent's exit code.")
    retry_in: float | None = Field(default=None, description="Seconds before the next attempt.")
    error: str | None = Field(default=None, description="What went wrong, scrubbed of secrets.")


SCHEMAS: dict[str, type[BaseModel]] = {
    "PlannerCall": PlannerCall,
    "DecomposeParams": DecomposeParams,
    "DecomposeResult": DecomposeResult,
    "DecomposeTasks": DecomposeTasks,
    "RefineParams": RefineParams,
    "RefineResult": RefineResult,
    "ValidateParams": ValidateParams,
}
