"""Plan mode: what each task would run, exactly, computed from the approved plan without running
anything, making no worktree and writing nothing.

For each task, in plan order: where it would run (its scope in the workspace, or for an agent task
the worktree and branch it would get), the agent and the argv its adapter would build (the prompt
shown as ``<prompt>``), or the commands, then the acceptance tests that would judge it, and what
the per-command checks would decide about each command (the hooks are not run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..agents import AgentCall, adapter_for
from ..config import Config
from ..state import RunState
from ..worktrees import Worktrees

PROMPT = "<prompt>"


def _agent_argv(spec: dict[str, Any], workdir: str, prompt_file: str) -> list[str]:
    adapter = adapter_for(spec.get("name"), spec.get("command"))
    call = AgentCall(
        prompt=PROMPT,
        prompt_file=prompt_file,
        workdir=workdir,
        model=spec.get("model"),
        max_turns=spec.get("max_turns"),
        permission=spec.get("permission"),
        extra_args=tuple(spec.get("extra_args") or ()),
        command=tuple(spec["command"]) if spec.get("command") and spec.get("name") else None,
    )
    return adapter.argv(call)


def _check(command: str, config: Config) -> dict[str, Any]:
    """What the per-command checks would decide (the pre_command hooks are not run: in plan mode
    nothing outside the harness is called)."""
    from ..commands import screen

    found = screen(command, approved=command, rules=config.policy.commands)
    out: dict[str, Any] = {"command": command, "decision": found.verdict.value, "rule": found.rule}
    if found.reason:
        out["reason"] = found.reason
    return out


def preview(state: RunState, workspace: Path, run_id: str, config: Config) -> list[dict[str, Any]]:
    trees = Worktrees(workspace, run_id)
    out: list[dict[str, Any]] = []
    for tid in state.order:
        packet = state.packets[tid]
        task = state.tasks[tid]
        scope = packet.get("scope_path") or "."
        entry: dict[str, Any] = {
            "id": tid,
            "title": packet.get("title") or tid,
            "depends_on": list(packet.get("depends_on") or []),
            "status": task.status.value,
        }
        spec = packet.get("agent")
        if spec and not packet.get("commands"):
            where = trees.path(tid)
            entry["worktree"] = str(where)
            entry["branch"] = trees.branch(tid)
            entry["cwd"] = os.path.normpath(str(where / scope))
            entry["agent"] = spec.get("name") or " ".join(spec.get("command") or [])
            prompt_file = str(workspace / ".harness" / "runs" / run_id / "workers" / "<worker>" / "prompt.md")
            try:
                entry["argv"] = _agent_argv(spec, entry["cwd"], prompt_file)
            except (KeyError, ValueError) as exc:
                entry["argv_error"] = str(exc)
        else:
            entry["cwd"] = os.path.normpath(str(workspace / scope))
            entry["commands"] = list(packet.get("commands") or [])
            if not packet.get("commands"):
                entry["manual"] = True
                if packet.get("confirmation"):
                    entry["confirmation"] = packet["confirmation"]
        entry["acceptance_tests"] = list(packet.get("acceptance_tests") or [])
        checks = [_check(cmd, config) for cmd in [*(entry.get("commands") or []), *entry["acceptance_tests"]]]
        if checks:
            entry["checks"] = checks
        if packet.get("timeout"):
            entry["timeout"] = packet["timeout"]
        out.append(entry)
    return out
