"""The agent planner: a coding agent plans, read-only, and its plan is validated like any other.

A stand-in agent (tests/agent_programs/plan_agent.py) always; the real Claude Code and Codex CLIs
against the fake model server where they are installed (.ci/install-agents), skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.models import AgentSpec
from harness.rpc import InvalidPlan, UpstreamFailed
from harness.services.planning import decompose_objective
from harness.services.planning.schemas import PlanningContext
from tests.agent_clis import ENVIRONMENTS, MODELS, find_cli
from tests.fake_models import fake_model
from tests.test_planner_llm import cyclic_plan, good_plan

PLAN_AGENT = Path(__file__).parent / "agent_programs" / "plan_agent.py"


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def write(*answers: Any) -> Path:
        path = tmp_path / "answers.json"
        path.write_text(json.dumps(list(answers)))
        monkeypatch.setenv("PLAN_AGENT_SCRIPT", str(path))
        monkeypatch.setenv("PLAN_AGENT_LOG", str(tmp_path / "prompts.log"))
        return tmp_path / "prompts.log"

    return write


def agent_context(ws: Path, **extra: Any) -> PlanningContext:
    spec = AgentSpec(command=[sys.executable, str(PLAN_AGENT)])
    return PlanningContext(workspace=str(ws), backend="agent", agent=spec, **extra)


def test_a_stand_in_agent_plans_and_is_repaired(tmp_path: Path, script: Any) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "AGENTS.md").write_text("Always keep the palette in palette.txt.\n")
    prompts = script(cyclic_plan(), good_plan())
    calls: list[dict[str, Any]] = []
    checked = decompose_objective("add a dark theme", agent_context(ws), observe=calls.append)
    assert [t.id for t in checked.plan.tasks] == ["t1", "t2", "t3"] and checked.report.valid
    assert [c["purpose"] for c in calls] == ["decompose", "repair"] and calls[1]["outcome"] == "ok"
    first, second = prompts.read_text().split("\n=== prompt ===\n")[1:]
    assert "Objective: add a dark theme" in first and "Always keep the palette in palette.txt." in first
    assert "change nothing" in first and '"acceptance_tests"' in first
    assert "dependency cycle: t1 -> t3 -> t1" in second and "Your previous answer was" in second


def test_an_agent_that_answers_nonsense_twice_is_a_clear_error(tmp_path: Path, script: Any) -> None:
    script("I looked around and I think it is fine.")
    with pytest.raises(InvalidPlan) as caught:
        decompose_objective("add a dark theme", agent_context(tmp_path))
    assert [p["code"] for p in caught.value.data["problems"]] == ["not_json"]


def test_an_agent_that_cannot_start_or_is_too_slow(tmp_path: Path, script: Any) -> None:
    script(good_plan())
    missing = PlanningContext(workspace=str(tmp_path), backend="agent", agent=AgentSpec(command=["/nonexistent/agent"]))
    with pytest.raises(UpstreamFailed, match="cannot start"):
        decompose_objective("add a dark theme", missing)
    slow = AgentSpec(command=[sys.executable, "-c", "import time; time.sleep(30)"])
    with pytest.raises(UpstreamFailed) as caught:
        decompose_objective(
            "add a dark theme", PlanningContext(workspace=str(tmp_path), backend="agent", agent=slow, timeout=0.5)
        )
    assert caught.value.data["kind"] == "timeout"
    with pytest.raises(UpstreamFailed, match="needs an agent"):
        decompose_objective("add a dark theme", PlanningContext(workspace=str(tmp_path), backend="agent"))


def _harness(ws: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args, "--workspace", str(ws)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CI": "true", **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_harness_run_planned_by_an_agent(tmp_path: Path, script: Any) -> None:
    script(good_plan())
    command = f"{sys.executable} {PLAN_AGENT}"
    done = _harness(tmp_path, "run", "add a dark theme", "--planner", "agent", "--agent", command, "--approve")
    assert done.returncode == 0, done.stderr + done.stdout
    assert (tmp_path / "summary.txt").is_file()
    usage = _harness(tmp_path, "plan", "add a dark theme", "--planner", "agent")
    assert usage.returncode == 2 and "--planner agent needs an agent" in usage.stderr


def _real_cli_plan(name: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Any]:
    cli = find_cli(name)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "README.md").write_text("# app\n")
    if MODELS[name]:  # the model the fake answers for, as a workspace would name it
        (ws / "harness.yaml").write_text(f"agents:\n  {name}: {{model: {MODELS[name]}}}\n")
    with fake_model(plan=good_plan()) as fake:
        env = ENVIRONMENTS[name](tmp_path / "home", fake.url)
        env["PATH"] = os.path.dirname(cli) + os.pathsep + os.environ["PATH"]
        done = _harness(ws, "plan", "add a dark theme", "--planner", "agent", "--agent", name, "--json", env=env)
    assert not list(ws.glob("*.txt")), "the planner wrote into the workspace"
    return done, fake


@pytest.mark.slow
def test_claude_code_plans_through_its_json_schema(tmp_path: Path) -> None:
    done, fake = _real_cli_plan("claude", tmp_path)
    assert done.returncode == 0, done.stderr
    assert [t["id"] for t in json.loads(done.stdout)["tasks"]] == ["t1", "t2", "t3"]
    assert any("StructuredOutput" in (r.get("tools") or []) for r in fake.requests)
    assert "agent claude decompose call 1: ok" in done.stderr


@pytest.mark.slow
def test_codex_plans_through_its_output_schema(tmp_path: Path) -> None:
    done, fake = _real_cli_plan("codex", tmp_path)
    assert done.returncode == 0, done.stderr
    assert [t["id"] for t in json.loads(done.stdout)["tasks"]] == ["t1", "t2", "t3"]
    assert any(r.get("format") == "json_schema" for r in fake.requests)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gemini", "opencode", "aider"])
def test_other_clis_plan_in_their_final_message(name: str, tmp_path: Path) -> None:
    done, fake = _real_cli_plan(name, tmp_path)
    assert done.returncode == 0, done.stderr
    assert [t["id"] for t in json.loads(done.stdout)["tasks"]] == ["t1", "t2", "t3"]
    assert f"agent {name} decompose call 1: ok" in done.stderr
