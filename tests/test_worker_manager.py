"""The worker-manager service, driven as a real child process (and its fold, in process).

Every reply is checked against the schema its contract names, every notification against
WorkerEvent. Each test checks at teardown that no worker process of its run directory is alive.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wm_support import (
    SERVICE_CMD,
    WAIT,
    Manager,
    assert_no_worker_left,
    kill_pids,
    live_members,
    load_contract,
    load_schema,
    packet,
    result_schema,
    validate,
    wait_until,
)

from harness.models import WorkerEvent
from harness.rpc import (
    GATE_BLOCKED,
    INVALID_PARAMS,
    INVALID_TRANSITION,
    NOT_FOUND,
    ConnectionClosed,
    RPCError,
)
from harness.services.worker_manager import (
    BASE_ENV,
    CancelWorkerParams,
    CheckTrustParams,
    LocalExecutor,
    MarkTrustedParams,
    RunWorkerParams,
    SpawnWorkerParams,
    WorkerManager,
    WorkerTable,
)

# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_worker_left(tmp_path: Path) -> Iterator[None]:
    """Fail the test if a worker process of its run directory outlives it."""
    yield
    assert_no_worker_left(tmp_path)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "ws").mkdir()
    return tmp_path / "ws"


@pytest.fixture
def start_manager() -> Iterator[Callable[..., Manager]]:
    """Start worker managers (optionally with an environment); all are stopped at teardown."""
    started: list[Manager] = []

    def start(env: dict[str, str] | None = None) -> Manager:
        started.append(Manager(env))
        return started[-1]

    try:
        yield start
    finally:
        for m in started:
            m.stop()
    for m in started:
        assert not m.bad_events, m.bad_events


@pytest.fixture
def wm(start_manager: Callable[..., Manager]) -> Manager:
    return start_manager()


def run(wm: Manager, wid: str, timeout: float = WAIT) -> dict[str, Any]:
    return wm.call("run_worker", {"worker_id": wid}, timeout=timeout)


def rpc_error(call: Callable[[], Any]) -> RPCError:
    with pytest.raises(RPCError) as caught:
        call()
    return caught.value


def read_pgids(tmp_path: Path, wid: str) -> list[int]:
    """The process groups of a worker's steps, in order, from the run folder's ``workers/pgids``
    (after the job's line that says it began, which names no group)."""
    lines = (tmp_path / "run" / "workers" / "pgids").read_text().splitlines()
    pgids = [int(line.split()[1]) for line in lines if line.split()[0] == wid]
    assert pgids[:1] == [0], f"{wid} was not recorded as begun before its first step: {lines}"
    return pgids[1:]


def write_fifo(path: Path, data: bytes) -> None:
    """Write to a fifo a worker's step reads, once the step has opened it (bounded by WAIT)."""
    fd = -1

    def opened() -> bool:
        nonlocal fd
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while nobody reads it
        except OSError:
            return False
        return True

    assert wait_until(opened, WAIT), f"nobody opened {path} for reading"
    try:
        os.set_blocking(fd, True)
        os.write(fd, data)
    finally:
        os.close(fd)


def read_fifo(path: Path) -> bytes:
    """All a worker's step writes to a fifo, whether it opens it before or after us (bounded by WAIT)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # at once: no writer needed
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        data = b""
        deadline = time.monotonic() + WAIT
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{path} was not written and closed in time"
            if poller.poll(int(remaining * 1000) + 1):
                chunk = os.read(fd, 4096)
                if not chunk:  # the writer came and went
                    return data
                data += chunk
    finally:
        os.close(fd)


# -- lifecycle and contract -------------------------------------------------------------------


def test_initialize_names_the_contract_its_methods_and_its_notifications(wm: Manager) -> None:
    info = wm.call("initialize")
    assert info["contract"] == "worker-manager"
    assert set(load_contract("worker-manager")["methods"]) <= set(info["methods"])
    assert info["notifications"] == ["worker_event", "tool_permission"]


def test_contract_examples_run_in_order_and_answer_with_their_schemas(wm: Manager, tmp_path: Path) -> None:
    from harness.conformance import substitute

    contract = load_contract("worker-manager")
    latest: dict[str, Any] = {}
    for method, spec in contract["methods"].items():
        for example in spec.get("examples") or [{}]:
            latest[method] = wm.call(method, substitute(example, latest, str(tmp_path)))
    assert latest["run_worker"]["state"] == "finished"
    assert latest["cancel_worker"]["result"]["reason"] == "cancelled"
    codes = {code for spec in contract["methods"].values() for code in spec["errors"]}
    assert codes <= set(contract["errors"])


def test_every_type_the_contract_names_has_a_generated_schema_from_this_service_or_the_core() -> None:
    import harness.services.worker_manager as wm_module
    from harness.schemagen import CORE

    contract = load_contract("worker-manager")
    names = {spec[key] for spec in contract["methods"].values() for key in ("params", "result")}
    names |= {spec["params"] for spec in contract["notifications"].values()}
    assert names <= set(wm_module.SCHEMAS) | set(CORE)
    for name in names:
        assert load_schema(name)["$id"] == f"{name}.json"
    assert all(hasattr(wm_module, name) for name in wm_module.__all__)


def test_on_stdin_eof_the_service_answers_a_running_worker_then_exits(ws: Path, tmp_path: Path) -> None:
    wid = "w-" + hashlib.sha256(b"eof").hexdigest()[:12]
    spawn = {
        "task_packet": packet(commands=["sleep 0.2"]),
        "workspace": str(ws),
        "run_dir": str(tmp_path / "run"),
        "idempotency_key": "eof",
    }
    lines = [
        {"id": 1, "method": "spawn_worker", "params": spawn},
        {"id": 2, "method": "mark_trusted", "params": {"worker_id": wid, "approval_source": "test"}},
        {"id": 3, "method": "run_worker", "params": {"worker_id": wid}},
    ]
    proc = subprocess.Popen(SERVICE_CMD, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        out, _ = proc.communicate("".join(json.dumps(x) + "\n" for x in lines).encode(), timeout=WAIT)
    finally:
        proc.kill()
        proc.wait(WAIT)
    replies = {m["id"]: m for m in map(json.loads, out.splitlines()) if "id" in m}
    assert proc.returncode == 0
    assert replies[3]["result"]["state"] == "finished"


# -- spawn and confinement --------------------------------------------------------------------


def test_spawning_twice_with_one_idempotency_key_returns_the_same_worker_without_new_events(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    first = wm.spawn(tmp_path, packet(), idempotency_key="run-1/t1/1")
    again = wm.spawn(tmp_path, packet(title="changed"), idempotency_key="run-1/t1/1")
    assert again == first
    assert first["worker_id"] == "w-" + hashlib.sha256(b"run-1/t1/1").hexdigest()[:12]
    assert first["state"] == "trust_required" and first["scope_dir"] == str(ws.resolve())
    assert wm.events_of(first["worker_id"]) == ["worker_spawned"]
    spawned = wm.events[0]["data"]
    assert spawned["packet"]["id"] == "t1" and spawned["workspace"] == str(ws.resolve())
    assert spawned["idempotency_key"] == "run-1/t1/1" and spawned["attempt"] == 1


def test_workers_spawned_without_a_key_are_named_by_task_attempt_and_counter(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    assert wm.spawn(tmp_path, packet("build"))["worker_id"] == "w-build-1-1"
    assert wm.spawn(tmp_path, packet("build"), attempt=2)["worker_id"] == "w-build-2-2"


def test_the_run_dir_defaults_to_the_workspace_adhoc_folder(wm: Manager, ws: Path, tmp_path: Path) -> None:
    info = wm.call("spawn_worker", {"task_packet": packet(commands=["echo hi"]), "workspace": str(ws)})
    wm.call("mark_trusted", {"worker_id": info["worker_id"], "approval_source": "test"})
    result = run(wm, info["worker_id"])["result"]
    assert result["stdout_path"] == str(
        ws.resolve() / ".harness" / "workers-adhoc" / "workers" / info["worker_id"] / "stdout.log"
    )


# -- the seed's request: a bare packet, no id, no workspace -----------------------------------

#: The seed's QUICKSTART packet and request, verbatim.
SEED_PACKET = {"objective": "run the tests", "scope": "workspace", "scope_path": ".", "acceptance_tests": ["true"]}
SEED_SPAWN = '{"id":1,"method":"spawn_worker","params":{"task_packet":{"objective":"run the tests","scope":"workspace","scope_path":".","acceptance_tests":["true"]}}}'
CONSOLE_SCRIPT = Path(sys.executable).with_name("harness-worker-manager")
#: The console script when it is installed next to this interpreter, else the module.
PIPED_CMD = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else SERVICE_CMD


def pipe_lines(cwd: Path, *lines: str) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """Pipe ``lines`` into a fresh manager started in ``cwd``: its results by request id (each
    checked against the contract's schema) and its worker events, in order."""
    done = subprocess.run(
        PIPED_CMD, input="".join(line + "\n" for line in lines), capture_output=True, text=True, cwd=cwd, timeout=WAIT
    )
    assert done.returncode == 0, done.stderr
    methods = {json.loads(line)["id"]: json.loads(line)["method"] for line in lines}
    results: dict[int, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for message in map(json.loads, done.stdout.splitlines()):
        if "id" not in message:
            validate("WorkerEvent", message["params"])
            events.append(message["params"])
            continue
        assert "result" in message, message
        validate(result_schema(methods[message["id"]]), message["result"])
        results[message["id"]] = message["result"]
    return results, events


def seed_run(ws: Path, spawn: str) -> tuple[str, dict[str, Any]]:
    """Spawn once to learn the worker id, then, in a second manager, spawn the same packet again
    (same id: it is derived from the packet, not from the manager), trust it and run it."""
    wid = pipe_lines(ws, spawn)[0][1]["worker_id"]
    trust = {"id": 2, "method": "mark_trusted", "params": {"worker_id": wid, "approval_source": "test"}}
    run_it = {"id": 3, "method": "run_worker", "params": {"worker_id": wid}}
    results, _ = pipe_lines(ws, spawn, json.dumps(trust), json.dumps(run_it))
    assert results[1]["worker_id"] == wid
    return wid, results[3]


def test_the_seeds_spawn_worker_line_alone_answers_a_worker_in_the_services_working_directory(ws: Path) -> None:
    done = subprocess.run(
        ["sh", "-c", f"echo {shlex.quote(SEED_SPAWN)} | {shlex.join(PIPED_CMD)}"],
        capture_output=True,
        text=True,
        cwd=ws,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    [reply] = [m for m in map(json.loads, done.stdout.splitlines()) if m.get("id") == 1]
    info = reply["result"]
    validate("WorkerInfo", info)
    assert info["worker_id"].startswith("w-") and info["state"] == "trust_required"
    assert re.fullmatch(r"task-[0-9a-f]{12}", info["task_id"])
    assert info["scope_dir"] == str(ws.resolve())


def test_a_packet_without_an_id_is_named_by_its_content_however_it_is_spelled(ws: Path) -> None:
    def spawn(rid: int, pkt: dict[str, Any]) -> str:
        return json.dumps({"id": rid, "method": "spawn_worker", "params": {"task_packet": pkt}})

    spelled_out = {**SEED_PACKET, "title": "run the tests", "depends_on": [], "risk": "low"}
    other = {**SEED_PACKET, "acceptance_tests": ["false"]}
    replies, events = pipe_lines(ws, SEED_SPAWN, spawn(2, SEED_PACKET), spawn(3, spelled_out), spawn(4, other))
    assert replies[1] == replies[2] == replies[3]
    assert replies[4]["task_id"] != replies[1]["task_id"]
    assert [e["event"] for e in events] == ["worker_spawned", "worker_spawned"]
    spawned = events[0]["data"]
    assert spawned["workspace"] == str(ws.resolve())
    assert spawned["run_dir"] == str(ws.resolve() / ".harness" / "workers-adhoc")


def test_the_seeds_packet_spawned_again_is_the_same_worker_and_runs_its_acceptance_test_to_finished(
    ws: Path,
) -> None:
    wid, ran = seed_run(ws, SEED_SPAWN)
    assert ran["worker_id"] == wid and ran["state"] == "finished" and ran["result"]["ok"] is True
    # `true` prints nothing: no output file, no worker folder; its group is in the run's record
    assert ran["result"]["stdout_path"] is None and ran["result"]["stderr_path"] is None
    workers = ws.resolve() / ".harness" / "workers-adhoc" / "workers"
    assert not (workers / wid).exists()
    assert [line.split()[0] for line in (workers / "pgids").read_text().splitlines()] == [
        wid,
        wid,
    ]  # begun, then its one step's group


def test_the_seeds_packet_with_a_failing_acceptance_test_runs_to_failed(ws: Path) -> None:
    spawn = SEED_SPAWN.replace('"acceptance_tests":["true"]', '"acceptance_tests":["false"]')
    assert spawn != SEED_SPAWN
    _, ran = seed_run(ws, spawn)
    assert ran["state"] == "failed" and ran["result"]["reason"] == "acceptance_failed"


def test_the_spawn_worker_schema_and_model_take_a_packet_without_an_id_or_with_a_null_one() -> None:
    validate("SpawnWorkerParams", {"task_packet": SEED_PACKET})
    with pytest.raises(jsonschema.ValidationError):
        validate("SpawnWorkerParams", {"task_packet": {**SEED_PACKET, "id": "bad id!"}})
    missing = SpawnWorkerParams.model_validate({"task_packet": SEED_PACKET})
    null = SpawnWorkerParams.model_validate({"task_packet": {**SEED_PACKET, "id": None}})
    given = SpawnWorkerParams.model_validate({"task_packet": {**SEED_PACKET, "id": "tests"}})
    assert missing.task_packet.id == null.task_packet.id and missing.derived_id and null.derived_id
    assert (given.task_packet.id, given.derived_id) == ("tests", False)
    assert missing.workspace is None and missing.run_dir is None and missing.idempotency_key is None


def test_the_seeds_packet_waits_at_the_trust_gate_until_a_decision(ws: Path) -> None:
    wid = pipe_lines(ws, SEED_SPAWN)[0][1]["worker_id"]
    run_it = json.dumps({"id": 2, "method": "run_worker", "params": {"worker_id": wid}})
    done = subprocess.run(
        PIPED_CMD, input=f"{SEED_SPAWN}\n{run_it}\n", capture_output=True, text=True, cwd=ws, timeout=WAIT
    )
    [reply] = [m for m in map(json.loads, done.stdout.splitlines()) if m.get("id") == 2]
    assert reply["error"]["code"] == GATE_BLOCKED


@pytest.mark.parametrize(
    "scope_path", ["..", "../elsewhere", "sub/../../elsewhere", "/etc", "escape-link", "escape-link/deeper"]
)
def test_a_scope_path_resolving_outside_the_workspace_is_refused(
    wm: Manager, ws: Path, tmp_path: Path, scope_path: str
) -> None:
    (tmp_path / "elsewhere").mkdir()
    (ws / "sub").mkdir()
    (ws / "escape-link").symlink_to(tmp_path / "elsewhere")
    err = rpc_error(lambda: wm.spawn(tmp_path, packet(scope_path=scope_path)))
    assert err.code == INVALID_PARAMS
    assert not Path(err.data["resolved"]).is_relative_to(ws.resolve())
    assert wm.events == []


def test_a_symlink_that_stays_inside_the_workspace_is_confined_to_its_real_path(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    (ws / "src").mkdir()
    (ws / "alias").symlink_to(ws / "src")
    info = wm.spawn(tmp_path, packet(scope_path="alias"))
    assert info["scope_dir"] == str((ws / "src").resolve())


# -- the trust gate ---------------------------------------------------------------------------


def test_check_trust_trusts_a_scope_under_a_trusted_root_matched_by_real_path(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    (ws / "pkg").mkdir()
    (tmp_path / "ws-alias").symlink_to(ws)
    wid = wm.spawn(tmp_path, packet(scope_path="pkg"))["worker_id"]
    answer = wm.call(
        "check_trust", {"worker_id": wid, "trusted_roots": [str(tmp_path / "nowhere"), str(tmp_path / "ws-alias")]}
    )
    assert answer["trusted"] is True and answer["state"] == "ready_for_prompt"
    resolved = wm.events[-1]
    assert resolved["event"] == "trust_resolved" and resolved["state"] == "ready_for_prompt"
    assert resolved["data"] == {"source": "trusted_root", "approver": str(tmp_path / "ws-alias")}
    again = wm.call("check_trust", {"worker_id": wid})
    assert again["trusted"] is True
    assert wm.events_of(wid) == ["worker_spawned", "trust_resolved"]


def test_check_trust_does_not_trust_a_sibling_whose_name_starts_with_the_root(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    (tmp_path / "w").mkdir()  # ".../w" is a string prefix of ".../ws", not a parent of it
    wid = wm.spawn(tmp_path, packet())["worker_id"]
    answer = wm.call("check_trust", {"worker_id": wid, "trusted_roots": [str(tmp_path / "w")]})
    assert answer["trusted"] is False and answer["state"] == "trust_required"
    assert wm.events_of(wid) == ["worker_spawned"]


def test_spawn_with_trusted_roots_resolves_the_gate_at_once_but_never_for_a_risky_task(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    safe = wm.spawn(tmp_path, packet(id="safe"), trusted_roots=[str(ws)])
    assert (safe["state"], safe["trusted"], safe["trust_source"]) == ("ready_for_prompt", True, "trusted_root")
    assert wm.events_of(safe["worker_id"]) == ["worker_spawned"]  # the trust is part of the spawn: one event
    [spawned] = [e for e in wm.events if e["worker_id"] == safe["worker_id"]]
    assert spawned["state"] == "ready_for_prompt"
    assert spawned["data"]["trust"] == {"source": "trusted_root", "approver": str(ws)}
    risky = wm.spawn(tmp_path, packet(id="risky", risk="high", risk_reasons=["deploy"]), trusted_roots=[str(ws)])
    assert (risky["state"], risky["trusted"]) == ("trust_required", False)
    outside = wm.spawn(tmp_path, packet(id="outside"), trusted_roots=[str(tmp_path / "w")])
    assert (outside["state"], outside["trusted"]) == ("trust_required", False)


def test_spawn_and_run_runs_a_worker_its_roots_trust_in_one_call_under_the_id_its_key_derives(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    (ws / "a.txt").write_text("x")
    pkt = packet(id="one", commands=["cat a.txt"], acceptance_tests=["test -f a.txt"])
    args = {"task_packet": pkt, "workspace": str(ws), "run_dir": str(tmp_path / "run"), "idempotency_key": "r:one:1"}
    info = wm.call("spawn_and_run", {**args, "trusted_roots": [str(ws)]}, timeout=WAIT)
    assert info["worker_id"] == "w-" + hashlib.sha256(b"r:one:1").hexdigest()[:12]
    assert (info["state"], info["trust_source"], info["result"]["ok"]) == ("finished", "trusted_root", True)
    assert Path(info["result"]["stdout_path"]).read_text().endswith("x")
    assert wm.events_of(info["worker_id"]) == ["worker_spawned", "worker_started", "worker_finished"]
    again = wm.call("spawn_and_run", {**args, "trusted_roots": [str(ws)]}, timeout=WAIT)  # the same key
    assert again["worker_id"] == info["worker_id"] and again["state"] == "finished"
    assert wm.events_of(info["worker_id"]) == ["worker_spawned", "worker_started", "worker_finished"]  # not re-run


def test_spawn_and_run_never_runs_a_worker_its_roots_leave_untrusted(wm: Manager, ws: Path, tmp_path: Path) -> None:
    marker = ws / "ran"
    for pkt, roots in (
        (packet(id="outside", commands=[f"touch {marker}"]), [str(tmp_path / "elsewhere")]),
        (packet(id="risky", commands=[f"touch {marker}"], risk="high", risk_reasons=["deploy"]), [str(ws)]),
        (packet(id="no-roots", commands=[f"touch {marker}"]), []),
    ):
        args = {"task_packet": pkt, "workspace": str(ws), "run_dir": str(tmp_path / "run"), "trusted_roots": roots}
        info = wm.call("spawn_and_run", args, timeout=WAIT)
        assert (info["state"], info["trusted"], info["result"]) == ("trust_required", False, None), pkt["id"]
        assert wm.events_of(info["worker_id"]) == ["worker_spawned"]
        wm.call("mark_trusted", {"worker_id": info["worker_id"], "approval_source": "test"})
        assert not marker.exists()  # the gate was resolved, but only run_worker runs it now
    assert run(wm, info["worker_id"])["state"] == "finished" and marker.exists()


def held(ws: Path, tmp_path: Path, key: str, seconds: float, marker: Path) -> dict[str, Any]:
    """spawn_and_run params of a trusted worker that touches ``marker``, held for ``seconds``."""
    pkt = packet(id=key, commands=[f"touch {marker}"], acceptance_tests=[f"test -f {marker}"])
    return {
        "task_packet": pkt,
        "workspace": str(ws),
        "run_dir": str(tmp_path / "run"),
        "idempotency_key": key,
        "trusted_roots": [str(ws)],
        "hold": seconds,
    }


def test_a_held_spawn_and_run_starts_its_worker_on_release_even_one_that_came_first(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    for key, early in (("held-late", False), ("held-early", True)):
        marker = ws / key
        wid = "w-" + hashlib.sha256(key.encode()).hexdigest()[:12]
        if early:  # read before the spawn it names: kept for it
            wm.svc.peer.notify("release_worker", {"worker_id": wid})
        answer = wm.call_async("spawn_and_run", held(ws, tmp_path, key, 30, marker))
        if not early:
            wm.wait_event(lambda e, wid=wid: e["event"] == "worker_spawned" and e["worker_id"] == wid)
            wm.svc.peer.notify("release_worker", {"worker_id": wid})  # a notification: no answer
        info = answer.result(WAIT)
        assert (info["worker_id"], info["state"], info["result"]["ok"]) == (wid, "finished", True), key
        assert marker.exists()
        assert wm.events_of(wid) == ["worker_spawned", "worker_started", "worker_finished"]


def test_a_short_runs_deferred_events_come_in_its_answer_instead_of_as_notifications(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    marker = ws / "short"
    wid = "w-" + hashlib.sha256(b"short").hexdigest()[:12]
    wm.svc.peer.notify("release_worker", {"worker_id": wid})  # the supervisor's use: held, then released
    info = wm.call("spawn_and_run", {**held(ws, tmp_path, "short", 30, marker), "defer_events": 30})
    assert (info["worker_id"], info["state"], info["result"]["ok"]) == (wid, "finished", True)
    assert [e["event"] for e in info["events"]] == ["worker_started", "worker_finished"]
    for event in info["events"]:
        validate("WorkerEvent", event)
    assert info["events"][-1]["data"]["ok"] is True and info["events"][0]["data"]["pid"] > 0
    # worker_spawned was sent at once (it names the key); a later notification would have come
    # before the answer on the wire
    assert wm.events_of(wid) == ["worker_spawned"]
    # the notification and the answer's events fold to the same table as notifications alone
    table = WorkerTable()
    for event in [e for e in wm.events if e["worker_id"] == wid] + info["events"]:
        table.apply(WorkerEvent.model_validate(event))
    assert table.workers[wid].state.value == "finished"

    again = wm.call("spawn_and_run", {**held(ws, tmp_path, "short", 30, marker), "defer_events": 30})
    assert again["state"] == "finished" and "events" not in again  # nothing new happened


def test_a_run_that_outlasts_its_deferral_sends_its_events_then_and_the_rest_live(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    def blocked(key: str, seconds: float) -> tuple[str, Path, Any]:
        """A worker whose one step waits on a fifo, its events deferred for ``seconds``."""
        fifo = tmp_path / key
        os.mkfifo(fifo)
        pkt = packet(id=key, commands=[f"cat {fifo}"], acceptance_tests=["true"])
        args = {"task_packet": pkt, "workspace": str(ws), "run_dir": str(tmp_path / "run"), "idempotency_key": key}
        answer = wm.call_async("spawn_and_run", {**args, "trusted_roots": [str(ws)], "defer_events": seconds})
        return "w-" + hashlib.sha256(key.encode()).hexdigest()[:12], fifo, answer

    # a long deferral first: the sender sleeps towards its end, and must wake for the short one
    slow_wid, slow_fifo, slow_answer = blocked("slow", 30)
    wid, fifo, answer = blocked("long", 0.05)
    # the step blocks on the fifo: only the deferral's end can have sent these
    wm.wait_event(lambda e: e["event"] == "worker_started" and e["worker_id"] == wid)
    assert wm.events_of(wid) == ["worker_spawned", "worker_started"]
    write_fifo(fifo, b"go\n")
    info = answer.result(WAIT)
    assert info["state"] == "finished" and "events" not in info
    assert wm.events_of(wid) == ["worker_spawned", "worker_started", "worker_finished"]  # live, before the answer
    assert wm.events_of(slow_wid) == ["worker_spawned"]  # the rest still held: its deferral has 30 s to go
    write_fifo(slow_fifo, b"go\n")
    slow = slow_answer.result(WAIT)
    assert [e["event"] for e in slow["events"]] == ["worker_started", "worker_finished"]


def test_deferred_events_go_out_as_notifications_before_an_error_answer(ws: Path, tmp_path: Path) -> None:
    class Interrupted:  # an execution that starts its process, then is interrupted
        def run(self, on_started: Callable[[int], None]) -> Any:
            on_started(4242)
            raise KeyboardInterrupt

        def cancel(self, reason: str) -> None: ...

        def kill_now(self) -> None: ...

    class Executor(LocalExecutor):
        def prepare(self, job: Any) -> Any:
            return Interrupted()

    sent: list[dict[str, Any]] = []
    manager = WorkerManager(sent.append, executor=Executor())
    try:
        params = SpawnWorkerParams.model_validate(
            {
                "task_packet": packet(id="broken", commands=["true"]),
                "workspace": str(ws),
                "run_dir": str(tmp_path / "run"),
                "idempotency_key": "broken",
                "trusted_roots": [str(ws)],
                "defer_events": 30,
            }
        )
        with pytest.raises(KeyboardInterrupt):
            manager.spawn_and_run(params)
        assert [e["event"] for e in sent] == ["worker_spawned", "worker_started"]  # sent, not lost with the answer
    finally:
        manager.close()


def test_a_held_worker_never_released_cancelled_or_left_at_eof_fails_cancelled_and_runs_nothing(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    marker = ws / "ran"
    info = wm.call("spawn_and_run", held(ws, tmp_path, "unreleased", 0.2, marker))
    assert (info["state"], info["result"]["reason"]) == ("failed", "cancelled")
    assert "not released within 0.2 s" in info["result"]["message"]
    assert wm.events_of(info["worker_id"]) == ["worker_spawned", "worker_failed"]  # never started
    assert not (tmp_path / "run" / "workers" / "pgids").exists()  # nor begun: a replay may run its key

    answer = wm.call_async("spawn_and_run", held(ws, tmp_path, "cancelled", 30, marker))
    spawned = wm.wait_event(lambda e: e["event"] == "worker_spawned" and e["task_id"] == "cancelled")
    wm.call("cancel_worker", {"worker_id": spawned["worker_id"], "reason": "not wanted"})
    info = answer.result(WAIT)  # at once, not after the 30 s hold
    assert (info["state"], info["result"]["reason"], info["result"]["message"]) == ("failed", "cancelled", "not wanted")

    # the caller's input ends while a worker is held: it fails at once and the service exits
    line = {"jsonrpc": "2.0", "id": 1, "method": "spawn_and_run", "params": held(ws, tmp_path, "eof", 30, marker)}
    proc = subprocess.Popen(SERVICE_CMD, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        out, _ = proc.communicate((json.dumps(line) + "\n").encode(), timeout=WAIT)
    finally:
        proc.kill()
        proc.wait(WAIT)
    [reply] = [m for m in map(json.loads, out.splitlines()) if m.get("id") == 1]
    assert proc.returncode == 0
    assert reply["result"]["result"]["reason"] == "cancelled"
    assert "input ended before it released" in reply["result"]["result"]["message"]
    assert not marker.exists()


def test_a_high_risk_task_is_never_trusted_by_root_and_needs_mark_trusted(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    wid = wm.spawn(tmp_path, packet(risk="high", risk_reasons=["deploy"]))["worker_id"]
    answer = wm.call("check_trust", {"worker_id": wid, "trusted_roots": [str(ws)]})
    assert answer["trusted"] is False and answer["state"] == "trust_required"
    info = wm.call("mark_trusted", {"worker_id": wid, "approval_source": "prompt", "approver": "alice"})
    assert info["state"] == "ready_for_prompt" and info["trusted"] is True
    assert (info["trust_source"], info["approver"]) == ("prompt", "alice")


def test_run_worker_on_an_untrusted_worker_is_refused_with_gate_blocked(wm: Manager, ws: Path, tmp_path: Path) -> None:
    wid = wm.spawn(tmp_path, packet(commands=["touch ran"]))["worker_id"]
    assert rpc_error(lambda: run(wm, wid)).code == GATE_BLOCKED
    assert not (ws / "ran").exists()
    assert wm.events_of(wid) == ["worker_spawned"]


def test_mark_trusted_is_idempotent_and_refused_once_the_worker_ended(wm: Manager, ws: Path, tmp_path: Path) -> None:
    wid = wm.spawn(tmp_path, packet(commands=["true"]))["worker_id"]
    first = wm.call("mark_trusted", {"worker_id": wid, "approval_source": "flag"})
    assert wm.call("mark_trusted", {"worker_id": wid, "approval_source": "other"}) == first
    run(wm, wid)
    err = rpc_error(lambda: wm.call("mark_trusted", {"worker_id": wid, "approval_source": "flag"}))
    assert err.code == INVALID_TRANSITION
    assert wm.events_of(wid).count("trust_resolved") == 1


def test_unknown_workers_are_not_found(wm: Manager) -> None:
    for method, params in [
        ("get_worker", {"worker_id": "w-nope"}),
        ("check_trust", {"worker_id": "w-nope"}),
        ("mark_trusted", {"worker_id": "w-nope", "approval_source": "x"}),
        ("run_worker", {"worker_id": "w-nope"}),
        ("cancel_worker", {"worker_id": "w-nope"}),
    ]:
        assert rpc_error(partial(wm.call, method, params)).code == NOT_FOUND


# -- running ----------------------------------------------------------------------------------


def test_a_passing_worker_finishes_after_its_commands_and_acceptance_tests(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    wid = wm.trusted_worker(
        tmp_path, packet(commands=["echo a > a.txt", "cat a.txt"], acceptance_tests=["test -s a.txt"])
    )
    info = run(wm, wid)
    result = info["result"]
    assert info["state"] == "finished" and result["ok"] is True and result["reason"] is None
    assert [(s["kind"], s["exit_code"]) for s in result["steps"]] == [("command", 0), ("command", 0), ("acceptance", 0)]
    assert result["stdout_tail"] == ""  # the last step printed nothing
    assert wm.events_of(wid) == ["worker_spawned", "trust_resolved", "worker_started", "worker_finished"]
    started = [e for e in wm.events if e["event"] == "worker_started"][0]
    assert started["state"] == "running" and started["data"]["pid"] == info["pid"] == read_pgids(tmp_path, wid)[0]
    assert wm.call("get_worker", {"worker_id": wid}) == info
    assert wm.call("list_workers")["workers"] == [info]


def test_a_failing_command_ends_the_worker_before_its_acceptance_tests(wm: Manager, ws: Path, tmp_path: Path) -> None:
    wid = wm.trusted_worker(
        tmp_path, packet(commands=["echo one", "exit 4", "touch never"], acceptance_tests=["touch never"])
    )
    info = run(wm, wid)
    result = info["result"]
    assert info["state"] == "failed"
    assert (result["reason"], result["exit_code"], result["signal"]) == ("command_failed", 4, None)
    assert result["failed_step"] == {"kind": "command", "index": 1, "command": "exit 4"}
    assert len(result["steps"]) == 2 and not (ws / "never").exists()
    assert wm.events[-1]["event"] == "worker_failed" and wm.events[-1]["data"]["reason"] == "command_failed"


def test_a_failing_acceptance_test_is_reported_as_acceptance_failed_with_its_output(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    check = "echo checking; echo 'assertion failed: 2 != 3' >&2; exit 1"
    wid = wm.trusted_worker(tmp_path, packet(commands=["echo built"], acceptance_tests=["true", check]))
    result = run(wm, wid)["result"]
    assert (result["reason"], result["exit_code"]) == ("acceptance_failed", 1)
    assert result["failed_step"] == {"kind": "acceptance", "index": 1, "command": check}
    assert result["stdout_tail"] == "checking\n"  # the failed step's output only
    assert result["stderr_tail"] == "assertion failed: 2 != 3\n"


def test_a_missing_scope_directory_fails_the_worker_as_scope_missing(wm: Manager, ws: Path, tmp_path: Path) -> None:
    wid = wm.trusted_worker(tmp_path, packet(scope_path="not-yet", commands=["true"]))
    info = run(wm, wid)
    assert info["state"] == "failed"
    assert (info["result"]["reason"], info["result"]["exit_code"]) == ("scope_missing", None)
    assert wm.events_of(wid) == ["worker_spawned", "trust_resolved", "worker_failed"]


def test_a_step_killed_by_a_signal_reports_the_signal(wm: Manager, ws: Path, tmp_path: Path) -> None:
    wid = wm.trusted_worker(tmp_path, packet(commands=["kill -KILL $$"]))
    result = run(wm, wid)["result"]
    assert (result["reason"], result["signal"], result["exit_code"], result["timed_out"]) == ("signal", 9, None, False)


def test_a_timeout_kills_the_whole_process_group_including_background_children(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    wid = wm.trusted_worker(tmp_path, packet(commands=["sleep 30 & echo $! > bg.pid; sleep 30"], timeout=0.3))
    started = time.monotonic()
    result = run(wm, wid)["result"]
    assert time.monotonic() - started < 2.0  # SIGTERM sufficed: no grace period spent
    assert (result["reason"], result["timed_out"], result["signal"]) == ("timeout", True, signal.SIGTERM)
    pgid = read_pgids(tmp_path, wid)[0]
    assert wait_until(lambda: not live_members(pgid))
    assert not live_members(pgid) and int((ws / "bg.pid").read_text()) != pgid


def test_a_timeout_escalates_to_sigkill_when_the_step_ignores_sigterm(wm: Manager, ws: Path, tmp_path: Path) -> None:
    wid = wm.trusted_worker(tmp_path, packet(commands=["trap '' TERM; sleep 30; true"], timeout=0.2))
    result = run(wm, wid)["result"]
    assert (result["reason"], result["timed_out"], result["signal"]) == ("timeout", True, signal.SIGKILL)
    assert result["duration_ms"] >= 2000  # the grace period was honoured
    pgid = read_pgids(tmp_path, wid)[0]
    assert wait_until(lambda: not live_members(pgid))


def test_cancel_stops_a_running_worker_and_fails_it_as_cancelled(wm: Manager, ws: Path, tmp_path: Path) -> None:
    wid = wm.trusted_worker(tmp_path, packet(commands=["sleep 30"]))
    running = wm.call_async("run_worker", {"worker_id": wid})
    wm.wait_event(lambda e: e["event"] == "worker_started")
    assert wm.call("get_worker", {"worker_id": wid})["state"] == "running"  # served while it runs
    info = wm.call("cancel_worker", {"worker_id": wid, "reason": "user asked"})
    assert info["state"] == "failed"
    assert (info["result"]["reason"], info["result"]["message"]) == ("cancelled", "user asked")
    assert running.result(WAIT) == info
    validate("WorkerInfo", info)
    pgid = read_pgids(tmp_path, wid)[0]
    assert wait_until(lambda: not live_members(pgid))


def test_cancelling_a_worker_that_is_not_running_fails_it_at_once_and_only_once(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    wid = wm.spawn(tmp_path, packet(commands=["touch ran"]))["worker_id"]
    info = wm.call("cancel_worker", {"worker_id": wid})
    assert info["state"] == "failed" and info["result"]["reason"] == "cancelled"
    assert rpc_error(lambda: wm.call("cancel_worker", {"worker_id": wid})).code == INVALID_TRANSITION
    assert run(wm, wid) == info  # an ended worker is returned, not run
    assert not (ws / "ran").exists()
    assert wm.events_of(wid) == ["worker_spawned", "worker_failed"]


def test_run_worker_on_an_ended_worker_returns_it_without_running_again(wm: Manager, ws: Path, tmp_path: Path) -> None:
    wid = wm.trusted_worker(tmp_path, packet(commands=["echo ran >> count.txt"]))
    first = run(wm, wid)
    assert run(wm, wid, timeout=WAIT) == first
    assert (ws / "count.txt").read_text() == "ran\n"
    assert wm.events_of(wid).count("worker_started") == 1


def test_run_worker_resent_while_running_joins_the_same_run(wm: Manager, ws: Path, tmp_path: Path) -> None:
    os.mkfifo(ws / "gate")
    wid = wm.trusted_worker(tmp_path, packet(commands=["read line < gate; echo $line >> count.txt"]))
    first = wm.call_async("run_worker", {"worker_id": wid})
    wm.wait_event(lambda e: e["event"] == "worker_started")
    second = wm.call_async("run_worker", {"worker_id": wid, "idempotency_key": "resent"})
    assert wm.call("get_worker", {"worker_id": wid})["state"] == "running"  # both requests are in
    write_fifo(ws / "gate", b"go\n")
    assert first.result(WAIT) == second.result(WAIT)
    assert first.result()["state"] == "finished"
    assert (ws / "count.txt").read_text() == "go\n"
    assert wm.events_of(wid).count("worker_started") == 1


def test_the_worker_environment_holds_only_whitelisted_and_named_variables(
    start_manager: Callable[..., Manager], ws: Path, tmp_path: Path
) -> None:
    wm = start_manager({**os.environ, "WM_SECRET_TOKEN": "hunter2", "WM_ALLOWED": "yes", "HOME": "/home/tester"})
    pkt = packet(commands=["env"], env={"FROM_PACKET": "p"})
    wid = wm.trusted_worker(tmp_path, pkt, env_allow=["WM_ALLOWED", "WM_UNSET"], attempt=3)
    result = run(wm, wid)["result"]
    env = dict(line.split("=", 1) for line in result["stdout_tail"].splitlines())
    assert "WM_SECRET_TOKEN" not in env and "WM_UNSET" not in env
    assert (env["WM_ALLOWED"], env["FROM_PACKET"], env["HOME"]) == ("yes", "p", "/home/tester")
    assert env["HARNESS_TASK_ID"] == "t1" and env["HARNESS_WORKER_ID"] == wid and env["HARNESS_ATTEMPT"] == "3"
    assert env["HARNESS_WORKSPACE"] == str(ws.resolve()) and env["HARNESS_RUN_DIR"] == str(tmp_path / "run")
    harness = {"HARNESS_TASK_ID", "HARNESS_WORKER_ID", "HARNESS_ATTEMPT", "HARNESS_WORKSPACE", "HARNESS_RUN_DIR"}
    assert set(env) <= set(BASE_ENV) | harness | {"WM_ALLOWED", "FROM_PACKET", "PWD"}


def test_output_is_appended_to_files_with_a_header_per_step_and_tails_are_bounded(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    big = "head -c 5000 /dev/zero | tr '\\0' a"
    wid = wm.trusted_worker(tmp_path, packet(commands=["echo out-one; echo err-one >&2", big]))
    result = run(wm, wid)["result"]
    assert (
        Path(result["stdout_path"]).read_text() == f"$ echo out-one; echo err-one >&2\nout-one\n$ {big}\n" + "a" * 5000
    )
    assert Path(result["stderr_path"]).read_text() == "err-one\n"
    assert 1024 <= len(result["stdout_tail"]) <= 2048 and set(result["stdout_tail"]) == {"a"}
    finished = wm.events[-1]
    assert finished["event"] == "worker_finished"
    assert len(finished["data"]["stdout_tail"]) + len(finished["data"]["stderr_tail"]) <= 400


def test_a_worker_that_prints_nothing_creates_no_folder_and_no_file(wm: Manager, ws: Path, tmp_path: Path) -> None:
    pkt = packet(commands=["true", "echo quiet > f.txt"], acceptance_tests=["test -s f.txt"])
    wid = wm.trusted_worker(tmp_path, pkt)
    info = run(wm, wid)
    result = info["result"]
    assert info["state"] == "finished" and result["ok"] is True
    assert (result["stdout_path"], result["stderr_path"]) == (None, None)
    assert (result["stdout_tail"], result["stderr_tail"]) == ("", "")
    assert os.listdir(tmp_path / "run" / "workers") == ["pgids"]  # the run's one record, no worker folder
    groups = read_pgids(tmp_path, wid)
    assert len(groups) == 3 and groups[0] == info["pid"]  # one group per step, the first one's is the pid
    assert wm.events[-1]["data"]["stdout_path"] is None


def test_each_steps_header_is_written_just_before_its_first_byte_on_either_stream(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    steps = ["true", "echo one", ":", "echo two >&2", "echo three", "true"]
    wid = wm.trusted_worker(tmp_path, packet(commands=steps))
    result = run(wm, wid)["result"]
    folder = tmp_path / "run" / "workers" / wid
    assert result["stdout_path"] == str(folder / "stdout.log") and result["stderr_path"] == str(folder / "stderr.log")
    assert (folder / "stdout.log").read_text() == "$ echo one\none\n$ echo two >&2\n$ echo three\nthree\n"
    assert (folder / "stderr.log").read_text() == "two\n"
    assert (result["stdout_tail"], result["stderr_tail"]) == ("", "")  # the last step printed nothing


def test_output_reaches_the_files_while_the_step_still_runs(wm: Manager, ws: Path, tmp_path: Path) -> None:
    os.mkfifo(ws / "gate")
    cmd = "echo first; echo first-err >&2; read line < gate; echo $line"
    wid = wm.trusted_worker(tmp_path, packet(commands=[cmd]))
    running = wm.call_async("run_worker", {"worker_id": wid})
    folder = tmp_path / "run" / "workers" / wid

    def holds(name: str, text: str) -> bool:
        try:
            return (folder / name).read_text() == text
        except OSError:
            return False

    # the step is blocked on the fifo: what it printed so far is already in the files
    assert wait_until(lambda: holds("stdout.log", f"$ {cmd}\nfirst\n") and holds("stderr.log", "first-err\n"), WAIT)
    assert wm.call("get_worker", {"worker_id": wid})["state"] == "running"
    write_fifo(ws / "gate", b"second\n")
    result = running.result(WAIT)["result"]
    assert (folder / "stdout.log").read_text() == f"$ {cmd}\nfirst\nsecond\n"
    assert (result["stdout_tail"], result["stderr_tail"]) == ("first\nsecond\n", "first-err\n")


def test_a_background_child_holding_a_steps_pipes_is_read_during_later_steps_and_not_waited_for(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    # The first step leaves a child holding its stdout; during the second step the child prints
    # more than a pipe holds (it would block if that pipe were not read), then lets the step end.
    os.mkfifo(ws / "go")
    os.mkfifo(ws / "done")
    one = (
        "(read x < go; head -c 200000 /dev/zero | tr '\\0' b; echo; echo bg-end; echo > done; exec sleep 30) & echo one"
    )
    two = "echo > go; read y < done; echo two"
    wid = wm.trusted_worker(tmp_path, packet(commands=[one, two], timeout=20))
    started = time.monotonic()
    result = run(wm, wid)["result"]
    assert result["ok"] is True and time.monotonic() - started < 5.0  # not the child's 30 s
    text = Path(result["stdout_path"]).read_text()
    assert text == f"$ {one}\none\n" + "b" * 200000 + f"\nbg-end\n$ {two}\ntwo\n"
    assert result["stdout_tail"] == "two\n"


@pytest.mark.slow
def test_a_child_that_left_the_group_and_holds_the_pipe_delays_the_end_by_a_bounded_drain_only(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    # SIGKILLing the worker's groups does not reach it: the end-of-job drain gives up on its pipe
    os.mkfifo(ws / "ready")
    cmd = "setsid sh -c 'echo $$ > ready; exec sleep 30' & read pid < ready; echo $pid > escaped.pid; echo main"
    wid = wm.trusted_worker(tmp_path, packet(commands=[cmd]))
    started = time.monotonic()
    try:
        result = run(wm, wid)["result"]
        assert result["ok"] is True and time.monotonic() - started < 5.0  # not the child's 30 s
        assert Path(result["stdout_path"]).read_text() == f"$ {cmd}\nmain\n"
    finally:
        pid_file = ws / "escaped.pid"
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip().isdigit(), WAIT)
        kill_pids([int(pid_file.read_text())])


def test_the_tails_are_the_last_steps_output_on_success_and_the_failed_steps_on_failure(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    (ws / "e.txt").write_bytes("€".encode() * 1000)  # 3000 bytes: the 2048-byte cut splits a character
    first = "echo one; echo one-err >&2"
    ok = wm.trusted_worker(tmp_path, packet("ok", commands=[first, "cat e.txt"]))
    result = run(wm, ok)["result"]
    assert (result["stdout_tail"], result["stderr_tail"]) == ("€" * 682, "")  # no part of a character
    failing = "echo two; echo two-err >&2; exit 3"
    bad = wm.trusted_worker(tmp_path, packet("bad", commands=[first, failing, "echo never"]))
    result = run(wm, bad)["result"]
    assert (result["reason"], result["exit_code"]) == ("command_failed", 3)
    assert (result["stdout_tail"], result["stderr_tail"]) == ("two\n", "two-err\n")
    assert Path(result["stdout_path"]).read_text() == f"$ {first}\none\n$ {failing}\ntwo\n"
    assert Path(result["stderr_path"]).read_text() == "one-err\ntwo-err\n"


def test_sigterm_to_the_manager_kills_its_running_workers(wm: Manager, ws: Path, tmp_path: Path) -> None:
    wid = wm.trusted_worker(tmp_path, packet(commands=["sleep 30"]))
    running = wm.call_async("run_worker", {"worker_id": wid})
    pid = wm.wait_event(lambda e: e["event"] == "worker_started")["data"]["pid"]
    os.kill(wm.pid, signal.SIGTERM)
    assert wm.svc.proc.wait(WAIT) == -signal.SIGTERM
    with pytest.raises(ConnectionClosed):
        running.result(WAIT)
    assert wait_until(lambda: not live_members(pid))


# -- replay -----------------------------------------------------------------------------------


def test_replay_in_a_new_manager_rebuilds_the_same_worker_table(
    start_manager: Callable[..., Manager], ws: Path, tmp_path: Path
) -> None:
    first = start_manager()
    done = first.trusted_worker(tmp_path, packet("a", commands=["echo done"]), idempotency_key="k-a")
    failing = first.trusted_worker(tmp_path, packet("b", acceptance_tests=["exit 1"]))
    ready = first.trusted_worker(tmp_path, packet("c", commands=["echo later"]))
    first.spawn(tmp_path, packet("d"), trusted_roots=[str(ws)])  # trusted at its spawn
    cancelled = first.spawn(tmp_path, packet("e"))["worker_id"]
    run(first, done), run(first, failing)
    first.call("cancel_worker", {"worker_id": cancelled})
    before = first.call("list_workers")
    first.stop()

    second = start_manager()
    assert second.call("replay", {"events": first.events}) == {"workers": 5, "reaped": []}
    assert second.call("list_workers") == before
    assert second.call("replay", {"events": first.events}) == {"workers": 5, "reaped": []}
    assert second.events == []  # rebuilding sends nothing
    assert second.spawn(tmp_path, packet("a"), idempotency_key="k-a")["worker_id"] == done
    assert second.spawn(tmp_path, packet("f"))["worker_id"] == "w-f-1-6"
    assert run(second, ready)["state"] == "finished"


def test_replay_reaps_a_worker_left_running_by_a_killed_manager(
    start_manager: Callable[..., Manager], ws: Path, tmp_path: Path
) -> None:
    first = start_manager()
    wid = first.trusted_worker(tmp_path, packet(commands=["sleep 30"]), idempotency_key="k-sleep")
    first.call_async("run_worker", {"worker_id": wid})
    pid = first.wait_event(lambda e: e["event"] == "worker_started")["data"]["pid"]
    first.svc.kill()
    assert live_members(pid), "the worker outlives its SIGKILLed manager"

    second = start_manager()
    assert second.call("replay", {"events": first.events}) == {"workers": 1, "reaped": [wid]}
    assert wait_until(lambda: not live_members(pid))
    (failed,) = second.events
    assert (failed["event"], failed["state"], failed["data"]["reason"]) == ("worker_failed", "failed", "interrupted")
    assert failed["data"]["interrupted"] is True
    info = second.call("get_worker", {"worker_id": wid})
    assert info["state"] == "failed" and info["result"]["reason"] == "interrupted"
    assert run(second, wid) == info  # never re-run


def test_a_held_worker_whose_manager_died_before_its_release_runs_its_key_once_after_replay(
    start_manager: Callable[..., Manager], ws: Path, tmp_path: Path
) -> None:
    # The caller made TASK_STARTED durable and was about to release when the manager died: the
    # worker never began, so the next manager runs it (once), rather than failing it as interrupted.
    marker = ws / "held-then-lost"
    first = start_manager()
    first.call_async("spawn_and_run", held(ws, tmp_path, "held-then-lost", 30, marker))
    spawned = first.wait_event(lambda e: e["event"] == "worker_spawned")
    first.svc.kill()
    second = start_manager()
    assert second.call("replay", {"events": first.events}) == {"workers": 1, "reaped": []}
    info = second.call("spawn_and_run", {**held(ws, tmp_path, "held-then-lost", 30, marker), "hold": None})
    assert (info["worker_id"], info["state"], info["result"]["ok"]) == (spawned["worker_id"], "finished", True)
    assert marker.exists() and second.events_of(spawned["worker_id"]) == ["worker_started", "worker_finished"]


def _ready_worker_events(tmp_path: Path, ws: Path) -> tuple[str, list[dict[str, Any]]]:
    """The log of a worker that was trusted but never reported started."""
    wid = "w-orphan"
    base = {"worker_id": wid, "task_id": "t1", "time": 1.0}
    spawned = {
        "packet": packet(commands=["sleep 30"]), "workspace": str(ws.resolve()), "run_dir": str(tmp_path / "run"),
        "attempt": 1, "idempotency_key": None, "scope_dir": str(ws.resolve()), "env_allow": [],
    }  # fmt: skip
    return wid, [
        {**base, "event": "worker_spawned", "state": "trust_required", "data": spawned},
        {**base, "event": "trust_resolved", "state": "ready_for_prompt", "data": {"source": "test", "approver": None}},
    ]


@pytest.mark.parametrize("record", ["pgids", "legacy pgid file"])
@pytest.mark.parametrize("recorded_before_the_process", [False, True])
def test_replay_fails_a_worker_whose_step_began_after_the_last_event_and_kills_it_unless_its_pid_was_recycled(
    wm: Manager, ws: Path, tmp_path: Path, record: str, recorded_before_the_process: bool
) -> None:
    wid, events = _ready_worker_events(tmp_path, ws)
    env = {"PATH": os.environ["PATH"], "HARNESS_RUN_DIR": str(tmp_path / "run")}
    orphan = subprocess.Popen(["sleep", "30"], start_new_session=True, env=env)
    try:
        # when the group was recorded: if before the process started, the pid now belongs to
        # a process started later (recycled)
        written_at = time.time() - (60 if recorded_before_the_process else 0)
        workers = tmp_path / "run" / "workers"
        workers.mkdir(parents=True)
        if record == "pgids":  # as this version writes it: one file per run folder
            other = f"w-other {os.getpid()} {time.time():.3f}\n"  # another worker's line: never this one's
            (workers / "pgids").write_text(f"{other}{wid} {orphan.pid} {written_at:.3f}\n{wid} torn")
        else:  # as the previous version wrote it: one file per worker, its time the record's
            pgid_file = workers / wid / "pgid"
            pgid_file.parent.mkdir()
            pgid_file.write_text(f"{orphan.pid}\n")
            os.utime(pgid_file, (written_at, written_at))
        # The worker had begun (its group is recorded): it is interrupted, never run a second
        # time under the same attempt by a re-sent run_worker.
        assert wm.call("replay", {"events": events}) == {"workers": 1, "reaped": [wid]}
        status = orphan.wait(1.0) if not recorded_before_the_process else orphan.poll()
        assert status == (None if recorded_before_the_process else -signal.SIGKILL)
        info = wm.call("get_worker", {"worker_id": wid})
        assert (info["state"], info["result"]["reason"]) == ("failed", "interrupted")
        assert (info["result"]["stdout_path"], info["result"]["stderr_path"]) == (None, None)  # it printed nothing
    finally:
        orphan.kill()
        orphan.wait(WAIT)


def test_replay_leaves_a_ready_worker_alone_when_only_other_workers_groups_are_recorded(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    wid, events = _ready_worker_events(tmp_path, ws)
    (tmp_path / "run" / "workers").mkdir(parents=True)
    (tmp_path / "run" / "workers" / "pgids").write_text(f"{wid}-2 {os.getpid()} {time.time():.3f}\n")
    assert wm.call("replay", {"events": events}) == {"workers": 1, "reaped": []}
    assert wm.call("get_worker", {"worker_id": wid})["state"] == "ready_for_prompt"


def test_replay_reaps_the_groups_of_every_step_a_killed_manager_recorded_in_the_run_file(
    start_manager: Callable[..., Manager], ws: Path, tmp_path: Path
) -> None:
    # The log knows the first step's pid only; the second step's group is in the pgids file.
    os.mkfifo(ws / "two.pid")
    steps = ["sleep 30 & echo $! > bg.pid", "echo $$ > two.pid; exec sleep 30"]
    first = start_manager()
    wid = first.trusted_worker(tmp_path, packet(commands=steps), idempotency_key="k-two")
    first.call_async("run_worker", {"worker_id": wid})
    pid = first.wait_event(lambda e: e["event"] == "worker_started")["data"]["pid"]
    two = int(read_fifo(ws / "two.pid"))  # the second step has started
    # Its group is recorded right after its start returns in the manager, which can come after
    # the step's own first line: wait for the record before the kill (bounded).
    assert wait_until(lambda: len(read_pgids(tmp_path, wid)) == 2, WAIT)
    first.svc.kill()
    assert read_pgids(tmp_path, wid) == [pid, two]
    assert live_members(pid) == [int((ws / "bg.pid").read_text())] and live_members(two) == [two]

    second = start_manager()
    assert second.call("replay", {"events": first.events}) == {"workers": 1, "reaped": [wid]}
    assert wait_until(lambda: not live_members(pid) and not live_members(two))
    info = second.call("get_worker", {"worker_id": wid})
    assert info["result"]["reason"] == "interrupted" and info["result"]["stdout_path"] is None


@pytest.mark.parametrize("names_the_worker", [True, False])
def test_without_a_pgid_file_replay_kills_the_started_pid_only_if_its_environment_names_the_worker(
    wm: Manager, ws: Path, tmp_path: Path, names_the_worker: bool
) -> None:
    wid, events = _ready_worker_events(tmp_path, ws)
    env = {"PATH": os.environ["PATH"], "HARNESS_RUN_DIR": str(tmp_path / "run")}
    if names_the_worker:
        env["HARNESS_WORKER_ID"] = wid
    orphan = subprocess.Popen(["sleep", "30"], start_new_session=True, env=env)
    try:
        started = {**events[1], "event": "worker_started", "state": "running", "data": {"pid": orphan.pid}}
        assert wm.call("replay", {"events": [*events, started]}) == {"workers": 1, "reaped": [wid]}
        status = orphan.wait(1.0) if names_the_worker else orphan.poll()
        assert status == (-signal.SIGKILL if names_the_worker else None)
        assert wm.call("get_worker", {"worker_id": wid})["result"]["reason"] == "interrupted"
    finally:
        orphan.kill()
        orphan.wait(WAIT)


# -- the fold, in process ---------------------------------------------------------------------

_OUTCOMES: dict[str, dict[str, Any]] = {
    "ok": {"commands": ["true"], "acceptance_tests": ["true"]},
    "command_fails": {"commands": ["false"], "acceptance_tests": ["true"]},
    "acceptance_fails": {"acceptance_tests": ["false"]},
    "scope_missing": {"scope_path": "missing", "commands": ["true"]},
    "no_steps": {},
}
_PICK = st.integers(min_value=0, max_value=7)
_SPAWN = st.tuples(
    st.just("spawn"),
    st.sampled_from(["t1", "t2"]),
    st.booleans(),
    st.sampled_from(["low", "high"]),
    st.sampled_from(sorted(_OUTCOMES)),
)
_ACTION = st.one_of(
    _SPAWN,
    st.tuples(st.sampled_from(["check_trust", "mark_trusted", "run_worker", "cancel_worker"]), _PICK),
)
#: A few workers first, then a mix of gate decisions, runs, cancels and more spawns.
_OPS = st.tuples(st.lists(_SPAWN, min_size=1, max_size=4), st.lists(_ACTION, min_size=2, max_size=14)).map(
    lambda parts: parts[0] + parts[1]
)


def _drive(manager: WorkerManager, root: Path, op: tuple[Any, ...], spawned: list[str]) -> None:
    """Apply one generated operation; refusals (RPC errors) are part of the behaviour."""
    try:
        if op[0] == "spawn":
            _, task, keyed, risk, outcome = op
            params = SpawnWorkerParams(
                task_packet={"id": task, "title": task, "risk": risk, **_OUTCOMES[outcome]},
                workspace=str(root / "ws"),
                run_dir=str(root / "run"),
                idempotency_key=f"{task}/{outcome}" if keyed else None,
            )
            spawned.append(manager.spawn_worker(params)["worker_id"])
            return
        if not spawned:
            return
        wid = spawned[op[1] % len(spawned)]
        if op[0] == "check_trust":
            manager.check_trust(CheckTrustParams(worker_id=wid, trusted_roots=[str(root / "ws")]))
        elif op[0] == "mark_trusted":
            manager.mark_trusted(MarkTrustedParams(worker_id=wid, approval_source="test"))
        elif op[0] == "run_worker":
            manager.run_worker(RunWorkerParams(worker_id=wid))
        else:
            manager.cancel_worker(CancelWorkerParams(worker_id=wid))
    except RPCError:
        pass


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=_OPS)
def test_replaying_any_prefix_of_the_events_gives_the_table_the_manager_had_then(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[Any, ...]]
) -> None:
    root = tmp_path_factory.mktemp("fold")
    (root / "ws").mkdir()
    lines: list[str] = []
    tables: list[dict[str, Any]] = []

    def emit(event: dict[str, Any]) -> None:  # called under the manager's lock, after applying
        lines.append(json.dumps(event))
        tables.append(manager.table.snapshot())

    manager = WorkerManager(emit)
    spawned: list[str] = []
    for op in ops:
        _drive(manager, root, op, spawned)
    events = [WorkerEvent.model_validate_json(line) for line in lines]  # as the log gives them back
    assert WorkerTable.from_events([]).snapshot() == {"workers": {}, "by_key": {}}
    for k in range(1, len(events) + 1):
        assert WorkerTable.from_events(events[:k]).snapshot() == tables[k - 1]
    assert WorkerTable.from_events(json.loads(line) for line in lines).snapshot() == manager.table.snapshot()


def test_the_fold_ignores_events_of_unknown_workers_repeated_spawns_and_unusable_ids(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    wid, events = _ready_worker_events(tmp_path, ws)
    stray = {**events[1], "worker_id": "w-unknown"}
    respawn = {**events[0], "data": {**events[0]["data"], "attempt": 9}}
    escaping = {**events[0], "worker_id": "w-x/../../elsewhere"}
    table = WorkerTable.from_events([events[0], stray, respawn, escaping, events[1]])
    assert table.ignored == 3
    assert table.snapshot() == WorkerTable.from_events(events).snapshot()
    assert table.workers[wid].attempt == 1 and table.workers[wid].trusted


def test_replay_of_events_that_do_not_fold_is_refused_and_changes_nothing(
    wm: Manager, ws: Path, tmp_path: Path
) -> None:
    wid, events = _ready_worker_events(tmp_path, ws)
    broken = {**events[0], "worker_id": "w-broken", "data": {"packet": {}}}  # no scope_dir, no workspace
    assert rpc_error(lambda: wm.call("replay", {"events": [events[0], broken]})).code == INVALID_PARAMS
    assert wm.call("list_workers") == {"workers": []}
