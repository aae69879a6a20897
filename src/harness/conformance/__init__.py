"""The conformance kit: a black-box check of a service program against its contract.

    harness conformance planning -- node examples/node/planning-service.js
    python -m harness.conformance worker-manager --json -- harness-worker-manager

Everything is derived from ``contracts/<service>.yaml`` and ``schemas/``: the methods to call,
the example params, the result and notification schemas, the error codes. Any program in any
language that passes is a drop-in replacement for the service (see docs/PROTOCOL.md).
"""

from ._cli import main
from ._kit import CHECKS, DEFAULT_TIMEOUT, catalogued, run
from ._params import WORKSPACE, Unresolved, substitute
from ._report import Check, Outcome, Report

__all__ = [
    "CHECKS",
    "DEFAULT_TIMEOUT",
    "WORKSPACE",
    "Check",
    "Outcome",
    "Report",
    "Unresolved",
    "catalogued",
    "main",
    "run",
    "substitute",
]
