"""The real agent CLIs (Claude Code, Codex, opencode, Gemini CLI, aider), installed at pinned versions by .ci/install-agents,
driven by the harness against the tests' own fake model server on 127.0.0.1, in an isolated HOME.
Skipped, with the command that installs them, when they are not installed."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from agent_clis import ENVIRONMENTS, MODELS, find_cli
from e2e_support import events, first, harness, latest_run
from fake_models import fake_model

from harness.agents import AgentCall, AgentFailure, AgentReport, adapter_for

pytestmark = pytest.mark.slow

CLIS = ["claude", "codex", "opencode", "gemini", "aider"]


def run_cli(name: str, work: Path, home: Path, url: str, permission: str | None = None) -> tuple[int, AgentReport]:
    adapter = adapter_for(name)
    call = AgentCall(
        prompt="Write hello.txt saying hello.", prompt_file=str(work / "prompt.md"), workdir=str(work),
        permission=permission, command=(find_cli(name),), model=MODELS[name],
        extra_args=("--no-git", "--map-tokens", "0") if name == "aider" else (),
    )  # fmt: skip
    Path(call.prompt_file).write_text(call.prompt)  # aider reads it from there
    env = {"PATH": os.environ["PATH"], **ENVIRONMENTS[name](home, url)}
    proc = subprocess.run(
        adapter.argv(call), cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180
    )
    parser = adapter.parser()
    for line in proc.stdout.splitlines():
        parser.feed(line)
    return proc.returncode, parser.report(proc.returncode)


@pytest.mark.parametrize("name", CLIS)
def test_the_cli_writes_through_its_own_tool_and_its_report_has_session_and_usage(name: str, tmp_path: Path) -> None:
    find_cli(name)
    work = tmp_path / "work"
    work.mkdir()
    with fake_model(workdir=str(work)) as model:
        code, report = run_cli(name, work, tmp_path / "home", model.url)
    assert code == 0
    assert (work / "hello.txt").read_text() == "hello from the agent\n"
    assert (report.session_id or name == "aider") and report.tokens_in > 0 and report.tokens_out > 0  # aider has none
    assert report.failure is None and sum(report.tools.values()) == 1


@pytest.mark.parametrize(("name", "status", "kind"), [
    ("claude", 401, AgentFailure.auth), ("claude", 500, AgentFailure.server_error),
    ("codex", 401, AgentFailure.auth), ("codex", 500, AgentFailure.overloaded),
    ("opencode", 401, AgentFailure.auth), ("opencode", 500, AgentFailure.server_error),
    ("gemini", 401, AgentFailure.auth), ("gemini", 500, AgentFailure.server_error),
    ("aider", 401, AgentFailure.auth),
])  # fmt: skip
def test_api_errors_are_read_from_the_output_whatever_the_exit_code(
    name: str, status: int, kind: AgentFailure, tmp_path: Path
) -> None:
    find_cli(name)
    work = tmp_path / "work"
    work.mkdir()
    with fake_model(workdir=str(work), fail_first=100, status=status) as model:
        _, report = run_cli(name, work, tmp_path / "home", model.url)
    assert report.failure is kind
    assert not (work / "hello.txt").exists()


def test_a_write_claude_may_not_make_is_a_denied_tool(tmp_path: Path) -> None:
    find_cli("claude")
    work = tmp_path / "work"
    work.mkdir()
    with fake_model(workdir=str(work)) as model:
        code, report = run_cli("claude", work, tmp_path / "home", model.url, permission="default")
    assert code == 0  # it says nothing went wrong ...
    assert report.failure is AgentFailure.tool_denied and report.denied_tools == ["Write"]
    assert not (work / "hello.txt").exists()


# -- through the harness ---------------------------------------------------------------------------
def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True).stdout.strip()


def agent_run(
    tmp_path: Path,
    name: str,
    *,
    fail_first: int = 0,
    status: int = 500,
    permission: str | None = None,
    tools: list[dict[str, object]] | None = None,
) -> tuple[Path, subprocess.CompletedProcess[str], dict[str, str]]:
    cli = find_cli(name)
    ws = tmp_path / "repo"
    ws.mkdir()
    git(ws, "init", "-q", "-b", "main")
    (ws / "README.md").write_text("x\n")
    git(ws, "add", "-A")
    # an identity, as a real repository (or the user's global config) has: aider writes a made-up one
    # into the repository's config when there is none, which the sandbox refuses (read-only .git)
    git(ws, "config", "user.email", "a@b")
    git(ws, "config", "user.name", "a")
    git(ws, "commit", "-qm", "init")
    agent: dict[str, object] = {"name": name}
    if permission:
        agent["permission"] = permission
    if MODELS[name]:
        agent["model"] = MODELS[name]
    plan = {"objective": "Say hello", "tasks": [{"id": "hello", "title": "Write hello.txt", "agent": agent,
                                                 "acceptance_tests": ["grep -q hello hello.txt"]}]}  # fmt: skip
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    config: dict[str, object] = {
        "agents": {name: {"command": [cli]}},
        "recovery": {"recipes": {"transient": {"retries": 0}}},
    }
    if tools:
        config["policy"] = {"tools": tools}
    (tmp_path / "harness.yaml").write_text(yaml.safe_dump(config))
    with fake_model(fail_first=fail_first, status=status) as model:
        env = ENVIRONMENTS[name](tmp_path / "home", model.url)
        proc = harness(ws, "run", "--plan", str(tmp_path / "plan.yaml"), "--approve", "--config",
                       str(tmp_path / "harness.yaml"), env=env, timeout=240)  # fmt: skip
    return ws, proc, env


@pytest.mark.parametrize("name", CLIS)
def test_harness_run_with_the_real_cli_completes_the_task_and_logs_session_usage_and_prompt(
    name: str, tmp_path: Path
) -> None:
    ws, proc, env = agent_run(tmp_path, name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = latest_run(ws)
    evts = events(ws, run_id)
    if name == "claude":  # its write came back through the channel: in the task's worktree, allowed
        decided = first(evts, "TOOL_PERMISSION_DECIDED", "hello")["data"]
        assert decided["decision"] == "allow" and decided["rule"] == "scope"
    usage = first(evts, "AGENT_USAGE", "hello")["data"]
    assert first(evts, "EXECUTION_COMPLETE")["data"]["usage"]["tokens"] == usage["tokens_in"] + usage["tokens_out"]
    assert usage["agent"] == name and (usage["session_id"] or name == "aider") and usage["tokens_in"] > 0
    assert usage["failure"] is None
    started = first(evts, "TASK_STARTED", "hello")
    prompt = (ws / ".harness" / "runs" / run_id / "workers" / started["worker_id"] / "prompt.md").read_text()
    assert started["data"]["prompt_sha256"] == hashlib.sha256(prompt.encode()).hexdigest()
    assert git(ws, "show", f"harness/{run_id}:hello.txt") == "hello from the agent"
    key = next(v for k, v in env.items() if k.endswith("_KEY"))
    assert not [p for p in (ws / ".harness").rglob("*") if p.is_file() and key.encode() in p.read_bytes()]


@pytest.mark.parametrize(("name", "status", "failure_type", "rule"), [
    ("claude", 401, "permission", "agent-auth"), ("claude", 500, "transient", "agent-api-busy"),
    ("codex", 401, "permission", "agent-auth"), ("opencode", 401, "permission", "agent-auth"),
    ("gemini", 500, "transient", "agent-api-busy"), ("aider", 401, "permission", "agent-auth"),
])  # fmt: skip
def test_an_api_failure_of_the_real_cli_is_classified(
    name: str, status: int, failure_type: str, rule: str, tmp_path: Path
) -> None:
    ws, proc, _ = agent_run(tmp_path, name, fail_first=100, status=status)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    classified = first(events(ws, latest_run(ws)), "FAILURE_CLASSIFIED", "hello")["data"]
    assert (classified["failure_type"], classified["rule"]) == (failure_type, rule)


def test_a_tool_the_real_claude_was_denied_is_a_permission_failure_naming_the_tool(tmp_path: Path) -> None:
    ws, proc, _ = agent_run(tmp_path, "claude", tools=[{"name": "no-writes", "deny": "Write"}])
    assert proc.returncode == 3, proc.stdout + proc.stderr
    evts = events(ws, latest_run(ws))
    classified = first(evts, "FAILURE_CLASSIFIED", "hello")["data"]
    assert classified["failure_type"] == "permission" and "Write" in classified["evidence"]
    assert "Write" in first(evts, "PERMISSION_REQUIRED", "hello")["data"]["what"]
    # asked through Claude Code's two-way channel, refused by the policy's rule, and recorded
    asked = first(evts, "TOOL_PERMISSION_REQUESTED", "hello")["data"]
    decided = first(evts, "TOOL_PERMISSION_DECIDED", "hello")["data"]
    assert asked["tool"] == "Write" and decided["decision"] == "deny" and decided["rule"] == "no-writes"
