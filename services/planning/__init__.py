"""The planning service: objectives become validated task-packet DAGs.

Run it as ``harness-planning`` or ``python -m harness.services.planning``; it speaks
line-delimited JSON-RPC 2.0 on stdin/stdout (methods: decompose, decompose_plan, refine,
validate, plus initialize, ping, shutdown; see contracts/planning.yaml).

Everything it does is also available as pure functions, for the supervisor and for tests:
:func:`decompose_objective`, :func:`refine_plan`, :func:`validate_plan`, :func:`validate_packets`,
:func:`flag_risks`, :func:`build_plan` (the heuristic), :func:`apply_feedback`, :func:`detect`
(workspace commands), :func:`find_cycles`, :func:`vagueness`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, NoReturn

from .schemas import (
    SCHEMAS,
    DecomposeParams,
    DecomposeResult,
    DecomposeTasks,
    Level,
    PlanningContext,
    RefineParams,
    RefineResult,
    Strictness,
    ValidateParams,
    ValidationConfig,
)

if TYPE_CHECKING:
    from .backend import BACKENDS, Checked, PlannerBackend, backend_for, decompose_objective, refine_plan
    from .heuristic import HeuristicBackend, build_plan
    from .refine import apply_feedback
    from .risk import flag_risks, risk_reasons
    from .text import is_vague, vagueness
    from .validation import find_cycles, scope_problem, topological_order, validate_packets, validate_plan
    from .workspace import Command, WorkspaceProfile, detect

#: Public names imported on first use, so the service starts without the planning machinery.
_LAZY = {
    "BACKENDS": "backend",
    "Checked": "backend",
    "PlannerBackend": "backend",
    "backend_for": "backend",
    "decompose_objective": "backend",
    "refine_plan": "backend",
    "HeuristicBackend": "heuristic",
    "build_plan": "heuristic",
    "apply_feedback": "refine",
    "flag_risks": "risk",
    "risk_reasons": "risk",
    "is_vague": "text",
    "vagueness": "text",
    "scope_escape": "vacuous",
    "vacuous_reason": "vacuous",
    "find_cycles": "validation",
    "scope_problem": "validation",
    "topological_order": "validation",
    "validate_packets": "validation",
    "validate_plan": "validation",
    "Command": "workspace",
    "WorkspaceProfile": "workspace",
    "detect": "workspace",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BACKENDS",
    "Checked",
    "Command",
    "DecomposeParams",
    "DecomposeResult",
    "DecomposeTasks",
    "HeuristicBackend",
    "Level",
    "PlannerBackend",
    "PlanningContext",
    "RefineParams",
    "RefineResult",
    "SCHEMAS",
    "Strictness",
    "ValidateParams",
    "ValidationConfig",
    "WorkspaceProfile",
    "apply_feedback",
    "backend_for",
    "build_plan",
    "decompose_objective",
    "detect",
    "find_cycles",
    "flag_risks",
    "is_vague",
    "main",
    "refine_plan",
    "risk_reasons",
    "scope_escape",
    "scope_problem",
    "topological_order",
    "vacuous_reason",
    "vagueness",
    "validate_packets",
    "validate_plan",
]


def main() -> NoReturn:
    """Console entry point: serve on stdin/stdout until EOF or ``shutdown``; diagnostics go to stderr."""
    from harness import _cpus
    from harness.rpc import configure_logging

    from .service import build_server

    configure_logging()
    _cpus.enter_service()  # every CPU of the run for what it starts (an agent planner)
    build_server().run_stdio_and_exit()
