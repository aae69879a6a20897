"""The supervisor: spawns the services, drives a run through its gates, recovers, logs.

Deciding is apart from doing: :mod:`._decide` says what to do next from the folded state alone
(pure, unit-tested per edge); :class:`Supervisor` carries it out (lock, signals, services, task
threads, terminal).
"""

from ._run import PlanChanged, PlanRejected, RunLocked, RunOptions, Supervisor
from ._service import ServiceFatal, SupervisedService
from ._ui import UI, JsonUI

__all__ = [
    "UI",
    "JsonUI",
    "PlanChanged",
    "PlanRejected",
    "RunLocked",
    "RunOptions",
    "ServiceFatal",
    "SupervisedService",
    "Supervisor",
]
