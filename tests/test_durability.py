"""What the log makes durable, and when: each state change is on disk before what depends on it
(in process, with the real services and workers; every fdatasync of the log is recorded)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from e2e_support import assert_no_processes_left, write_config

from harness.config import load_config
from harness.supervisor import UI, RunOptions, Supervisor

pytestmark = pytest.mark.slow


def run_recording_syncs(
    ws: Path, monkeypatch: pytest.MonkeyPatch, **config: object
) -> tuple[bytes, list[int], list[list[str]]]:
    """Run a chain of three shell tasks, each appending its id to order.txt; (the log's bytes, the
    log's size at each fdatasync of it, which tasks' processes had run by each of those syncs)."""
    write_config(ws, policy={"sandbox": "off"}, **config)
    synced: list[int] = []
    ran: list[list[str]] = []
    real = os.fdatasync
    order = ws / "order.txt"

    def recording(fd: int) -> None:
        real(fd)
        if os.readlink(f"/proc/self/fd/{fd}").endswith("events.jsonl"):
            synced.append(os.fstat(fd).st_size)
            ran.append(order.read_text().split() if order.exists() else [])

    monkeypatch.setattr(os, "fdatasync", recording)
    tasks = [
        {"id": tid, "title": tid, "commands": [f"echo {tid} >> order.txt"], "acceptance_tests": ["true"]}
        | ({"depends_on": [prev]} if prev else {})
        for tid, prev in (("a", None), ("b", "a"), ("c", "b"))
    ]
    plan = {"objective": "Chain", "tasks": tasks}
    sup = Supervisor(ws, load_config(ws), UI(io.StringIO()), RunOptions(plan=plan, approve=True))
    assert sup.start() == 0
    assert_no_processes_left(ws)
    return sup.log_path.read_bytes(), synced, ran


def offsets(data: bytes) -> list[tuple[int, int, dict]]:
    out, pos = [], 0
    for line in data.splitlines(keepends=True):
        out.append((pos, pos + len(line), json.loads(line)))
        pos += len(line)
    return out


def test_a_task_completion_is_durable_before_its_dependent_is_spawned_and_the_run_ends_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, synced, ran = run_recording_syncs(tmp_path, monkeypatch)
    lines = offsets(data)
    for tid, prev in (("a", None), ("b", "a"), ("c", "b")):
        [started_end] = [end for _, end, e in lines if e["type"] == "TASK_STARTED" and e.get("task_id") == tid]
        # the first sync that holds this TASK_STARTED came before the task's process ran (the
        # worker manager may have got the worker ready meanwhile: it starts nothing until released)
        first = next(i for i, size in enumerate(synced) if size >= started_end)
        assert tid not in ran[first], (tid, synced, ran)
        if prev is None:
            continue
        [done_end] = [end for _, end, e in lines if e["type"] == "TASK_COMPLETED" and e.get("task_id") == prev]
        assert done_end < started_end
        assert done_end not in synced  # no sync of its own: the next task's start made it durable
    assert synced[-1] == len(data)  # the run ended with everything on disk
    assert (tmp_path / "order.txt").read_text().split() == ["a", "b", "c"]


def test_with_a_hook_configured_each_completion_is_durable_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, synced, _ = run_recording_syncs(tmp_path, monkeypatch, hooks={"post_task": [{"command": ["true"]}]})
    for _, end, e in offsets(data):
        if e["type"] == "TASK_COMPLETED":
            assert end in synced  # synced right after it was appended, before the hook heard of it
