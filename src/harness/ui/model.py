"""What the dashboard shows, folded from the event logs (the only state there is).

A :class:`RunDigest` reads a run's log incrementally: each refresh reads only the bytes appended
since the last one and applies them to the same :class:`~harness.state.RunState` the supervisor
folds, plus what the pictures need and the fold does not keep (each attempt's start and end, the
waits between them, the question each task was asked, the latest events). A page view therefore
costs the new events, not the whole log; :class:`Digests` keeps one digest per run.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import eventlog
from ..decisions import Waiting, asks, questions
from ..events import LOG_FORMAT, EventType, LogFormatError, describe, log_format, upgrade
from ..state import RunState, RunStatus
from . import svg

E = EventType

#: How many of the latest events a run page lists before its live stream takes over.
RECENT = 200

_ANSWERING = {E.TASK_DECISION, E.TASK_READY, E.RECOVERY_APPLIED, E.TASK_SKIPPED, E.TASK_STARTED}


_gc_lock = threading.Lock()
_gc_depth = 0
_gc_was = True


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off while a fold is built or read for a page (any thread; counted,
    so it comes back on when the last one ends). A big run's fold is millions of objects that
    are all alive: a full collection in the middle of a page finds nothing and costs as much as
    the page (measured: half of a 10,000-task run's cold fold, and of its warm run page)."""
    global _gc_depth, _gc_was
    with _gc_lock:
        if _gc_depth == 0:
            _gc_was = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_was:
                gc.enable()


class RunUnreadable(Exception):
    """A run the dashboard cannot show: no such run, or a log that is not a log."""


@dataclass
class _Attempt:
    number: int
    start: float
    end: float | None = None
    outcome: str = "running"


@dataclass
class _Track:
    """One task's timeline: its attempts and the waits around them."""

    attempts: list[_Attempt] = field(default_factory=list)
    waits: list[list[Any]] = field(default_factory=list)  # [kind, start, end | None]
    workers: list[str] = field(default_factory=list)  # each attempt's worker id, in order
    usage: list[dict[str, Any]] = field(default_factory=list)  # AGENT_USAGE of each agent attempt
    start_commit: str | None = None  # where the latest attempt's worktree started
    saved_diff: str | None = None  # the changes of an attempt not accepted, saved when its worktree went


