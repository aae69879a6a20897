"""Locate the package data: generated schemas and service contracts."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SERVICES = ("planning", "bootstrap", "worker-manager")


def schema_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("harness.schemas").iterdir() if p.name.endswith(".json"))


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema called ``name`` (e.g. ``TaskPacket``); KeyError if there is none."""
    path = resources.files("harness.schemas") / f"{name}.json"
    if not path.is_file():
        raise KeyError(name)
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def load_contract(service: str) -> dict[str, Any]:
    """The contract of ``service`` (planning, bootstrap or worker-manager) as plain data."""
    import yaml

    path = resources.files("harness.contracts") / f"{service}.yaml"
    if not path.is_file():
        raise KeyError(service)
    return yaml.safe_load(path.read_text(encoding="utf-8"))
