"""The planner seam: a backend proposes plans, this module checks them.

A :class:`PlannerBackend` only proposes (decompose, refine). Everything a plan must satisfy —
risk flags, validation, refusal of invalid plans — happens here, the same way for every backend,
so an LLM backend plugged in later cannot hand out a plan the heuristic would not be allowed to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from harness.models import Plan, Severity, ValidationReport
from harness.rpc import InvalidParams, InvalidPlan

from .heuristic import HeuristicBackend
from .risk import flag_risks
from .schemas import Level, PlanningContext, Strictness, ValidationConfig
from .validation import validate_plan


@runtime_checkable
class PlannerBackend(Protocol):
    """What a planner must do. Both methods are pure proposals; they are validated afterwards."""

    name: str

    def decompose(self, objective: str, context: PlanningContext) -> tuple[Plan, list[str]]:
        """A first plan for ``objective`` and notes on how it was made."""
        ...

    def refine(self, plan: Plan, feedback: str, context: PlanningContext) -> tuple[Plan, list[str]]:
        """The next revision of ``plan`` after ``feedback``, and what the feedback changed."""
        ...


#: Backends by the name callers give in ``context.backend``.
BACKENDS: dict[str, type[PlannerBackend]] = {"heuristic": HeuristicBackend}


def backend_for(context: PlanningContext) -> PlannerBackend:
    cls = BACKENDS.get(context.backend)
    if cls is None:
        raise InvalidParams(
            f"unknown planner backend {context.backend!r}", {"backend": context.backend, "available": sorted(BACKENDS)}
        )
    return cls()


@dataclass(frozen=True)
class Checked:
    """A plan that passed validation, with its report and the backend's notes."""

    plan: Plan
    report: ValidationReport
    notes: list[str]


def _refuse(report: ValidationReport, what: str, **extra: object) -> InvalidPlan:
    errors = [p for p in report.problems if p.severity == Severity.error]
    summary = "; ".join(p.message for p in errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
    data = {"problems": [p.model_dump(mode="json") for p in report.problems], **extra}
    return InvalidPlan(f"{what} is not valid ({len(errors)} error(s)): {summary}", data)


def check(
    plan: Plan, *, workspace: str | None, strictness: Strictness, config: ValidationConfig
) -> tuple[Plan, ValidationReport]:
    """Flag risks on ``plan``'s tasks and validate it."""
    flagged = plan.model_copy(update={"tasks": flag_risks(plan.tasks)})
    return flagged, validate_plan(flagged, workspace=workspace, strictness=strictness, config=config)


def decompose_objective(objective: str, context: PlanningContext, backend: PlannerBackend | None = None) -> Checked:
    """A validated, risk-flagged plan for ``objective``; InvalidPlan listing every problem otherwise."""
    backend = backend or backend_for(context)
    plan, notes = backend.decompose(objective, context)
    config = ValidationConfig(max_tasks=context.max_tasks)
    plan, report = check(plan, workspace=context.workspace, strictness=Strictness.generated, config=config)
    if not report.valid:
        raise _refuse(report, "the generated plan", notes=notes)
    return Checked(plan, report, notes)


def refine_plan(
    plan: Plan,
    feedback: str,
    context: PlanningContext,
    *,
    strictness: Strictness | None = None,
    backend: PlannerBackend | None = None,
) -> tuple[Checked, list[str]]:
    """The next revision of ``plan``, validated; InvalidPlan (with ``applied``) when it has errors.

    Plan size is only a warning here: the person giving feedback asked for the tasks they kept.
    Vagueness keeps the strictness of the plan's origin (``file`` plans: warnings).
    """
    backend = backend or backend_for(context)
    refined, applied = backend.refine(plan, feedback, context)
    level = strictness or (Strictness.file if plan.source == "file" else Strictness.generated)
    config = ValidationConfig(max_tasks=context.max_tasks, size=Level.warning)
    refined, report = check(refined, workspace=context.workspace, strictness=level, config=config)
    if not report.valid:
        raise _refuse(report, "the refined plan", applied=applied, plan=refined.model_dump(mode="json"))
    return Checked(refined, report, []), applied
