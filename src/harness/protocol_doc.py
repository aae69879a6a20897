"""Generate ``docs/PROTOCOL.md``, the guide for implementing a service in another language.

    python -m harness.protocol_doc            # rewrite docs/PROTOCOL.md
    python -m harness.protocol_doc --check    # exit 1 when the file is stale

The method, notification, error and field tables come from ``contracts/*.yaml`` and
``schemas/*.json`` (the same sources as the conformance kit), so the document cannot drift from
what the services speak; the prose around them states the wire rules the kit checks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.resources import SERVICES, load_contract, load_schema
from harness.rpc import CODE_NAMES, DEFAULT_MAX_LINE

GENERATED_NOTE = "<!-- Generated from contracts/ and schemas/ by `python -m harness.protocol_doc`; do not edit. -->"
LIFECYCLE = ("initialize", "ping", "shutdown")

#: What each code means to a caller; the names come from harness.rpc.CODE_NAMES.
CODE_MEANINGS: dict[int, str] = {
    -32700: "The line is not JSON. Answered with `id: null`.",
    -32600: "Not a request object: a batch (array), a scalar, a wrong member, or a line over the size limit.",
    -32601: "No such method. `data.available` may list the methods.",
    -32602: "The params do not match the method's params schema; `data` lists the problems (`loc`, `msg`, `type`).",
    -32603: "The service failed unexpectedly; the message names the exception, never a traceback.",
    -32001: "No such worker (or other named thing).",
    -32002: "A gate blocks the call: the caller must decide first (for example `mark_trusted`).",
    -32003: "The state machine does not allow that step now (for example the worker already ended).",
    -32004: "The plan is invalid; `data.problems` lists every problem at once.",
    -32005: "A bounded wait ran out.",
    -32006: "The work was cancelled before it finished.",
    -32007: "The peer exited or closed its pipe (raised by clients, never sent by services).",
    -32008: "What the service relies on (a model endpoint, an agent CLI) refused or failed; `data.kind` is "
    "permission, quota, timeout, unavailable, config, rejected or unusable. Never carries a secret.",
}


# -- schema fragments as Markdown ----------------------------------------------------------------


def _cell(text: str) -> str:
    """Table-safe text: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _prose(text: str) -> str:
    """Descriptions as table-safe Markdown: ``<run_dir>`` must not be read as an HTML tag."""
    return _cell(text).replace("<", "&lt;").replace(">", "&gt;")


def _anchor(name: str) -> str:
    return f"type-{name.lower()}"


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_of(node: dict[str, Any]) -> str:
    """A short human type: ``string``, ``array of [TaskPacket](#type-taskpacket)``, ``integer | null``."""
    if "$ref" in node:
        name = _ref_name(node["$ref"])
        return f"[{name}](#{_anchor(name)})"
    if "anyOf" in node:
        return " or ".join(type_of(n) for n in node["anyOf"])
    if "enum" in node:
        return " or ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    kind = node.get("type")
    if kind == "array":
        return "array of " + type_of(node.get("items", {}))
    if kind == "object":
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return "object of " + type_of(extra)
        return "object"
    if kind is None:
        return "any"
    return str(kind) + _constraints(node)


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    if "minLength" in node:
        parts.append(f"at least {node['minLength']} character(s)")
    if "maxLength" in node:
        parts.append(f"at most {node['maxLength']} characters")
    if "minimum" in node and "maximum" in node:
        parts.append(f"{node['minimum']}..{node['maximum']}")
    elif "minimum" in node:
        parts.append(f">= {node['minimum']}")
    elif "maximum" in node:
        parts.append(f"<= {node['maximum']}")
    if "exclusiveMinimum" in node:
        parts.append(f"> {node['exclusiveMinimum']}")
    if "pattern" in node:
        parts.append(f"matching `{node['pattern']}`")
    return f" ({', '.join(parts)})" if parts else ""


def field_table(schema: dict[str, Any]) -> list[str]:
    """The fields of an object schema as a Markdown table (or a sentence when it has none or is
    no object: an array result is described by its items)."""
    if schema.get("type") == "array":
        return [f"A JSON array (not an object): {type_of(schema)}."]
    props: dict[str, Any] = schema.get("properties") or {}
    if not props:
        return [
            "No fields: send `{}` (or omit `params`)."
            if schema.get("additionalProperties") is False
            else "An object; any fields."
        ]
    required = set(schema.get("required") or [])
    rows = ["| field | type | required | default | description |", "|---|---|---|---|---|"]
    for name, node in props.items():
        default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
        rows.append(
            f"| `{name}` | {_cell(type_of(node))} | {'yes' if name in required else 'no'} | {_cell(default)} | {_prose(node.get('description', ''))} |"
        )
    if schema.get("additionalProperties") is True:
        rows.append("")
        rows.append("Other fields are allowed and kept.")
    return rows


