"""Agents' tool permissions: the policy's tool rules reach the plan and the CLI's argv, and a
bypass-everything mode is refused unless a policy rule names the agent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from e2e_support import events, first, harness, latest_run

from harness.agents import AgentCall, adapter_for
from harness.agents.plan import apply_agents, bypass_problems
from harness.config import Policy

FAKE = Path(__file__).parent / "agent_programs" / "fake_agent.py"


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
    ws = tmp_path / "ws"
    ws.mkdir()
    for cmd in (
        ["init", "-q"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "i"],
    ):
        subprocess.run(["git", *cmd], cwd=ws, check=True)
    task = {"id": "t1", "title": "Write it", "agent": {"name": "claude", "permission": "bypassPermissions"},
            "acceptance_tests": ["test -f out.txt"]}  # fmt: skip
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({"objective": "x", "tasks": [task]}))
    (tmp_path / "script.json").write_text('{"t1": [{"write": {"out.txt": "ok\\n"}}]}')
    config = {"agents": {"claude": {"command": [sys.executable, str(FAKE), str(tmp_path / "script.json")]}}}
    (tmp_path / "harness.yaml").write_text(yaml.safe_dump(config))
    args = ["run", "--plan", str(tmp_path / "plan.yaml"), "--config", str(tmp_path / "harness.yaml"), "--approve"]
    refused = harness(ws, *args)
    assert refused.returncode == 2 and "bypassPermissions" in refused.stderr and "bypass: [claude]" in refused.stderr
    assert "PLAN_CREATED" not in {e["type"] for e in events(ws, latest_run(ws))}
    (tmp_path / "policy.yaml").write_text(
        yaml.safe_dump({"tools": [{"name": "sandboxed-agent", "bypass": ["claude"]}]})
    )
    allowed = harness(ws, *args, "--policy", str(tmp_path / "policy.yaml"))
    assert allowed.returncode == 0, allowed.stderr + allowed.stdout
    plan = first(events(ws, latest_run(ws)), "PLAN_CREATED")["data"]["plan"]
    assert plan["tasks"][0]["agent"]["permission"] == "bypassPermissions"
