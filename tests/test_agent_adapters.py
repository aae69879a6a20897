"""Each adapter's argv, environment and output parser. The Claude Code, Codex and opencode fixtures
are the real CLIs' output (pinned versions, against tests/fake_models.py), as are gemini's and
aider's; some more lines of gemini, opencode and aider are written in the shapes those CLIs document, for the parsers' logic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.agents import AgentCall, AgentFailure, AgentReport, adapter_for, known_names, passes_through

FIXTURES = Path(__file__).parent / "agent_fixtures"
PROMPT = "Fix it; then `rm -rf /` $(whoami) 'quoted'"
CALL = AgentCall(
    prompt=PROMPT, prompt_file="/run/w/prompt.md", workdir="/repo/.harness/worktrees/r/t", model="m1", max_turns=7
)


def parse(name: str, lines: list[str], exit_code: int | None = 0) -> AgentReport:
    parser = adapter_for(name).parser()
    for line in lines:
        parser.feed(line + "\n")
    return parser.report(exit_code)


def fixture(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def test_every_named_cli_has_an_adapter() -> None:
    assert known_names() == {"claude", "codex", "gemini", "opencode", "aider"}


@pytest.mark.parametrize("name", ["claude", "codex", "gemini", "opencode"])
def test_the_prompt_is_one_argv_element_never_a_shell_string(name: str) -> None:
    argv = adapter_for(name).argv(CALL)
    assert argv[0] == name and PROMPT in argv and "sh" not in argv[:2]
    assert "m1" in argv


def test_each_adapter_asks_for_the_narrowest_mode_that_edits_and_its_structured_output() -> None:
    claude = adapter_for("claude").argv(CALL)
    assert claude[claude.index("--permission-mode") + 1] == "acceptEdits"
    assert claude[claude.index("--output-format") + 1] == "stream-json" and "--max-turns" in claude
    codex = adapter_for("codex").argv(CALL)
    assert codex[codex.index("-s") + 1] == "workspace-write" and codex[codex.index("-C") + 1] == CALL.workdir
    assert ["--disable", "plugins"] == codex[codex.index("--disable") : codex.index("--disable") + 2]
    assert codex[-2:] == ["--", PROMPT]  # a prompt starting with '-' is never read as a flag
    gemini = adapter_for("gemini").argv(CALL)
    assert gemini[gemini.index("--approval-mode") + 1] == "auto_edit"
    assert "--pure" in adapter_for("opencode").argv(CALL)
    aider = adapter_for("aider").argv(CALL)
    assert aider[aider.index("--message-file") + 1] == CALL.prompt_file and "--no-auto-commits" in aider
    assert PROMPT not in aider
    assert adapter_for("claude").argv(AgentCall("p", "f", "/w", permission="plan"))[-1] == "plan"


def test_a_named_cli_runs_from_the_path_its_definition_gives() -> None:
    call = AgentCall("p", "f", "/w", command=("/opt/bin/claude", "--debug"))
    assert adapter_for("claude").argv(call)[:3] == ["/opt/bin/claude", "--debug", "-p"]


def test_only_each_clis_own_variables_pass_through() -> None:
    env = {
        "ANTHROPIC_API_KEY": "a",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "OPENAI_API_KEY": "o",
        "CODEX_HOME": "/c",
        "AWS_SECRET": "x",
    }
    assert passes_through(adapter_for("claude"), [], env) == {"ANTHROPIC_API_KEY": "a", "CLAUDE_CODE_MAX_RETRIES": "0"}
    assert passes_through(adapter_for("codex"), [], env) == {"OPENAI_API_KEY": "o", "CODEX_HOME": "/c"}
    assert "AWS_SECRET" in passes_through(adapter_for("codex"), ["AWS_SECRET"], env)


# -- Claude Code (recorded) --------------------------------------------------------------------------
def test_claude_success_gives_the_session_usage_cost_tools_and_final_message() -> None:
    r = parse("claude", fixture("claude-success.jsonl"))
    assert r.session_id and r.model and r.tools == {"Write": 1}
    assert (r.tokens_in, r.tokens_out, r.turns) == (240, 60, 2) and r.cost_usd and r.cost_usd > 0
    assert r.final_message == "Done: the file is written." and r.failure is None


def test_claude_api_errors_hidden_behind_its_exit_code_are_read_from_the_result() -> None:
    auth = parse("claude", fixture("claude-401.jsonl"), 1)
    assert auth.failure is AgentFailure.auth and "401" in (auth.failure_detail or "")
    assert parse("claude", fixture("claude-500.jsonl"), 1).failure is AgentFailure.server_error


def test_claude_a_denied_write_exits_0_and_is_a_denied_tool() -> None:
    r = parse("claude", fixture("claude-denied.jsonl"), 0)
    assert r.failure is AgentFailure.tool_denied and r.denied_tools == ["Write"]


def test_claude_the_turn_limit_is_its_own_failure() -> None:
    result = {"type": "result", "subtype": "error_max_turns", "is_error": True, "num_turns": 3, "session_id": "s"}
    assert parse("claude", [json.dumps(result)], 0).failure is AgentFailure.max_turns


# -- Codex (recorded) ------------------------------------------------------------------------------
def test_codex_success_gives_the_thread_usage_tools_and_final_message() -> None:
    r = parse("codex", fixture("codex-success.jsonl"))
    assert r.session_id and r.tools == {"apply_patch": 1} and (r.tokens_in, r.tokens_out) == (240, 60)
    assert r.final_message == "Done: the file is written." and r.failure is None and r.cost_usd is None


def test_codex_failed_turns_are_classified_from_their_message() -> None:
    auth = parse("codex", fixture("codex-401.jsonl"), 1)
    assert auth.failure is AgentFailure.auth and "401" in (auth.failure_detail or "")
    assert parse("codex", fixture("codex-500.jsonl"), 1).failure is AgentFailure.overloaded


# -- opencode (recorded) ---------------------------------------------------------------------------
def test_opencode_recorded_run_and_its_api_errors() -> None:
    r = parse("opencode", fixture("opencode-success.jsonl"))
    assert r.session_id and r.tools == {"write": 1} and (r.tokens_in, r.tokens_out) == (240, 60)
    assert r.final_message == "Done: the file is written." and r.failure is None
    assert parse("opencode", fixture("opencode-401.jsonl"), 1).failure is AgentFailure.auth
    assert parse("opencode", fixture("opencode-500.jsonl"), 1).failure is AgentFailure.server_error


def test_gemini_recorded_run_and_the_exit_codes_of_its_api_errors() -> None:
    r = parse("gemini", fixture("gemini-success.jsonl"))
    assert r.session_id and r.model == "gemini-2.5-flash" and r.tools == {"write_file": 1}
    assert (r.tokens_in, r.tokens_out, r.final_message, r.failure) == (240, 60, "Done: the file is written.", None)
    assert parse("gemini", fixture("gemini-401.jsonl"), 145).failure is AgentFailure.auth
    assert parse("gemini", fixture("gemini-500.jsonl"), 244).failure is AgentFailure.server_error


def test_aider_recorded_run_and_a_rejected_key_it_exits_0_on() -> None:
    r = parse("aider", fixture("aider-success.txt"))
    assert r.model == "openai/fake-model" and r.tools == {"edit": 1} and (r.tokens_in, r.tokens_out) == (120, 30)
    assert r.cost_usd == pytest.approx(0.00018) and r.failure is None
    assert parse("aider", fixture("aider-401.txt"), 0).failure is AgentFailure.auth


# -- gemini, opencode, aider (documented shapes) -------------------------------------------------------
def test_gemini_stream_and_its_exit_code_that_is_the_http_status() -> None:
    lines = [
        {"type": "init", "session_id": "g1", "model": "gemini-x"},
        {"type": "tool_use", "tool_name": "write_file", "parameters": {}},
        {"type": "tool_result", "status": "success"},
        {"type": "message", "role": "assistant", "content": "Wrote it.", "delta": True},
        {"type": "result", "status": "success", "stats": {"input_tokens": 50, "output_tokens": 7, "tool_calls": 1}},
    ]
    r = parse("gemini", [json.dumps(x) for x in lines])
    assert (r.session_id, r.model, r.tools, r.tokens_in, r.final_message) == (
        "g1",
        "gemini-x",
        {"write_file": 1},
        50,
        "Wrote it.",
    )
    assert r.failure is None
    assert parse("gemini", [json.dumps(lines[0])], 145).failure is AgentFailure.auth  # 401 & 255
    assert parse("gemini", [json.dumps(lines[0])], 244).failure is AgentFailure.server_error  # 500 & 255


def test_opencode_steps_add_up_and_an_error_event_names_its_status() -> None:
    lines = [
        {"type": "tool_use", "sessionID": "o1", "part": {"tool": "write", "state": {"status": "completed"}}},
        {"type": "step_finish", "part": {"reason": "tool-calls", "tokens": {"input": 30, "output": 5}, "cost": 0.001}},
        {"type": "text", "part": {"text": "All set."}},
        {"type": "step_finish", "part": {"reason": "stop", "tokens": {"input": 40, "output": 6}, "cost": 0.002}},
    ]
    r = parse("opencode", [json.dumps(x) for x in lines])
    assert (r.session_id, r.tools, r.tokens_in, r.tokens_out, r.turns) == ("o1", {"write": 1}, 70, 11, 2)
    assert r.cost_usd == pytest.approx(0.003) and r.final_message == "All set."
    error = {"type": "error", "error": {"name": "APIError", "data": {"statusCode": 401, "message": "bad key"}}}
    assert parse("opencode", [json.dumps(error)], 1).failure is AgentFailure.auth


def test_aider_text_is_read_for_edits_usage_and_errors_it_exits_0_on() -> None:
    ok = [
        "Applied edit to textkit/__init__.py",
        "Tokens: 1.2k sent, 85 received. Cost: $0.0031 message, $0.0031 session.",
    ]
    r = parse("aider", ok)
    assert r.tools == {"edit": 1} and (r.tokens_in, r.tokens_out) == (1200, 85) and r.cost_usd == pytest.approx(0.0031)
    assert r.failure is None
    bad = parse("aider", ["litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key"], 0)
    assert bad.failure is AgentFailure.auth
    assert parse("aider", ["litellm.InternalServerError: 500 upstream"], 0).failure is AgentFailure.server_error


def test_lines_an_adapter_does_not_expect_are_ignored() -> None:
    for name in ("claude", "codex", "gemini", "opencode", "aider"):
        r = parse(name, ["not json", "[1, 2]", "{}", '{"type": 5}', "\x00\x01"], 0)
        assert r.agent == name and r.failure is None
