"""The pure parts around agent tasks: who runs which task, the prompt, budgets, the generic adapter."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from harness.agents import AgentCall, GenericAdapter, adapter_for, passes_through
from harness.agents.plan import agent_option, apply_agents
from harness.agents.prompt import Dependency, Previous, build_prompt
from harness.config import Policy
from harness.events import EventType as E
from harness.planfile import load_plan_file
from harness.recovery import Recovery
from harness.state import fold
from harness.supervisor import _decide as d

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_agent_option_is_a_known_name_or_a_command_split_without_a_shell() -> None:
    assert agent_option("claude", {"claude", "codex"}) == {"name": "claude"}
    assert agent_option("python3 bot.py '{prompt_file}' --fast", {"claude"}) == {
        "command": ["python3", "bot.py", "{prompt_file}", "--fast"]
    }


def test_tasks_without_commands_get_the_run_agent_and_a_definition_fills_in_path_args_and_env() -> None:
    plan = {
        "tasks": [
            {"id": "a", "commands": ["make"]},
            {"id": "b"},
            {"id": "c", "agent": {"name": "codex"}},
            {"id": "d", "agent": {"max_turns": 5}},
        ]
    }
    definitions = {"claude": {"command": ["/opt/claude"], "args": ["--verbose"], "env": ["ANTHROPIC_API_KEY"]}}
    out = {t["id"]: t["agent"] for t in apply_agents(plan, {"name": "claude"}, definitions)["tasks"]}
    assert out["a"] is None  # shell tasks are unchanged
    assert out["b"] == {
        "name": "claude",
        "command": ["/opt/claude"],
        "extra_args": ["--verbose"],
        "env": ["ANTHROPIC_API_KEY"],
        "channel": True,  # Claude Code asks the harness about tools its rules do not settle
    }
    assert out["c"] == {"name": "codex"}  # no two-way channel
    assert out["d"]["name"] == "claude" and out["d"]["max_turns"] == 5
    manual = apply_agents(plan, None, {})["tasks"]
    assert manual[1]["agent"] is None and manual[3]["agent"] is None  # no agent: manual steps


def test_a_step_only_a_person_can_verify_stays_manual_under_an_agent() -> None:
    plan = {
        "objective": "x",
        "tasks": [
            {"id": "find", "title": "Find the code", "confirmation": "the files are listed", "acceptance_tests": []},
            {"id": "fix", "title": "Fix it", "acceptance_tests": ["pytest -q"]},
            {"id": "own", "title": "Named", "confirmation": "ok", "agent": {"name": "codex"}},
        ],
    }
    tasks = {t["id"]: t for t in apply_agents(plan, {"name": "claude"}, {})["tasks"]}
    assert tasks["find"].get("agent") is None  # no verdict of ours to run: a person confirms
    assert tasks["fix"]["agent"] == {"name": "claude", "channel": True}
    assert tasks["own"]["agent"] == {"name": "codex"}  # a task that names its agent keeps it


def test_the_prompt_holds_the_task_its_tests_its_dependencies_and_the_last_failure() -> None:
    packet = {
        "id": "t",
        "title": "Fix it",
        "objective": "Make the parser accept tabs",
        "acceptance_tests": ["pytest -q"],
    }
    first = build_prompt(
        packet, workdir="/w/t", system_prompt="Use tabs.", dependencies=[Dependency("a", "A", "added x")]
    )
    assert "Use tabs." in first and "Make the parser accept tabs" in first and "    pytest -q" in first
    assert "- a (A): added x" in first and "previous attempt" not in first
    failing = "E   AssertionError: tab\n" * 400
    previous = Previous(attempt=1, summary="acceptance `pytest -q` exited 1", failure_type="logic_error",
                        test_output=failing, agent_message="All done!", note="the tests are right")  # fmt: skip
    retry = build_prompt(packet, workdir="/w/t", previous=previous)
    assert "previous attempt (1) was not accepted (logic_error)" in retry
    assert "AssertionError: tab" in retry and "All done!" in retry and "the tests are right" in retry
    assert len(retry) < 6000  # earlier output is bounded


def test_an_attempt_budget_is_the_task_budget_tightened_by_what_the_run_has_left() -> None:
    events: list[dict[str, Any]] = [
        {"seq": 1, "type": E.PLAN_CREATED, "data": {"revision": 1, "plan": {"tasks": [
            {"id": "a", "agent": {"name": "x", "budget": {"usd": 1.0, "turns": 50}}}, {"id": "b", "agent": {"name": "x"}}]}}},
        {"seq": 2, "type": E.AGENT_USAGE, "task_id": "b", "data": {"cost_usd": 1.75, "tokens_in": 10, "tokens_out": 5, "turns": 3}},
    ]  # fmt: skip
    state = fold(events)
    assert d.attempt_budget(state, "a", None) == {"usd": 1.0, "turns": 50}
    assert d.attempt_budget(state, "a", {"usd": 2.0}) == {"usd": 0.25, "turns": 50}
    assert d.attempt_budget(state, "b", {"tokens": 100}) == {"tokens": 85}
    assert d.attempt_budget(state, "b", None) is None


def test_the_generic_adapter_puts_the_prompt_on_stdin_or_in_the_placeholder() -> None:
    call = AgentCall(prompt="do it; rm -rf /", prompt_file="/run/w/prompt.md", workdir="/w")
    stdin = adapter_for(command="bot --fast")
    assert isinstance(stdin, GenericAdapter) and stdin.wants_stdin() and stdin.argv(call) == ["bot", "--fast"]
    filed = adapter_for(command=["bot", "--in={prompt_file}"])
    assert not filed.wants_stdin() and filed.argv(call) == ["bot", "--in=/run/w/prompt.md"]
    named_unknown = adapter_for("mybot", ["bot"])
    assert isinstance(named_unknown, GenericAdapter)


def test_only_the_agents_own_variables_and_the_named_ones_pass_through() -> None:
    env = {"SECRET_DB": "x", "MY_KEY": "k", "AGENT_TOKEN": "t", "AGENT_MODE": "m", "PATH": "/bin"}
    adapter = GenericAdapter(["bot"])
    assert passes_through(adapter, ["MY_KEY", "AGENT_"], env) == {"MY_KEY": "k", "AGENT_TOKEN": "t", "AGENT_MODE": "m"}


def test_agent_failures_are_classified_before_the_generic_rules() -> None:
    recovery = Recovery(rng=random.Random(0))
    base = {"reason": "acceptance_failed", "stderr_tail": "FAILED"}
    assert (
        recovery.classify({**base, "agent_failure": "auth", "agent_detail": "401 invalid x-api-key"}).failure_type
        == "permission"
    )
    assert recovery.classify({**base, "agent_failure": "server_error"}).failure_type == "transient"
    assert recovery.classify({**base, "agent_failure": "max_turns"}).failure_type == "budget"
    denied = recovery.classify({**base, "agent_failure": "tool_denied", "agent_detail": "Write denied"})
    assert (denied.failure_type, denied.evidence) == ("permission", "Write denied")
    assert recovery.classify({"reason": "merge_conflict"}).failure_type == "conflict"
    assert recovery.classify(base).failure_type == "logic_error"
    assert d.Rules("r", Policy(), recovery).recovery.recipe("conflict").options


def test_the_agent_demo_plan_loads() -> None:
    plan = load_plan_file(EXAMPLES / "agent-demo" / "plan.yaml").model_dump(mode="json")
    resolved = apply_agents(plan, {"name": "claude"}, {})
    assert [t["agent"]["name"] for t in resolved["tasks"]] == ["claude", "claude", "claude"]
    assert resolved["tasks"][2]["agent"]["budget"] == {"usd": 0.5, "tokens": None, "turns": None, "minutes": None}
    assert plan["budget"]["usd"] == 2.0


def test_a_usage_cap_is_reached_by_tokens_cost_or_turns_whichever_comes_first() -> None:
    from harness.agents import AgentReport
    from harness.services.worker_manager._local import _over_budget

    report = AgentReport(agent="x", tokens_in=900, tokens_out=99, cost_usd=0.5, turns=3)
    assert _over_budget(report, {}) is None
    assert _over_budget(report, {"tokens": 1000, "usd": 1.0, "turns": 4}) is None
    assert _over_budget(report, {"tokens": 999}) == "999 tokens used, budget 999"
    assert _over_budget(report, {"usd": 0.5}) == "$0.5000 spent, budget $0.5"
    assert _over_budget(report, {"turns": 3}) == "3 turns taken, budget 3"
    assert _over_budget(AgentReport(agent="x"), {"usd": 0.01}) is None  # no cost reported: no cap on it