class RunDigest:
    """One run's log, folded, kept up to date by :meth:`refresh`."""

    def __init__(self, workspace: str | os.PathLike[str], run_id: str) -> None:
        self.workspace = os.fspath(workspace)
        self.run_id = run_id
        self.path = eventlog.events_path(workspace, run_id)
        # held while the log is folded in and while a page reads the fold (pages and the live
        # stream refresh from several threads)
        self.lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self.state = RunState()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.asked: dict[str, dict[str, Any]] = {}  # task id -> the event that asked its open question
        self.tracks: dict[str, _Track] = {}
        self.phases: dict[str, list[float | None]] = {}  # label -> [start, end]
        self.first_unix: float | None = None
        self.legacy = False  # an older log format: read whole and upgraded each time
        self.count = 0
        self._views: dict[str, tuple[int, Any]] = {}  # a picture drawn for the fold at count N

    # -- reading ----------------------------------------------------------------------------------
    def refresh(self) -> RunDigest:
        """Fold what was appended since the last refresh. RunUnreadable for a missing or corrupt log."""
        with self.lock, collector_paused():
            if not self.path.is_file():
                raise RunUnreadable(f"there is no run {self.run_id!r} in this workspace")
            try:
                if self.legacy:
                    self._reset()
                    self.legacy = True
                    self._apply_all(upgrade(eventlog.read_events(self.path).events))
                    return self
                try:
                    events, self.offset = eventlog.read_since(self.path, self.offset)
                except eventlog.CorruptLog:
                    raise
                except eventlog.EventLogError:  # cut shorter than what was read: read it again
                    self._reset()
                    events, self.offset = eventlog.read_since(self.path, 0)
                if self.count == 0 and events and log_format(events[:1]) != LOG_FORMAT:
                    self.legacy = True
                    events = upgrade(events)
                self._apply_all(events)
            except eventlog.CorruptLog as exc:
                self._reset()
                raise RunUnreadable(f"the log of run {self.run_id} is damaged: {exc}") from exc
            except (LogFormatError, ValueError, KeyError, TypeError) as exc:
                self._reset()
                raise RunUnreadable(f"the log of run {self.run_id} cannot be read: {exc}") from exc
        return self

    def _apply_all(self, events: Iterable[dict[str, Any]]) -> None:
        state = self.state
        with collector_paused():
            for event in events:
                state.apply(event)
                self._note(event)
                self.count += 1

    def _note(self, event: dict[str, Any]) -> None:
        etype = event.get("type")
        unix = float(event.get("unix") or 0.0)
        tid = event.get("task_id")
        data = event.get("data") or {}
        self.recent.append(event)
        if self.first_unix is None:
            self.first_unix = unix
        if etype == E.RUN_STARTED:
            self.phases.setdefault("plan", [unix, None])
        elif etype in (E.PLAN_CREATED, E.PLAN_INVALID):
            plan = self.phases.setdefault("plan", [unix, None])
            plan[1] = plan[1] or unix
            self.phases.setdefault("gate", [unix, None])
        elif etype in (E.GATE_APPROVED, E.GATE_REJECTED):
            gate = self.phases.setdefault("gate", [unix, None])
            gate[1] = unix
        elif etype == E.GATE_APPROVAL_REQUESTED:
            gate = self.phases.setdefault("gate", [unix, None])
            gate[1] = None
        elif etype == E.BOOTSTRAP_PHASE_STARTED:
            boot = self.phases.setdefault("bootstrap", [unix, None])
            boot[1] = None
        elif etype in (E.BOOTSTRAP_PHASE_COMPLETED, E.BOOTSTRAP_FAILED):
            boot = self.phases.setdefault("bootstrap", [unix, None])
            boot[1] = unix
        elif etype == E.RUN_RESUMED:
            self._interrupt(self.state.last_unix)
        if not tid:
            return
        if asks(event):
            self.asked[tid] = event
            self._track(tid).waits.append(["decision", unix, None])
            return
        if etype in _ANSWERING:
            self.asked.pop(tid, None)
            self._close_wait(tid, unix)
        if etype == E.TASK_STARTED:
            track = self._track(tid)
            track.attempts.append(_Attempt(int(data.get("attempt") or len(track.attempts) + 1), unix))
            track.workers.append(str(event.get("worker_id") or data.get("worker_id") or ""))
        elif etype == E.TASK_COMPLETED:
            self._finish(tid, unix, "completed")
        elif etype == E.TASK_FAILED:
            self._finish(tid, unix, "interrupted" if data.get("interrupted") else "failed")
        elif etype == E.AGENT_USAGE:
            self._track(tid).usage.append(dict(data))
        elif etype == E.WORKTREE_CREATED:
            self._track(tid).start_commit = data.get("start")
        elif etype == E.WORKTREE_REMOVED and data.get("diff"):
            self._track(tid).saved_diff = str(data["diff"])
        elif etype == E.RECOVERY_APPLIED:
            delay = float(data.get("delay") or 0.0)
            if delay > 0:
                self._track(tid).waits.append(["backoff", unix, unix + delay])

    def _track(self, tid: str) -> _Track:
        track = self.tracks.get(tid)
        if track is None:
            track = self.tracks[tid] = _Track()
        return track

    def _finish(self, tid: str, unix: float, outcome: str) -> None:
        track = self._track(tid)
        if track.attempts and track.attempts[-1].end is None:
            track.attempts[-1].end = unix
            track.attempts[-1].outcome = outcome

    def _close_wait(self, tid: str, unix: float) -> None:
        track = self.tracks.get(tid)
        if track and track.waits and track.waits[-1][0] == "decision" and track.waits[-1][2] is None:
            track.waits[-1][2] = unix

    def _interrupt(self, unix: float) -> None:
        """A new session began: attempts the last one left open ended when it stopped."""
        for track in self.tracks.values():
            if track.attempts and track.attempts[-1].end is None:
                track.attempts[-1].end = unix
                track.attempts[-1].outcome = "interrupted"

    def cached(self, name: str, draw: Callable[[], Any]) -> Any:
        """``draw()``, kept until the next event is folded in (pictures of a big run cost tens
        of ms each and change only with the log)."""
        hit = self._views.get(name)
        if hit is not None and hit[0] == self.count:
            return hit[1]
        value = draw()
        self._views[name] = (self.count, value)
        return value

    # -- views ------------------------------------------------------------------------------------
    def questions(self) -> list[Waiting]:
        return list(self.cached("questions", lambda: questions(self.state, self.asked)))

    def titles(self) -> dict[str, str]:
        return {t.id: t.title for t in self.state.tasks.values()}

    def summary(self) -> dict[str, Any]:
        """One line of the runs page."""
        s = self.state
        counts = s.counts()
        usage = s.usage()
        planner = s.planner_usage
        end = s.last_unix if s.status not in _LIVE else None
        waiting = s.status in (RunStatus.waiting, RunStatus.awaiting_approval)
        what = ""
        if waiting:
            open_ = self.questions()
            what = ", ".join(sorted({w.kind for w in open_})) or str((s.waiting or {}).get("reason", ""))
            what = f"{what} ({len(open_)})" if len(open_) > 1 else what
        return {
            "id": self.run_id,
            "status": s.status.value,
            "objective": s.objective,
            "start": s.started_unix or self.first_unix,
            "end": end,
            "last": s.last_unix,
            "tasks": len(s.tasks),
            "done": counts["completed"],
            "failed": counts["failed"],
            "waiting": counts["waiting"],
            "skipped": counts["skipped"],
            "tokens": int(usage["tokens"] + planner.get("tokens_in", 0) + planner.get("tokens_out", 0)),
            "cost": float(usage["cost_usd"] + planner.get("cost_usd", 0.0)),
            "is_waiting": waiting,
            "waiting_for": what,
            "mode": str(s.options.get("mode") or "execute"),
        }

    def nodes(self) -> list[svg.Node]:
        return [
            svg.Node(t.id, t.title, t.status.value, tuple(t.depends_on), t.duration_ms) for t in self.state.task_list()
        ]

    def rows(self) -> list[svg.Row]:
        out = []
        for t in self.state.task_list():
            track = self.tracks.get(t.id)
            if track is None:
                out.append(svg.Row(t.id, t.title, t.status.value, (), ()))
                continue
            attempts = tuple(
                svg.Attempt(a.number, a.start, a.end, a.outcome, t.nodes.get(a.number)) for a in track.attempts
            )
            waits = tuple(svg.Wait(str(w[0]), float(w[1]), w[2]) for w in track.waits)
            out.append(svg.Row(t.id, t.title, t.status.value, attempts, waits))
        return out

    def phase_list(self) -> list[svg.Phase]:
        order = ("plan", "gate", "bootstrap")
        return [
            svg.Phase(name, float(self.phases[name][0] or 0.0), self.phases[name][1])
            for name in order
            if name in self.phases
        ]

    def worker_dir(self, task_id: str, attempt: int | None = None) -> Path | None:
        """The folder of a task's attempt (the latest by default): prompt, stdout and stderr."""
        track = self.tracks.get(task_id)
        if not track or not track.workers:
            return None
        index = len(track.workers) - 1 if attempt is None else attempt - 1
        if not 0 <= index < len(track.workers) or not track.workers[index]:
            return None
        return eventlog.run_dir(self.workspace, self.run_id) / "workers" / track.workers[index]

    def events_after(self, seq: int) -> list[dict[str, Any]]:
        """The events after ``seq``: from memory when they are recent, else read from the log."""
        with self.lock:
            recent = list(self.recent)
        if not recent or recent[-1]["seq"] <= seq:
            return []
        if recent[0]["seq"] <= seq + 1:
            return [e for e in recent if e["seq"] > seq]
        events = full_events(self)
        return [e for e in events if e["seq"] > seq]

    def recent_lines(self) -> list[dict[str, Any]]:
        titles = self.titles()
        return [line(e, titles) for e in self.recent]


