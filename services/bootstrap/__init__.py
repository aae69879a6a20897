"""The bootstrap service: gets a workspace ready for a run, phase by phase, over JSON-RPC.

    python -m harness.services.bootstrap        # or: harness-bootstrap

Methods: ``plan`` (the ordered phases), ``execute_phase`` (run one; idempotent: the same inputs
give the cached result), ``replay`` (rebuild the cache from earlier ``phase_completed``
notifications), plus ``initialize``, ``ping`` and ``shutdown``. Notifications: ``phase_started``
and ``phase_completed``. The contract is ``contracts/bootstrap.yaml``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from ._models import SCHEMAS

if TYPE_CHECKING:
    from harness.rpc import Server

__all__ = ["SCHEMAS", "build_server", "main"]


def build_server() -> Server:
    """A Server with the bootstrap methods registered.

    The engine and its phase modules are imported on the first call that needs them, so spawn to
    first answer (``initialize``, ``ping``) pays only for the wire models; and importing this
    package for ``SCHEMAS`` (the schema generator does) imports no server at all.
    """
    import threading

    from harness import __version__
    from harness.rpc import Server

    from ._models import NOTIFICATIONS, BootstrapPlanParams, BootstrapReplayParams, ExecutePhaseParams

    server = Server("bootstrap", __version__, contract="bootstrap", notifications=list(NOTIFICATIONS))
    lock = threading.Lock()
    engines: list[Any] = []

    def engine() -> Any:  # the _engine.Bootstrap, built once
        with lock:
            if not engines:
                from ._engine import Bootstrap

                engines.append(Bootstrap(server.notify))
            return engines[0]

    server.add_method("plan", lambda p: engine().plan(p), params=BootstrapPlanParams)
    server.add_method("execute_phase", lambda p: engine().execute_phase(p), params=ExecutePhaseParams, blocking=True)
    server.add_method("replay", lambda p: engine().replay(p), params=BootstrapReplayParams)
    return server


def main() -> NoReturn:
    """Serve on stdin/stdout until EOF or ``shutdown``; diagnostics go to stderr."""
    from harness import _cpus
    from harness.rpc import configure_logging

    configure_logging()
    _cpus.enter_service()  # every CPU of the run for the phases' commands
    build_server().run_stdio_and_exit()
