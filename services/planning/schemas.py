"""Params and results of the planning methods, as pydantic models.

These are the one source of the planning schemas under ``schemas/`` (see ``SCHEMAS`` in the
package). Shared types (Plan, TaskPacket, ValidationReport, Problem) come from harness.models.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.models import Plan, TaskPacket, ValidationReport


class Strictness(StrEnum):
    """Who wrote the plan decides how hard the soft rules (size, vagueness) bite.

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

    @model_validator(mode="after")
    def _bounds(self) -> ValidationConfig:
        if self.min_tasks > self.max_tasks:
            raise ValueError(f"min_tasks ({self.min_tasks}) is larger than max_tasks ({self.max_tasks})")
        return self


class PlanningContext(BaseModel):
    """Where the plan will run and how big it may be; other keys are kept for future backends."""

    model_config = ConfigDict(extra="allow")

    workspace: str | None = Field(default=None, description="Workspace directory to inspect for commands and scopes.")
    max_tasks: int = Field(default=7, ge=3, le=50, description="Upper bound on the number of tasks.")
    backend: str = Field(default="heuristic", description="Planner backend; only 'heuristic' exists today.")


class DecomposeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    objective: str = Field(min_length=1, description="What the plan must achieve, in a sentence.")
    context: PlanningContext = Field(default_factory=PlanningContext)


class DecomposeResult(BaseModel):
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


SCHEMAS: dict[str, type[BaseModel]] = {
    "DecomposeParams": DecomposeParams,
    "DecomposeResult": DecomposeResult,
    "RefineParams": RefineParams,
    "RefineResult": RefineResult,
    "ValidateParams": ValidateParams,
}
