"""The dashboard over real HTTP (uvicorn on 127.0.0.1): the token, Host and Origin checks, decisions
recorded exactly as `harness approve` / `decide` record them, a decision made elsewhere shown and
not overwritten, escaping, error pages, read-only mode, the live stream and the CLI."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_support import events, harness, latest_run, wait_for_log, write_config, write_plan

pytest.importorskip("starlette", reason="the dashboard's tests need the ui extra: pip install -e '.[ui]'")
pytest.importorskip("uvicorn", reason="the dashboard's tests need the ui extra: pip install -e '.[ui]'")
from ui_support import Dashboard, dashboard  # noqa: E402

pytestmark = pytest.mark.slow

EVIL = "<script>alert('owned')</script>"


def run_ids(ws: Path) -> set[str]:
    runs = ws / ".harness" / "runs"
    return {p.name for p in runs.iterdir()} if runs.is_dir() else set()


def the_new_run(ws: Path, before: set[str]) -> str:
    """The run a command just made (ids sort by the second they were made in, not finer)."""
    (made,) = run_ids(ws) - before
    return made


def gate_run(ws: Path, *, title: str = "Write the file") -> str:
    """A run that waits at the plan gate (exit 3), two tasks."""
    before = run_ids(ws)
    write_config(ws)
    plan = write_plan(
        ws,
        [
            {"id": "one", "title": title, "commands": ["echo one > one.txt"], "acceptance_tests": ["test -f one.txt"]},
            {
                "id": "two",
                "title": "Second",
                "depends_on": ["one"],
                "commands": ["echo two > two.txt"],
                "acceptance_tests": ["test -f two.txt"],
            },
        ],
        objective=f"Demonstrate {EVIL} safely",
    )
    done = harness(ws, "run", "--plan", str(plan))
    assert done.returncode == 3, done.stdout + done.stderr
    return the_new_run(ws, before)


def escalated_run(ws: Path) -> str:
    """A run whose `parse` task failed on bad input and waits for a decision (exit 3)."""
    before = run_ids(ws)
    write_config(ws)
    (ws / "in.json").write_text('{"name": ')
    parse = f"{sys.executable} -c 'import json; json.load(open(\"in.json\"))'"
    plan = write_plan(
        ws,
        [
            {"id": "parse", "title": "Parse", "commands": [parse], "acceptance_tests": ["test -f in.json"]},
            {"id": "after", "title": "After", "commands": ["true"], "acceptance_tests": ["test -f in.json"]},
        ],
    )
    done = harness(ws, "run", "--plan", str(plan), "--approve")
    assert done.returncode == 3, done.stdout + done.stderr
    return the_new_run(ws, before)


def session_ended(evts: list[dict[str, Any]]) -> bool:
    """A resumed session stopped: its services are stopped after its last word."""
    resumed = [i for i, e in enumerate(evts) if e["type"] == "RUN_RESUMED"]
    if not resumed:
        return False
    later = [e["type"] for e in evts[resumed[-1] :]]
    return (
        any(t in ("EXECUTION_COMPLETE", "RUN_WAITING", "RUN_ABORTED") for t in later) and later[-1] == "SERVICE_STOPPED"
    )


def key_of(page: str, kind: str) -> str:
    found = re.search(rf'name="kind" value="{kind}">\s*<input type="hidden" name="key" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def of(evts: list[dict[str, Any]], etype: str) -> list[dict[str, Any]]:
    return [e for e in evts if e["type"] == etype]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


# -- access -------------------------------------------------------------------------------------------
def test_every_request_needs_the_token_which_the_first_load_turns_into_a_cookie(ws: Path) -> None:
    run_id = gate_run(ws)
    with dashboard(ws) as board:
        for path in ("/", f"/runs/{run_id}", "/static/app.js", f"/runs/{run_id}/events", "/nope"):
            reply = board.get(path, auth=False)
            assert reply.status == 403, (path, reply.status)
            assert run_id not in reply.body and "Demonstrate" not in reply.body
        assert board.get("/?token=wrong-token", auth=False).status == 403
        assert board.get("/", headers={"Cookie": "harness_ui_x=wrong"}, auth=False).status == 403
        denied = board.post(f"/runs/{run_id}/decide", {"kind": "plan", "decision": "approve"}, auth=False)
        assert denied.status == 403
        first = board.get(f"/runs/{run_id}?token={board.token}", auth=False)
        assert first.status == 303 and first.headers["location"] == f"/runs/{run_id}"  # the token leaves the URL
        cookie = first.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = board.get(f"/runs/{run_id}")
        assert page.status == 200 and run_id in page.body
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        # DNS rebinding: a page of another site that resolves to 127.0.0.1 names another host.
        assert board.get("/", headers={"Host": f"evil.example:{board.port}"}).status == 403
    assert of(events(ws, run_id), "GATE_APPROVED") == []


def test_a_decision_must_come_from_the_dashboards_own_page(ws: Path) -> None:
    run_id = gate_run(ws)
    with dashboard(ws) as board:
        key = key_of(board.get(f"/runs/{run_id}").body, "plan")
        form = {"kind": "plan", "key": key, "decision": "approve", "approver": "mallory"}
        assert board.post(f"/runs/{run_id}/decide", form, origin=None).status == 403
        assert board.post(f"/runs/{run_id}/decide", form, origin="http://evil.example").status == 403
        cross = board.post(f"/runs/{run_id}/decide", form, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status == 403
        assert board.get(f"/runs/{run_id}/decide").status in (404, 405)  # a GET never decides
        assert board.resumed == []
    assert of(events(ws, run_id), "GATE_APPROVED") == []


def test_read_only_serves_no_decisions(ws: Path) -> None:
    run_id = gate_run(ws)
    with dashboard(ws, read_only=True) as board:
        page = board.get(f"/runs/{run_id}")
        assert page.status == 200 and "<form" not in page.body and "read-only" in page.body
        assert f"harness approve {run_id}" in page.body  # the question is shown, with how to answer it
        form = {"kind": "plan", "key": "plan:1", "decision": "approve", "approver": "someone"}
        assert board.post(f"/runs/{run_id}/decide", form).status in (404, 405)
    assert of(events(ws, run_id), "GATE_APPROVED") == []


# -- decisions ----------------------------------------------------------------------------------------
def test_approving_in_the_dashboard_records_what_harness_approve_records_then_resumes(ws: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    twin.mkdir()
    cli_run = gate_run(twin)
    assert harness(twin, "approve", cli_run, "--skip", "two").returncode == 0
    run_id = gate_run(ws)
    with dashboard(ws, resume=lambda *a: 4242) as board:
        key = key_of(board.get(f"/runs/{run_id}").body, "plan")
        form = {"kind": "plan", "key": key, "decision": "approve", "approver": "alice", "skip": ["two"]}
        reply = board.post(f"/runs/{run_id}/decide", form)
        assert reply.status == 303 and reply.headers["location"] == f"/runs/{run_id}?said=resumed"
        assert board.resumed == [(str(ws), run_id, 1)]
        after = board.get(f"/runs/{run_id}?said=resumed").body
        assert "resumed in the background" in after and "process 4242" in after
    ours = of(events(ws, run_id), "GATE_APPROVED")
    theirs = of(events(twin, cli_run), "GATE_APPROVED")
    assert len(ours) == 1 and len(theirs) == 1
    assert (ours[0]["data"]["source"], ours[0]["data"]["approver"]) == ("ui", "alice")
    assert theirs[0]["data"]["source"] == "cli"
    same = ("gate", "revision", "plan_hash", "skip", "keep_dependents")
    assert {k: ours[0]["data"].get(k) for k in same} == {k: theirs[0]["data"].get(k) for k in same}
    assert set(ours[0]["data"]) == set(theirs[0]["data"])


def test_a_rejection_needs_feedback_and_records_it_for_the_planner(ws: Path) -> None:
    run_id = gate_run(ws)
    with dashboard(ws, resume=lambda *a: None) as board:
        key = key_of(board.get(f"/runs/{run_id}").body, "plan")
        empty = board.post(
            f"/runs/{run_id}/decide", {"kind": "plan", "key": key, "decision": "reject", "approver": "a"}
        )
        assert empty.status == 400 and "feedback" in empty.body
        nameless = board.post(f"/runs/{run_id}/decide", {"kind": "plan", "key": key, "decision": "approve"})
        assert nameless.status == 400 and "approver" in nameless.body
        form = {"kind": "plan", "key": key, "decision": "reject", "approver": "bob", "note": "split task one"}
        assert board.post(f"/runs/{run_id}/decide", form).status == 303
    rejected = of(events(ws, run_id), "GATE_REJECTED")
    assert [e["data"]["feedback"] for e in rejected] == ["split task one"]
    assert rejected[0]["data"]["source"] == "ui" and rejected[0]["data"]["kind"] == "reject"


def test_a_decision_made_elsewhere_meanwhile_is_shown_and_not_overwritten(ws: Path) -> None:
    run_id = escalated_run(ws)
    with dashboard(ws, resume=lambda *a: None) as board:
        key = key_of(board.get(f"/runs/{run_id}").body, "escalation")
        assert key.startswith("task:parse:")
        # Someone answers from a terminal while the page is open.
        assert harness(ws, "decide", run_id, "parse", "skip", "--note", "not needed").returncode == 0
        form = {"kind": "escalation", "key": key, "task": "parse", "decision": "retry", "approver": "carol"}
        reply = board.post(f"/runs/{run_id}/decide", form)
        assert reply.status == 409
        assert "already answered &#39;skip&#39;" in reply.body and "(cli)" in reply.body
        assert board.resumed == []
    decisions = of(events(ws, run_id), "TASK_DECISION")
    assert [(d["data"]["decision"], d["data"]["source"]) for d in decisions] == [("skip", "cli")]
    # And the other way round: the CLI refuses to answer a question the dashboard answered.
    again = harness(ws, "decide", run_id, "parse", "retry")
    assert again.returncode == 2 and "already has a decision" in again.stderr


def test_an_approval_for_a_revision_that_changed_is_refused(ws: Path) -> None:
    run_id = gate_run(ws)
    with dashboard(ws, resume=lambda *a: None) as board:
        assert harness(ws, "approve", run_id).returncode == 0
        form = {"kind": "plan", "key": "plan:1", "decision": "approve", "approver": "dave"}
        reply = board.post(f"/runs/{run_id}/decide", form)
        assert reply.status == 409 and "already approved" in reply.body and "(cli)" in reply.body
        stale = board.post(f"/runs/{run_id}/decide", {**form, "key": "plan:7"})
        assert stale.status == 409 and "revision 1, not the revision 7" in stale.body
    assert len(of(events(ws, run_id), "GATE_APPROVED")) == 1


def test_an_escalation_skipped_in_the_dashboard_resumes_the_run_in_the_background(ws: Path) -> None:
    run_id = escalated_run(ws)
    with dashboard(ws) as board:  # the real background resume: `harness resume` in its own session
        key = key_of(board.get(f"/runs/{run_id}").body, "escalation")
        form = {"kind": "escalation", "key": key, "task": "parse", "decision": "skip", "approver": "erin"}
        reply = board.post(f"/runs/{run_id}/decide", form)
        assert reply.status == 303 and reply.headers["location"].endswith("said=resumed")
        wait_for_log(ws, session_ended, 60)
        page = board.get(f"/runs/{run_id}").body
        assert 'id="run-status" class="status status-completed"' in page and "<form" not in page
    evts = events(ws, run_id)
    decision = of(evts, "TASK_DECISION")[0]["data"]
    assert (decision["decision"], decision["source"], decision["approver"]) == ("skip", "ui", "erin")
    assert of(evts, "RUN_RESUMED") and of(evts, "EXECUTION_COMPLETE")[-1]["data"]["status"] == "completed"
    assert "resume" in (ws / ".harness" / "runs" / run_id / "ui-resume.log").read_text()


# -- what is shown --------------------------------------------------------------------------------------
def test_text_from_the_log_is_escaped_on_every_page(ws: Path) -> None:
    run_id = gate_run(ws, title=EVIL)
    with dashboard(ws) as board:
        pages = [board.get("/"), board.get(f"/runs/{run_id}"), board.get(f"/runs/{run_id}/tasks/one")]
        for page in pages:
            assert page.status == 200
            assert "<script>alert" not in page.body
            assert "&lt;script&gt;alert(" in page.body
        # The only scripts are the dashboard's own file.
        assert re.findall(r"<script[^>]*>", pages[1].body) == ['<script src="/static/app.js" defer>']


def test_an_unknown_run_or_a_damaged_log_gives_an_error_page_not_a_traceback(ws: Path) -> None:
    run_id = gate_run(ws)
    broken = "20260101-000000-bad000"
    shutil.copytree(ws / ".harness" / "runs" / run_id, ws / ".harness" / "runs" / broken)
    log = ws / ".harness" / "runs" / broken / "events.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join([*lines[:2], "this is not an event\n", *lines[2:]]))
    with dashboard(ws) as board:
        missing = board.get("/runs/20990101-000000-ffffff")
        assert missing.status == 404 and "no run" in missing.body and "Traceback" not in missing.body
        damaged = board.get(f"/runs/{broken}")
        assert damaged.status == 404 and "damaged" in damaged.body and "Traceback" not in damaged.body
        for path in ("/runs/..%2F..%2Fetc", "/runs/a%20b", f"/runs/{run_id}/tasks/nope", "/nowhere"):
            reply = board.get(path)
            assert reply.status == 404 and "Traceback" not in reply.body, path
        runs = board.get("/")
        assert runs.status == 200 and run_id in runs.body
        assert "cannot be shown" in runs.body and broken in runs.body


def test_runs_page_lists_waiting_runs_first_with_what_they_wait_for(ws: Path) -> None:
    write_config(ws)
    plan = write_plan(ws, [{"id": "a", "title": "A", "commands": ["true"], "acceptance_tests": ["test -d ."]}])
    assert harness(ws, "run", "--plan", str(plan), "--approve").returncode == 0
    (done,) = run_ids(ws)
    waiting = gate_run(ws)
    escalated = escalated_run(ws)
    with dashboard(ws) as board:
        body = board.get("/").body
    rows = re.findall(r'<tr class="run run-([a-z_]+)[^"]*" data-run="([^"]+)"', body)
    assert [r[1] for r in rows[:2]] == [escalated, waiting] and rows[2] == ("completed", done)
    assert "waits for plan" in body and "waits for escalation" in body


def test_the_task_panel_shows_packet_output_and_failure(ws: Path) -> None:
    run_id = escalated_run(ws)
    with dashboard(ws) as board:
        page = board.get(f"/runs/{run_id}/tasks/parse").body
    assert "JSONDecodeError" in page  # the failed step's output tail
    assert "&#34;acceptance_tests&#34;" in page  # the packet, as JSON
    assert 'id="stdout"' in page or 'id="stderr"' in page
    assert "invalid_input" in page


def test_the_live_stream_follows_events_another_process_appends(ws: Path) -> None:
    run_id = escalated_run(ws)
    with dashboard(ws) as board:
        last = events(ws, run_id)[-1]["seq"]
        conn = http.client.HTTPConnection(board.host, board.port, timeout=20)
        try:
            conn.request("GET", f"/runs/{run_id}/events?after={last}", headers={"Cookie": board.cookie})
            response = conn.getresponse()
            assert response.status == 200 and response.getheader("content-type", "").startswith("text/event-stream")
            assert response.readline() == b"retry: 1000\n"
            decided = harness(ws, "decide", run_id, "parse", "skip")
            assert decided.returncode == 0
            seen: list[dict[str, Any]] = []
            while not seen:  # bounded by the connection's timeout
                raw = response.readline()
                assert raw, "the stream ended"
                if raw.startswith(b"data: "):
                    seen.append(json.loads(raw[6:]))
        finally:
            conn.close()
    assert seen[0]["type"] == "TASK_DECISION" and seen[0]["task"] == "parse" and seen[0]["seq"] == last + 1
    assert seen[0]["task_state"] == "waiting" and "skip" in seen[0]["text"]


# -- the command ----------------------------------------------------------------------------------------
def test_harness_ui_serves_the_printed_address_and_stops_on_ctrl_c(ws: Path) -> None:
    gate_run(ws)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "ui", "--port", "0", "--workspace", str(ws)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "CI": "true"},
    )
    try:
        assert proc.stdout is not None
        url = ""
        for _ in range(5):
            line = proc.stdout.readline()
            if "?token=" in line:
                url = line.strip()
                break
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]{20,})", url)
        assert match, url
        board = Dashboard("127.0.0.1", int(match.group(1)), match.group(2))
        board.login()
        assert board.get("/").status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_harness_ui_refuses_bad_calls_with_exit_2(ws: Path, tmp_path: Path) -> None:
    bad_port = harness(ws, "ui", "--port", "70000")
    assert bad_port.returncode == 2 and "not a port" in bad_port.stderr and "Traceback" not in bad_port.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "harness", "ui", "--workspace", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = harness(ws, "ui", "--port", str(taken.getsockname()[1]))
    assert busy.returncode == 2 and "cannot listen" in busy.stderr and "Traceback" not in busy.stderr


def test_a_resume_started_from_the_dashboard_is_reaped(ws: Path) -> None:
    from harness.ui.app import background_resume

    run_id = escalated_run(ws)
    assert harness(ws, "decide", run_id, "parse", "skip").returncode == 0
    pid = background_resume(str(ws), run_id, 1)
    assert pid
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:  # a zombie stays listed until reaped
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), "the resume was not reaped"
    assert events(ws, run_id)[-1]["type"] in ("SERVICE_STOPPED", "EXECUTION_COMPLETE")


def test_trust_and_a_manual_step_are_answered_in_the_dashboard_as_harness_decide_answers_them(ws: Path) -> None:
    write_config(ws)
    plan = write_plan(
        ws,
        [
            {
                "id": "deploy",
                "title": "Deploy to production",
                "commands": ["echo shipped > deployed.txt"],
                "acceptance_tests": ["test -f deployed.txt"],
            },
            {"id": "review", "title": "Review by hand", "acceptance_tests": ["test -f reviewed.txt"]},
        ],
    )
    assert harness(ws, "run", "--plan", str(plan), "--approve").returncode == 3
    run_id = latest_run(ws)
    with dashboard(ws, resume=lambda *a: None) as board:
        page = board.get(f"/runs/{run_id}").body
        assert "Trust needed" in page and "Manual step" in page
        trust = {
            "kind": "trust",
            "key": key_of(page, "trust"),
            "task": "deploy",
            "decision": "trust",
            "approver": "fay",
        }
        assert board.post(f"/runs/{run_id}/decide", trust).status == 303
        (ws / "reviewed.txt").write_text("looked\n")
        task_page = board.get(f"/runs/{run_id}/tasks/review").body
        manual = {
            "kind": "manual",
            "key": key_of(task_page, "manual"),
            "task": "review",
            "decision": "done",
            "approver": "fay",
            "back": f"/runs/{run_id}/tasks/review",
        }
        reply = board.post(f"/runs/{run_id}/decide", manual)
        assert reply.status == 303 and reply.headers["location"] == f"/runs/{run_id}/tasks/review?said=recorded"
        assert [r[1] for r in board.resumed] == [run_id, run_id]
    decided = {e["task_id"]: e["data"] for e in of(events(ws, run_id), "TASK_DECISION")}
    assert decided == {
        "deploy": {"decision": "trust", "source": "ui", "approver": "fay"},
        "review": {"decision": "done", "source": "ui", "approver": "fay"},
    }
    done = harness(ws, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (ws / "deployed.txt").exists()


def test_a_tool_request_of_a_running_agent_is_answered_in_the_dashboard(tmp_path: Path) -> None:
    from e2e_support import finish, first, start_cli
    from test_agent_permissions import RUN_ARGS, _channel_setup

    outside = "../../../../ui-notes.txt"  # not in the worktree, so no scope rule allows it: a person is asked
    ws = _channel_setup(tmp_path, (), outside, tool_wait=60, sandbox="off")
    proc = start_cli(ws, *(a.format(tmp=tmp_path) for a in RUN_ARGS))
    try:
        evts = wait_for_log(ws, lambda e: any(x["type"] == "TOOL_PERMISSION_REQUESTED" for x in e))
        run_id = evts[0]["run_id"]
        with dashboard(ws, resume=lambda *a: 1) as board:
            page = board.get(f"/runs/{run_id}").body
            assert "An agent asks to use a tool" in page and "ui-notes.txt" in page
            form = {
                "kind": "tool",
                "key": key_of(page, "tool"),
                "task": "write",
                "decision": "allow",
                "approver": "gus",
            }
            reply = board.post(f"/runs/{run_id}/decide", form)
            assert reply.status == 303 and reply.headers["location"].endswith("said=driven")
            assert board.resumed == []  # the process that drives the run picks the answer up
        finish(proc)  # its acceptance test looks in the worktree, so the task escalates: not this test's point
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    decided = first(events(ws, run_id), "TOOL_PERMISSION_DECIDED")["data"]
    assert (decided["decision"], decided["source"], decided["approver"]) == ("allow", "ui", "gus")
    assert (ws / "ui-notes.txt").read_text() == "the notes\n"


def test_tokens_and_cost_that_agents_reported_are_on_the_runs_page(ws: Path) -> None:
    from harness import eventlog

    run_id = gate_run(ws)
    log = eventlog.EventLog.open(eventlog.events_path(ws, run_id), run_id, create=False)
    usage = {
        "attempt": 1,
        "agent": "claude",
        "model": "m",
        "session_id": None,
        "tokens_in": 1200,
        "tokens_out": 34,
        "cost_usd": 0.0123,
        "turns": 2,
        "tools": {"Write": 1},
        "duration_ms": 10.0,
        "exit_code": 0,
        "failure": None,
        "final_message": "Wrote <b>one.txt</b>",
    }
    try:
        log.append("AGENT_USAGE", usage, task_id="one")
    finally:
        log.close()
    with dashboard(ws) as board:
        runs = board.get("/").body
        task = board.get(f"/runs/{run_id}/tasks/one").body
    assert "1,234" in runs and "$0.0123" in runs
    assert "claude" in task and "Write×1" in task and "Wrote &lt;b&gt;one.txt&lt;/b&gt;" in task


def test_a_plan_rejected_in_the_dashboard_comes_back_revised_with_what_changed(ws: Path) -> None:
    run_id = gate_run(ws)
    with dashboard(ws) as board:
        key = key_of(board.get(f"/runs/{run_id}").body, "plan")
        form = {"kind": "plan", "key": key, "decision": "reject", "approver": "hal", "note": "say which file"}
        assert board.post(f"/runs/{run_id}/decide", form).status == 303
        wait_for_log(ws, session_ended, 60)  # the planner revised the plan in the background
        page = board.get(f"/runs/{run_id}").body
        assert key_of(page, "plan") == "plan:2" and "revision 2" in page
        assert "Changes since revision 1" in page
    assert [e["data"]["revision"] for e in of(events(ws, run_id), "PLAN_CREATED")] == [1, 2]


def test_why_a_run_cannot_resume_is_shown_and_so_is_a_background_resume_that_failed(ws: Path) -> None:
    run_id = gate_run(ws)
    plan = ws / "plan.yaml"
    plan.write_text(plan.read_text().replace("echo one", "echo uno"))  # edited after the run started
    with dashboard(ws) as board:
        page = board.get(f"/runs/{run_id}").body
        assert "Resume refuses this run" in page and "plan.yaml changed" in page
        form = {"kind": "plan", "key": key_of(page, "plan"), "decision": "approve", "approver": "ivy"}
        assert board.post(f"/runs/{run_id}/decide", form).status == 303
        deadline = time.monotonic() + 60
        while "The resume started from this dashboard stopped" not in page and time.monotonic() < deadline:
            time.sleep(0.1)
            page = board.get(f"/runs/{run_id}").body
        assert "stopped (exit code 2: harness: plan.yaml changed" in page
    assert of(events(ws, run_id), "RUN_RESUMED") == []  # nothing ran


def test_the_task_panel_of_an_agent_task_shows_its_prompt_summary_and_diff(tmp_path: Path) -> None:
    import yaml

    ws = tmp_path / "repo"
    ws.mkdir()
    for cmd in (
        ["init", "-q", "-b", "main"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "i"],
    ):
        subprocess.run(["git", *cmd], cwd=ws, check=True)
    fake = Path(__file__).parent / "agent_programs" / "fake_agent.py"
    script = {"feat": [{"write": {"feature.txt": "ready <b>now</b>\n"}, "say": "Added feature.txt"}]}
    (tmp_path / "script.json").write_text(json.dumps(script))
    (tmp_path / "harness.yaml").write_text(
        yaml.safe_dump({"agents": {"fake": {"command": [sys.executable, str(fake), str(tmp_path / "script.json")]}}})
    )
    task = {"id": "feat", "title": "Add the feature", "acceptance_tests": ["grep -q ready feature.txt"]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({"objective": "Agent work", "tasks": [task]}))
    done = harness(
        ws,
        "run",
        "--plan",
        str(tmp_path / "plan.yaml"),
        "--approve",
        "--agent",
        "fake",
        "--config",
        str(tmp_path / "harness.yaml"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run_id,) = run_ids(ws)
    with dashboard(ws) as board:
        page = board.get(f"/runs/{run_id}/tasks/feat").body
    prompt = re.search(r'<pre id="prompt">(.*?)</pre>', page, re.S)
    assert prompt and "grep -q ready feature.txt" in prompt.group(1)  # the prompt names our acceptance test
    diff = re.search(r'<pre id="diff" class="diff">(.*?)</pre>', page, re.S)
    assert diff and "+ready &lt;b&gt;now&lt;/b&gt;" in diff.group(1) and "feature.txt" in diff.group(1)
    assert "Added feature.txt" in page and "fake" in page  # the agent's last message and name
