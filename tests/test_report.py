"""`harness report`: the outcome report lists exactly the tasks of the log, each in its section,
with every failure's class and recovery."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from e2e_support import (
    MEASURABLE_RECOVERY,
    assert_no_processes_left,
    events,
    harness,
    latest_run,
    write_config,
    write_plan,
)

from harness import eventlog
from harness.report import Section, render, task_reports, write_report

RECOVERY = MEASURABLE_RECOVERY


def sections(markdown: str) -> dict[str, str]:
    """Section title (without its count) -> the section's text."""
    out = {}
    for chunk in re.split(r"^## ", markdown, flags=re.MULTILINE)[1:]:
        heading, _, body = chunk.partition("\n")
        out[re.sub(r" \(\d+\)$", "", heading)] = body
    return out


def entries(body: str) -> dict[str, str]:
    """Task id -> its entry (its line and the failure lines under it)."""
    out: dict[str, str] = {}
    current = None
    for line in body.splitlines():
        m = re.match(r"^- `([^`]+)`", line)
        if m:
            current = m.group(1)
            out[current] = line
        elif current and line.startswith("  - "):
            out[current] += "\n" + line
    return out


def expected_section(evts: list[dict], tid: str) -> str:
    """The section a task belongs in, worked out from its raw events (independently of the fold)."""
    mine = [e for e in evts if e.get("task_id") == tid]
    kinds = [e["type"] for e in mine]
    if "TASK_COMPLETED" in kinds:
        return "Recovered" if "TASK_FAILED" in kinds else "Completed"
    if "TASK_SKIPPED" in kinds:
        return "Skipped"
    outcomes = [k for k in kinds if k in ("TASK_STARTED", "TASK_FAILED", "RECOVERY_APPLIED", "RECOVERY_ESCALATION")]
    if outcomes and outcomes[-1] in ("TASK_FAILED", "RECOVERY_ESCALATION"):
        return "Failed"
    return "Not finished"  # never started, cut off, or a retry is pending


def assert_report_matches_log(markdown: str, evts: list[dict], task_ids: list[str]) -> dict[str, str]:
    found = {title: entries(body) for title, body in sections(markdown).items()}
    assert list(found) == [s.value for s in Section]
    placed = {tid: title for title, es in found.items() for tid in es}
    assert sorted(placed) == sorted(task_ids)  # every task exactly once (a dict keeps one title per id)
    assert sum(len(es) for es in found.values()) == len(task_ids)
    for tid in task_ids:
        assert placed[tid] == expected_section(evts, tid), (tid, placed[tid])
    flat = {tid: es[tid] for es in found.values() for tid in es}
    for tid in task_ids:
        failed = [e for e in evts if e["type"] == "TASK_FAILED" and e.get("task_id") == tid]
        classes = [e["data"] for e in evts if e["type"] == "FAILURE_CLASSIFIED" and e.get("task_id") == tid]
        lines = [line for line in flat[tid].splitlines() if line.startswith("  - attempt")]
        assert len(lines) == len(failed), (tid, flat[tid])
        for line, failure, cls in zip(lines, failed, classes, strict=True):
            assert line.startswith(
                f"  - attempt {failure['data']['attempt']}: `{cls['failure_type']}` (rule `{cls['rule']}`)"
            )
    return flat