_LIVE = {RunStatus.created, RunStatus.approved, RunStatus.bootstrapping, RunStatus.executing}


def line(event: dict[str, Any], titles: dict[str, str]) -> dict[str, Any]:
    """An event as the page's stream shows it (the same words as `harness log`)."""
    return {
        "seq": event.get("seq"),
        "time": eventlog.event_time(event)[:19].replace("T", " "),
        "type": event.get("type", ""),
        "task": event.get("task_id") or "",
        "text": describe(event, titles),
    }


class Digests:
    """One digest per run of a workspace, each refreshed when a page asks."""

    def __init__(self, workspace: str | os.PathLike[str]) -> None:
        self.workspace = os.fspath(workspace)
        self._digests: dict[str, RunDigest] = {}
        self._lock = threading.Lock()

    def runs(self) -> list[str]:
        return eventlog.list_runs(self.workspace)

    def get(self, run_id: str) -> RunDigest:
        try:
            known = eventlog.events_path(self.workspace, run_id).is_file()
        except ValueError:  # not a run id at all (run_dir refuses anything that could leave the folder)
            known = False
        if not known:
            raise RunUnreadable(f"there is no run {run_id!r} in this workspace")
        with self._lock:
            digest = self._digests.get(run_id)
            if digest is None:
                digest = self._digests[run_id] = RunDigest(self.workspace, run_id)
        return digest.refresh()

    def summaries(self) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Every run's summary (waiting runs first, then the newest), and the runs that cannot be read."""
        rows, broken = [], []
        for run_id in self.runs():
            try:
                digest = self.get(run_id)
                with digest.lock:
                    rows.append(digest.summary())
            except RunUnreadable as exc:
                broken.append({"id": run_id, "error": str(exc)})
        rows.sort(key=lambda r: (not r["is_waiting"], -(r["start"] or 0.0)))
        return rows, broken


def full_events(digest: RunDigest) -> list[dict[str, Any]]:
    """Every event of a run (for the report), upgraded to the current format."""
    return upgrade(eventlog.read_events(digest.path).events)
