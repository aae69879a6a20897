"""Plans as the log holds them: without the fields that hold their defaults.

A packet is mostly defaults (no timeout, risk low, commit policy none, ...); RUN_STARTED and
PLAN_CREATED record each plan compact (:func:`compact_plan`) and every reader of the log gets it
back whole (:func:`full_plan`), equal to what :meth:`harness.models.Plan.model_dump` gave, key
order included. The models are imported on first use, so reading a log needs no pydantic models.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

__all__ = ["COMPACT_SINCE", "compact_plan", "created_plan", "full_plan", "read_plan"]

#: The log format from which plans are logged compact.
COMPACT_SINCE = 3


def _json_default(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value.value if isinstance(value, StrEnum) else value


def _field_defaults(model: Any) -> dict[str, Any]:
    """Each optional field's default as plain JSON data, in the model's field order."""
    return {
        name: _json_default(field.get_default(call_default_factory=True))
        for name, field in model.model_fields.items()
        if not field.is_required()
    }


#: A model's optional fields as :func:`_filled` walks them: (name, default, mutable), in order;
#: a required field has no default (:data:`_REQUIRED`).
_Spec = tuple[tuple[str, Any, bool], ...]
_REQUIRED = object()
_PLAN_FIELDS: tuple[dict[str, Any], dict[str, Any], _Spec, _Spec] | None = None


def _spec(model: Any, defaults: dict[str, Any]) -> _Spec:
    return tuple(
        (name, defaults.get(name, _REQUIRED), type(defaults.get(name)) in (list, dict)) for name in model.model_fields
    )


def _plan_fields() -> tuple[dict[str, Any], dict[str, Any], _Spec, _Spec]:
    global _PLAN_FIELDS
    if _PLAN_FIELDS is None:
        from .models import Plan, TaskPacket

        plan_defaults, packet_defaults = _field_defaults(Plan), _field_defaults(TaskPacket)
        _PLAN_FIELDS = (plan_defaults, packet_defaults, _spec(Plan, plan_defaults), _spec(TaskPacket, packet_defaults))
    return _PLAN_FIELDS


def _fresh(value: Any) -> Any:
    """A default value nobody else holds (the fold may change what it is given)."""
    if type(value) is list:
        return [] if not value else list(value)
    if type(value) is dict:
        return {} if not value else {k: _fresh(v) for k, v in value.items()}
    return value


def _filled(given: dict[str, Any], spec: _Spec) -> dict[str, Any]:
    """``given`` with the defaults it lacks, in the model's field order; keys the model does not
    know follow, as given. Called once per task of every plan read back: kept lean."""
    out: dict[str, Any] = {}
    placed = 0
    for name, default, mutable in spec:
        if name in given:
            out[name] = given[name]
            placed += 1
        elif default is not _REQUIRED:
            out[name] = _fresh(default) if mutable else default
    if placed < len(given):
        out.update((k, v) for k, v in given.items() if k not in out)
    return out


def full_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan as :meth:`Plan.model_dump` (mode json) gives it, from the log's compact form (see
    :func:`compact_plan`); a full plan comes back equal."""
    _, _, plan_spec, packet_spec = _plan_fields()
    out = _filled(plan, plan_spec)
    out["tasks"] = [_filled(t, packet_spec) for t in plan.get("tasks") or []]
    return out


def compact_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan without its fields that hold their defaults, for the log (RUN_STARTED, PLAN_CREATED):
    a packet is often more defaults than content. :func:`full_plan` gives it back; a plan that
    would not come back equal (one that lacks fields) is returned as it is."""
    plan_defaults, packet_defaults, _, _ = _plan_fields()
    out = {k: v for k, v in plan.items() if k not in plan_defaults or v != plan_defaults[k]}
    out["tasks"] = [
        {k: v for k, v in t.items() if k not in packet_defaults or v != packet_defaults[k]}
        for t in plan.get("tasks") or []
    ]
    return out if full_plan(out) == plan else plan


def read_plan(plan: dict[str, Any], compact: bool) -> dict[str, Any]:
    """A logged plan as its readers use it: whole again where the log holds it compact."""
    return full_plan(plan) if compact else plan


def created_plan(data: Mapping[str, Any], plan_file: dict[str, Any] | None, compact: bool) -> dict[str, Any]:
    """The whole plan a PLAN_CREATED's ``data`` stands for: its own, or (``from_plan_file``) the
    plan file RUN_STARTED recorded, ``plan_file`` (as logged, or whole already), as a plan of its
    own. The one reading of PLAN_CREATED for every fold of the log."""
    plan = data.get("plan")
    if plan is not None:
        return read_plan(plan, compact)
    if plan_file is None:
        raise ValueError("PLAN_CREATED holds no plan and names the plan file, but RUN_STARTED recorded none")
    return full_plan(plan_file) if compact else copy.deepcopy(plan_file)
