"""The bootstrap engine: runs phases, caches their results by input digest, replays notifications.

A result is keyed by its *input digest*: the phase name, the context fields the phase reads and its
probe facts (file stamps, environment, tool paths, liveness). The same inputs give the stored result back
with ``cached=true``; a changed instruction file or a newly set variable gives a new digest and a
fresh run. Failed results are remembered as the latest outcome (main_runtime reports them) but
never served from the cache, so a retry after fixing something outside the probe really retries.

Every completed call is announced in a ``phase_completed`` notification that carries the whole
result and both digests; ``replay`` folds those back in, so a restarted service answers the
re-sent requests of a recovering supervisor from the cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.models import BootstrapPlan, PhaseName, PhaseResult, PhaseSpec, PhaseStatus
from harness.rpc import InvalidParams

from ._cli_entry import CliEntry
from ._daemon_worker import DaemonWorkerFastpath
from ._fs import digest
from ._main_runtime import MainRuntime
from ._mcp import McpFastpath
from ._models import (
    PHASE_COMPLETED,
    PHASE_STARTED,
    BootstrapContext,
    BootstrapPlanParams,
    BootstrapReplayParams,
    BootstrapReplayResult,
    ExecutePhaseParams,
    PhaseCompletedParams,
    PhaseStartedParams,
)
from ._phase import Outcome, Phase, PhaseCall
from ._system_prompt import SystemPromptFastpath

logger = logging.getLogger(__name__)

#: The phases in the order a run executes them.
PHASES: tuple[Phase, ...] = (
    CliEntry(),
    SystemPromptFastpath(),
    McpFastpath(),
    DaemonWorkerFastpath(),
    MainRuntime(),
)
BY_NAME: dict[str, Phase] = {str(p.name): p for p in PHASES}
PHASE_NAMES: list[str] = [str(p.name) for p in PHASES]

Notify = Callable[[str, Any], None]


#: Context fields that describe a live process rather than the run: a restarted worker manager
#: (new pid) is the same run, so the phases already done for it still count.
VOLATILE_CONTEXT = {"worker_manager"}


def context_digest(context: BootstrapContext) -> str:
    """Digest of the context with defaults filled in, so equal meanings share one digest."""
    return digest(context.model_dump(mode="json", exclude=VOLATILE_CONTEXT))


def input_digest(phase: Phase, context: BootstrapContext, facts: dict[str, Any]) -> str:
    """Digest of what the phase reads: its context fields and its probe's facts."""
    reads = context.model_dump(mode="json", include=set(phase.context_fields))
    return digest({"phase": str(phase.name), "context": reads, "facts": facts})


@dataclass(frozen=True)
class _Latest:
    input_digest: str
    result: PhaseResult


