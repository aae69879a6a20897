"""Hooks and per-command checks with real programs: hook scripts written to the test's folder, a
URL hook answered by a stdlib HTTP server on 127.0.0.1, and real `harness run` runs in which a
hook denies, replaces or hangs, a policy denies or asks, and a command the approved plan does not
hold is refused before any process starts."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import (
    alive,
    assert_no_processes_left,
    events,
    first,
    harness,
    latest_run,
    logged_plan,
    types,
    write_config,
    write_plan,
)

from harness import eventlog
from harness.config import HooksConfig, HookSpec
from harness.events import EventType as E
from harness.hooks import HookRun, Hooks, label, payload, run_hook
from harness.vocab import HookPoint, HookVerdict


def script(folder: Path, name: str, body: str) -> Path:
    """A hook program: Python, reading the payload from stdin."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("import json, os, sys\npayload = json.load(sys.stdin)\n" + body)
    return path


def hook(path: Path, **extra: Any) -> HookSpec:
    return HookSpec(command=[sys.executable, str(path)], **extra)


class Receiver:
    """A local HTTP server that records each POSTed JSON body and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                size = int(self.headers.get("Content-Length") or 0)
                outer.bodies.append(json.loads(self.rfile.read(size)))
                outer.paths.append(self.path)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# -- one hook run -----------------------------------------------------------------------------------
def test_a_hook_gets_the_payload_on_stdin_and_its_point_in_the_environment(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    path = script(
        tmp_path,
        "seen.py",
        f"open({str(out)!r}, 'w').write(json.dumps({{'payload': payload, 'event': os.environ['HARNESS_HOOK_EVENT'], "
        "'cwd': os.getcwd()}))\n",
    )
    data = payload(HookPoint.pre_task, "task a starts", run_id="r", task_id="a", attempt=1, agent=None)
    done = run_hook(hook(path), HookPoint.pre_task, data, cwd=str(tmp_path))
    assert done.verdict is HookVerdict.allow and done.exit_code == 0 and done.duration_ms > 0
    seen = json.loads(out.read_text())
    assert seen["event"] == "pre_task" and seen["cwd"] == str(tmp_path)
    assert seen["payload"] == {
        "event": "pre_task",
        "run_id": "r",
        "task_id": "a",
        "attempt": 1,
        "text": "task a starts",
    }


def test_exit_0_allows_and_its_json_answer_may_add_a_message_and_replace_a_command(tmp_path: Path) -> None:
    path = script(
        tmp_path, "wrap.py", "print(json.dumps({'message': 'wrapped', 'command': 'timeout 9 ' + payload['command']}))\n"
    )
    done = run_hook(hook(path), HookPoint.pre_command, {"command": "make"}, cwd=str(tmp_path))
    assert (done.verdict, done.message, done.replacement) == (HookVerdict.allow, "wrapped", "timeout 9 make")
    assert done.event(attempt=1, command="make")["replaced_by"] == "timeout 9 make"


def test_only_a_pre_command_hook_may_replace_a_command(tmp_path: Path) -> None:
    path = script(tmp_path, "wrap.py", "print(json.dumps({'command': 'rm -rf x'}))\n")
    done = run_hook(hook(path), HookPoint.post_command, {"command": "make"}, cwd=str(tmp_path))
    assert done.verdict is HookVerdict.error and "pre_command" in (done.message or "")


def test_plain_output_is_no_answer_but_broken_json_is_a_failure(tmp_path: Path) -> None:
    plain = script(tmp_path, "plain.py", "print('checked, all fine')\n")
    assert run_hook(hook(plain), HookPoint.pre_task, {}, cwd=str(tmp_path)).verdict is HookVerdict.allow
    broken = script(tmp_path, "broken.py", "print('{\"message\": ')\n")
    done = run_hook(hook(broken), HookPoint.pre_task, {}, cwd=str(tmp_path))
    assert done.verdict is HookVerdict.error and "JSON" in (done.message or "")


def test_exit_2_denies_with_stderr_as_the_reason_and_any_other_exit_is_a_failure(tmp_path: Path) -> None:
    deny = script(tmp_path, "deny.py", "print('not on a Friday', file=sys.stderr)\nsys.exit(2)\n")
    denied = run_hook(hook(deny), HookPoint.pre_command, {}, cwd=str(tmp_path))
    assert (denied.verdict, denied.exit_code, denied.message) == (HookVerdict.deny, 2, "not on a Friday")
    assert denied.blocks
    crash = script(tmp_path, "crash.py", "raise SystemExit(5)\n")
    failed = run_hook(hook(crash), HookPoint.pre_command, {}, cwd=str(tmp_path))
    assert (failed.verdict, failed.exit_code) == (HookVerdict.error, 5) and failed.blocks
    missing = run_hook(HookSpec(command=[str(tmp_path / "nope")]), HookPoint.pre_task, {}, cwd=str(tmp_path))
    assert missing.verdict is HookVerdict.error and "cannot start" in (missing.message or "")


def test_a_hook_past_its_timeout_is_killed_with_its_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    path = script(
        tmp_path,
        "hang.py",
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n",
    )
    done = run_hook(hook(path, timeout=1), HookPoint.pre_command, {}, cwd=str(tmp_path))
    assert done.verdict is HookVerdict.timeout and done.blocks and "killed" in (done.message or "")
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child), "the hook's child outlived its timeout"


def test_a_url_hook_gets_the_payload_posted_with_a_slack_text_and_is_named_by_its_host(receiver: Receiver) -> None:
    spec = HookSpec(url=receiver.url + "/services/T000/SECRET")
    data = payload(HookPoint.on_run_end, "Run r completed", run_id="r", status="completed")
    done = run_hook(spec, HookPoint.on_run_end, data, cwd=".")
    assert (done.verdict, done.status, done.kind) == (HookVerdict.allow, 200, "url")
    assert receiver.bodies == [{"event": "on_run_end", "run_id": "r", "status": "completed", "text": "Run r completed"}]
    assert receiver.paths == ["/services/T000/SECRET"]
    assert label(spec) == receiver.url and "SECRET" not in json.dumps(done.event())


def test_a_url_hook_that_answers_an_error_or_nothing_is_a_failure() -> None:
    failing = Receiver(status=500)
    try:
        done = run_hook(HookSpec(url=failing.url), HookPoint.pre_task, {}, cwd=".")
        assert (done.verdict, done.status) == (HookVerdict.error, 500)
    finally:
        failing.close()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # connections wait in the backlog: nobody answers
    try:
        done = run_hook(
            HookSpec(url=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5), HookPoint.pre_task, {}, cwd="."
        )
        assert done.verdict is HookVerdict.timeout
    finally:
        silent.close()


def test_at_a_blocking_point_the_first_hook_that_blocks_ends_the_round_elsewhere_all_run(tmp_path: Path) -> None:
    deny = script(tmp_path, "deny.py", "sys.exit(2)\n")
    ok = script(tmp_path, "ok.py", "pass\n")
    both = [hook(deny, name="deny"), hook(ok, name="ok")]
    hooks = Hooks(HooksConfig(pre_task=both, post_task=both), cwd=str(tmp_path))
    ran: list[HookRun] = []
    blocked = hooks.run(HookPoint.pre_task, {}, ran.append)
    assert blocked is not None and blocked.hook == "deny" and [r.hook for r in ran] == ["deny"]
    ran.clear()
    observed = hooks.run(HookPoint.post_task, {}, ran.append)
    assert observed is not None and observed.hook == "deny" and [r.hook for r in ran] == ["deny", "ok"]
    assert not hooks.configured(HookPoint.on_waiting)


# -- real runs --------------------------------------------------------------------------------------
@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Path]:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    yield workspace
    assert_no_processes_left(workspace)


def guard(ws: Path, body: str) -> dict[str, Any]:
    """A pre_command hook in the workspace's hooks/ folder, configured by a relative path."""
    script(ws / "hooks", "guard.py", body)
    return {"pre_command": [{"name": "guard", "command": ["python3", "hooks/guard.py"], "timeout": 10}]}


