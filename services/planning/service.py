"""The planning service: JSON-RPC methods over the pure planning functions.

Each handler validates its params (pydantic, -32602 on bad input), calls one pure function and
returns its result; every rule lives in the modules it calls, so the service adds no behaviour of
its own. ``validate`` is cheap and answered inline on the read loop; the planning methods run on
the server's threads, since a model planner may take minutes, and send one ``planner_call``
notification per model call (provider, model, purpose, duration, tokens, outcome; never the key).
The planning modules are imported on the first call that needs them, which keeps
spawn-to-first-answer short.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import harness
from harness.models import ValidationReport
from harness.rpc import Server

from .schemas import DecomposeParams, DecomposeResult, DecomposeTasks, RefineParams, RefineResult, ValidateParams

SERVICE_NAME = "planning"

Observer = Callable[[dict[str, Any]], None]


def decompose(params: DecomposeParams, observe: Observer | None = None) -> DecomposeTasks:
    """Objective -> the validated, risk-flagged plan's task packets; InvalidPlan (-32004) as in
    :func:`decompose_plan`, which answers the same plan whole."""
    from . import backend

    checked = backend.decompose_objective(params.objective, params.context, observe=observe)
    return DecomposeTasks(checked.plan.tasks)


def decompose_plan(params: DecomposeParams, observe: Observer | None = None) -> DecomposeResult:
    """Objective -> validated, risk-flagged plan; InvalidPlan (-32004) lists every problem."""
    from . import backend

    checked = backend.decompose_objective(params.objective, params.context, observe=observe)
    return DecomposeResult(plan=checked.plan, report=checked.report, notes=checked.notes)


def refine(params: RefineParams, observe: Observer | None = None) -> RefineResult:
    """Plan + feedback -> next revision; what each directive did is in ``applied``."""
    from . import backend

    checked, applied = backend.refine_plan(
        params.as_plan(), params.feedback, params.context, strictness=params.strictness, observe=observe
    )
    return RefineResult(plan=checked.plan, applied=applied, report=checked.report)


def validate(params: ValidateParams) -> ValidationReport:
    """Every problem of a plan or of bare packets, at once; never raises for a bad plan."""
    from .validation import validate_packets, validate_plan

    if params.plan is not None:
        return validate_plan(
            params.plan, workspace=params.workspace, strictness=params.strictness, config=params.config
        )
    return validate_packets(
        params.packets or [], workspace=params.workspace, strictness=params.strictness, config=params.config
    )


def build_server() -> Server:
    server = Server(SERVICE_NAME, harness.__version__, contract=SERVICE_NAME)

    def observe(record: dict[str, Any]) -> None:
        server.notify("planner_call", record)

    server.add_method("decompose", lambda p: decompose(p, observe), params=DecomposeParams, blocking=True)
    server.add_method("decompose_plan", lambda p: decompose_plan(p, observe), params=DecomposeParams, blocking=True)
    server.add_method("refine", lambda p: refine(p, observe), params=RefineParams, blocking=True)
    server.add_method("validate", validate)
    return server
