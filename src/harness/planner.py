"""Which planner a run uses, as the planning service's ``context``, and how long to wait for it.

The choice is made once, when the run starts (``--planner``, else ``planner.backend`` in the
config file, else the heuristic), and recorded in RUN_STARTED, so that a resumed run refines its
plan with the planner that made it. What is recorded is safe to log: the endpoint, the model and
the *name* of the variable holding the key, never the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .config import Config

BACKENDS = ("heuristic", "llm", "agent")
_ENV = {"provider": "PROVIDER", "base_url": "BASE_URL", "model": "MODEL", "timeout": "TIMEOUT", "retries": "RETRIES"}
DEFAULT_LLM_TIMEOUT = 120.0
DEFAULT_LLM_RETRIES = 3
DEFAULT_AGENT_TIMEOUT = 600.0


class PlannerChoiceError(ValueError):
    """A planner that cannot be used as asked (a usage error)."""


def planner_context(
    config: Config,
    backend: str | None,
    agent: Mapping[str, Any] | None,
    environ: Mapping[str, str] = os.environ,
) -> tuple[dict[str, Any], list[str]]:
    """The planning context's planner fields, and warnings for the person (an inline key)."""
    settings = config.planner
    chosen = backend or settings.backend
    if chosen not in BACKENDS:
        raise PlannerChoiceError(f"unknown planner {chosen!r}: use {', '.join(BACKENDS)}")
    warnings: list[str] = []
    context: dict[str, Any] = {"backend": chosen, "repair_rounds": settings.repair_rounds}
    if chosen == "llm":
        llm: dict[str, Any] = {}
        for key, env in _ENV.items():
            value = environ.get("HARNESS_LLM_" + env, "").strip() or getattr(settings, key)
            if value not in (None, ""):
                llm[key] = value
        if settings.max_tokens:
            llm["max_tokens"] = settings.max_tokens
        llm["api_key_env"] = settings.api_key_env or "HARNESS_LLM_API_KEY"
        if "timeout" in llm:
            llm["timeout"] = float(llm["timeout"])
        if "retries" in llm:
            llm["retries"] = int(llm["retries"])
        context["llm"] = llm
        if settings.inline_key:
            where = config.source or "the config file"
            warnings.append(
                f"warning: planner.api_key in {where} holds the key inline; a committed file would leak it. "
                f"Put it in an environment variable and name it with planner.api_key_env"
            )
    elif chosen == "agent":
        spec = dict(agent) if agent else ({"name": settings.agent} if settings.agent else None)
        if not spec:
            raise PlannerChoiceError(
                "--planner agent needs an agent: add --agent NAME (claude, codex, gemini, opencode, aider), "
                "or set planner.agent in the config file"
            )
        context["agent"] = spec
    return context, warnings


def call_timeout(context: Mapping[str, Any]) -> float | None:
    """How long the supervisor waits for one decompose/refine: every call, retry and repair round
    of the planner, plus slack. None for the heuristic (the service's default applies)."""
    rounds = 1 + int(context.get("repair_rounds") or 0)
    if context.get("backend") == "llm":
        llm = context.get("llm") or {}
        per_call = float(llm.get("timeout") or DEFAULT_LLM_TIMEOUT)
        configured = llm.get("retries")
        retries = int(configured) if configured is not None else DEFAULT_LLM_RETRIES
        # each retry may wait up to a minute (Retry-After is capped there)
        return rounds * (1 + retries) * (per_call + 60.0) + 30.0
    if context.get("backend") == "agent":
        return rounds * float(context.get("timeout") or DEFAULT_AGENT_TIMEOUT) + 30.0
    return None
