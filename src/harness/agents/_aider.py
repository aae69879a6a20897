"""aider: ``aider --message-file PROMPT_FILE --yes-always --no-auto-commits ...``.

Plain text only ("Applied edit to FILE", "Tokens: 1.2k sent, 85 received. Cost: $0.01 ..."), and
exit 0 whatever happened: its failures are read from the text (litellm's error names and the
HTTP statuses it prints). It has no permission modes; the harness commits, so aider must not.
"""

from __future__ import annotations

import os
import re

from . import ADAPTERS, Adapter, AgentCall, AgentFailure, AgentReport, StreamParser

_APPLIED = re.compile(r"^Applied edit to (.+)$")
_MODEL = re.compile(r"^Model: (\S+)")
_TOKENS = re.compile(r"Tokens: ([\d.]+)(k?) sent, ([\d.]+)(k?) received(?:\. Cost: \$([\d.]+) message)?", re.I)
_FAILURES = (
    (re.compile(r"AuthenticationError|\b401\b|invalid api key|incorrect api key", re.I), AgentFailure.auth),
    (re.compile(r"RateLimitError|\b429\b|rate limit", re.I), AgentFailure.rate_limited),
    (re.compile(r"overloaded|\b529\b", re.I), AgentFailure.overloaded),
    (
        re.compile(r"InternalServerError|ServiceUnavailable|\b50[0234]\b|APIConnectionError", re.I),
        AgentFailure.server_error,
    ),
)


def _count(number: str, kilo: str) -> int:
    return int(float(number) * (1000 if kilo else 1))


class AiderParser(StreamParser):
    def feed(self, line: str) -> None:
        super().feed(line)
        r = self.state
        text = line.strip()
        model = _MODEL.match(text)
        if model and r.model is None:
            r.model = model.group(1)
        applied = _APPLIED.match(text)
        if applied:
            r.count_tool("edit")
        tokens = _TOKENS.search(text)
        if tokens:
            r.turns += 1
            r.tokens_in += _count(tokens.group(1), tokens.group(2))
            r.tokens_out += _count(tokens.group(3), tokens.group(4))
            if tokens.group(5):
                r.cost_usd = (r.cost_usd or 0.0) + float(tokens.group(5))
        if r.failure is None:
            for pattern, kind in _FAILURES:
                if pattern.search(text):
                    r.failure, r.failure_detail = kind, text[:300]
                    break

    def report(self, exit_code: int | None) -> AgentReport:
        r = super().report(exit_code)
        if r.failure is None and exit_code not in (0, None):
            r.failure, r.failure_detail = AgentFailure.crashed, f"exited {exit_code}"
        return r


class AiderAdapter(Adapter):
    name = "aider"
    program = "aider"
    env = ("AIDER_", "OPENAI_", "ANTHROPIC_", "LITELLM_")

    def argv(self, call: AgentCall) -> list[str]:
        argv = self.base(call) + ["--message-file", call.prompt_file, "--yes-always", "--no-auto-commits"]
        # its histories go next to the prompt (the worker's folder), never into the work it changes
        where = os.path.dirname(call.prompt_file) or "."
        argv += ["--chat-history-file", os.path.join(where, "aider.chat.md")]
        argv += ["--input-history-file", os.path.join(where, "aider.input")]
        argv += ["--no-check-update", "--analytics-disable", "--no-pretty", "--no-stream", "--edit-format", "whole"]
        if call.model:
            argv += ["--model", call.model]
        return argv + list(call.extra_args)

    def parser(self) -> StreamParser:
        return AiderParser("aider")


ADAPTERS["aider"] = AiderAdapter