def _defs_used() -> dict[str, dict[str, Any]]:
    """Every named type the contracts' schemas refer to, by name (first definition wins)."""
    found: dict[str, dict[str, Any]] = {}
    for service in SERVICES:
        contract = load_contract(service)
        names = [spec[key] for spec in contract["methods"].values() for key in ("params", "result")]
        names += [spec["params"] for spec in (contract.get("notifications") or {}).values()]
        for name in names:
            for def_name, node in (load_schema(name).get("$defs") or {}).items():
                found.setdefault(def_name, node)
    return dict(sorted(found.items()))


# -- sections ------------------------------------------------------------------------------------


def _intro() -> list[str]:
    return [
        GENERATED_NOTE,
        "",
        "# The harness service protocol",
        "",
        "The harness runs three services as separate processes: **planning**, **bootstrap** and",
        "**worker-manager**. Each speaks line-delimited JSON-RPC 2.0 on its stdin and stdout. Any of",
        "them can be replaced by a program in another language: point the supervisor at it in",
        "`harness.yaml` (relative paths are taken from the file's folder) and prove it with the",
        "conformance kit.",
        "",
        "```yaml",
        "services:",
        "  planning:",
        '    command: ["node", "examples/node/planning-service.js"]',
        "```",
        "",
        "```sh",
        "harness conformance planning -- node examples/node/planning-service.js",
        "```",
        "",
        "This document is generated from `contracts/*.yaml` (methods, examples, notifications, error",
        "codes) and `schemas/*.json` (every params, result and notification type). A working example",
        "in Node.js without packages is in `examples/node/`.",
        "",
        "Contents: [Framing](#framing) · [Lifecycle](#lifecycle) · [Errors](#errors) ·",
        "[Notifications](#notifications) · [Idempotency keys](#idempotency-keys) · [Replay](#replay) ·",
        " · ".join(f"[{s}](#service-{s})" for s in SERVICES) + " · [Types](#types) · [Conformance](#conformance)",
        "",
    ]


def _framing() -> list[str]:
    return [
        "## Framing",
        "",
        "- One message is one line: compact UTF-8 JSON terminated by `\\n`, with no raw newline inside",
        "  (JSON escapes newlines in strings anyway).",
        "- **stdout carries protocol messages only.** Logs, progress and anything a child process",
        "  prints go to stderr. One stray `print` on stdout breaks the stream; protect it in your entry",
        "  point (duplicate fd 1 for the wire, point fd 1 at stderr).",
        f"- A line may be up to {DEFAULT_MAX_LINE // (1024 * 1024)} MiB (the reference services' default; the limit is the",
        "  service's to choose). A longer line is answered with -32600 and the stream goes on.",
        "- Message kinds, told apart by their members:",
        "",
        "| kind | members | sent by |",
        "|---|---|---|",
        "| request | `jsonrpc`, `id`, `method`, `params` (object, optional) | the caller |",
        "| notification | `jsonrpc`, `method`, `params`, **no `id`** | the service (events) |",
        "| result | `jsonrpc`, `id`, `result` | the service |",
        "| error | `jsonrpc`, `id`, `error: {code, message, data?}` | the service |",
        "",
        '- A request without `"jsonrpc"` is accepted (hand-typed pipes omit it); every message a service',
        '  writes carries `"jsonrpc": "2.0"`.',
        "- `id` is an integer or a string and is echoed exactly. Every line that carries a readable id",
        "  gets exactly one reply; a line without one (malformed JSON, a batch) is answered with",
        "  `id: null`. Blank lines are ignored.",
        "- Batches (JSON arrays) are refused with one -32600 error: every call must pass the gates on",
        "  its own.",
        "- `params` is an object with named fields (never an array), or absent for methods without",
        "  params. Unknown fields are refused with -32602 where the schema says",
        "  `additionalProperties: false`.",
        "- Replies may come in any order when a service runs long calls concurrently (the worker",
        "  manager's `run_worker`): match them by id. A service never sends requests.",
        "",
        "```text",
        '-> {"jsonrpc":"2.0","id":1,"method":"ping"}',
        '<- {"jsonrpc":"2.0","id":1,"result":{}}',
        "-> not json",
        '<- {"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error: ..."}}',
        '-> {"id":"a","method":"no_such_method"}',
        '<- {"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"Method not found: no_such_method"}}',
        "```",
        "",
    ]


