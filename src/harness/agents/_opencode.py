"""opencode: ``opencode run --format json --pure --dir DIR PROMPT``.

Its stream: ``tool_use`` (part.tool, part.state.status), ``step_finish`` (part.tokens, part.cost,
part.reason), ``text`` (part.text) and ``error`` (error.name, error.data.statusCode); there is no
final result line. It exits 1 on an API error and 0 when a permission was rejected.
"""

from __future__ import annotations

from typing import Any

from . import ADAPTERS, Adapter, AgentCall, AgentFailure, AgentReport, JsonStreamParser, StreamParser
from ._claude import failure_for_status


class OpencodeParser(JsonStreamParser):
    def __init__(self) -> None:
        super().__init__("opencode")
        self._error: dict[str, Any] | None = None

    def on_event(self, event: dict[str, Any]) -> None:
        r = self.state
        r.session_id = event.get("sessionID") or r.session_id
        raw = event.get("part")
        part: dict[str, Any] = raw if isinstance(raw, dict) else {}
        kind = event.get("type")
        if kind == "tool_use":
            tool = str(part.get("tool") or "?")
            r.count_tool(tool)
            state = part.get("state") or {}
            if state.get("status") == "error" and "reject" in str(state.get("error") or "").lower():
                r.denied_tools.append(tool)
        elif kind == "step_finish":
            r.turns += 1
            tokens = part.get("tokens") or {}
            r.tokens_in += int(tokens.get("input") or 0)
            r.tokens_out += int(tokens.get("output") or 0)
            if isinstance(part.get("cost"), int | float):
                r.cost_usd = (r.cost_usd or 0.0) + float(part["cost"])
        elif kind == "text" and isinstance(part.get("text"), str):
            r.final_message = part["text"]
        elif kind == "error":
            error = event.get("error")
            self._error = error if isinstance(error, dict) else {"name": str(error)}

    def report(self, exit_code: int | None) -> AgentReport:
        r = super().report(exit_code)
        if self._error is not None:
            data = self._error.get("data") or {}
            status = data.get("statusCode") if isinstance(data, dict) else None
            r.failure = failure_for_status(status if isinstance(status, int) else None) or AgentFailure.api_error
            r.failure_detail = (
                f"{self._error.get('name')}: {data.get('message') if isinstance(data, dict) else ''}".strip()
            )
        elif r.denied_tools:
            r.failure, r.failure_detail = AgentFailure.tool_denied, "denied: " + ", ".join(r.denied_tools)
        elif exit_code not in (0, None):
            r.failure, r.failure_detail = AgentFailure.crashed, f"exited {exit_code}"
        return r


class OpencodeAdapter(Adapter):
    name = "opencode"
    program = "opencode"
    env = ("OPENCODE_", "npm_config_registry", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")
    bypass_args = frozenset({"--auto"})

    def argv(self, call: AgentCall) -> list[str]:
        argv = self.base(call) + ["run", "--format", "json", "--pure", "--dir", call.workdir]
        if call.model:
            argv += ["-m", call.model]
        return argv + list(call.extra_args) + ["--", call.prompt]

    def parser(self) -> StreamParser:
        return OpencodeParser()


ADAPTERS["opencode"] = OpencodeAdapter
