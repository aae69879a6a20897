"""The llm planner against fake OpenAI-compatible and Anthropic endpoints on 127.0.0.1.

In process first (the planning functions with an observer), then through the real CLI: a run
planned by a model, a model that stays wrong (exit 2, nothing executed), and the key, which must
appear in no event, message or report whatever the endpoint does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.rpc import InvalidPlan, UpstreamFailed
from harness.services.planning import decompose_objective, refine_plan
from harness.services.planning.llm import Secrets, extract_json, retry_after
from harness.services.planning.schemas import LLMOptions, PlanningContext
from tests.fake_llm import Step, fake_llm

KEY = "sk-test-0123456789abcdefSECRET"
KEY_ENV = "FAKE_LLM_KEY"
PROVIDERS = ("openai", "anthropic")


def good_plan(ws: Path | None = None) -> dict[str, Any]:
    return {
        "tasks": [
            {
                "id": "t1",
                "title": "Write the theme file",
                "objective": "Create theme.txt naming the dark theme",
                "scope_path": ".",
                "depends_on": [],
                "commands": ["echo dark > theme.txt"],
                "acceptance_tests": ["grep -q dark theme.txt"],
                "confirmation": None,
                "timeout": None,
            },
            {
                "id": "t2",
                "title": "Write the palette",
                "objective": "Create palette.txt with the dark colours",
                "scope_path": ".",
                "depends_on": ["t1"],
                "commands": ["echo '#000000' > palette.txt"],
                "acceptance_tests": ["grep -q '#000000' palette.txt"],
                "confirmation": None,
                "timeout": 60,
            },
            {
                "id": "t3",
                "title": "Check both files together",
                "objective": "Confirm the theme and palette files agree",
                "scope_path": ".",
                "depends_on": ["t1", "t2"],
                "commands": ["cat theme.txt palette.txt > summary.txt"],
                "acceptance_tests": ["grep -q dark summary.txt", "test -s palette.txt"],
                "confirmation": None,
                "timeout": None,
            },
        ],
        "notes": ["assumes a plain folder"],
    }


def cyclic_plan() -> dict[str, Any]:
    plan = good_plan()
    plan["tasks"][0]["depends_on"] = ["t3"]
    return plan


def context(fake: Any, ws: Path, **extra: Any) -> PlanningContext:
    options = LLMOptions(provider=fake.provider, base_url=fake.url, model="test-model", api_key_env=KEY_ENV, backoff=0)
    for k, v in extra.pop("llm", {}).items():
        setattr(options, k, v)
    return PlanningContext(workspace=str(ws), backend="llm", llm=options, **extra)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    for name in ("HARNESS_LLM_PROVIDER", "HARNESS_LLM_BASE_URL", "HARNESS_LLM_MODEL", "HARNESS_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return KEY


def no_key(*texts: Any) -> None:
    for text in texts:
        dumped = text if isinstance(text, str) else json.dumps(text)
        assert KEY not in dumped and KEY[6:20] not in dumped


# -- in process -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_good_plan_with_structured_output(provider: str, tmp_path: Path, key: str) -> None:
    calls: list[dict[str, Any]] = []
    with fake_llm(provider, [Step(plan=good_plan())]) as fake:
        checked = decompose_objective("add a dark theme", context(fake, tmp_path), observe=calls.append)
    assert [t.id for t in checked.plan.tasks] == ["t1", "t2", "t3"]
    assert checked.plan.tasks[1].depends_on == ["t1"] and checked.plan.tasks[1].timeout == 60
    assert checked.plan.source == "generated" and checked.report.valid
    assert any("test-model" in n for n in checked.notes) and "assumes a plain folder" in checked.notes
    (request,) = fake.requests
    body = request["body"]
    if provider == "openai":
        assert request["path"] == "/v1/chat/completions"
        assert body["response_format"]["type"] == "json_schema"
        assert request["headers"]["authorization"] == f"Bearer {KEY}"
        system = body["messages"][0]["content"]
    else:
        assert request["path"] == "/v1/messages"
        assert body["tool_choice"] == {"type": "tool", "name": "submit_plan"}
        assert request["headers"]["x-api-key"] == KEY and request["headers"]["anthropic-version"]
        system = body["system"]
    # the brief: rules, sizes, the packet fields and a map of the workspace
    assert "acceptance_tests" in system and "3 to 7 tasks" in system and "## Workspace" in system
    (call,) = calls
    assert call["outcome"] == "ok" and call["tokens_in"] == 200 and call["provider"] == provider
    no_key(calls, checked.plan.model_dump(mode="json"), checked.notes)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_cycle_is_sent_back_and_the_second_answer_is_used(provider: str, tmp_path: Path, key: str) -> None:
    calls: list[dict[str, Any]] = []
    with fake_llm(provider, [Step(plan=cyclic_plan()), Step(plan=good_plan())]) as fake:
        checked = decompose_objective("add a dark theme", context(fake, tmp_path), observe=calls.append)
    assert checked.report.valid and checked.plan.tasks[0].depends_on == []
    assert [c["purpose"] for c in calls] == ["decompose", "repair"]
    second = json.dumps(fake.requests[1]["body"]["messages"])
    assert "dependency cycle: t1 -> t3 -> t1" in second and "(cycle)" in second
    assert any("repair round 1" in n for n in checked.notes)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_invalid_twice_is_a_clear_error_listing_every_problem(provider: str, tmp_path: Path, key: str) -> None:
    bad = cyclic_plan()
    bad["tasks"][2]["acceptance_tests"] = ["true"]
    with fake_llm(provider, [Step(plan=bad)]) as fake, pytest.raises(InvalidPlan) as caught:
        decompose_objective("add a dark theme", context(fake, tmp_path))
    assert len(fake.requests) == 2  # one answer and one repair round (the default)
    codes = {p["code"] for p in caught.value.data["problems"]}
    assert {"cycle", "vacuous_acceptance_test"} <= codes
    assert "after 1 repair round" in caught.value.message
    no_key(caught.value.message, caught.value.data)


def test_nonsense_gets_a_repair_round_then_a_clear_error(tmp_path: Path, key: str) -> None:
    with (
        fake_llm("openai", [Step(text="I would rather not plan today.")]) as fake,
        pytest.raises(InvalidPlan) as caught,
    ):
        decompose_objective("add a dark theme", context(fake, tmp_path, repair_rounds=2))
    assert len(fake.requests) == 3
    assert [p["code"] for p in caught.value.data["problems"]] == ["not_json"]
    assert "not a JSON object" in json.dumps(fake.requests[1]["body"]["messages"][-1])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_500_then_success_is_retried(provider: str, tmp_path: Path, key: str) -> None:
    calls: list[dict[str, Any]] = []
    steps = [Step(status=529 if provider == "anthropic" else 500), Step(plan=good_plan())]
    with fake_llm(provider, steps) as fake:
        checked = decompose_objective("add a dark theme", context(fake, tmp_path), observe=calls.append)
    assert checked.report.valid and len(fake.requests) == 2
    assert [c["outcome"] for c in calls] == ["retry", "ok"] and calls[1]["attempt"] == 2


def test_retry_after_is_honoured(tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    from types import SimpleNamespace

    from harness.services.planning import llm

    waits: list[float] = []  # the planner's own sleeps only (the module's clock, not the process's)
    monkeypatch.setattr(llm, "time", SimpleNamespace(sleep=waits.append, monotonic=time.monotonic, time=time.time))
    steps = [
        Step(status=429, headers={"Retry-After": "7"}),
        Step(status=503, headers={"retry-after-ms": "250"}),
        Step(plan=good_plan()),
    ]
    with fake_llm("openai", steps) as fake:
        decompose_objective("add a dark theme", context(fake, tmp_path))
    assert waits == [7.0, 0.25]
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_401_is_a_permission_error_naming_the_variable_not_the_key(provider: str, tmp_path: Path, key: str) -> None:
    echo = {
        "error": {"type": "invalid_api_key", "message": f"Incorrect API key provided: {KEY[:10]}...{KEY[-6:]} / {KEY}"}
    }
    calls: list[dict[str, Any]] = []
    with fake_llm(provider, [Step(status=401, body=echo)]) as fake, pytest.raises(UpstreamFailed) as caught:
        decompose_objective("add a dark theme", context(fake, tmp_path), observe=calls.append)
    assert len(fake.requests) == 1  # never retried
    assert caught.value.data["kind"] == "permission" and caught.value.data["status"] == 401
    assert KEY_ENV in caught.value.message and "refused the key" in caught.value.message
    assert "[redacted]" in caught.value.message
    no_key(caught.value.message, caught.value.data, calls, repr(caught.value))


def test_a_used_up_quota_is_not_retried(tmp_path: Path, key: str) -> None:
    quota = {"error": {"type": "insufficient_quota", "message": "You exceeded your current quota"}}
    with fake_llm("openai", [Step(status=429, body=quota)]) as fake, pytest.raises(UpstreamFailed) as caught:
        decompose_objective("add a dark theme", context(fake, tmp_path))
    assert len(fake.requests) == 1 and caught.value.data["kind"] == "quota"


def test_a_slow_endpoint_hits_the_timeout(tmp_path: Path, key: str) -> None:
    calls: list[dict[str, Any]] = []
    with fake_llm("openai", [Step(plan=good_plan(), delay=3)]) as fake, pytest.raises(UpstreamFailed) as caught:
        decompose_objective(
            "add a dark theme", context(fake, tmp_path, llm={"timeout": 0.3, "retries": 1}), observe=calls.append
        )
    assert caught.value.data["kind"] == "timeout" and "no answer within 0.3 s" in caught.value.message
    assert len(fake.requests) == 2 and [c["outcome"] for c in calls] == ["timeout", "timeout"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_400_on_structured_output_falls_back(provider: str, tmp_path: Path, key: str) -> None:
    calls: list[dict[str, Any]] = []
    with fake_llm(provider, [Step(plan=good_plan())], reject_format=True) as fake:
        checked = decompose_objective("add a dark theme", context(fake, tmp_path), observe=calls.append)
    assert checked.report.valid
    first, second = fake.requests[0]["body"], fake.requests[1]["body"]
    assert [c["outcome"] for c in calls] == ["format_rejected", "ok"]
    if provider == "openai":
        assert first["response_format"]["type"] == "json_schema"
        assert second["response_format"] == {"type": "json_object"}
        assert '"acceptance_tests"' in second["messages"][0]["content"]  # the schema is in the prompt
    else:
        assert "tools" in first and "tools" not in second
        assert '"acceptance_tests"' in second["system"]


def test_an_answer_in_a_code_fence_is_read(tmp_path: Path, key: str) -> None:
    text = "Here is the plan:\n```json\n" + json.dumps(good_plan()) + "\n```\nGood luck."
    with fake_llm("openai", [Step(text=text)]) as fake:
        checked = decompose_objective("add a dark theme", context(fake, tmp_path))
    assert len(checked.plan.tasks) == 3
    assert extract_json('{"a": 1}') == {"a": 1}


def test_no_key_for_a_remote_endpoint_is_a_config_error(
    tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    options = LLMOptions(base_url="https://models.example.invalid/v1", model="m", api_key_env=KEY_ENV)
    with pytest.raises(UpstreamFailed) as caught:
        decompose_objective("add a dark theme", PlanningContext(workspace=str(tmp_path), backend="llm", llm=options))
    assert caught.value.data["kind"] == "config" and KEY_ENV in caught.value.message
    with pytest.raises(UpstreamFailed, match="HARNESS_LLM_MODEL"):
        decompose_objective("add a dark theme", PlanningContext(workspace=str(tmp_path), backend="llm"))


def _revised() -> dict[str, Any]:
    revised = good_plan()
    revised["tasks"].append(
        {
            "id": "t4",
            "title": "Write the guide",
            "objective": "Describe the dark theme in GUIDE.md",
            "scope_path": ".",
            "depends_on": ["t3"],
            "commands": ["echo 'dark theme' > GUIDE.md"],
            "acceptance_tests": ["grep -q 'dark theme' GUIDE.md"],
            "confirmation": None,
            "timeout": None,
        }
    )
    revised["notes"] = ["added t4: the guide"]
    return revised


def test_refine_sends_the_plan_and_the_feedback(tmp_path: Path, key: str) -> None:
    with fake_llm("openai", [Step(plan=good_plan()), Step(plan=_revised())]) as fake:
        first = decompose_objective("add a dark theme", context(fake, tmp_path))
        checked, applied = refine_plan(first.plan, "also write a guide", context(fake, tmp_path))
    assert [t.id for t in checked.plan.tasks] == ["t1", "t2", "t3", "t4"] and applied == ["added t4: the guide"]
    turn = fake.requests[1]["body"]["messages"][-1]["content"]
    assert "also write a guide" in turn and '"Write the palette"' in turn


def test_secrets_are_scrubbed_whole_and_in_pieces() -> None:
    scrub = Secrets(KEY)
    assert KEY not in scrub(f"key={KEY}") and "[redacted]" in scrub(f"key={KEY}")
    assert KEY[-10:] not in scrub(f"...{KEY[-10:]}")
    assert scrub("nothing secret here") == "nothing secret here"


# -- through the CLI ------------------------------------------------------------------------------


def _harness(ws: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args, "--workspace", str(ws)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def _env(fake: Any) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_LLM_")}
    env.update(
        {
            "HARNESS_LLM_PROVIDER": fake.provider,
            "HARNESS_LLM_BASE_URL": fake.url,
            "HARNESS_LLM_MODEL": "test-model",
            "HARNESS_LLM_API_KEY": KEY,
            "CI": "true",
        }
    )
    return env


def _run_files(ws: Path) -> str:
    return "\n".join(
        p.read_text()
        for p in (ws / ".harness").rglob("*")
        if p.is_file() and p.suffix in (".jsonl", ".md", ".json", ".log", ".txt")
    )


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_harness_run_with_a_model_plan(provider: str, tmp_path: Path) -> None:
    with fake_llm(provider, [Step(plan=cyclic_plan()), Step(plan=good_plan())]) as fake:
        done = _harness(tmp_path, "run", "add a dark theme", "--planner", "llm", "--approve", env=_env(fake))
        assert done.returncode == 0, done.stderr + done.stdout
        (log,) = list((tmp_path / ".harness" / "runs").glob("*/events.jsonl"))
        events = [json.loads(line) for line in log.read_text().splitlines()]
        report = _harness(tmp_path, "report", events[0]["run_id"], env=_env(fake))
    assert (tmp_path / "summary.txt").read_text().startswith("dark")
    calls = [e["data"] for e in events if e["type"] == "PLANNER_CALL"]
    assert [c["purpose"] for c in calls] == ["decompose", "repair"] and all(c["model"] == "test-model" for c in calls)
    started = next(e for e in events if e["type"] == "RUN_STARTED")["data"]["options"]["planner"]
    assert started["backend"] == "llm" and started["llm"]["api_key_env"] == "HARNESS_LLM_API_KEY"
    assert "- Planning (llm): 2 call(s), 560 tokens" in report.stdout
    no_key(done.stdout, done.stderr, report.stdout, report.stderr, _run_files(tmp_path))


@pytest.mark.slow
def test_harness_run_with_a_plan_that_stays_invalid_executes_nothing(tmp_path: Path) -> None:
    echo = {"error": {"message": f"bad request from key {KEY}"}}
    with fake_llm("openai", [Step(plan=cyclic_plan()), Step(status=500, body=echo), Step(plan=cyclic_plan())]) as fake:
        env = _env(fake)
        env["HARNESS_LLM_RETRIES"] = "1"
        done = _harness(tmp_path, "run", "add a dark theme", "--planner", "llm", "--approve", env=env)
    assert done.returncode == 2, done.stderr
    assert "dependency cycle: t1 -> t3 -> t1" in done.stderr and "after 1 repair round" in done.stderr
    (log,) = list((tmp_path / ".harness" / "runs").glob("*/events.jsonl"))
    types = [json.loads(line)["type"] for line in log.read_text().splitlines()]
    assert "PLAN_INVALID" in types and "PLAN_CREATED" not in types and "TASK_STARTED" not in types
    assert not (tmp_path / "theme.txt").exists()
    no_key(done.stdout, done.stderr, _run_files(tmp_path))


@pytest.mark.slow
def test_harness_plan_prints_an_editable_plan_and_401_is_exit_2(tmp_path: Path) -> None:
    with fake_llm("anthropic", [Step(plan=good_plan())]) as fake:
        done = _harness(tmp_path, "plan", "add a dark theme", "--planner", "llm", env=_env(fake))
        as_json = _harness(tmp_path, "plan", "add a dark theme", "--planner", "llm", "--json", env=_env(fake))
    assert done.returncode == 0, done.stderr
    (tmp_path / "plan.yaml").write_text(done.stdout)
    assert json.loads(as_json.stdout)["tasks"][0]["id"] == "t1"
    assert "anthropic test-model decompose call 1: ok" in done.stderr
    check = _harness(tmp_path, "run", "--plan", str(tmp_path / "plan.yaml"), "--approve", env=_env(fake))
    assert check.returncode == 0, check.stderr
    with fake_llm("openai", [Step(status=401, body={"error": {"message": f"invalid key {KEY}"}})]) as fake:
        denied = _harness(tmp_path, "plan", "add a dark theme", "--planner", "llm", env=_env(fake))
    assert denied.returncode == 2 and "refused the key in HARNESS_LLM_API_KEY (401)" in denied.stderr
    assert "Traceback" not in denied.stderr
    no_key(done.stdout, done.stderr, denied.stdout, denied.stderr)


def test_the_config_file_chooses_the_planner_and_names_the_key(tmp_path: Path) -> None:
    from harness.config import load_config
    from harness.planner import PlannerChoiceError, call_timeout, planner_context

    (tmp_path / "harness.yaml").write_text(
        "planner:\n  backend: llm\n  provider: anthropic\n  model: file-model\n  api_key: ${MY_KEY}\n  timeout: 30\n"
    )
    config = load_config(tmp_path)
    context, warnings = planner_context(config, None, None, environ={"HARNESS_LLM_MODEL": "env-model"})
    assert context["backend"] == "llm" and not warnings
    assert context["llm"] == {"provider": "anthropic", "model": "env-model", "timeout": 30.0, "api_key_env": "MY_KEY"}
    assert (call_timeout(context) or 0) > 30
    (tmp_path / "harness.yaml").write_text(f"planner:\n  backend: llm\n  model: m\n  api_key: {KEY}\n")
    config = load_config(tmp_path)
    context, warnings = planner_context(config, None, None, environ={})
    assert "holds the key inline" in warnings[0] and KEY not in json.dumps(context) and KEY not in warnings[0]
    assert config.service_spec("planning").env["HARNESS_LLM_API_KEY"] == KEY  # reaches the service, not the log
    assert planner_context(config, "heuristic", None)[0] == {"backend": "heuristic", "repair_rounds": 1}
    with pytest.raises(PlannerChoiceError, match="needs an agent"):
        planner_context(config, "agent", None)


@pytest.mark.slow
def test_a_rejection_at_the_gate_is_revised_by_the_model(tmp_path: Path) -> None:
    with fake_llm("openai", [Step(plan=good_plan()), Step(plan=_revised())]) as fake:
        env = _env(fake)
        first = _harness(tmp_path, "run", "add a dark theme", "--planner", "llm", env=env)
        assert first.returncode == 3, first.stderr
        (log,) = list((tmp_path / ".harness" / "runs").glob("*/events.jsonl"))
        run_id = log.parent.name
        assert _harness(tmp_path, "approve", run_id, "--reject", "also write a guide", env=env).returncode == 0
        done = _harness(tmp_path, "resume", run_id, "--approve", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Changes since revision 1: + t4 Write the guide" in done.stdout
    turn = fake.requests[1]["body"]["messages"][-1]["content"]
    assert "also write a guide" in turn and "revision 1" in turn
    assert (tmp_path / "GUIDE.md").read_text().strip() == "dark theme"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["data"]["purpose"] for e in events if e["type"] == "PLANNER_CALL"] == ["decompose", "refine"]
    created = [e["data"] for e in events if e["type"] == "PLAN_CREATED"]
    assert [c["revision"] for c in created] == [1, 2] and created[1]["applied"] == ["added t4: the guide"]


@pytest.mark.slow
def test_a_model_that_cannot_revise_leaves_the_plan_at_the_gate(tmp_path: Path) -> None:
    denied = Step(status=401, body={"error": {"message": f"key {KEY} revoked"}})
    with fake_llm("anthropic", [Step(plan=good_plan()), denied]) as fake:
        env = _env(fake)
        assert _harness(tmp_path, "run", "add a dark theme", "--planner", "llm", env=env).returncode == 3
        (log,) = list((tmp_path / ".harness" / "runs").glob("*/events.jsonl"))
        run_id = log.parent.name
        assert _harness(tmp_path, "approve", run_id, "--reject", "also write a guide", env=env).returncode == 0
        again = _harness(tmp_path, "resume", run_id, env=env)
    assert again.returncode == 3, again.stderr
    assert "the plan could not be revised" in again.stdout + again.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    failed = [e["data"] for e in events if e["type"] == "PLAN_REFINE_FAILED"]
    assert len(failed) == 1 and failed[0]["revision"] == 1 and "refused the key" in failed[0]["message"]
    assert [e["data"]["revision"] for e in events if e["type"] == "PLAN_CREATED"] == [1]
    assert "TASK_STARTED" not in {e["type"] for e in events}
    no_key(again.stdout, again.stderr, log.read_text())
