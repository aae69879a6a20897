"""One supervised service: an explicit lifecycle, restarts with backoff and intensity, replay.

    STOPPED --start--> STARTING --initialize answered--> RUNNING
    STARTING --no answer / exit--> BACKOFF (counts as a restart) | FATAL (intensity exceeded)
    RUNNING --EOF / exit--> BACKOFF --delay--> STARTING
    BACKOFF --more than max_restarts within within_seconds--> FATAL
    any --stop--> STOPPED

Each transition writes one event (SERVICE_STARTED, SERVICE_CRASHED, SERVICE_RESTARTED,
SERVICE_FATAL). After a restart the service is handed its own events from the log (``replay``) so
it rebuilds its state, then the calls that were in flight are sent again: their idempotency keys
make that safe.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from .._spawn import ServiceChild, start_time
from ..config import ServiceSpec
from ..events import EventType as E
from ..rpc import ClientClosed, ConnectionClosed, RequestTimeout, RPCError, ServiceProcess
from ..state import ServiceState

Emit = Callable[..., Any]
NotificationSink = Callable[[str, str, Any], None]
ReplaySource = Callable[[], list[dict[str, Any]]]


class ServiceFatal(Exception):
    """A service kept dying: its restart intensity was exceeded. The run pauses (exit 3)."""

    def __init__(self, service: str, reason: str) -> None:
        self.service = service
        self.reason = reason
        super().__init__(f"service {service} is down for good: {reason}")


class SupervisedService:
    def __init__(
        self,
        spec: ServiceSpec,
        *,
        emit: Emit,
        on_notification: NotificationSink,
        replay_source: ReplaySource | None = None,
        stderr: IO[bytes] | None = None,
        cwd: str | None = None,
        prespawned: ServiceChild | None = None,
    ) -> None:
        self.spec = spec
        self._prespawned = prespawned  # adopted as the first start (see harness._spawn)
        self.name = spec.name
        self._emit = emit
        self._on_notification = on_notification
        self._replay_source = replay_source
        self._stderr = stderr
        self._cwd = cwd
        self.state = ServiceState.stopped
        self.proc: ServiceProcess | None = None
        self.info: dict[str, Any] = {}
        self.generation = 0
        self.restarts = 0
        self._restart_times: collections.deque[float] = collections.deque()
        self._lock = threading.RLock()
        self._fatal: ServiceFatal | None = None
        self._stopping = False
        self._calls = itertools.count()
        self._inflight: dict[int, str] = {}  # call number -> method, for SERVICE_CRASHED

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """STOPPED -> STARTING -> RUNNING; raises ServiceFatal if it never comes up."""
        with self._lock:
            assert self.state in (ServiceState.stopped,), self.state
            self._start_until_running(first=True)

    def _spawn(self) -> None:
        """STARTING: spawn and wait (bounded) for ``initialize``."""
        self.state = ServiceState.starting
        env = dict(os.environ)
        env.update(self.spec.env)
        gen = self.generation + 1
        started, self._prespawned = self._prespawned, None
        proc = ServiceProcess(
            self.spec.command,
            name=self.name,
            env=env,
            cwd=self._cwd,
            stderr=self._stderr,
            started=started,
            on_notification=lambda method, params: self._on_notification(self.name, method, params),
            on_close=lambda error: self._watch_exit(gen),
        )
        try:
            self.info = (
                proc.request("initialize", {"client": "harness-supervisor"}, timeout=self.spec.restart.start_timeout)
                or {}
            )
        except BaseException:
            proc.kill()
            raise
        self.proc = proc
        self.generation = gen

    def _start_until_running(self, *, first: bool) -> None:
        """Spawn, counting failed starts against the restart intensity, until RUNNING or FATAL.

        A start counts once the service answered ``initialize``; it is complete once the service
        has replayed its own events. Dying in between is one more crash.
        """
        while True:
            try:
                self._spawn()
            except (ConnectionClosed, RequestTimeout, OSError) as exc:
                reason = f"did not answer initialize: {exc}"
                self._emit(
                    E.SERVICE_CRASHED,
                    {"service": self.name, "exit": reason, "in_flight": [], "phase": "start"},
                    durable=True,
                )
                self._backoff_or_fatal(reason)
                continue
            assert self.proc is not None
            self.state = ServiceState.running
            if first and self.restarts == 0:
                started = {
                    "service": self.name,
                    "pid": self.proc.pid,
                    "start_time": start_time(self.proc.pid),
                    "command": self.spec.command,
                }
                if self.proc.launch == "fork":  # the CLI forked it to run this command's service
                    started["launch"] = "fork"
                self._emit(E.SERVICE_STARTED, started, durable=True)
            else:
                self._emit(
                    E.SERVICE_RESTARTED,
                    {
                        "service": self.name,
                        "pid": self.proc.pid,
                        "start_time": start_time(self.proc.pid),
                        "attempt": self.restarts,
                    },
                    durable=True,
                )
            try:
                self._replay()
            except RPCError as exc:  # died, timed out, or refused its events: one more failed start
                reason = f"replay failed: {type(exc).__name__}: {exc.message}"
                self._emit(
                    E.SERVICE_CRASHED,
                    {
                        "service": self.name,
                        "pid": self.proc.pid,
                        "exit": reason,
                        "in_flight": ["replay"],
                        "phase": "replay",
                    },
                    durable=True,
                )
                self.proc.kill()
                self._backoff_or_fatal(reason)
                continue
            return

    def _backoff_or_fatal(self, reason: str) -> None:
        """RUNNING/STARTING -> BACKOFF, or FATAL when the intensity is exceeded."""
        policy = self.spec.restart
        now = time.monotonic()
        self._restart_times.append(now)
        while self._restart_times and now - self._restart_times[0] > policy.within_seconds:
            self._restart_times.popleft()
        if len(self._restart_times) > policy.max_restarts:
            self.state = ServiceState.fatal
            self._fatal = ServiceFatal(
                self.name,
                f"{len(self._restart_times)} crashes within {policy.within_seconds:g} s (limit {policy.max_restarts}); last: {reason}",
            )
            self._emit(E.SERVICE_FATAL, {"service": self.name, "reason": self._fatal.reason}, durable=True)
            raise self._fatal
        self.state = ServiceState.backoff
        self.restarts += 1
        delay = policy.delay(self.restarts)
        if delay > 0:
            time.sleep(delay)  # bounded by the configured schedule

    def _replay(self) -> None:
        if self._replay_source is None or "replay" not in (self.info.get("methods") or []):
            return
        events = self._replay_source()
        assert self.proc is not None
        self.proc.request("replay", {"events": events}, timeout=self.spec.request_timeout)

    def _watch_exit(self, generation: int) -> None:
        """The peer's output ended. Restart at once, even if nobody is calling the service now."""
        if self._stopping or generation != self.generation:
            return

        def restart() -> None:
            try:
                self._on_crash(generation)
            except (ServiceFatal, ConnectionClosed):
                pass  # recorded; the next call (or the run's health check) raises it

        threading.Thread(target=restart, name=f"restart-{self.name}", daemon=True).start()

    @property
    def fatal(self) -> ServiceFatal | None:
        return self._fatal

    def _on_crash(self, generation: int) -> None:
        """Called by a caller whose request died with the process of ``generation``."""
        with self._lock:
            if self._fatal is not None:
                raise self._fatal
            if self._stopping:
                raise ClientClosed(f"{self.name} was stopped")
            if generation != self.generation:
                return  # someone else already restarted it
            assert self.proc is not None
            in_flight = sorted(self._inflight.values())
            code = self.proc.proc.poll()
            if code is None:
                try:
                    code = self.proc.proc.wait(2.0)
                except Exception:
                    self.proc.kill()
                    code = self.proc.proc.poll()
            exit_desc = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            self._emit(
                E.SERVICE_CRASHED,
                {"service": self.name, "pid": self.proc.pid, "exit": exit_desc, "in_flight": in_flight},
                durable=True,
            )
            self.proc.stop(grace=0.5, term_grace=0.5)
            self._backoff_or_fatal(exit_desc)
            self._start_until_running(first=False)

    # -- calls ----------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        sent: Callable[[Callable[[str, Any], None]], None] | None = None,
    ) -> Any:
        """A request that survives restarts: re-sent (same params, same idempotency key) after a crash.

        ``sent`` runs after each sending, while the answer is awaited, with a function that sends
        a notification to the same process (what a held spawn_and_run waits for)."""
        timeout = timeout or self.spec.request_timeout
        while True:
            with self._lock:
                if self._fatal is not None:
                    raise self._fatal
                proc, generation = self.proc, self.generation
            if proc is None:
                raise ClientClosed(f"{self.name} is not running")
            number = next(self._calls)
            self._inflight[number] = method
            try:
                if sent is None:
                    return proc.request(method, params, timeout=timeout)
                answer = proc.peer.request_async(method, params, timeout=timeout)
                sent(proc.peer.notify)
                return answer.result(timeout + 5.0)  # the peer's timer fails it at the deadline
            except ClientClosed:
                raise
            except ConnectionClosed:
                self._on_crash(generation)
            finally:
                self._inflight.pop(number, None)

    def stop(self) -> None:
        """Any -> STOPPED: escalating, bounded shutdown."""
        with self._lock:
            self._stopping = True
            proc, self.proc = self.proc, None
            if self.state is not ServiceState.fatal:
                self.state = ServiceState.stopped
        if proc is not None:
            try:
                proc.request("shutdown", timeout=1.0)
            except Exception:
                pass
            proc.stop(grace=2.0, term_grace=1.0)
