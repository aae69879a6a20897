"""The supervisor: spawns the services, drives a run through its gates, recovers, logs."""

from ._run import EXIT_FAILED, EXIT_OK, EXIT_USAGE, EXIT_WAITING, PlanRejected, RunLocked, RunOptions, Supervisor
from ._service import ServiceFatal, SupervisedService
from ._ui import UI, JsonUI

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_WAITING",
    "JsonUI",
    "PlanRejected",
    "RunLocked",
    "RunOptions",
    "ServiceFatal",
    "SupervisedService",
    "Supervisor",
    "UI",
]
