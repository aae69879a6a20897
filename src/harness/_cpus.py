"""Where ``harness run`` keeps the supervisor and the worker manager's reader: on different CPUs.

Every task is a hand-over between the two processes: the supervisor writes a request, then makes
its log durable while the worker manager gets the worker ready; the manager's answer wakes the
supervisor again. A pipe's reader is woken on the writer's CPU (the kernel expects the writer to
wait for the answer next), so on a small machine the two processes keep landing on one CPU and
take turns there, and the work meant to overlap (the manager's preparation with the
supervisor's fdatasync) runs one after the other. Measured on a 2-CPU VM: 5 to 7 % per task at
``--parallel 1``, no change at ``--parallel 2`` or in the start-up.

So, with two CPUs or more allowed, the supervisor's threads keep off one CPU (the highest it may
use), and the worker manager's reader thread keeps to that CPU. Nothing else is confined: the
manager's job threads, and so every step, agent and acceptance test they start, get the whole
set the run was started with (a test suite that runs ``make -j`` still has every CPU), and so do
the planning and bootstrap services (an agent planner, the phases' commands); only what the
supervisor starts itself (hooks, git) has every CPU but that one. The supervisor names the
layout to the services it starts in :data:`ENV`; a worker manager started without it (piped to
by hand, embedded elsewhere) confines nothing. ``HARNESS_CPU_LAYOUT=off`` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = [
    "ENV",
    "OFF_ENV",
    "enter_service",
    "enter_worker_manager",
    "format_cpus",
    "keep_to",
    "name_layout",
    "parse_cpus",
    "widen",
]

#: What the supervisor tells the worker manager: ``READER/CPUS``, e.g. ``1/0-1``: the reader's
#: CPU, then the CPUs the run was started with (for the job threads).
ENV = "HARNESS_CPUS"
#: ``off`` (or ``0``, ``no``, ``false``): leave the scheduler alone.
OFF_ENV = "HARNESS_CPU_LAYOUT"

#: Above any CPU number Linux gives (CONFIG_NR_CPUS is at most 8192): a bound on what is parsed.
_MAX_CPU = 1 << 16

_full: frozenset[int] | None = None  # a worker manager's: what its job threads get back


def format_cpus(cpus: frozenset[int] | set[int]) -> str:
    """``0-3,6`` for {0, 1, 2, 3, 6}."""
    out: list[str] = []
    run: list[int] = []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [cpu]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def parse_cpus(text: str) -> frozenset[int]:
    """The inverse of :func:`format_cpus`; ValueError on anything else."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, sep, high = part.partition("-")
        first, last = int(low), int(high) if sep else int(low)
        if first < 0 or last < first or last >= _MAX_CPU:
            raise ValueError(f"not a CPU range: {part!r}")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise ValueError("no CPUs")
    return frozenset(cpus)


def _off(environ: Mapping[str, str]) -> bool:
    return environ.get(OFF_ENV, "").strip().lower() in ("off", "0", "no", "false")


def _pin(cpus: frozenset[int] | set[int]) -> bool:
    """The calling thread (and the threads and processes it starts later) onto ``cpus``."""
    try:
        os.sched_setaffinity(0, cpus)
    except (AttributeError, OSError, ValueError):  # not Linux, or not allowed here
        return False
    return True


def name_layout(environ: dict[str, str] | None = None) -> frozenset[int] | None:
    """Called by ``harness run``/``resume`` before it starts a service: chooses the layout and
    names it in ``environ`` (default ``os.environ``) for the services. Returns the CPUs the
    supervisor is to keep to (:func:`keep_to`), or None when there is no layout (one CPU, turned
    off, not supported)."""
    env = os.environ if environ is None else environ
    env.pop(ENV, None)  # a layout inherited from an outer run is not ours
    if _off(env):
        return None
    try:
        allowed = frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if len(allowed) < 2:
        return None
    reader = max(allowed)
    env[ENV] = f"{reader}/{format_cpus(allowed)}"
    return allowed - {reader}


def keep_to(cpus: frozenset[int] | None, environ: dict[str, str] | None = None) -> bool:
    """The supervisor's calling thread, and the threads it starts later, onto ``cpus`` (from
    :func:`name_layout`), once the services it forks have started: a fork takes its parent's
    CPUs, and a forked service's start-up is better spread over all of them. Called before the
    supervisor starts a thread. If the scheduler refuses, the services are told there is no
    layout (their next start), and False is returned."""
    if cpus is None:
        return False
    if _pin(cpus):
        return True
    (os.environ if environ is None else environ).pop(ENV, None)
    return False


def _named(environ: Mapping[str, str] | None) -> tuple[int, frozenset[int]] | None:
    """(the reader's CPU, the run's CPUs) as the supervisor named them in :data:`ENV`; None when
    it named none, the layout is turned off, or the value is not one :func:`name_layout` writes."""
    env = os.environ if environ is None else environ
    value = env.get(ENV)
    if not value or _off(env):
        return None
    try:
        head, _, tail = value.partition("/")
        reader, full = int(head), parse_cpus(tail)
    except ValueError:
        return None
    return (reader, full) if reader in full else None


def enter_worker_manager(environ: Mapping[str, str] | None = None) -> int | None:
    """Called by the worker manager's main thread (its reader) before it starts a thread: onto the
    CPU the supervisor left it, if it named one. Returns that CPU, or None."""
    global _full
    named = _named(environ)
    if named is None or not _pin({named[0]}):
        return None
    _full = named[1]
    return named[0]


def enter_service(environ: Mapping[str, str] | None = None) -> bool:
    """Called by the planning and bootstrap services' main thread before it starts a thread: back
    onto every CPU the run was started with, if the supervisor named a layout (they inherit its
    confinement when it forks them). True when it did."""
    named = _named(environ)
    return named is not None and _pin(named[1])


def widen() -> None:
    """A worker manager's job thread: back onto every CPU the run was started with, so that
    what it starts is not confined (a no-op unless :func:`enter_worker_manager` confined the
    reader)."""
    if _full is not None:
        _pin(_full)
