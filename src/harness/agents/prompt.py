"""The prompt an agent gets: the workspace's instructions, the task, what its dependencies did,
and on a retry what went wrong the last time. Pure text in, text out; saved next to the worker's
output and hashed into the log by the supervisor."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Dependency", "Previous", "build_prompt", "digest"]

#: Bound on each piece of earlier output carried into a prompt.
TAIL_CHARS = 3000


@dataclass(frozen=True)
class Dependency:
    id: str
    title: str
    summary: str  # how it ended: its agent's last message, or what its commands did


@dataclass(frozen=True)
class Previous:
    """The attempt before this one, and why it was not accepted."""

    attempt: int
    summary: str  # the failure in one line
    failure_type: str | None = None
    test_output: str = ""  # the failing acceptance test's output (tail)
    agent_message: str = ""  # the agent's last message
    conflict: Sequence[str] = ()  # files that did not merge
    note: str | None = None  # what a person said when deciding to retry


def _tail(text: str, limit: int = TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "[...]\n" + text[-limit:]


def build_prompt(
    packet: Mapping[str, Any],
    *,
    workdir: str,
    system_prompt: str = "",
    dependencies: Sequence[Dependency] = (),
    previous: Previous | None = None,
) -> str:
    """The whole prompt for one attempt at ``packet``."""
    parts: list[str] = []
    if system_prompt.strip():
        parts += ["# Instructions for this repository", "", system_prompt.strip(), ""]
    parts += [
        f"# Task {packet['id']}: {packet.get('title') or packet['id']}",
        "",
        str(packet.get("objective") or "").strip(),
        "",
    ]
    scope = packet.get("scope_path") or "."
    parts += [
        "## Where",
        "",
        f"Work in {workdir} (a git worktree of its own). Change only what the task needs, "
        f"inside `{scope}` ({packet.get('scope', 'workspace')} scope). Do not commit: the harness commits your work "
        "once the acceptance tests pass.",
        "",
    ]
    tests = list(packet.get("acceptance_tests") or [])
    if tests:
        parts += [
            "## How the work is judged",
            "",
            "These commands are run in the worktree when you finish; all must succeed:",
            "",
        ]
        parts += [f"    {t}" for t in tests] + [""]
    if dependencies:
        parts += ["## Done before this task (already in your worktree)", ""]
        parts += [f"- {d.id} ({d.title}): {' '.join(d.summary.split())[:300] or 'completed'}" for d in dependencies]
        parts.append("")
    if previous is not None:
        kind = f" ({previous.failure_type})" if previous.failure_type else ""
        parts += [f"## The previous attempt ({previous.attempt}) was not accepted{kind}", "", previous.summary, ""]
        if previous.conflict:
            parts += [
                "Its changes did not merge with the work of other tasks, in: " + ", ".join(previous.conflict) + ". "
                "Your worktree now has that work: redo the task on top of it.",
                "",
            ]
        if previous.test_output.strip():
            parts += ["Output of the failing check:", "", "```", _tail(previous.test_output), "```", ""]
        if previous.agent_message.strip():
            parts += ["The agent's last message then:", "", "```", _tail(previous.agent_message, 1500), "```", ""]
        if previous.note:
            parts += [f"A person added: {previous.note}", ""]
    return "\n".join(parts).rstrip() + "\n"


def digest(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()
