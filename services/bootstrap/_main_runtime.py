"""Phase main_runtime: the readiness summary before tasks execute.

It aggregates the latest result of each earlier phase run for the same context (which ran, which
degraded, which failed) with the interpreter and machine facts, and fails when a required earlier
phase failed or has not run: the supervisor then stops before EXECUTE with the reason in hand.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from harness.models import PhaseName, PhaseStatus

from ._phase import Outcome, Phase, PhaseCall

EARLIER = (
    PhaseName.cli_entry,
    PhaseName.system_prompt_fastpath,
    PhaseName.mcp_fastpath,
    PhaseName.daemon_worker_fastpath,
)


def runtime_facts() -> dict[str, Any]:
    import platform  # only here: nothing on the start path needs it

    uname = platform.uname()
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": {"system": uname.system, "release": uname.release, "machine": uname.machine},
        "cpu_count": os.cpu_count(),
    }


class MainRuntime(Phase):
    name = PhaseName.main_runtime
    context_fields = ("requires",)
    description = (
        "Summarise readiness: the results of the earlier phases for this context (which ran, degraded or "
        "failed), the Python version, platform and CPU count; fails when a required earlier phase failed "
        "or has not run."
    )

    def probe(self, call: PhaseCall) -> dict[str, Any]:
        required = call.context.requires.phases
        return {
            "required": [str(p) for p in (EARLIER if required is None else required) if p in EARLIER],
            "earlier": {
                str(n): [call.earlier_digests[n], str(call.earlier[n].status)] for n in EARLIER if n in call.earlier
            },
            **runtime_facts(),
        }

    def run(self, call: PhaseCall, facts: dict[str, Any]) -> Outcome:
        phases: dict[str, Any] = {}
        for name in EARLIER:
            result = call.earlier.get(name)
            if result is not None:
                phases[str(name)] = {"status": str(result.status), "success": result.success, "cached": result.cached}
        missing = [p for p in facts["required"] if p not in phases]
        failed = [p for p, r in phases.items() if not r["success"]]
        blocking = [p for p in failed if p in facts["required"]]
        degraded = [p for p, r in phases.items() if r["status"] == PhaseStatus.degraded]
        diagnostics = [f"required phase {p} has not run for this context" for p in missing]
        diagnostics += [f"required phase {p} failed" for p in blocking]
        diagnostics += [f"phase {p} failed (not required)" for p in failed if p not in blocking]
        diagnostics += [f"phase {p} is degraded" for p in degraded]
        if missing or blocking:
            status = PhaseStatus.failed
        elif failed or degraded:
            status = PhaseStatus.degraded
        else:
            status = PhaseStatus.ok
        artifacts = {
            "ready": status != PhaseStatus.failed,
            "phases": phases,
            "ran": list(phases),
            "degraded": degraded,
            "failed": failed,
            "missing": missing,
            "required": facts["required"],
            **{k: facts[k] for k in ("python", "platform", "cpu_count")},
        }
        return Outcome(status, diagnostics, artifacts)
