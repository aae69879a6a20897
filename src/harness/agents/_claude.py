"""Claude Code: ``claude -p PROMPT --output-format stream-json --verbose --permission-mode MODE``.

Its stream: ``system/init`` (session, model, tools), ``assistant`` messages (tool calls, usage),
``system/api_retry`` (an API error being retried), and last a ``result`` line with the turns, the
final text, the cost and usage, ``is_error``, ``api_error_status`` and ``permission_denials``.
It exits 0 after an API error or a denied write, which only the stream tells.
"""

from __future__ import annotations

import json
from typing import Any

from . import ADAPTERS, Adapter, AgentCall, AgentFailure, AgentReport, JsonStreamParser, StreamParser, ToolRequest

#: The narrowest mode in which it may edit files without asking (it cannot ask: there is no terminal).
EDIT_MODE = "acceptEdits"
#: With the two-way channel: every write and command is asked of the harness.
ASK_MODE = "default"
#: Tools it runs without asking even in ASK_MODE: deny rules about them must be its own.
NEVER_ASK = frozenset({"Read", "Glob", "Grep", "LS", "WebSearch", "TodoWrite", "NotebookRead"})


def failure_for_status(status: int | None) -> AgentFailure | None:
    """An HTTP status of the model API as a failure kind."""
    if status is None:
        return None
    if status in (401, 403):
        return AgentFailure.auth
    if status == 429:
        return AgentFailure.rate_limited
    if status == 529:
        return AgentFailure.overloaded
    if status >= 500:
        return AgentFailure.server_error
    return AgentFailure.api_error


class ClaudeParser(JsonStreamParser):
    def __init__(self) -> None:
        super().__init__("claude")
        self._retry_status: int | None = None
        self._result = False
        self._streamed = [0, 0]  # tokens seen in assistant messages before the result totals them

    def on_event(self, event: dict[str, Any]) -> None:
        r = self.state
        kind, subtype = event.get("type"), event.get("subtype")
        if kind == "system" and subtype == "init":
            r.session_id = event.get("session_id") or r.session_id
            r.model = event.get("model") or r.model
        elif kind == "system" and subtype == "api_retry":
            status = event.get("error_status")
            self._retry_status = status if isinstance(status, int) else self._retry_status
        elif kind == "assistant":
            message = event.get("message") or {}
            r.model = r.model or message.get("model")
            for block in message.get("content") or []:
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    r.count_tool(str(block.get("name") or "?"))
            usage = message.get("usage") or {}
            self._streamed[0] += _tokens_in(usage)
            self._streamed[1] += int(usage.get("output_tokens") or 0)
            r.tokens_in, r.tokens_out = self._streamed
            r.turns += 1
        elif kind == "result":
            self._on_result(event)

    def _on_result(self, event: dict[str, Any]) -> None:
        r = self.state
        self._result = True
        r.session_id = event.get("session_id") or r.session_id
        usage = event.get("usage") or {}
        if usage:
            r.tokens_in, r.tokens_out = _tokens_in(usage), int(usage.get("output_tokens") or 0)
        cost = event.get("total_cost_usd")
        if isinstance(cost, int | float):
            r.cost_usd = float(cost)
        if isinstance(event.get("num_turns"), int):
            r.turns = event["num_turns"]
        text = event.get("result")
        if isinstance(text, str):
            r.final_message = text
        denials = event.get("permission_denials") or []
        r.denied_tools = [str(d.get("tool_name") or "?") for d in denials if isinstance(d, dict)]
        status = event.get("api_error_status")
        if event.get("subtype") == "error_max_turns":
            r.failure, r.failure_detail = AgentFailure.max_turns, f"stopped after {r.turns} turns"
        elif event.get("is_error"):
            code = status if isinstance(status, int) else self._retry_status
            r.failure = failure_for_status(code) or AgentFailure.api_error
            r.failure_detail = f"API error {code}: {text}" if code else str(text or event.get("subtype"))
        elif r.denied_tools:
            r.failure = AgentFailure.tool_denied
            r.failure_detail = "denied: " + ", ".join(r.denied_tools)

    def report(self, exit_code: int | None) -> AgentReport:
        r = super().report(exit_code)
        if not self._result and r.failure is None and exit_code not in (0, None):
            status = failure_for_status(self._retry_status)
            r.failure = status or AgentFailure.crashed
            r.failure_detail = f"exited {exit_code} without a result" + (
                f" (last API error {self._retry_status})" if self._retry_status else ""
            )
        return r


def _tokens_in(usage: dict[str, Any]) -> int:
    return sum(
        int(usage.get(k) or 0) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


class ClaudeAdapter(Adapter):
    name = "claude"
    program = "claude"
    env = ("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDE_CONFIG_DIR", "DISABLE_", "XDG_CONFIG_HOME", "XDG_DATA_HOME")
    bypass_modes = frozenset({"bypassPermissions"})
    bypass_args = frozenset({"--dangerously-skip-permissions", "--allow-dangerously-skip-permissions"})
    takes_tool_rules = True
    has_channel = True

    def argv(self, call: AgentCall) -> list[str]:
        denied = list(call.denied_tools)
        if call.channel:
            # The prompt goes on stdin as a stream-json user message. In the ask-first mode every
            # write and command comes back as a can_use_tool control request, answered on stdin by
            # the harness (edits inside the task's scope, the policy's rules, a person, else no);
            # only rules about tools that never ask are left to the CLI, so each denial is ours,
            # recorded.
            argv = self.base(call) + ["-p", "--input-format", "stream-json", "--output-format", "stream-json"]
            argv += ["--verbose", "--permission-prompt-tool", "stdio"]
            argv += ["--permission-mode", call.permission or ASK_MODE]
            denied = [rule for rule in denied if rule.partition("(")[0] in NEVER_ASK]
        else:
            argv = self.base(call) + ["-p", call.prompt, "--output-format", "stream-json", "--verbose"]
            argv += ["--permission-mode", call.permission or EDIT_MODE]
        if call.allowed_tools:
            argv += ["--allowedTools", *call.allowed_tools]
        if denied:
            argv += ["--disallowedTools", *denied]
        if call.model:
            argv += ["--model", call.model]
        if call.max_turns:
            argv += ["--max-turns", str(call.max_turns)]
        return argv + list(call.extra_args)

    def parser(self) -> StreamParser:
        return ClaudeParser()

    def channel_input(self, prompt: str) -> bytes:
        message = {"type": "user", "message": {"role": "user", "content": prompt}}
        return (json.dumps(message) + "\n").encode()

    def tool_request(self, event: dict[str, Any]) -> ToolRequest | None:
        request = event.get("request") if event.get("type") == "control_request" else None
        if not isinstance(request, dict) or request.get("subtype") != "can_use_tool":
            return None
        tool_input = request.get("input")
        return ToolRequest(
            request_id=str(event.get("request_id")),
            tool=str(request.get("tool_name") or "?"),
            input=tool_input if isinstance(tool_input, dict) else {},
            description=str(request.get("description") or ""),
        )

    def tool_answer(self, request: ToolRequest, allow: bool, message: str) -> bytes:
        if allow:
            decision: dict[str, Any] = {"behavior": "allow", "updatedInput": request.input}
        else:
            decision = {"behavior": "deny", "message": message or "denied by the harness"}
        reply = {
            "type": "control_response",
            "response": {"subtype": "success", "request_id": request.request_id, "response": decision},
        }
        return (json.dumps(reply) + "\n").encode()

    def ends_session(self, event: dict[str, Any]) -> bool:
        return event.get("type") == "result"


ADAPTERS["claude"] = ClaudeAdapter