def checked(evts: list[dict[str, Any]], task: str) -> list[tuple[str, int, str, str, str]]:
    return [
        (e["data"]["kind"], e["data"]["index"], e["data"]["command"], e["data"]["decision"], e["data"]["rule"])
        for e in evts
        if e["type"] == "COMMAND_CHECKED" and e.get("task_id") == task
    ]


@pytest.mark.slow
def test_a_deny_hook_stops_one_command_and_the_task_fails_as_a_permission_failure_naming_it(ws: Path) -> None:
    hooks = guard(ws, "if 'two' in payload['command']:\n    print('no twos here', file=sys.stderr)\n    sys.exit(2)\n")
    write_config(ws, hooks=hooks)
    write_plan(
        ws,
        [
            {
                "id": "a",
                "title": "Write files one and two",
                "commands": ["echo 1 > one.txt", "echo 2 > two.txt"],
                "acceptance_tests": ["test -f one.txt"],
            }
        ],
    )
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve")
    assert proc.returncode == 3, proc.stdout + proc.stderr  # a permission failure waits for a decision
    evts = events(ws)
    assert checked(evts, "a") == [
        ("command", 0, "echo 1 > one.txt", "allow", "default"),
        ("command", 1, "echo 2 > two.txt", "deny", "hook:guard"),
    ]
    failed = first(evts, "TASK_FAILED", "a")["data"]
    assert failed["reason"] == "denied" and failed["denied_by"] == "hook:guard"
    assert "hook guard" in failed["summary"] and "no twos here" in failed["summary"]
    assert first(evts, "FAILURE_CLASSIFIED", "a")["data"]["failure_type"] == "permission"
    assert first(evts, "PERMISSION_REQUIRED", "a")["data"]["command"] == "echo 2 > two.txt"
    ran = [e["data"] for e in evts if e["type"] == "HOOK_RAN"]
    assert [(r["decision"], r["command"]) for r in ran] == [("allow", "echo 1 > one.txt"), ("deny", "echo 2 > two.txt")]
    assert ran[1]["message"] == "no twos here" and ran[1]["exit_code"] == 2
    assert "TASK_STARTED" not in types(evts) and "WORKER_SPAWNED" not in types(evts)
    assert not (ws / "one.txt").exists() and not (ws / "two.txt").exists()  # refused before anything ran
    assert "no twos here" in proc.stdout