def _lifecycle() -> list[str]:
    return [
        "## Lifecycle",
        "",
        "1. **Spawn.** The supervisor starts the command with pipes on stdin, stdout and stderr, in",
        "   its own session (process group), with the workspace as working directory. Answer the",
        "   first request fast: the reference services answer within about 120 ms of being spawned.",
        "2. **`initialize`** (optional: a service must work without it) returns who the service is.",
        '   Its params are informational (the supervisor sends `{"client": "harness-supervisor"}`)',
        "   and must be accepted whatever they hold. `methods` must list every method of the",
        "   contract; `contract` is the contract's `service` name.",
        "",
        *field_table(load_schema("InitializeResult")),
        "",
        "3. **`ping`** answers `{}`: a liveness check.",
        "4. **`shutdown`** answers `{}`, then the service stops reading, finishes the calls in flight",
        "   and exits with status 0.",
        "5. **EOF on stdin** means the same: answer every request already read, then exit 0.",
        "6. The supervisor stops a service by `shutdown`, then closing stdin, then (after a grace",
        "   period of about 2 s) SIGTERM to the process group, then SIGKILL. A service that starts",
        "   children should put them in their own process groups and end them when it exits.",
        "7. A service that dies is restarted with backoff (SERVICE_CRASHED, SERVICE_RESTARTED events);",
        "   a stateful service is then brought back by [replay](#replay).",
        "",
    ]


def _errors() -> list[str]:
    used: dict[int, list[str]] = {}
    for service in SERVICES:
        for code in load_contract(service).get("errors") or {}:
            used.setdefault(int(code), []).append(service)
    rows = [
        "## Errors",
        "",
        'An error reply is `{"jsonrpc":"2.0","id":ID,"error":{"code":C,"message":M,"data":D}}`.',
        "`message` is one line for people; programs decide by `code` (and read `data`). Codes",
        "-32000..-32099 are the harness's own. Each method's contract lists the codes it may answer",
        "besides the four protocol codes (-32700, -32600, -32601, -32603), which any call may get.",
        "",
        "| code | name | meaning | in contracts of |",
        "|---|---|---|---|",
    ]
    protocol = {-32700, -32600, -32601, -32603}
    for code, name in CODE_NAMES.items():
        where = "any method (protocol)" if code in protocol else ", ".join(used.get(code, [])) or "(clients only)"
        rows.append(f"| {code} | `{name}` | {_cell(CODE_MEANINGS.get(code, ''))} | {where} |")
    rows.append("")
    return rows


def _notifications() -> list[str]:
    rows = [
        "## Notifications",
        "",
        'Services report events as notifications: `{"jsonrpc":"2.0","method":NAME,"params":{...}}`',
        "with **no `id`**, written whenever they happen (also between the replies of other calls).",
        "A service sends only the notifications its contract declares, each with params valid",
        "against the declared schema. The supervisor appends every one to the run's event log, and",
        "sends them back through `replay` after a restart.",
        "",
        "| service | notification | params |",
        "|---|---|---|",
    ]
    for service in SERVICES:
        notes = load_contract(service).get("notifications") or {}
        if not notes:
            rows.append(f"| {service} | (none) | |")
        for name, spec in notes.items():
            rows.append(f"| {service} | [`{name}`](#notification-{service}-{name}) | {spec['params']} |")
    rows.append("")
    for service in SERVICES:
        for name, spec in (load_contract(service).get("notifications") or {}).items():
            schema = load_schema(spec["params"])
            rows += [f'<a id="notification-{service}-{name}"></a>', "", f"### {service} · `{name}`", ""]
            if schema.get("description"):
                rows += [_prose(schema["description"]), ""]
            rows += [f"**Params** ({spec['params']}):", "", *field_table(schema), ""]
    return rows


def _idempotency() -> list[str]:
    rows = [
        "## Idempotency keys",
        "",
        "Calls that change state take an optional `idempotency_key`. The supervisor builds it from",
        "the run, the task and the attempt, and re-sends a request with the same key after a crash",
        "or a timeout; the service must then answer as for the first call and must not act twice",
        "(no second worker, no second run, no second event). Methods marked state-changing in the",
        "contracts:",
        "",
        "| service | method | `idempotency_key` | what the key guards |",
        "|---|---|---|---|",
    ]
    for service in SERVICES:
        for name, spec in load_contract(service)["methods"].items():
            if not spec.get("state_changing"):
                continue
            prop = (load_schema(spec["params"]).get("properties") or {}).get("idempotency_key")
            has = "yes" if prop else "no"
            rows.append(
                f"| {service} | `{name}` | {has} | {_prose((prop or {}).get('description', '') or 'same key, same answer')} |"
            )
    rows.append("")
    return rows


