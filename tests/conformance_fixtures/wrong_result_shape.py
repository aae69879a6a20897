"""The planning service whose decompose_plan answers the bare plan instead of {plan, report, notes}."""

from __future__ import annotations

from typing import Any

from harness.services.planning.schemas import DecomposeParams
from harness.services.planning.service import build_server, decompose_plan


def plan_only(params: DecomposeParams) -> dict[str, Any]:
    return decompose_plan(params).plan.model_dump(mode="json")  # the bug: the result's shape


def main() -> int:
    server = build_server()
    server.add_method("decompose_plan", plan_only)
    return server.run_stdio()


if __name__ == "__main__":
    raise SystemExit(main())
