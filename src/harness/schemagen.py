"""Generate ``schemas/*.json`` from the pydantic models: the one source of every wire type.

    python -m harness.schemagen            # rewrite schemas/
    python -m harness.schemagen --check    # exit 1 and name the files that drifted

Each service module exposes ``SCHEMAS``, a mapping of schema name to model, for its own params
and results; the shared types come from :mod:`harness.models`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import models

SERVICE_MODULES = (
    "harness.services.planning",
    "harness.services.bootstrap",
    "harness.services.worker_manager",
)

CORE: dict[str, type[BaseModel]] = {
    "TaskPacket": models.TaskPacket,
    "Plan": models.Plan,
    "Problem": models.Problem,
    "ValidationReport": models.ValidationReport,
    "WorkerEvent": models.WorkerEvent,
    "BootstrapPlan": models.BootstrapPlan,
    "PhaseResult": models.PhaseResult,
    "Event": models.Event,
    "InitializeResult": models.InitializeResult,
    "Empty": models.Empty,
}

GENERATED_NOTE = "Generated from the pydantic models by `python -m harness.schemagen`; do not edit."


def models_by_name() -> dict[str, type[BaseModel]]:
    found = dict(CORE)
    for name in SERVICE_MODULES:
        module = importlib.import_module(name)
        for key, model in getattr(module, "SCHEMAS", {}).items():
            if key in found and found[key] is not model:
                raise ValueError(f"schema name {key!r} is defined twice ({name})")
            found[key] = model
    return found


def schema_for(name: str, model: type[BaseModel]) -> dict[str, Any]:
    body = model.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{name}.json",
        "$comment": GENERATED_NOTE,
        **body,
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def log_event_schema() -> dict[str, Any]:
    """``LogEvent.json``: one line of a run's log, its ``data`` checked against the payload of its
    ``type`` (the event catalogue, :mod:`harness.events`)."""
    from pydantic import TypeAdapter

    from .events import LOG_FORMAT, PAYLOADS

    defs: dict[str, Any] = {}
    variants = []
    for etype, payload in PAYLOADS.items():
        schema = TypeAdapter(payload).json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[payload.__name__] = schema
        variants.append(
            {
                "properties": {"type": {"const": etype.value}, "data": {"$ref": f"#/$defs/{payload.__name__}"}},
                "required": ["type", "data"],
            }
        )
    body = models.Event.model_json_schema(mode="validation")
    body["title"] = "LogEvent"
    body["description"] = (
        f"One line of a run's event log in format {LOG_FORMAT}; `data` is the payload of its `type`. "
        "``prev`` and ``hash`` chain it to the line before."
    )
    body["properties"]["type"] = {"enum": [e.value for e in PAYLOADS], "title": "Type", "type": "string"}
    body["oneOf"] = variants
    body["$defs"] = dict(sorted(defs.items()))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "LogEvent.json",
        "$comment": GENERATED_NOTE.replace("pydantic models", "event catalogue"),
        **body,
    }


def generate() -> dict[str, str]:
    """File name -> rendered text for every schema."""
    out = {f"{name}.json": render(schema_for(name, model)) for name, model in sorted(models_by_name().items())}
    out["LogEvent.json"] = render(log_event_schema())
    return out


def default_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "schemas"


def drift(directory: Path) -> list[str]:
    """Names of files that are missing, stale or no longer generated."""
    wanted = generate()
    problems = [n for n, text in wanted.items() if not (directory / n).is_file() or (directory / n).read_text() != text]
    problems += [p.name + " (not generated any more)" for p in directory.glob("*.json") if p.name not in wanted]
    return sorted(problems)


def write(directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    wanted = generate()
    for p in directory.glob("*.json"):
        if p.name not in wanted:
            p.unlink()
    for name, text in wanted.items():
        (directory / name).write_text(text)
    return sorted(wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.schemagen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift instead of writing")
    parser.add_argument("--dir", type=Path, default=default_dir())
    args = parser.parse_args(argv)
    if args.check:
        stale = drift(args.dir)
        for name in stale:
            print(f"drift: {name}", file=sys.stderr)
        return 1 if stale else 0
    for name in write(args.dir):
        print(args.dir / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
