"""Codex: ``codex exec --json -s workspace-write -C DIR --skip-git-repo-check --disable plugins PROMPT``.

Its stream: ``thread.started`` (the session), ``turn.started``, ``item.started`` / ``item.completed``
(``file_change``, ``command_execution``, ``agent_message``, ...), ``turn.completed`` with usage, and
``turn.failed`` or ``error`` when the API failed. It reports no cost.
"""

from __future__ import annotations

import re
from typing import Any

from . import ADAPTERS, Adapter, AgentCall, AgentFailure, AgentReport, JsonStreamParser, StreamParser

#: The sandbox in which it may edit its working directory and nothing else.
EDIT_SANDBOX = "workspace-write"

_STATUS = re.compile(r"\b([45]\d\d)\b")


def failure_from_text(text: str) -> AgentFailure:
    """An API error message as a failure kind (Codex gives text, sometimes with a status)."""
    lower = text.lower()
    match = _STATUS.search(text)
    status = int(match.group(1)) if match else None
    if status in (401, 403) or "unauthorized" in lower or "api key" in lower or "authentication" in lower:
        return AgentFailure.auth
    if status == 429 or "rate limit" in lower or "too many requests" in lower:
        return AgentFailure.rate_limited
    if "overloaded" in lower or "high demand" in lower or "temporar" in lower or status == 529:
        return AgentFailure.overloaded
    if (status is not None and status >= 500) or "internal server error" in lower or "server error" in lower:
        return AgentFailure.server_error
    return AgentFailure.api_error


_TOOL_OF_ITEM = {
    "file_change": "apply_patch",
    "command_execution": "exec_command",
    "mcp_tool_call": "mcp",
    "web_search": "web_search",
}


class CodexParser(JsonStreamParser):
    def __init__(self) -> None:
        super().__init__("codex")
        self._error: str | None = None

    def on_event(self, event: dict[str, Any]) -> None:
        r = self.state
        kind = event.get("type")
        if kind == "thread.started":
            r.session_id = event.get("thread_id") or r.session_id
        elif kind == "turn.started":
            r.turns += 1
        elif kind == "item.completed":
            item = event.get("item") or {}
            itype = item.get("type")
            if itype == "agent_message" and isinstance(item.get("text"), str):
                r.final_message = item["text"]
            elif itype in _TOOL_OF_ITEM:
                r.count_tool(_TOOL_OF_ITEM[itype])
        elif kind == "turn.completed":
            usage = event.get("usage") or {}
            r.tokens_in += int(usage.get("input_tokens") or 0)
            r.tokens_out += int(usage.get("output_tokens") or 0)
        elif kind in ("turn.failed", "error"):
            error: Any = event.get("error") if kind == "turn.failed" else event
            text = error.get("message") if isinstance(error, dict) else error
            self._error = str(text or kind)

    def report(self, exit_code: int | None) -> AgentReport:
        r = super().report(exit_code)
        if self._error is not None:
            r.failure, r.failure_detail = failure_from_text(self._error), self._error
            r.final_message = r.final_message or self._error
        elif exit_code not in (0, None) and r.failure is None:
            r.failure, r.failure_detail = AgentFailure.crashed, f"exited {exit_code}"
        return r


class CodexAdapter(Adapter):
    name = "codex"
    program = "codex"
    env = ("CODEX_HOME", "OPENAI_", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")
    bypass_modes = frozenset({"danger-full-access"})
    bypass_args = frozenset({"--dangerously-bypass-approvals-and-sandbox", "--yolo"})

    def argv(self, call: AgentCall) -> list[str]:
        argv = self.base(call) + ["exec", "--json", "--skip-git-repo-check", "--disable", "plugins"]
        argv += ["-s", call.permission or EDIT_SANDBOX, "-C", call.workdir]
        if call.model:
            argv += ["-m", call.model]
        return argv + list(call.extra_args) + ["--", call.prompt]

    def parser(self) -> StreamParser:
        return CodexParser()


ADAPTERS["codex"] = CodexAdapter
