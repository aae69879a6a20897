"""Which agent does which task: ``--agent``, a task's own ``agent:``, and the config's ``agents:``.

Resolved once, when the plan is made, so the plan the gate shows and the log records says
exactly which program each task runs, with which arguments and which environment variable names.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["agent_option", "apply_agents", "bypass_problems", "resolve_agent"]


def agent_option(value: str, known: set[str]) -> dict[str, Any]:
    """``--agent`` as an agent spec: a known name, or a command line (split like a shell would,
    never run by one)."""
    value = value.strip()
    if value in known:
        return {"name": value}
    argv = shlex.split(value)
    if not argv:
        raise ValueError("--agent needs a name or a command")
    return {"command": argv}


def apply_agents(
    plan: dict[str, Any],
    default: dict[str, Any] | None,
    definitions: Mapping[str, Mapping[str, Any]],
    tool_rules: Sequence[Any] = (),
) -> dict[str, Any]:
    """The plan with every agent resolved: a task with no commands and no agent gets ``default``;
    a named agent defined in the config gets its command, arguments and environment names.

    A manual step that only a person can verify (a ``confirmation`` and no acceptance tests)
    stays manual: an agent's work needs a verdict of ours, and there is none to run."""
    tasks = []
    for packet in plan.get("tasks", []):
        spec = packet.get("agent")
        person_only = bool(packet.get("confirmation")) and not packet.get("acceptance_tests")
        if person_only and spec is None:
            tasks.append(packet)
            continue
        if not packet.get("commands"):
            if spec is not None and not spec.get("name") and not spec.get("command"):
                # settings for the run's agent; without one the task stays a manual step
                spec = {**spec, **{k: v for k, v in (default or {}).items() if k in ("name", "command")}}
                if not spec.get("name") and not spec.get("command"):
                    spec = None
            elif spec is None and default is not None:
                spec = dict(default)
        if spec is not None:
            spec = _with_tools(resolve_agent(dict(spec), definitions), packet["id"], tool_rules)
        packet = {**packet, "agent": spec}
        tasks.append(packet)
    return {**plan, "tasks": tasks}


def resolve_agent(spec: dict[str, Any], definitions: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``spec`` with the config's definition of its named agent: command, arguments, environment
    names and model (what the spec says itself wins)."""
    definition = definitions.get(spec.get("name") or "")
    if not definition:
        return spec
    if not spec.get("command") and definition.get("command"):
        spec["command"] = list(definition["command"])
    spec["extra_args"] = list(definition.get("args") or []) + list(spec.get("extra_args") or [])
    spec["env"] = list(dict.fromkeys(list(definition.get("env") or []) + list(spec.get("env") or [])))
    if not spec.get("model") and definition.get("model"):
        spec["model"] = definition["model"]
    return spec


def _with_tools(spec: dict[str, Any], task_id: str, rules: Sequence[Any]) -> dict[str, Any]:
    """The policy's allow and deny tool rules that apply to the task, added to the spec's own, so
    the plan at the gate says which tools each agent may use; an agent whose CLI can ask about the
    rest gets its channel (``channel: true``) unless the spec turned it off."""
    from . import adapter_for

    if spec.get("channel") is None:
        try:
            if adapter_for(spec.get("name"), spec.get("command")).has_channel:
                spec["channel"] = True
        except (KeyError, ValueError):
            pass
    allowed = list(spec.get("allowed_tools") or [])
    denied = list(spec.get("denied_tools") or [])
    for rule in rules:
        if not rule.applies_to(task_id):
            continue
        if rule.allow and rule.allow not in allowed:
            allowed.append(rule.allow)
        if rule.deny and rule.deny not in denied:
            denied.append(rule.deny)
    if allowed:
        spec["allowed_tools"] = allowed
    if denied:
        spec["denied_tools"] = denied
    return spec


def bypass_problems(plan: dict[str, Any], rules: Sequence[Any]) -> list[dict[str, Any]]:
    """Agents set to a bypass-everything mode that no policy tool rule names: one problem each
    (the plan is refused; a rule ``{name: ..., bypass: [AGENT]}`` allows it)."""
    from . import adapter_for

    problems: list[dict[str, Any]] = []
    for i, packet in enumerate(plan.get("tasks", [])):
        spec = packet.get("agent")
        if not spec or packet.get("commands"):
            continue
        try:
            adapter = adapter_for(spec.get("name"), spec.get("command"))
        except (KeyError, ValueError):
            continue
        found = adapter.bypasses(spec.get("permission"), spec.get("extra_args") or [])
        if found is None:
            continue
        who = spec.get("name") or adapter.name
        named = [r.name for r in rules if who in (r.bypass or []) and r.applies_to(packet["id"])]
        if not named:
            problems.append(
                {
                    "severity": "error",
                    "code": "agent_bypass_not_allowed",
                    "task_id": packet["id"],
                    "path": f"tasks[{i}].agent",
                    "message": f"task {packet['id']!r} runs {who} with {found}, which switches every permission "
                    f"check off; only a policy tool rule naming it allows that ({{name: ..., bypass: [{who}]}})",
                }
            )
    return problems
