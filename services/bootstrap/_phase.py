"""What every phase is: a cheap ``probe`` of its inputs, then ``run``, the real work.

The engine digests the context fields the phase reads and the probe's facts; when that digest was
seen before, the stored result is returned instead of running again. So a probe must capture
everything the result depends on besides the context (file stamps, the environment, tool paths,
process liveness) and stay cheap; expensive or side-effecting work (parsing, writing, starting MCP
servers) belongs in ``run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.models import PhaseName, PhaseResult, PhaseStatus

from ._fs import resolve_workspace
from ._models import BootstrapContext


@dataclass
class Outcome:
    """A phase's verdict before the engine stamps it with timing and cache facts."""

    status: PhaseStatus
    diagnostics: list[str] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, *diagnostics: str, **artifacts: Any) -> Outcome:
        return cls(PhaseStatus.failed, list(diagnostics), dict(artifacts))


@dataclass
class PhaseCall:
    """One execution of one phase: the context, the latest results of phases run for the same
    context (with the input digests they were computed from), and a scratch pad.

    ``scratch`` carries what ``probe`` already computed over to ``run`` (a parsed config, say)
    without it entering the digest.
    """

    context: BootstrapContext
    context_digest: str
    earlier: dict[PhaseName, PhaseResult]
    earlier_digests: dict[PhaseName, str]
    scratch: dict[str, Any] = field(default_factory=dict)
    _workspace: Path | None = None

    @property
    def workspace(self) -> Path:
        if self._workspace is None:
            self._workspace = resolve_workspace(self.context.workspace)
        return self._workspace

    def workspace_problem(self) -> str | None:
        """Why the workspace cannot be used, or None."""
        if not self.workspace.exists():
            return f"workspace {self.workspace} does not exist"
        if not self.workspace.is_dir():
            return f"workspace {self.workspace} is not a directory"
        return None


class Phase:
    """Base class: subclasses set ``name``, ``description`` and ``context_fields`` and implement
    probe and run."""

    name: PhaseName
    description: str
    #: The context fields the phase reads: only they enter its input digest, so a resumed run
    #: whose context differs elsewhere (a new worker manager pid, say) still hits the cache.
    context_fields: tuple[str, ...] = ()

    def probe(self, call: PhaseCall) -> dict[str, Any]:
        """JSON-able facts that, with the context, determine the result."""
        raise NotImplementedError

    def run(self, call: PhaseCall, facts: dict[str, Any]) -> Outcome:
        raise NotImplementedError

    def still_valid(self, call: PhaseCall, result: PhaseResult) -> bool:
        """Whether a cached result may be served (e.g. the file it wrote is still there)."""
        return True
