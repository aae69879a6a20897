"""The caller's side: Peer correlation, timeouts, peer death, close, and ServiceProcess shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pytest

from harness.rpc import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    TIMEOUT,
    ClientClosed,
    ConnectionClosed,
    RequestTimeout,
    RPCError,
    ServiceProcess,
)

WAIT = 10.0  # upper bound of every wait in this module; a healthy run needs a fraction of it


@pytest.fixture
def spawn(rpc_fixture_cmd: Callable[..., list[str]]) -> Iterator[Callable[..., ServiceProcess]]:
    """Start fixture services; every one is stopped and reaped at the end of the test."""
    started: list[ServiceProcess] = []

    def start(name: str, *args: str, **kwargs: Any) -> ServiceProcess:
        service = ServiceProcess(rpc_fixture_cmd(name, *args), name=name, stderr=subprocess.DEVNULL, **kwargs)
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            service.stop(grace=2.0, term_grace=1.0)


def result_of(fut: Future[Any]) -> Any:
    return fut.result(WAIT)


def error_of(fut: Future[Any]) -> BaseException:
    exc = fut.exception(WAIT)
    assert exc is not None, "expected the request to fail"
    return exc


# -- correlation ------------------------------------------------------------------------------


def test_out_of_order_responses_reach_their_own_requests(spawn: Callable[..., ServiceProcess]) -> None:
    service = spawn("reverse_service", "16")
    arrival: list[int] = []
    futures = []
    for i in range(16):
        fut = service.peer.request_async("echo", {"value": i}, timeout=WAIT)

        def arrived(_: Future[Any], i: int = i) -> None:
            arrival.append(i)

        fut.add_done_callback(arrived)
        futures.append(fut)
    assert [result_of(f)["value"] for f in futures] == list(range(16))
    assert arrival == list(reversed(range(16)))  # the service really answered last-first


def test_many_requests_in_flight_from_many_threads_all_complete(spawn: Callable[..., ServiceProcess]) -> None:
    service = spawn("echo_service")
    results: dict[tuple[int, int], Future[Any]] = {}
    lock = threading.Lock()

    def fire(thread_no: int) -> None:
        for i in range(250):
            method = "echo_blocking" if i % 5 == 0 else "echo"
            fut = service.peer.request_async(method, {"value": [thread_no, i]}, timeout=WAIT)
            with lock:
                results[(thread_no, i)] = fut

    threads = [threading.Thread(target=fire, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()
    assert len(results) == 1000
    for (thread_no, i), fut in results.items():
        assert result_of(fut) == {"value": [thread_no, i]}
    assert service.peer.pending_count == 0
    assert service.peer.late_responses == 0


def test_notifications_reach_the_callback_before_the_reply(spawn: Callable[..., ServiceProcess]) -> None:
    seen: list[tuple[str, Any]] = []
    service = spawn("echo_service", on_notification=lambda method, params: seen.append((method, params)))
    assert service.request("emit", {"count": 5}, timeout=WAIT) == {"sent": 5}
    assert seen == [("tick", {"i": i}) for i in range(5)]


def test_a_failing_notification_callback_does_not_stop_the_reader(spawn: Callable[..., ServiceProcess]) -> None:
    def broken(method: str, params: Any) -> None:
        raise RuntimeError("callback bug")

    service = spawn("echo_service", on_notification=broken)
    assert service.request("emit", {"count": 3}, timeout=WAIT) == {"sent": 3}
    assert service.request("ping", timeout=WAIT) == {}


def test_wire_errors_come_back_as_their_exception_class(spawn: Callable[..., ServiceProcess]) -> None:
    service = spawn("echo_service")
    cases = [
        ("no_such_method", None, METHOD_NOT_FOUND),
        ("emit", {"count": -1}, INVALID_PARAMS),
        ("crash", None, INTERNAL_ERROR),
    ]
    for method, params, code in cases:
        with pytest.raises(RPCError) as info:
            service.request(method, params, timeout=WAIT)
        assert info.value.code == code


def test_params_that_are_not_json_fail_the_call_and_the_peer_goes_on(spawn: Callable[..., ServiceProcess]) -> None:
    service = spawn("echo_service")
    for bad in ({"value": float("nan")}, {"value": {1, 2}}):
        with pytest.raises(RPCError) as info:
            service.request("echo", bad, timeout=WAIT)
        assert info.value.code == INVALID_PARAMS  # the caller's mistake, not a dead connection
    assert service.peer.pending_count == 0
    assert service.request("echo", {"value": 1}, timeout=WAIT) == {"value": 1}


# -- timeouts ---------------------------------------------------------------------------------


def test_timeout_fires_and_the_late_response_is_dropped_without_harm(spawn: Callable[..., ServiceProcess]) -> None:
    service = spawn("echo_service")
    assert service.request("ping", timeout=WAIT) == {}  # the service is up: the hold starts at once
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as info:
        service.request("hold", timeout=0.3)
    assert info.value.code == TIMEOUT
    assert time.monotonic() - started < 0.3 + 2.0
    assert service.peer.pending_count == 0
    os.kill(service.pid, signal.SIGUSR1)  # the held call now answers, too late
    # The service answers in order, so by the time ping's reply is read the late one was too.
    assert service.request("ping", timeout=WAIT) == {}
    assert service.peer.late_responses == 1
    assert service.request("echo", {"value": "after"}, timeout=WAIT) == {"value": "after"}


def test_a_request_without_timeout_does_not_start_a_deadline(spawn: Callable[..., ServiceProcess]) -> None:
    service = spawn("echo_service")
    fut = service.peer.request_async("echo", {"value": 1})
    assert result_of(fut) == {"value": 1}


# -- peer death and close ---------------------------------------------------------------------


def test_sigkill_fails_every_pending_request_at_once_with_connection_closed(
    spawn: Callable[..., ServiceProcess],
) -> None:
    service = spawn("echo_service")
    assert service.request("ping", timeout=WAIT) == {}
    held = service.peer.request_async("hold", timeout=60)
    queued = [service.peer.request_async("echo", {"value": i}, timeout=60) for i in range(20)]
    assert service.peer.pending_count == 21
    os.kill(service.pid, signal.SIGKILL)
    started = time.monotonic()
    for fut in [held, *queued]:
        exc = error_of(fut)
        assert type(exc) is ConnectionClosed
        assert exc.code == CONNECTION_CLOSED
    assert time.monotonic() - started < 5.0
    with pytest.raises(ConnectionClosed) as info:
        service.peer.request_async("ping")
    assert not isinstance(info.value, ClientClosed)  # it died; we did not close it
    assert not service.peer.alive


def test_a_service_that_exits_mid_request_fails_it_with_connection_closed(spawn: Callable[..., ServiceProcess]) -> None:
    closed = threading.Event()
    service = spawn("dying_service", on_close=lambda error: closed.set())
    with pytest.raises(ConnectionClosed) as info:
        service.request("die", timeout=WAIT)
    assert info.value.code == CONNECTION_CLOSED
    assert closed.wait(WAIT)
    assert service.proc.wait(WAIT) == 3


def test_requests_after_close_raise_client_closed(spawn: Callable[..., ServiceProcess]) -> None:
    service = spawn("echo_service")
    assert service.request("ping", timeout=WAIT) == {}
    pending = service.peer.request_async("hold", timeout=60)
    service.peer.close()
    assert isinstance(error_of(pending), ClientClosed)
    with pytest.raises(ClientClosed) as info:
        service.request("ping", timeout=WAIT)
    assert info.value.code == CONNECTION_CLOSED
    with pytest.raises(ClientClosed):
        service.peer.notify("tick")
    os.kill(service.pid, signal.SIGUSR1)  # let the held call end so the service sees EOF


def test_an_oversized_response_fails_its_request_at_once(spawn: Callable[..., ServiceProcess]) -> None:
    service = spawn("echo_service", max_line=1024)
    started = time.monotonic()
    with pytest.raises(RPCError) as info:
        service.request("big", {"size": 4096}, timeout=4.0)
    assert info.value.code == INVALID_REQUEST
    assert time.monotonic() - started < 2.0  # at once, not when the 4 s timeout runs out
    assert service.request("big", {"size": 10}, timeout=WAIT) == {"blob": "x" * 10}


def test_an_oversized_request_gets_its_own_invalid_request_reply(spawn: Callable[..., ServiceProcess]) -> None:
    service = spawn("echo_service", "--max-line", "1024")
    started = time.monotonic()
    with pytest.raises(RPCError) as info:
        service.request("echo", {"value": "x" * 4096}, timeout=4.0)
    assert info.value.code == INVALID_REQUEST
    assert time.monotonic() - started < 2.0  # answered, not left to the 4 s timeout
    assert service.request("echo", {"value": 1}, timeout=WAIT) == {"value": 1}


# -- ServiceProcess ---------------------------------------------------------------------------


def test_stop_of_a_well_behaved_service_closes_stdin_and_it_exits_zero(spawn: Callable[..., ServiceProcess]) -> None:
    service = spawn("echo_service")
    assert service.request("ping", timeout=WAIT) == {}
    started = time.monotonic()
    assert service.stop(grace=WAIT, term_grace=1.0) == 0
    assert time.monotonic() - started < 2.0


def test_stop_escalates_to_sigkill_for_a_child_ignoring_eof_and_sigterm_and_reaps_it(
    spawn: Callable[..., ServiceProcess],
) -> None:
    ready = threading.Event()
    service = spawn("stubborn_service", on_notification=lambda method, params: ready.set())
    assert ready.wait(WAIT), "the stubborn child never said it ignores SIGTERM"
    assert os.getsid(service.pid) == service.pid  # in its own session, so its group can be signalled
    started = time.monotonic()
    status = service.stop(grace=0.2, term_grace=0.2)
    elapsed = time.monotonic() - started
    assert status == -signal.SIGKILL
    assert 0.4 <= elapsed < 0.4 + 2.0
    assert service.proc.returncode == -signal.SIGKILL
    with pytest.raises(ChildProcessError):
        os.waitpid(service.pid, os.WNOHANG)  # already reaped


def test_stop_sends_sigterm_when_eof_is_ignored_and_sigterm_ends_the_child(
    spawn: Callable[..., ServiceProcess],
) -> None:
    ready = threading.Event()
    service = spawn("stubborn_service", "--obey-sigterm", on_notification=lambda method, params: ready.set())
    assert ready.wait(WAIT)
    started = time.monotonic()
    assert service.stop(grace=0.2, term_grace=WAIT) == -signal.SIGTERM
    assert time.monotonic() - started < 0.2 + 2.0


def test_kill_ends_the_whole_group_and_reaps(spawn: Callable[..., ServiceProcess]) -> None:
    ready = threading.Event()
    service = spawn("stubborn_service", on_notification=lambda method, params: ready.set())
    assert ready.wait(WAIT)
    service.kill()
    assert service.proc.returncode == -signal.SIGKILL


def test_future_results_are_bounded_even_if_nothing_answers(spawn: Callable[..., ServiceProcess]) -> None:
    service = spawn("reverse_service", "1000000")  # never answers a single request
    fut = service.peer.request_async("echo", {"value": 1}, timeout=0.2)
    with pytest.raises(RequestTimeout):
        fut.result(WAIT)
    with pytest.raises(FutureTimeout):
        service.peer.request_async("echo", {"value": 2}).result(0.05)