@pytest.mark.slow
def test_a_hook_that_rewrites_a_command_has_the_rewritten_one_run_and_both_recorded(ws: Path) -> None:
    hooks = guard(
        ws,
        "if payload['command'] == 'echo original > out.txt':\n"
        "    print(json.dumps({'command': 'echo rewritten > out.txt', 'message': 'pinned'}))\n",
    )
    write_config(ws, hooks=hooks)
    write_plan(
        ws,
        [
            {
                "id": "a",
                "title": "Write out.txt",
                "commands": ["echo original > out.txt"],
                "acceptance_tests": ["test -s out.txt"],
            }
        ],
    )
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (ws / "out.txt").read_text() == "rewritten\n"
    evts = events(ws)
    [command, test] = [e["data"] for e in evts if e["type"] == "COMMAND_CHECKED"]
    assert command["command"] == "echo original > out.txt" and command["replaced_by"] == "echo rewritten > out.txt"
    assert command["decision"] == "allow" and "replaced_by" not in test
    ran = [e["data"] for e in evts if e["type"] == "HOOK_RAN"]
    assert ran[0]["replaced_by"] == "echo rewritten > out.txt" and ran[0]["message"] == "pinned"
    assert ran[1]["command"] == "echo rewritten > out.txt" and "replaced_by" not in ran[1]  # checked again
    [finished] = [e["data"] for e in evts if e["type"] == "WORKER_FINISHED"]
    assert [s["command"] for s in finished["steps"]] == ["echo rewritten > out.txt", "test -s out.txt"]
    # both steps are silent: the worker wrote no output file
    assert not list((ws / ".harness" / "runs" / latest_run(ws) / "workers").glob("*/stdout.log"))