class PhaseCache:
    """Bounded, thread-safe memory of results: reusable ones by input digest, latest per context,
    and which phase each idempotency key named."""

    def __init__(self, max_results: int = 1024, max_contexts: int = 256, max_keys: int = 4096) -> None:
        self._lock = threading.Lock()
        self._results: OrderedDict[str, PhaseResult] = OrderedDict()
        self._latest: OrderedDict[str, dict[PhaseName, _Latest]] = OrderedDict()
        self._keys: OrderedDict[str, str] = OrderedDict()
        self._limits = (max_results, max_contexts, max_keys)

    def lookup(self, input_digest_: str) -> PhaseResult | None:
        with self._lock:
            return self._results.get(input_digest_)

    def latest_for(self, context_digest_: str) -> dict[PhaseName, _Latest]:
        with self._lock:
            return dict(self._latest.get(context_digest_, {}))

    def claim_key(self, key: str | None, phase: PhaseName) -> None:
        """Refuse a key already used for another phase: the caller mixed up two requests.

        The same key with a changed context is fine (a resumed run re-sends its key with a new
        worker manager pid, say): the phase runs on the new inputs, or comes from the cache.
        """
        if key is None:
            return
        with self._lock:
            seen = self._keys.get(key)
            if seen is not None and seen != str(phase):
                raise InvalidParams(
                    f"idempotency key {key!r} was already used for phase {seen}",
                    {"idempotency_key": key, "phase": seen},
                )
            self._remember(self._keys, key, str(phase), self._limits[2])

    def record(self, context_digest_: str, input_digest_: str, result: PhaseResult, key: str | None = None) -> None:
        """Remember ``result`` as the latest for its context; reusable unless it failed."""
        stored = result.model_copy(update={"cached": False})
        with self._lock:
            if result.status != PhaseStatus.failed:
                self._remember(self._results, input_digest_, stored, self._limits[0])
            else:
                self._results.pop(input_digest_, None)
            latest = self._latest.get(context_digest_) or {}
            latest[result.phase] = _Latest(input_digest_, result)
            self._remember(self._latest, context_digest_, latest, self._limits[1])
            if key is not None:
                self._remember(self._keys, key, str(result.phase), self._limits[2])

    @staticmethod
    def _remember(table: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > limit:
            table.popitem(last=False)


class Bootstrap:
    """The service's methods, independent of the wire: ``notify`` sends a notification."""

    def __init__(self, notify: Notify, cache: PhaseCache | None = None) -> None:
        self._notify = notify
        self.cache = cache or PhaseCache()
        # Two calls of the same phase for the same context run one after the other (the second is
        # then a cache hit); striped so the table stays bounded.
        self._run_locks = tuple(threading.Lock() for _ in range(16))

    # -- plan -----------------------------------------------------------------------------------
    def plan(self, params: BootstrapPlanParams) -> BootstrapPlan:
        return BootstrapPlan(phases=[PhaseSpec(name=p.name, description=p.description) for p in PHASES])

    # -- execute_phase --------------------------------------------------------------------------
    def execute_phase(self, params: ExecutePhaseParams) -> PhaseResult:
        phase = BY_NAME.get(params.phase)
        if phase is None:
            raise InvalidParams(f"unknown phase {params.phase!r}", {"phase": params.phase, "valid_phases": PHASE_NAMES})
        cdig = context_digest(params.context)
        key = params.idempotency_key
        self.cache.claim_key(key, phase.name)
        started = PhaseStartedParams(phase=phase.name, context_digest=cdig, idempotency_key=key)
        self._notify(PHASE_STARTED, _compact(started))
        with self._run_locks[hash((phase.name, cdig)) % len(self._run_locks)]:
            result, idig = self._execute(phase, params.context, cdig)
            self.cache.record(cdig, idig, result, key)
        completed = PhaseCompletedParams(
            **result.model_dump(), context_digest=cdig, input_digest=idig, idempotency_key=key
        )
        self._notify(PHASE_COMPLETED, _compact(completed))
        return result

    def _execute(self, phase: Phase, context: BootstrapContext, cdig: str) -> tuple[PhaseResult, str]:
        started = time.perf_counter()
        latest = self.cache.latest_for(cdig)
        call = PhaseCall(
            context,
            cdig,
            earlier={name: rec.result for name, rec in latest.items()},
            earlier_digests={name: rec.input_digest for name, rec in latest.items()},
        )
        try:
            facts = phase.probe(call)
        except Exception as exc:  # a bug or an unexpected OS error: a failed phase, not a dead call
            return self._crashed(phase, "probe", exc, started), digest({"phase": str(phase.name), "context": cdig})
        idig = input_digest(phase, context, facts)
        hit = self.cache.lookup(idig)
        if hit is not None and phase.still_valid(call, hit):
            return hit.model_copy(update={"cached": True, "duration_ms": _ms_since(started)}), idig
        try:
            outcome = phase.run(call, facts)
        except Exception as exc:
            return self._crashed(phase, "run", exc, started), idig
        return _result(phase.name, outcome, started), idig

    @staticmethod
    def _crashed(phase: Phase, step: str, exc: Exception, started: float) -> PhaseResult:
        message = f"internal error in {phase.name} ({step}): {type(exc).__name__}: {exc}"
        logger.error("%s", message, exc_info=exc)
        return _result(phase.name, Outcome.failed(message), started)

    # -- replay ---------------------------------------------------------------------------------
    def replay(self, params: BootstrapReplayParams) -> BootstrapReplayResult:
        """Restore results from earlier phase_completed notifications; all or nothing."""
        restored: list[PhaseCompletedParams] = []
        problems: list[dict[str, Any]] = []
        for index, event in enumerate(params.events):
            body = _phase_completed_body(event)
            if body is None:
                continue
            try:
                restored.append(PhaseCompletedParams.model_validate(body))
            except ValueError as exc:
                problems.append({"index": index, "error": str(exc).splitlines()[0]})
        if problems:
            raise InvalidParams("some phase_completed events are malformed; nothing was replayed", problems)
        for note in restored:
            result = PhaseResult.model_validate(note.model_dump(include=set(PhaseResult.model_fields)))
            self.cache.record(note.context_digest, note.input_digest, result, note.idempotency_key)
        return BootstrapReplayResult(phases=len(restored), ignored=len(params.events) - len(restored))


def _phase_completed_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """The phase_completed params inside an event, whichever of the usual wrappings it has:
    a notification ``{method, params}``, a log event ``{type, data}``, or the bare params."""
    if event.get("method") == PHASE_COMPLETED:
        params = event.get("params")
        return params if isinstance(params, dict) else {}
    kind = event.get("type")
    if isinstance(kind, str):
        if kind.lower().endswith(PHASE_COMPLETED):
            data = event.get("data")
            return data if isinstance(data, dict) else {}
        return None
    if "input_digest" in event and "phase" in event and "method" not in event:
        return event
    return None


def _result(phase: PhaseName, outcome: Outcome, started: float) -> PhaseResult:
    return PhaseResult(
        phase=phase,
        success=outcome.status != PhaseStatus.failed,
        status=outcome.status,
        diagnostics=outcome.diagnostics,
        artifacts=outcome.artifacts,
        cached=False,
        duration_ms=_ms_since(started),
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _compact(model: PhaseStartedParams | PhaseCompletedParams) -> dict[str, Any]:
    """The notification's params as JSON, without an absent idempotency key."""
    data = model.model_dump(mode="json")
    if data.get("idempotency_key") is None:
        data.pop("idempotency_key", None)
    return data