@pytest.fixture
def ws(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_config(workspace, recovery=RECOVERY)
    yield workspace
    assert_no_processes_left(workspace)


@pytest.mark.slow
def test_the_report_puts_every_task_of_the_log_in_its_section_with_each_failures_class_and_recovery(ws: Path) -> None:
    def task(tid: str, command: str = "true", **extra) -> dict:
        return {"id": tid, "title": f"Task {tid}", "commands": [command], "acceptance_tests": ["true"], **extra}

    tasks = [
        task("ok"),
        task("flaky", "echo x >> n; [ $(wc -l < n) -ge 3 ] || { echo 'Connection reset by peer' >&2; exit 1; }"),
        task("odd", "echo 'gremlins in the works' >&2; exit 4", depends_on=["flaky"]),
        task("dep", depends_on=["odd"]),
        task("perm", "test -f granted || { echo 'HTTP/1.1 403 Forbidden' >&2; exit 1; }", depends_on=["flaky"]),
        task("never", depends_on=["flaky"]),
    ]
    ids = [t["id"] for t in tasks]
    write_plan(ws, tasks)
    policy = ws / "policy.yaml"
    policy.write_text(
        "rules:\n  - {name: drop-the-unknown, gate: escalation, failure_types: [unknown], decision: skip}\n"
    )
    proc = harness(ws, "run", "--plan", str(ws / "plan.yaml"), "--approve", "--policy", str(policy))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    run_id = latest_run(ws)

    markdown = write_report(ws, run_id)
    assert (ws / ".harness" / "runs" / run_id / "report.md").read_text() == markdown
    evts = events(ws, run_id)
    flat = assert_report_matches_log(markdown, evts, ids)
    assert {t: expected_section(evts, t) for t in ids} == {
        "ok": "Completed", "flaky": "Recovered", "odd": "Skipped", "dep": "Skipped", "perm": "Failed", "never": "Not finished",
    }  # fmt: skip
    assert "transient: retrying automatically in 0.2 s (retry 1 of 2)" in flat["flaky"]
    assert "transient: retrying automatically in 0.4 s (retry 2 of 2)" in flat["flaky"]
    assert "completed on attempt 3 after 2 failures" in flat["flaky"]
    assert "decided skip via policy rule drop-the-unknown" in flat["odd"]
    assert "dependency odd was skipped" in flat["dep"]
    assert "permission required: HTTP/1.1 403 Forbidden" in flat["perm"]
    assert f"`harness decide {run_id} perm retry|skip|abort`" in flat["perm"]
    assert "- Tasks: 6 — 2 completed (1 after recovery), 1 failed, 2 skipped, 1 not finished" in markdown

    # The report follows the log: after a retry decision and a resume, perm is recovered and never ran.
    (ws / "granted").touch()
    assert harness(ws, "decide", run_id, "perm", "retry", "--note", "token rotated").returncode == 0
    assert harness(ws, "resume", run_id, "--policy", str(policy)).returncode == 0
    out = ws / "out" / "final.md"
    markdown = write_report(ws, run_id, str(out))
    assert out.read_text() == markdown
    flat = assert_report_matches_log(markdown, events(ws, run_id), ids)
    assert "decided retry via cli" in flat["perm"] and "token rotated" in flat["perm"]
    assert "- Status: completed" in markdown
    # The command line writes the same report next to the log and prints it.
    cli = harness(ws, "report", run_id)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == markdown == (ws / ".harness" / "runs" / run_id / "report.md").read_text()


# -- the rendering, from logs written directly ----------------------------------------------------


def _log(tmp_path: Path, run_id: str, evts: list[tuple[str, dict, str | None]]) -> Path:
    path = eventlog.run_dir(tmp_path, run_id) / "events.jsonl"
    log = eventlog.EventLog.open(path, run_id, create=True)
    try:
        for etype, data, tid in evts:
            log.append(etype, data, task_id=tid)
    finally:
        log.close()
    return path


def _plan(*tasks: tuple[str, str]) -> tuple[str, dict, None]:
    return (
        "PLAN_CREATED",
        {"plan": {"objective": "Render a report", "tasks": [{"id": i, "title": t} for i, t in tasks]}, "revision": 1},
        None,
    )


def test_a_task_cut_off_mid_run_is_not_finished_and_markdown_in_titles_and_output_is_neutralised(
    tmp_path: Path,
) -> None:
    summary = "command `make *all*` exited 2: ``weird``"
    _log(tmp_path, "r1", [
        ("RUN_STARTED", {"objective": "Render a report"}, None),
        _plan(("cut", "Build the *core* | part"), ("bad", "Parse <input> # now"), ("later", "Later")),
        ("GATE_APPROVED", {"revision": 1}, None),
        ("TASK_STARTED", {"attempt": 1}, "later"),
        ("TASK_FAILED", {"attempt": 1, "reason": "command_failed", "summary": "503"}, "later"),
        ("FAILURE_CLASSIFIED", {"failure_type": "transient", "rule": "network-transient"}, "later"),
        ("RECOVERY_APPLIED", {"recipe": "retry_with_backoff", "attempt": 1, "retries": 2, "outcome": "retry", "delay": 5.0}, "later"),
        ("TASK_STARTED", {"attempt": 1}, "cut"),
        ("TASK_STARTED", {"attempt": 1}, "bad"),
        ("TASK_FAILED", {"attempt": 1, "reason": "command_failed", "summary": summary}, "bad"),
        ("FAILURE_CLASSIFIED", {"failure_type": "unknown", "rule": "no-rule-matched"}, "bad"),
        ("RECOVERY_ESCALATION", {"failure_type": "unknown", "reason": "unknown failure", "options": ["retry", "skip", "abort"], "decision": None, "how": "harness decide r1 bad retry|skip|abort"}, "bad"),
        ("TASK_DECISION", {"decision": "abort", "source": "cli", "approver": "ana", "note": "not today"}, "bad"),
        ("RUN_ABORTED", {"task_id": "bad", "reason": "abort decided for bad", "note": "not today"}, None),
    ])  # fmt: skip
    markdown = write_report(tmp_path, "r1")
    found = {title: entries(body) for title, body in sections(markdown).items()}
    assert list(found["Not finished"]) == ["cut", "later"] and "no outcome recorded" in found["Not finished"]["cut"]
    assert "a retry is pending (attempt 1 failed)" in found["Not finished"]["later"]
    assert "retrying automatically in 5 s (retry 1 of 2)" in found["Not finished"]["later"]
    assert list(found["Failed"]) == ["bad"]
    line = found["Failed"]["bad"]
    # verbatim in a code span fenced longer than any backtick run inside, padded as it ends in one
    assert "``` command `make *all*` exited 2: ``weird`` ```" in line
    assert "decided abort via cli by ana (note: not today) → the run was aborted (note: not today)" in line
    assert "Build the \\*core\\* \\| part" in markdown and "Parse \\<input\\> \\# now" in markdown
    assert "- Status: aborted" in markdown


def test_task_reports_follow_the_current_plan_and_keep_completed_work_across_a_replan(tmp_path: Path) -> None:
    path = _log(tmp_path, "r2", [
        ("RUN_STARTED", {"objective": "Render a report"}, None),
        _plan(("a", "A"), ("b", "B")),
        ("TASK_STARTED", {"attempt": 1}, "a"),
        ("TASK_COMPLETED", {"attempt": 1, "duration_ms": 1500}, "a"),
        _plan(("a", "A"), ("c", "C")),
    ])  # fmt: skip
    reports = task_reports(eventlog.read_events(path).events)
    assert [(r.id, r.section) for r in reports] == [("a", Section.completed), ("c", Section.not_finished)]
    assert reports[0].detail == "attempt 1, 1.5 s"
    text = render(eventlog.read_events(path).events, run_id="r2")
    assert "## Completed (1)" in text and "## Failed (0)\n\nNone." in text


def test_a_report_of_an_unknown_run_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path, "no-such-run")
