"""The event catalogue: every line a real run writes matches the payload of its type, one function
describes events for people, and a log of another format is read through the upgrade or refused
with a clear message, never misread."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from e2e_support import events, harness, latest_run

from harness import eventlog
from harness.events import LOG_FORMAT, PAYLOADS, EventType, describe, upgrade
from harness.resources import load_schema
from harness.state import fold

RUN = "20260101-000000-abcdef"


def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema("LogEvent"))


def test_every_event_type_has_a_payload_and_the_fold_handles_only_catalogued_types() -> None:
    from harness.state import _HANDLERS

    assert set(PAYLOADS) == set(EventType)
    assert set(_HANDLERS) <= set(EventType)


@pytest.mark.slow
def test_every_line_of_real_runs_matches_the_catalogue(tmp_path: Path) -> None:
    """A run that retries, escalates, waits at a manual step, is decided from another terminal,
    resumed and finished: every event it wrote validates against schemas/LogEvent.json."""
    ws = tmp_path / "ws"
    ws.mkdir()
    plan = {
        "objective": "Exercise the catalogue",
        "tasks": [
            {
                "id": "flaky",
                "title": "Flaky",
                "commands": ['[ -f ok ] || { touch ok; echo "503" >&2; exit 1; }'],
                "acceptance_tests": ["test -f ok"],
            },
            {"id": "hand", "title": "By hand", "acceptance_tests": ["true"], "depends_on": ["flaky"]},
            {
                "id": "odd",
                "title": "Odd",
                "commands": ["echo weird >&2; exit 7"],
                "acceptance_tests": ["true"],
                "depends_on": ["flaky"],
            },
        ],
    }
    (ws / "plan.yaml").write_text(yaml.safe_dump(plan))
    (ws / "harness.yaml").write_text(yaml.safe_dump({"recovery": {"recipes": {"transient": {"backoff": [0.01]}}}}))
    first = harness(ws, "run", "--plan", "plan.yaml", "--approve")
    assert first.returncode == 3, first.stdout + first.stderr
    run_id = latest_run(ws)
    assert harness(ws, "decide", run_id, "odd", "skip").returncode == 0
    assert harness(ws, "decide", run_id, "hand", "done").returncode == 0
    done = harness(ws, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    validator = _validator()
    evts = events(ws, run_id)
    seen = set()
    for event in evts:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(event)]
        assert not errors, (event["type"], event["data"], errors)
        seen.add(event["type"])
    assert evts[0]["data"]["log_format"] == LOG_FORMAT
    spawned = [e for e in evts if e["type"] == "WORKER_SPAWNED"]
    assert spawned and all("packet" not in e["data"] and e["data"]["revision"] == 1 for e in spawned)
    expected = {"RECOVERY_APPLIED", "RECOVERY_ESCALATION", "TASK_WAITING", "TASK_DECISION", "TASK_READY", "RUN_RESUMED"}
    assert expected <= seen
    # One description per event, for every line of the log (and `harness log` prints exactly those).
    log = harness(ws, "log", run_id)
    assert log.returncode == 0
    titles = {"flaky": "Flaky", "odd": "Odd", "hand": "By hand"}
    lines = log.stdout.splitlines()
    assert len(lines) == len(evts)
    for line, event in zip(lines, evts, strict=True):
        assert line.endswith(describe(event, titles)), line


def _v1_log(ws: Path) -> Path:
    """A log as the previous format wrote it: worker events nested, the packet copied."""
    path = eventlog.events_path(ws, RUN)
    packet = {"id": "a", "title": "A", "commands": ["true"]}
    log = eventlog.EventLog.open(path, RUN)
    nested = {"event": "worker_spawned", "worker_id": "w1", "task_id": "a", "state": "trust_required", "time": 1.0}
    for etype, data, tid, wid in [
        ("RUN_STARTED", {"objective": "old", "workspace": str(ws), "options": {}, "supervisor_pid": 1}, None, None),
        ("PLAN_CREATED", {"plan": {"objective": "old", "tasks": [packet]}, "revision": 1}, None, None),
        ("GATE_APPROVED", {"gate": "plan", "revision": 1, "source": "flag", "approver": "x"}, None, None),
        ("WORKER_SPAWNED", {**nested, "data": {"packet": packet, "attempt": 1}}, "a", "w1"),
        ("TASK_STARTED", {"attempt": 1, "worker_id": "w1"}, "a", "w1"),
    ]:
        log.append(etype, data, task_id=tid, worker_id=wid)
    log.close()
    return path


def test_an_older_log_is_read_through_the_upgrade(tmp_path: Path) -> None:
    path = _v1_log(tmp_path)
    evts = upgrade(eventlog.read_events(path).events)
    spawned = next(e for e in evts if e["type"] == "WORKER_SPAWNED")
    assert spawned["data"] == {"attempt": 1, "state": "trust_required", "at": 1.0}
    assert fold(evts).tasks["a"].status.value == "running"
    errors = list(_validator().iter_errors(spawned))
    assert errors  # read, but it is not a format-2 line (no revision to find its packet by)


@pytest.mark.slow
def test_an_older_log_can_be_read_but_not_resumed_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    _v1_log(tmp_path)
    shown = harness(tmp_path, "log", RUN)
    assert shown.returncode == 0 and "WORKER_SPAWNED a w1 trust_required" in shown.stdout
    resumed = harness(tmp_path, "resume", RUN)
    assert resumed.returncode == 2
    assert "log format 1" in resumed.stderr and "Traceback" not in resumed.stderr
    decided = harness(tmp_path, "decide", RUN, "a", "skip")
    assert decided.returncode == 2 and "format 1" in decided.stderr
    newer = tmp_path / "newer"
    newer.mkdir()
    log = eventlog.EventLog.open(eventlog.events_path(newer, RUN), RUN)
    log.append("RUN_STARTED", {"log_format": LOG_FORMAT + 1, "objective": "future"})
    log.close()
    refused = harness(newer, "status", RUN)
    assert refused.returncode == 2 and "newer harness" in refused.stderr


def test_describe_reads_any_event_without_failing() -> None:
    odd: list[dict[str, Any]] = [
        {"type": "NOT_A_TYPE", "data": {"x": 1}},
        {"type": "TASK_FAILED"},
        {"type": "RECOVERY_APPLIED", "data": None},
        json.loads('{"type": "SERVICE_CRASHED", "data": {"service": "planning", "exit": "signal 9"}}'),
    ]
    described = [describe(e) for e in odd]
    assert all(isinstance(text, str) for text in described)
    assert (described[0], described[1], described[3]) == ("", "failed", "planning signal 9")
