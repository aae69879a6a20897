"""Which agent does which task: ``--agent``, a task's own ``agent:``, and the config's ``agents:``.

Resolved once, when the plan is made, so the plan the gate shows and the log records says
exactly which program each task runs, with which arguments and which environment variable names.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

__all__ = ["agent_option", "apply_agents", "resolve_agent"]


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
    plan: dict[str, Any], default: dict[str, Any] | None, definitions: Mapping[str, Mapping[str, Any]]
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
            spec = resolve_agent(dict(spec), definitions)
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