def _replay() -> list[str]:
    rows = [
        "## Replay",
        "",
        "A stateful service rebuilds its state from its own past notifications. After restarting a",
        "crashed service, the supervisor calls `replay` with the events of that service from the",
        "run's event log, before any other call, then re-sends the requests that were in flight",
        "(their idempotency keys make that safe). Replay must be a pure fold: the same events give",
        "the same state, and it sends no notifications while rebuilding.",
        "",
    ]
    for service in SERVICES:
        spec = load_contract(service)["methods"].get("replay")
        if spec:
            rows += [
                f"- **{service}** `replay` ({spec['params']} -> {spec['result']}): {_prose(spec.get('description', ''))}"
            ]
    services_without = [s for s in SERVICES if "replay" not in load_contract(s)["methods"]]
    if services_without:
        rows += [f"- **{', '.join(services_without)}**: no `replay`; the service keeps no state between calls."]
    rows.append("")
    return rows


def _example_line(method: str, params: Any, rid: int) -> str:
    return json.dumps(
        {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}, ensure_ascii=False, separators=(",", ":")
    )


def _service(service: str) -> list[str]:
    contract = load_contract(service)
    errors = {int(k): v for k, v in (contract.get("errors") or {}).items()}
    rows = [
        f'<a id="service-{service}"></a>',
        "",
        f"## Service: {service}",
        "",
        _prose(contract.get("description", "")),
        "",
        f"Contract `contracts/{service}.yaml`, protocol version {contract['protocol_version']}. Methods, in an order in which their",
        "examples run one after another:",
        "",
        "| method | params | result | errors | changes state |",
        "|---|---|---|---|---|",
    ]
    for name, spec in contract["methods"].items():
        codes = (
            ", ".join(f"{c} `{errors.get(int(c), CODE_NAMES.get(int(c), '?'))}`" for c in spec.get("errors") or [])
            or "—"
        )
        target = "lifecycle" if name in LIFECYCLE else f"{service}-{name}"
        rows.append(
            f"| [`{name}`](#{target}) | {spec['params']} | {spec['result']} | {codes} | {'yes' if spec.get('state_changing') else 'no'} |"
        )
    rows.append("")
    for name, spec in contract["methods"].items():
        if name in LIFECYCLE:
            continue
        rows += [f'<a id="{service}-{name}"></a>', "", f"### {service} · `{name}`", ""]
        if spec.get("description"):
            rows += [_prose(spec["description"]), ""]
        rows += [f"**Params** ({spec['params']}):", "", *field_table(load_schema(spec["params"])), ""]
        rows += [f"**Result** ({spec['result']}):", "", *field_table(load_schema(spec["result"])), ""]
        examples = spec.get("examples") or []
        if examples:
            rows += ["**Examples** (run in order by the conformance kit):", "", "```json"]
            rows += [_example_line(name, ex, i) for i, ex in enumerate(examples, start=1)]
            rows += ["```", ""]
    return rows


def _types() -> list[str]:
    rows = [
        "## Types",
        "",
        "Every named type the params, results and notifications above refer to. The full JSON",
        "Schemas are in `schemas/` (one file per params, result and notification type; these types",
        "appear in their `$defs`).",
        "",
    ]
    for name, node in _defs_used().items():
        rows += [f'<a id="{_anchor(name)}"></a>', "", f"### Type {name}", ""]
        if node.get("description"):
            rows += [_prose(node["description"]), ""]
        if "enum" in node:
            rows += ["One of: " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"]) + ".", ""]
        else:
            rows += [*field_table(node), ""]
    return rows


def _conformance() -> list[str]:
    from harness.conformance import CHECKS

    rows = [
        "## Conformance",
        "",
        "```sh",
        "harness conformance SERVICE [--json] [--timeout SECONDS] -- COMMAND [ARGS...]",
        "```",
        "",
        "The kit starts the program twice (each time in its own process group, killed at the end),",
        "runs every check below and prints one line per check (`PASS name: detail`, `FAIL name:",
        "why`, `SKIP name: why`) and a summary; `--json` prints",
        "`{service, command, checks: [{name, passed, skipped, detail}], passed, failed, skipped}`.",
        "The exit status is 0 only when no check failed. Example params may hold placeholders:",
        '`"$<method>.<dotted.field>"` is that field of the latest earlier result of `<method>`, and',
        '`"$WORKSPACE"` (also as the start of a path) is a fresh temporary directory made by the kit.',
        "",
        "| check | what it proves |",
        "|---|---|",
    ]
    rows += [f"| `{name}` | {_cell(text)} |" for name, text in CHECKS.items()]
    rows.append("")
    return rows


def generate() -> str:
    """The whole document."""
    parts = _intro() + _framing() + _lifecycle() + _errors() + _notifications() + _idempotency() + _replay()
    for service in SERVICES:
        parts += _service(service)
    parts += _types() + _conformance()
    text = "\n".join(parts)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def default_path() -> Path:
    return Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.protocol_doc", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift instead of writing")
    parser.add_argument("--output", type=Path, default=default_path())
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
        if current != text:
            print(
                f"drift: {args.output} is not what `python -m harness.protocol_doc` generates; run it", file=sys.stderr
            )
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
