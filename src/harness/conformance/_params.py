"""What the kit sends: contract examples with their placeholders filled, and params that must fail.

Placeholders in contract examples (whole strings only, except ``$WORKSPACE`` which may start a
path):

* ``"$<method>.<dotted.field>"`` -> that field of the result of the latest earlier call of
  ``<method>`` (list items by index: ``$refine.plan.tasks.0.id``);
* ``"$WORKSPACE"`` / ``"$WORKSPACE/sub/dir"`` -> a fresh temporary directory the kit made for
  this run, so examples never touch the caller's own files.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from harness.resources import load_schema

WORKSPACE = "$WORKSPACE"
_PLACEHOLDER = re.compile(r"^\$(?P<method>[A-Za-z_][\w-]*)\.(?P<path>[\w.-]+)$")
#: The field an invalid-params probe adds when a schema forbids unknown fields.
UNKNOWN_FIELD = "conformance_unknown_field"


class Unresolved(Exception):
    """A placeholder names a call that did not happen or a field its result lacks."""


def _lookup(value: Any, path: str, placeholder: str) -> Any:
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise Unresolved(f"{placeholder}: the result has no field {part!r}")
    return value


def substitute(value: Any, results: dict[str, Any], workspace: str) -> Any:
    """``value`` with every placeholder replaced (a deep copy; the contract is not modified)."""
    if isinstance(value, dict):
        return {k: substitute(v, results, workspace) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, results, workspace) for v in value]
    if not isinstance(value, str) or not value.startswith("$"):
        return value
    if value == WORKSPACE or value.startswith(WORKSPACE + "/"):
        return workspace + value[len(WORKSPACE) :]
    m = _PLACEHOLDER.match(value)
    if m is None:
        return value
    method = m.group("method")
    if method not in results:
        raise Unresolved(f"{value}: no earlier successful call of {method!r}")
    return _lookup(results[method], m.group("path"), value)


# -- schemas ---------------------------------------------------------------------------------------


@cache
def validator(name: str) -> Any:
    """A jsonschema validator for the schema file ``name`` (imported lazily: it is slow to import)."""
    from jsonschema import Draft202012Validator

    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _where(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def schema_problems(name: str, value: Any, limit: int = 3) -> list[str]:
    """Why ``value`` does not match schema ``name`` (at most ``limit`` reasons; empty: it matches)."""
    errors = sorted(
        validator(name).iter_errors(value), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    out = []
    for err in errors[:limit]:
        message = err.message if len(err.message) <= 160 else err.message[:159] + "…"
        out.append(f"at {_where(err.absolute_path)}: {message}")
    if len(errors) > limit:
        out.append(f"and {len(errors) - limit} more")
    return out


def takes_params(schema_name: str) -> bool:
    """False for methods whose params schema declares no fields (initialize, ping, Empty)."""
    return bool(load_schema(schema_name).get("properties"))


def invalid_params(schema_name: str) -> dict[str, Any] | None:
    """Params that the schema itself rejects, or None when the kit cannot make any.

    A missing required field is preferred (``{}``); a schema without required fields that
    forbids unknown ones gets an unknown field. Each candidate is checked against the schema, so
    the probe never blames a service for refusing something the contract allows.
    """
    schema = load_schema(schema_name)
    candidates: list[dict[str, Any]] = []
    if schema.get("required"):
        candidates.append({})
    if schema.get("additionalProperties") is False:
        candidates.append({UNKNOWN_FIELD: True})
    for candidate in candidates:
        if schema_problems(schema_name, candidate):
            return candidate
    return None
