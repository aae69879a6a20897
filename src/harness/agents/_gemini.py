"""Gemini CLI: ``gemini -p PROMPT -o stream-json --approval-mode auto_edit``.

Its stream: ``init`` (session, model), ``tool_use`` / ``tool_result``, ``message`` (role, content,
delta), and a last ``result`` with ``status`` ("success" or "error") and ``stats`` (tokens, tool
calls). On an API error its exit code is the HTTP status & 255 (401 -> 145, 429 -> 173, 500 -> 244).
"""

from __future__ import annotations

from typing import Any

from . import ADAPTERS, Adapter, AgentCall, AgentFailure, AgentReport, JsonStreamParser, StreamParser
from ._claude import failure_for_status

#: Edits are approved, anything else (shell commands) is not.
EDIT_MODE = "auto_edit"

#: Exit codes that are an HTTP status & 255.
_STATUS_OF_EXIT = {(status & 255): status for status in (401, 403, 429, 500, 502, 503, 504, 529)}


class GeminiParser(JsonStreamParser):
    def __init__(self) -> None:
        super().__init__("gemini")
        self._status: str | None = None
        self._error: str | None = None
        self._text: list[str] = []

    def on_event(self, event: dict[str, Any]) -> None:
        r = self.state
        kind = event.get("type")
        if kind == "init":
            r.session_id = event.get("session_id") or r.session_id
            r.model = event.get("model") or r.model
        elif kind == "tool_use":
            r.count_tool(str(event.get("tool_name") or "?"))
        elif kind == "tool_result" and event.get("status") == "error":
            detail = event.get("error") or event.get("output") or ""
            if "denied" in str(detail).lower() or "not allowed" in str(detail).lower():
                r.denied_tools.append(str(event.get("tool_name") or event.get("tool_id") or "?"))
        elif kind == "message" and event.get("role") == "assistant":
            content = event.get("content")
            if isinstance(content, str):
                if not event.get("delta"):
                    self._text = []
                self._text.append(content)
        elif kind == "result":
            self._status = str(event.get("status") or "")
            stats = event.get("stats") or {}
            r.tokens_in = int(stats.get("input_tokens") or 0)
            r.tokens_out = int(stats.get("output_tokens") or 0)
            r.turns = max(r.turns, 1)
            error = event.get("error")
            if error:
                self._error = str(error.get("message") if isinstance(error, dict) else error)
        elif kind == "error":
            self._error = str(event.get("message") or event.get("error") or "error")

    def report(self, exit_code: int | None) -> AgentReport:
        r = super().report(exit_code)
        r.final_message = r.final_message or "".join(self._text)
        status = _STATUS_OF_EXIT.get(exit_code or 0)
        if self._status == "error" or self._error or status:
            r.failure = failure_for_status(status) or AgentFailure.api_error
            r.failure_detail = self._error or (f"exit {exit_code} (HTTP {status})" if status else "error")
        elif r.denied_tools:
            r.failure, r.failure_detail = AgentFailure.tool_denied, "denied: " + ", ".join(r.denied_tools)
        elif self._status is None and exit_code not in (0, None):
            r.failure, r.failure_detail = AgentFailure.crashed, f"exited {exit_code} without a result"
        return r


class GeminiAdapter(Adapter):
    name = "gemini"
    program = "gemini"
    env = ("GEMINI_", "GOOGLE_", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")
    bypass_modes = frozenset({"yolo"})
    bypass_args = frozenset({"--yolo", "-y"})

    def argv(self, call: AgentCall) -> list[str]:
        argv = self.base(call) + [
            "-p",
            call.prompt,
            "-o",
            "stream-json",
            "--approval-mode",
            call.permission or EDIT_MODE,
        ]
        if call.model:
            argv += ["-m", call.model]
        return argv + list(call.extra_args)

    def parser(self) -> StreamParser:
        return GeminiParser()


ADAPTERS["gemini"] = GeminiAdapter
