"""The planning service: JSON-RPC methods over the pure planning functions.

Each handler validates its params (pydantic, -32602 on bad input), calls one pure function and
returns its result; every rule lives in the modules it calls, so the service adds no behaviour of
its own. All methods are cheap and answered inline on the read loop; the planning modules are
imported on the first call that needs them, which keeps spawn-to-first-answer short.
"""

from __future__ import annotations

import harness
from harness.models import ValidationReport
from harness.rpc import Server

from .schemas import DecomposeParams, DecomposeResult, RefineParams, RefineResult, ValidateParams

SERVICE_NAME = "planning"


def decompose(params: DecomposeParams) -> DecomposeResult:
    """Objective -> validated, risk-flagged plan; InvalidPlan (-32004) lists every problem."""
    from . import backend

    checked = backend.decompose_objective(params.objective, params.context)
    return DecomposeResult(plan=checked.plan, report=checked.report, notes=checked.notes)


def refine(params: RefineParams) -> RefineResult:
    """Plan + feedback -> next revision; what each directive did is in ``applied``."""
    from . import backend

    checked, applied = backend.refine_plan(
        params.as_plan(), params.feedback, params.context, strictness=params.strictness
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
    server.add_method("decompose", decompose)
    server.add_method("refine", refine)
    server.add_method("validate", validate)
    return server
