"""Agents' tool permissions: the policy's tool rules reach the plan and the CLI's argv, and a
bypass-everything mode is refused unless a policy rule names the agent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from e2e_support import events, first, harness, latest_run, logged_plan

from harness.agents import AgentCall, adapter_for
from harness.agents.plan import apply_agents, bypass_problems
from harness.config import Policy

FAKE = Path(__file__).parent / "agent_programs" / "fake_agent.py"


def empty_repo(ws: Path) -> Path:
    """A git repository with one empty commit (agent tasks work in worktrees of it)."""
    ws.mkdir()
    for cmd in (
        ["init", "-q"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "i"],
    ):
        subprocess.run(["git", *cmd], cwd=ws, check=True)
    return ws


def policy(*rules: dict[str, object]) -> Policy:
    return Policy.model_validate({"tools": list(rules)})


def test_tool_rules_reach_each_task_s_agent_and_the_argv() -> None:
    rules = policy(
        {"name": "tests-ok", "allow": "Bash(npm test:*)"},
        {"name": "no-web", "deny": "WebFetch"},
        {"name": "docs-only", "allow": "Write(docs/*)", "tasks": ["docs"]},
    ).tools
    plan = {"objective": "x", "tasks": [{"id": "code", "title": "c"}, {"id": "docs", "title": "d"}]}
    tasks = {t["id"]: t for t in apply_agents(plan, {"name": "claude"}, {}, rules)["tasks"]}
    assert tasks["code"]["agent"]["allowed_tools"] == ["Bash(npm test:*)"]
    assert tasks["docs"]["agent"]["allowed_tools"] == ["Bash(npm test:*)", "Write(docs/*)"]
    assert tasks["code"]["agent"]["denied_tools"] == ["WebFetch"]
    call = AgentCall("p", "/f", "/w", allowed_tools=("Bash(npm test:*)",), denied_tools=("WebFetch",))
    argv = adapter_for("claude").argv(call)
    assert argv[argv.index("--allowedTools") + 1] == "Bash(npm test:*)"
    assert argv[argv.index("--disallowedTools") + 1] == "WebFetch"
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"  # the narrowest mode that edits


@pytest.mark.parametrize(
    ("spec", "found"),
    [
        ({"name": "claude", "permission": "bypassPermissions"}, "permission bypassPermissions"),
        (
            {"name": "claude", "extra_args": ["--dangerously-skip-permissions"]},
            "argument --dangerously-skip-permissions",
        ),
        ({"name": "codex", "permission": "danger-full-access"}, "permission danger-full-access"),
        ({"name": "gemini", "permission": "yolo"}, "permission yolo"),
        ({"name": "opencode", "extra_args": ["--auto"]}, "argument --auto"),
    ],
)
def test_bypass_modes_need_a_rule_naming_the_agent(spec: dict[str, object], found: str) -> None:
    plan = {"objective": "x", "tasks": [{"id": "t1", "title": "t", "agent": spec}]}
    (problem,) = bypass_problems(plan, [])
    assert problem["code"] == "agent_bypass_not_allowed" and found in problem["message"]
    name = str(spec["name"])
    assert bypass_problems(plan, policy({"name": "sandboxed", "bypass": [name]}).tools) == []
    assert bypass_problems(plan, policy({"name": "elsewhere", "bypass": [name], "tasks": ["other"]}).tools)
    narrow = {"objective": "x", "tasks": [{"id": "t1", "title": "t", "agent": {"name": name}}]}
    assert bypass_problems(narrow, []) == []


@pytest.mark.slow
def test_a_plan_that_switches_an_agent_s_checks_off_is_refused_unless_the_policy_names_it(tmp_path: Path) -> None:
    ws = empty_repo(tmp_path / "ws")
    agent = {"name": "claude", "permission": "bypassPermissions", "channel": False}  # the stand-in has no channel
    task = {"id": "t1", "title": "Write out.txt", "agent": agent, "acceptance_tests": ["test -f out.txt"]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({"objective": "x", "tasks": [task]}))
    (tmp_path / "script.json").write_text('{"t1": [{"write": {"out.txt": "ok\\n"}}]}')
    config = {"agents": {"claude": {"command": [sys.executable, str(FAKE), str(tmp_path / "script.json")]}}}
    (tmp_path / "harness.yaml").write_text(yaml.safe_dump(config))
    args = ["run", "--plan", str(tmp_path / "plan.yaml"), "--config", str(tmp_path / "harness.yaml"), "--approve"]
    refused = harness(ws, *args)
    assert refused.returncode == 2 and "bypassPermissions" in refused.stderr and "bypass: [claude]" in refused.stderr
    refused_run = latest_run(ws)
    assert "PLAN_CREATED" not in {e["type"] for e in events(ws, refused_run)}
    (tmp_path / "policy.yaml").write_text(
        yaml.safe_dump({"tools": [{"name": "sandboxed-agent", "bypass": ["claude"]}]})
    )
    allowed = harness(ws, *args, "--policy", str(tmp_path / "policy.yaml"))
    assert allowed.returncode == 0, allowed.stderr + allowed.stdout
    (second,) = [p.name for p in (ws / ".harness" / "runs").iterdir() if p.name != refused_run]
    plan = logged_plan(events(ws, second))
    assert plan["tasks"][0]["agent"]["permission"] == "bypassPermissions"


CHANNEL = Path(__file__).parent / "agent_programs" / "channel_agent.py"


def test_policy_tool_rules_match_calls_as_the_clis_write_them() -> None:
    from harness.supervisor._decide import tool_rule_for

    rules = policy(
        {"name": "no-rm", "deny": "Bash(rm:*)"},
        {"name": "tests", "allow": "Bash(npm test:*)"},
        {"name": "src-writes", "allow": "Write(src/*)", "tasks": ["code"]},
        {"name": "reads", "allow": "Read"},
    ).tools
    assert tool_rule_for(rules, "t", "Bash", "Bash(npm test -- --watch=false)").name == "tests"  # type: ignore[union-attr]
    assert tool_rule_for(rules, "t", "Bash", "Bash(rm -rf build)").name == "no-rm"  # type: ignore[union-attr]
    assert tool_rule_for(rules, "t", "Bash", "Bash(curl example.invalid)") is None
    assert tool_rule_for(rules, "code", "Write", "Write(src/app.py)").name == "src-writes"  # type: ignore[union-attr]
    assert tool_rule_for(rules, "docs", "Write", "Write(src/app.py)") is None
    assert tool_rule_for(rules, "t", "Read", "Read(/etc/passwd)").name == "reads"  # type: ignore[union-attr]


def _channel_setup(tmp_path: Path, tool_rules: tuple[dict[str, object], ...], path: str, **policy: object) -> Path:
    ws = empty_repo(tmp_path / "ws")
    task = {
        "id": "write",
        "title": "Write the notes",
        "agent": {"name": "claude"},
        "acceptance_tests": ["grep -q notes notes.txt"],
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({"objective": "x", "tasks": [task]}))
    config = {
        "agents": {"claude": {"command": [sys.executable, str(CHANNEL), path, "the notes\n"]}},
        "policy": {"tools": list(tool_rules), **policy},
        "recovery": {"recipes": {"permission": {"retries": 0}}},
    }
    (tmp_path / "harness.yaml").write_text(yaml.safe_dump(config))
    return ws


RUN_ARGS = ("run", "--plan", "{tmp}/plan.yaml", "--config", "{tmp}/harness.yaml", "--approve")


def _channel_run(
    tmp_path: Path, *tool_rules: dict[str, object], path: str = "notes.txt"
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    ws = _channel_setup(tmp_path, tool_rules, path)
    done = harness(ws, *(a.format(tmp=tmp_path) for a in RUN_ARGS))
    return ws, done


@pytest.mark.slow
def test_a_tool_request_is_answered_by_a_policy_rule_through_the_channel(tmp_path: Path) -> None:
    ws, done = _channel_run(tmp_path, {"name": "notes-ok", "allow": "Write(*notes.txt)"})
    assert done.returncode == 0, done.stdout + done.stderr
    evts = events(ws, latest_run(ws))
    asked = first(evts, "TOOL_PERMISSION_REQUESTED")["data"]
    assert asked["tool"] == "Write" and asked["call"].endswith("notes.txt)")
    decided = first(evts, "TOOL_PERMISSION_DECIDED")["data"]
    assert decided["decision"] == "allow" and decided["source"] == "policy" and decided["rule"] == "notes-ok"
    plan = logged_plan(evts)
    assert plan["tasks"][0]["agent"]["channel"] is True


@pytest.mark.slow
def test_an_edit_inside_the_worktree_is_allowed_by_its_scope(tmp_path: Path) -> None:
    ws, done = _channel_run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    decided = first(events(ws, latest_run(ws)), "TOOL_PERMISSION_DECIDED")["data"]
    assert decided["decision"] == "allow" and decided["rule"] == "scope"


@pytest.mark.slow
def test_a_tool_request_no_one_can_answer_is_denied_and_classified_as_permission(tmp_path: Path) -> None:
    ws, done = _channel_run(tmp_path, path="../../../../escaped-notes.txt")  # out of the task's worktree
    assert done.returncode == 3, done.stdout + done.stderr  # a permission failure escalates
    evts = events(ws, latest_run(ws))
    decided = first(evts, "TOOL_PERMISSION_DECIDED")["data"]
    assert (
        decided["decision"] == "deny"
        and decided["source"] == "supervisor"
        and "no one can be asked" in decided["reason"]
    )
    assert not list(tmp_path.rglob("escaped-notes.txt"))
    classified = first(evts, "FAILURE_CLASSIFIED", "write")["data"]
    assert classified["failure_type"] == "permission"
    assert "Write" in json.dumps(first(evts, "TASK_FAILED", "write")["data"])


@pytest.mark.slow
def test_a_person_answers_a_tool_request_from_another_terminal(tmp_path: Path) -> None:
    from e2e_support import finish, start_cli, wait_for_log

    # out of the worktree (so not allowed by its scope), unconfined so that the allowed write lands
    outside = "../../../../decided-notes.txt"
    ws = _channel_setup(tmp_path, (), outside, tool_wait=60, sandbox="off")
    proc = start_cli(ws, *(a.format(tmp=tmp_path) for a in RUN_ARGS))
    evts = wait_for_log(ws, lambda e: any(x["type"] == "TOOL_PERMISSION_REQUESTED" for x in e))
    run_id = evts[0]["run_id"]
    assert "TOOL_PERMISSION_DECIDED" not in {e["type"] for e in evts}  # it waits for a person
    said = harness(ws, "decide", run_id, "write", "allow", "--note", "one-off, I checked the path")
    assert said.returncode == 0, said.stderr
    finish(proc)
    decided = first(events(ws, run_id), "TOOL_PERMISSION_DECIDED")["data"]
    assert decided["decision"] == "allow" and decided["source"] == "cli" and decided["reason"].startswith("one-off")
    assert (ws / "decided-notes.txt").read_text() == "the notes\n"
    again = harness(ws, "decide", run_id, "write", "deny")
    assert again.returncode == 2 and "not waiting for a tool decision" in again.stderr