@pytest.mark.slow
def test_a_hanging_hook_times_out_and_blocks_the_task(ws: Path) -> None:
    hooks = guard(ws, "import time\ntime.sleep(600)\n")
    hooks["pre_command"][0]["timeout"] = 1
    write_config(ws, hooks=hooks)
    write_plan(
        ws,
        [{"id": "a", "title": "Touch ran.txt", "commands": ["touch ran.txt"], "acceptance_tests": ["test -f ran.txt"]}],
    )
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    evts = events(ws)
    ran = first(evts, "HOOK_RAN", "a")["data"]
    assert ran["decision"] == "timeout" and ran["exit_code"] is None and ran["duration_ms"] >= 1000
    failed = first(evts, "TASK_FAILED", "a")["data"]
    assert failed["denied_by"] == "hook:guard" and "timed out" in failed["summary"]
    assert first(evts, "FAILURE_CLASSIFIED", "a")["data"]["failure_type"] == "permission"
    assert not (ws / "ran.txt").exists()


@pytest.mark.slow
def test_url_hooks_receive_the_waiting_and_the_end_of_a_run(ws: Path, receiver: Receiver) -> None:
    url = receiver.url + "/hook/SECRET-TOKEN"
    write_config(ws, hooks={"on_waiting": [{"url": url}], "on_run_end": [{"url": url}]})
    write_plan(
        ws, [{"id": "a", "title": "Touch a.txt", "commands": ["touch a.txt"], "acceptance_tests": ["test -f a.txt"]}]
    )
    waiting = harness(ws, "run", "--plan", "plan.yaml")
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    run_id = latest_run(ws)
    assert harness(ws, "approve", run_id).returncode == 0
    done = harness(ws, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    [wait, end] = receiver.bodies
    assert wait["event"] == "on_waiting" and wait["reason"] == "approval" and wait["run_id"] == run_id
    assert f"harness approve {run_id}" in wait["text"]
    assert end["event"] == "on_run_end" and end["status"] == "completed" and end["completed"] == 1
    assert end["text"].startswith(f"Run {run_id} completed")
    ran = [e["data"] for e in events(ws) if e["type"] == "HOOK_RAN"]
    assert [(r["point"], r["decision"], r["status"], r["hook"]) for r in ran] == [
        ("on_waiting", "allow", 200, receiver.url),
        ("on_run_end", "allow", 200, receiver.url),
    ]
    assert "SECRET-TOKEN" not in (ws / ".harness" / "runs" / run_id / "events.jsonl").read_text()


@pytest.mark.slow
def test_a_policy_deny_glob_refuses_a_command_before_anything_runs(ws: Path) -> None:
    policy = {"commands": {"deny": [{"name": "no-force-push", "pattern": "git push *--force*"}]}}
    write_config(ws, policy=policy)
    write_plan(
        ws,
        [
            {
                "id": "ship",
                "title": "Push the release",
                "commands": ["touch before.txt", "git push origin main --force"],
                "acceptance_tests": ["test -f before.txt"],
            }
        ],
    )
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    evts = events(ws)
    assert checked(evts, "ship")[-1] == ("command", 1, "git push origin main --force", "deny", "no-force-push")
    failed = first(evts, "TASK_FAILED", "ship")["data"]
    assert failed["denied_by"] == "no-force-push" and "policy rule no-force-push" in failed["summary"]
    assert failed["failed_step"] == {"kind": "command", "index": 1, "command": "git push origin main --force"}
    assert not (ws / "before.txt").exists()


@pytest.mark.slow
def test_an_ask_rule_waits_without_a_terminal_until_a_person_trusts_the_task(ws: Path) -> None:
    policy = {"commands": {"ask": [{"name": "publishing", "pattern": "echo publish*", "reason": "it publishes"}]}}
    write_config(ws, policy=policy)
    write_plan(
        ws,
        [
            {
                "id": "pub",
                "title": "Publish",
                "commands": ["echo publish > published.txt"],
                "acceptance_tests": ["test -f published.txt"],
            }
        ],
    )
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    run_id = latest_run(ws)
    assert f"harness decide {run_id} pub trust" in proc.stdout
    evts = events(ws)
    assert checked(evts, "pub") == [
        ("command", 0, "echo publish > published.txt", "ask", "publishing"),
        ("acceptance", 0, "test -f published.txt", "allow", "default"),
    ]
    assert "it publishes" in first(evts, "TRUST_REQUIRED", "pub")["data"]["reason"]
    assert not (ws / "published.txt").exists()
    assert harness(ws, "decide", run_id, "pub", "trust").returncode == 0
    done = harness(ws, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (ws / "published.txt").exists()
    after = [e["data"] for e in events(ws)[len(evts) :] if e["type"] == "COMMAND_CHECKED"]
    assert [(c["decision"], c["source"]) for c in after if c["kind"] == "command"] == [
        ("ask", "policy"),
        ("allow", "cli"),
    ]


@pytest.mark.slow
def test_the_built_in_deny_list_refuses_rm_rf_root_before_any_process_starts(ws: Path) -> None:
    write_config(ws)
    # `--preserve-root` keeps even a regression harmless: GNU rm refuses `/` with it
    write_plan(
        ws,
        [
            {
                "id": "wipe",
                "title": "Clean up",
                "commands": ["touch canary.txt", "rm -rf --preserve-root /"],
                "acceptance_tests": ["true"],
            }
        ],
    )
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    evts = events(ws)
    assert checked(evts, "wipe")[-1] == ("command", 1, "rm -rf --preserve-root /", "deny", "deny-list:rm-root")
    assert first(evts, "TASK_FAILED", "wipe")["data"]["denied_by"] == "deny-list:rm-root"
    assert "WORKER_SPAWNED" not in types(evts) and "TASK_STARTED" not in types(evts)
    assert not (ws / "canary.txt").exists()


@pytest.mark.slow
def test_a_command_the_approved_revision_does_not_hold_is_refused_even_past_the_gate(ws: Path) -> None:
    """A log whose plan was replaced after an approval that named no content (as older versions
    wrote it), so neither the gate nor `harness resume` sees the change: the command is refused."""
    write_config(ws)
    write_plan(
        ws, [{"id": "a", "title": "Touch a.txt", "commands": ["touch a.txt"], "acceptance_tests": ["test -f a.txt"]}]
    )
    assert harness(ws, "run", "--plan", "plan.yaml").returncode == 3  # waits at the gate
    run_id = latest_run(ws)
    path = eventlog.run_dir(ws, run_id) / "events.jsonl"
    plan = logged_plan(events(ws))
    forged = {**plan, "tasks": [{**plan["tasks"][0], "commands": ["touch a.txt", "touch injected.txt"]}]}
    log = eventlog.EventLog.open(path, run_id, create=False)
    try:
        log.append(E.GATE_APPROVED, {"gate": "plan", "revision": 1, "source": "cli", "approver": "ann"}, durable=True)
        log.append(E.PLAN_CREATED, {"plan": forged, "revision": 1, "report": None}, durable=True)
    finally:
        log.close()
    proc = harness(ws, "resume", run_id)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    evts = events(ws)
    assert checked(evts, "a") == [
        ("command", 0, "touch a.txt", "allow", "default"),
        ("command", 1, "touch injected.txt", "deny", "not_in_approved_plan"),
    ]
    assert first(evts, "TASK_FAILED", "a")["data"]["denied_by"] == "not_in_approved_plan"
    assert not (ws / "injected.txt").exists() and not (ws / "a.txt").exists()


@pytest.mark.slow
def test_a_command_injected_by_editing_the_plan_file_after_approval_is_refused(ws: Path) -> None:
    write_config(ws)
    tasks = [
        {"id": "hand", "title": "Check by hand", "acceptance_tests": ["true"], "confirmation": "the docs read well"},
        {
            "id": "b",
            "title": "Touch b.txt",
            "commands": ["touch b.txt"],
            "acceptance_tests": ["test -f b.txt"],
            "depends_on": ["hand"],
        },
    ]
    write_plan(ws, tasks)
    assert harness(ws, "run", "--plan", "plan.yaml", "--approve").returncode == 3  # the manual step waits
    run_id = latest_run(ws)
    tasks[1]["commands"] = ["touch b.txt", "touch injected.txt"]
    (ws / "plan.yaml").write_text(yaml.safe_dump({"objective": "Exercise the harness end to end", "tasks": tasks}))
    assert harness(ws, "decide", run_id, "hand", "done").returncode == 0
    proc = harness(ws, "resume", run_id)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "changed after run" in proc.stderr
    assert not (ws / "injected.txt").exists() and not (ws / "b.txt").exists()


@pytest.mark.slow
def test_a_pre_task_hook_denies_a_task_and_a_post_task_hook_only_observes(ws: Path) -> None:
    script(
        ws / "hooks",
        "pre.py",
        "if payload['task_id'] == 'no':\n    print('not this one', file=sys.stderr)\n    sys.exit(2)\n",
    )
    script(ws / "hooks", "audit.py", "open('audit.jsonl', 'a').write(json.dumps(payload) + '\\n')\nsys.exit(2)\n")
    hooks = {
        "pre_task": [{"name": "pre", "command": ["python3", "hooks/pre.py"]}],
        "post_task": [{"name": "audit", "command": ["python3", "hooks/audit.py"]}],
    }
    write_config(ws, hooks=hooks)
    write_plan(
        ws,
        [
            {"id": "ok", "title": "Fine", "commands": ["echo fine"], "acceptance_tests": ["true"]},
            {"id": "no", "title": "Refused", "commands": ["touch no.txt"], "acceptance_tests": ["true"]},
        ],
    )
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve")
    assert proc.returncode == 3, proc.stdout + proc.stderr  # the refused task waits for a decision
    evts = events(ws)
    assert "TASK_COMPLETED" in types(evts, "ok")  # post_task's exit 2 is recorded; the verdict stands
    audit = [e["data"] for e in evts if e["type"] == "HOOK_RAN" and e["data"]["point"] == "post_task"]
    assert [(a["decision"], a["outcome"]) for a in audit] == [("deny", "completed")]
    seen = [json.loads(line) for line in (ws / "audit.jsonl").read_text().splitlines()]
    assert [(s["task_id"], s["outcome"], s["output_tail"]) for s in seen] == [("ok", "completed", "")]
    no = first(evts, "TASK_FAILED", "no")["data"]
    assert no["denied_by"] == "hook:pre" and "pre_task" in no["summary"] and "not this one" in no["summary"]
    assert "WORKER_SPAWNED" not in types(evts, "no") and not (ws / "no.txt").exists()


@pytest.mark.slow
def test_post_command_denial_turns_a_passing_task_into_a_permission_failure(ws: Path) -> None:
    script(
        ws / "hooks",
        "scan.py",
        "if 'secret' in payload.get('output_tail', ''):\n    print('leaks a secret', file=sys.stderr)\n    sys.exit(2)\n",
    )
    write_config(ws, hooks={"post_command": [{"name": "scan", "command": ["python3", "hooks/scan.py"]}]})
    write_plan(
        ws, [{"id": "leak", "title": "Leaky", "commands": ["echo secret=1", "echo more"], "acceptance_tests": ["true"]}]
    )
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    evts = events(ws)
    failed = first(evts, "TASK_FAILED", "leak")["data"]
    assert failed["denied_by"] == "hook:scan" and "leaks a secret" in failed["summary"]
    assert failed["failed_step"] == {"kind": "command", "index": 0, "command": "echo secret=1"}
    assert "TASK_COMPLETED" not in types(evts, "leak")
    ran = [e["data"] for e in evts if e["type"] == "HOOK_RAN"]
    assert [(r["command"], r["decision"]) for r in ran] == [("echo secret=1", "deny")]  # the round ends there
