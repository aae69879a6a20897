"""The planner seam: a backend proposes plans, this module checks them.

A :class:`PlannerBackend` only proposes (decompose, refine). Everything a plan must satisfy —
risk flags, validation, refusal of invalid plans — happens here, the same way for every backend,
so a model cannot hand out a plan the heuristic would not be allowed to. A backend that keeps a
conversation (``llm``, ``agent``) also has ``repair``: the problems of its proposal are sent back
``context.repair_rounds`` times (default 1); still invalid, the error lists every problem and no
plan is returned, never half of one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from harness.models import Plan, Problem, Severity, ValidationReport
from harness.rpc import InvalidParams, InvalidPlan

from .heuristic import HeuristicBackend
from .risk import flag_risks
from .schemas import Level, PlanningContext, Strictness, ValidationConfig
from .validation import validate_plan


class Unusable(Exception):
    """A model's answer that is not a plan at all; ``problems`` says why, for a repair round."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


#: Receives one record per model call (provider, model, purpose, duration, tokens, outcome).
Observer = Callable[[dict[str, Any]], None]


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


def _heuristic(context: PlanningContext, observe: Observer | None) -> PlannerBackend:
    return HeuristicBackend()


def _llm(context: PlanningContext, observe: Observer | None) -> PlannerBackend:
    from .model_planner import LLMBackend

    return LLMBackend(context, observe)


def _agent(context: PlanningContext, observe: Observer | None) -> PlannerBackend:
    from .model_planner import AgentBackend

    return AgentBackend(context, observe)


#: Backends by the name callers give in ``context.backend``.
BACKENDS: dict[str, Callable[[PlanningContext, Observer | None], PlannerBackend]] = {
    "heuristic": _heuristic,
    "llm": _llm,
    "agent": _agent,
}


def backend_for(context: PlanningContext, observe: Observer | None = None) -> PlannerBackend:
    factory = BACKENDS.get(context.backend)
    if factory is None:
        raise InvalidParams(
            f"unknown planner backend {context.backend!r}", {"backend": context.backend, "available": sorted(BACKENDS)}
        )
    return factory(context, observe)


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


def _errors(report: ValidationReport) -> list[Problem]:
    return [p for p in report.problems if p.severity == Severity.error]


def _propose(
    backend: PlannerBackend,
    first: Callable[[], tuple[Plan, list[str]]],
    validate: Callable[[Plan], tuple[Plan, ValidationReport]],
    rounds: int,
) -> tuple[Plan, ValidationReport, list[str], list[Problem], int]:
    """Propose, validate, and repair up to ``rounds`` times (backends with ``repair`` only).

    Returns the last proposal, its report, all notes, its errors and the rounds used. A last
    answer that is no plan at all raises InvalidPlan with why."""
    repair: Callable[[list[Problem]], tuple[Plan, list[str]]] | None = getattr(backend, "repair", None)
    notes: list[str] = []
    used = 0
    problems: list[Problem] = []
    while True:
        plan: Plan | None = None
        try:
            proposed, more = first() if used == 0 or repair is None else repair(problems)
        except Unusable as exc:
            notes.append(f"answer {used + 1} was unusable")
            problems = exc.problems
            report = ValidationReport(valid=False, problems=problems)
        else:
            notes += more
            plan, report = validate(proposed)
            problems = _errors(report)
        if not problems or repair is None or used >= rounds:
            if plan is None:
                raise _refuse(report, "the model's answer", notes=notes, rounds=used)
            return plan, report, notes, problems, used
        used += 1
        notes.append(f"repair round {used}: {len(problems)} problem(s) sent back")


def decompose_objective(
    objective: str,
    context: PlanningContext,
    backend: PlannerBackend | None = None,
    observe: Observer | None = None,
) -> Checked:
    """A validated, risk-flagged plan for ``objective``; InvalidPlan listing every problem otherwise."""
    backend = backend or backend_for(context, observe)
    config = ValidationConfig(max_tasks=context.max_tasks)

    def validate(plan: Plan) -> tuple[Plan, ValidationReport]:
        return check(plan, workspace=context.workspace, strictness=Strictness.generated, config=config)

    plan, report, notes, problems, rounds = _propose(
        backend, lambda: backend.decompose(objective, context), validate, context.repair_rounds
    )
    if not report.valid:
        what = "the generated plan" + (f" (after {rounds} repair round(s))" if rounds else "")
        raise _refuse(report, what, notes=notes, rounds=rounds)
    return Checked(plan, report, notes)


def refine_plan(
    plan: Plan,
    feedback: str,
    context: PlanningContext,
    *,
    strictness: Strictness | None = None,
    backend: PlannerBackend | None = None,
    observe: Observer | None = None,
) -> tuple[Checked, list[str]]:
    """The next revision of ``plan``, validated; InvalidPlan (with ``applied``) when it has errors.

    Plan size is only a warning here: the person giving feedback asked for the tasks they kept.
    Vagueness keeps the strictness of the plan's origin (``file`` plans: warnings).
    """
    backend = backend or backend_for(context, observe)
    level = strictness or (Strictness.file if plan.source == "file" else Strictness.generated)
    config = ValidationConfig(max_tasks=context.max_tasks, size=Level.warning)

    def validate(candidate: Plan) -> tuple[Plan, ValidationReport]:
        return check(candidate, workspace=context.workspace, strictness=level, config=config)

    refined, report, applied, _problems, _rounds = _propose(
        backend, lambda: backend.refine(plan, feedback, context), validate, context.repair_rounds
    )
    if not report.valid:
        raise _refuse(report, "the refined plan", applied=applied, plan=refined.model_dump(mode="json"))
    return Checked(refined, report, []), applied
