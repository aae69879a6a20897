"""The checks: a service program judged against its contract, from the outside only.

Two sessions are run. The main one initializes the program, pings it, calls every contract method
with each of its examples (results validated against the method's result schema), probes each
method with params its schema rejects, sends the protocol's bad inputs (unknown method, invalid
request, malformed JSON, a batch, garbage) and ends with ``shutdown`` and EOF. A second, short
session proves that ``initialize`` is optional and that the program answers what it read and
exits when its stdin closes. Everything the program wrote on stdout in both sessions is then
judged: framing, ``jsonrpc`` markers, reply ids, and notifications against the contract.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from harness.resources import load_contract

from ._params import Unresolved, invalid_params, schema_problems, substitute, takes_params
from ._report import Check, Outcome, Report
from ._wire import KitError, Line, LineKind, Wire

#: Methods every service has; the contract lists them too, the kit checks them on their own.
LIFECYCLE = ("initialize", "ping", "shutdown")
INVALID_PARAMS = -32602
DEFAULT_TIMEOUT = 10.0
EXIT_BOUND = 5.0


#: Every check the kit makes and what it proves (``<method>`` stands for each contract method).
CHECKS: dict[str, str] = {
    "lifecycle.start": "The command can be started at all (reported only when it cannot).",
    "initialize.result_schema": "`initialize` is answered, and its result matches InitializeResult; the detail gives the time from spawn to the first answer.",
    "initialize.methods": "`initialize.methods` lists every method of the contract.",
    "initialize.contract": "`contract` and `protocol_version` are the contract's; `notifications` lists only declared ones.",
    "ping.result": '`ping` answers `{}` with `"jsonrpc":"2.0"`.',
    "methods.<method>.result_schema": "Each contract example of the method (placeholders filled in) is answered with a result valid against the method's result schema.",
    "methods.<method>.invalid_params": "Params the method's schema rejects (a missing required field, else an unknown field) get -32602 with the request's id. Methods without params are not probed.",
    "errors.method_not_found": "An unknown method gets -32601.",
    "errors.invalid_request": "A request whose method is not a string gets -32600 with the request's id.",
    "errors.parse_error": "A line of malformed JSON gets -32700 with id null.",
    "errors.batch_refused": "A batch (a JSON array) gets one -32600 error and its requests are not run.",
    "protocol.request_without_jsonrpc": 'A request without `"jsonrpc"` is answered, and the reply carries `"jsonrpc":"2.0"`.',
    "protocol.string_id": "A string id is echoed exactly.",
    "robustness.recovers_after_garbage": "After bad lines (invalid UTF-8, broken JSON, a scalar, a blank line) the next request is still answered.",
    "robustness.oversized_line": "Not sent (skipped): a line over the size limit would take several MiB.",
    "lifecycle.shutdown": "`shutdown` answers `{}`.",
    "lifecycle.exit_after_shutdown": "After `shutdown` and EOF the program exits with status 0 within 5 s.",
    "lifecycle.initialize_optional": "In a second run, a first request other than `initialize` is answered.",
    "lifecycle.exit_on_eof": "When stdin closes right after a request, that request is answered and the program exits with status 0 within 5 s.",
    "framing.one_message_per_line": "Every line on stdout, in both runs, is one JSON-RPC message object: nothing else is written there.",
    "framing.jsonrpc_version": 'Every message written carries `"jsonrpc":"2.0"`.',
    "framing.replies_match_requests": "Every reply answers a request the kit sent, exactly once, with either a result or an error.",
    "notifications.declared": "Every notification is one the contract declares.",
    "notifications.no_id": "No notification carries an id (a service never sends requests).",
    "notifications.params_schema": "Every declared notification's params match its schema.",
}


def catalogued(name: str) -> bool:
    """True when ``name`` is one of :data:`CHECKS` (``methods.X.Y`` matching its template)."""
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "methods":
        return f"methods.<method>.{parts[2]}" in CHECKS
    return name in CHECKS


class Failed(Exception):
    """A check did not pass; the message is its detail."""


class Skipped(Exception):
    """A check that cannot be run here; the message says why."""


@dataclass(frozen=True, slots=True)
class Options:
    timeout: float = DEFAULT_TIMEOUT
    env: dict[str, str] | None = None

    @property
    def exit_bound(self) -> float:
        return min(EXIT_BOUND, self.timeout)


def _error_of(reply: dict[str, Any]) -> tuple[int | None, str]:
    err = reply.get("error")
    if not isinstance(err, dict):
        return None, ""
    code = err.get("code")
    return (code if isinstance(code, int) and not isinstance(code, bool) else None), str(err.get("message", ""))


def _expect_error(reply: dict[str, Any], code: int) -> str:
    """The reply's message when it is error ``code``; Failed otherwise."""
    if "result" in reply and "error" not in reply:
        raise Failed(f"expected error {code}, got a result: {json.dumps(reply['result'])[:120]}")
    got, message = _error_of(reply)
    if got != code:
        raise Failed(f"expected error {code}, got {got!r}: {message[:120]}")
    return message


def _result_of(reply: dict[str, Any], what: str) -> Any:
    if "error" in reply:
        code, message = _error_of(reply)
        raise Failed(f"{what} answered with error {code}: {message[:160]}")
    if "result" not in reply:
        raise Failed(f"{what}: the reply has neither result nor error")
    return reply["result"]


class _Run:
    """One run of the kit: the contract, the temporary workspace and the checks made so far."""

    def __init__(self, service: str, command: Sequence[str], options: Options) -> None:
        self.service = service
        self.contract = load_contract(service)
        self.command = list(command)
        self.options = options
        self.report = Report(service, self.command)
        self.results: dict[str, Any] = {}
        self.sessions: list[tuple[str, list[Line], list[Any]]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="harness-conformance-"))
        self.workspace = self.tmp / "workspace"
        self.workspace.mkdir()

    # -- bookkeeping ----------------------------------------------------------------------------
    def check(self, name: str, fn: Callable[[], str]) -> bool:
        """Run one check; its detail is what ``fn`` returns, or why it raised."""
        try:
            detail, outcome = fn(), Outcome.passed
        except Skipped as exc:
            detail, outcome = str(exc), Outcome.skipped
        except (Failed, KitError, Unresolved) as exc:
            detail, outcome = str(exc), Outcome.failed
        except Exception as exc:  # a bug in the kit must not pass for a verdict on the service
            detail, outcome = f"the kit itself failed: {type(exc).__name__}: {exc}", Outcome.failed
        self.report.checks.append(Check(name, outcome, detail))
        return outcome == Outcome.passed

    def spawn(self, label: str) -> Wire:
        return Wire(self.command, cwd=None, stderr_path=self.tmp / f"{label}.stderr", env=self.options.env)

    def retire(self, label: str, wire: Wire) -> None:
        """Stop the program and keep what it wrote (and the ids sent to it) for the stream checks."""
        wire.close()
        self.sessions.append((label, wire.snapshot(), list(wire.sent_ids)))

    @property
    def methods(self) -> dict[str, dict[str, Any]]:
        return self.contract.get("methods") or {}

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> Report:
        try:
            try:
                wire = self.spawn("main")
            except OSError as exc:
                self.check("lifecycle.start", _fail(f"cannot start {self.command[0]!r}: {exc.strerror or exc}"))
                return self.report
            try:
                self.main_session(wire)
            finally:
                self.retire("main", wire)
            self.eof_session()
            self.stream_checks()
            return self.report
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def main_session(self, wire: Wire) -> None:
        self.initialize(wire)
        self.check("ping.result", lambda: self.ping(wire, jsonrpc=True))
        for name, spec in self.methods.items():
            if name in LIFECYCLE:
                continue
            self.check(f"methods.{name}.result_schema", partial(self.examples, wire, name, spec))
            if takes_params(spec.get("params", "Empty")):
                self.check(f"methods.{name}.invalid_params", partial(self.invalid_params, wire, name, spec))
        self.protocol_checks(wire)
        self.check("lifecycle.shutdown", lambda: self.shutdown(wire))
        self.check("lifecycle.exit_after_shutdown", lambda: self.exits(wire, "after shutdown and EOF"))

    # -- initialize and ping --------------------------------------------------------------------
    def initialize(self, wire: Wire) -> None:
        info: dict[str, Any] = {}

        def result_schema() -> str:
            reply = wire.request("initialize", {}, timeout=self.options.timeout)
            elapsed = (time.monotonic() - wire.started) * 1000
            result = _result_of(reply, "initialize")
            problems = schema_problems("InitializeResult", result)
            if problems:
                raise Failed("; ".join(problems))
            info.update(result)
            return f"first answer {elapsed:.0f} ms after spawn"

        if not self.check("initialize.result_schema", result_schema):
            for name in ("initialize.methods", "initialize.contract"):
                self.check(name, _skip("needs a valid initialize result"))
            return

        def methods() -> str:
            missing = [m for m in self.methods if m not in info["methods"]]
            if missing:
                raise Failed(f"initialize.methods lacks {', '.join(missing)}")
            return f"{len(self.methods)} contract methods listed"

        def identity() -> str:
            wrong = []
            if info["contract"] != self.contract["service"]:
                wrong.append(f"contract {info['contract']!r} (expected {self.contract['service']!r})")
            if str(info["protocol_version"]) != str(self.contract["protocol_version"]):
                wrong.append(
                    f"protocol_version {info['protocol_version']!r} (expected {self.contract['protocol_version']!r})"
                )
            undeclared = [
                n for n in info.get("notifications") or [] if n not in (self.contract.get("notifications") or {})
            ]
            if undeclared:
                wrong.append(f"notifications {undeclared} are not in the contract")
            if wrong:
                raise Failed("; ".join(wrong))
            return f"{info['name']} {info['version']}, contract {info['contract']} v{info['protocol_version']}"

        self.check("initialize.methods", methods)
        self.check("initialize.contract", identity)

    def ping(self, wire: Wire, *, jsonrpc: bool, rid: Any = None) -> str:
        reply = wire.request(
            "ping", None if not jsonrpc else {}, timeout=self.options.timeout, jsonrpc=jsonrpc, rid=rid
        )
        result = _result_of(reply, "ping")
        if result != {}:
            raise Failed(f"ping answered {json.dumps(result)[:120]}, expected {{}}")
        if reply.get("jsonrpc") != "2.0":
            raise Failed(f'the reply carries jsonrpc {reply.get("jsonrpc")!r}, expected "2.0"')
        if rid is not None and reply.get("id") != rid:
            raise Failed(f"the reply carries id {reply.get('id')!r}, expected {rid!r}")
        return "answered {}"

    # -- contract methods -----------------------------------------------------------------------
    def examples(self, wire: Wire, name: str, spec: dict[str, Any]) -> str:
        examples = spec.get("examples") or []
        if not examples:
            raise Skipped("the contract gives no examples")
        result_schema = spec.get("result", "Empty")
        failures = []
        for i, example in enumerate(examples, start=1):
            label = f"example {i}"
            try:
                params = substitute(example, self.results, str(self.workspace))
                reply = wire.request(name, params, timeout=self.options.timeout)
                result = _result_of(reply, label)
            except (Failed, Unresolved) as exc:
                failures.append(str(exc))
                continue
            problems = schema_problems(result_schema, result)
            if problems:
                failures.append(f"{label} does not match {result_schema}: " + "; ".join(problems))
                continue
            self.results[name] = result
        if failures:
            raise Failed(" | ".join(failures))
        return f"{len(examples)} example(s) answered, each valid against {result_schema}"

    def invalid_params(self, wire: Wire, name: str, spec: dict[str, Any]) -> str:
        params = invalid_params(spec["params"])
        if params is None:
            raise Skipped(f"no params can be derived that {spec['params']} rejects")
        rid = wire.new_id()
        reply = wire.request(name, params, timeout=self.options.timeout, rid=rid)
        _expect_error(reply, INVALID_PARAMS)
        if reply.get("id") != rid:
            raise Failed(f"the error carries id {reply.get('id')!r}, expected {rid!r}")
        return f"{json.dumps(params)} -> {INVALID_PARAMS}"

    # -- the protocol's bad inputs --------------------------------------------------------------
    def protocol_checks(self, wire: Wire) -> None:
        timeout = self.options.timeout

        def method_not_found() -> str:
            reply = wire.request("conformance.no_such_method", {}, timeout=timeout)
            _expect_error(reply, -32601)
            return "unknown method -> -32601"

        def invalid_request() -> str:
            rid = wire.new_id()
            wire.send({"jsonrpc": "2.0", "id": rid, "method": 42}, rid=rid)
            _expect_error(wire.wait_reply(rid, timeout), -32600)
            return "a request whose method is not a string -> -32600 with its id"

        def parse_error() -> str:
            since = wire.mark()
            wire.send_line(b'{"jsonrpc": "2.0", "method": "ping", "params": [1, 2')
            line = wire.wait_line(_null_reply, since=since, timeout=timeout, what="reply with id null")
            _expect_error(line.message, -32700)
            return "malformed JSON -> -32700 with id null"

        def batch_refused() -> str:
            rid = wire.new_id()
            since = wire.mark()
            wire.send_line(json.dumps([{"jsonrpc": "2.0", "id": rid, "method": "ping"}]).encode())
            line = wire.wait_line(
                lambda ln: _null_reply(ln) or ln.kind == LineKind.not_object or _reply_to(ln, rid),
                since=since,
                timeout=timeout,
                what="answer to a batch",
            )
            if line.kind == LineKind.not_object:
                raise Failed(
                    f"the batch was answered with a JSON array ({line.preview(80)}): batches must be refused with -32600"
                )
            if _reply_to(line, rid):
                raise Failed("the request inside the batch was executed: batches must be refused with -32600")
            _expect_error(line.message, -32600)
            return "a batch -> one -32600 error"

        def without_jsonrpc() -> str:
            self.ping(wire, jsonrpc=False)
            return 'a request without "jsonrpc" is answered, the reply carries "jsonrpc":"2.0"'

        def string_id() -> str:
            self.ping(wire, jsonrpc=True, rid="conformance-string-id")
            return "a string id is echoed"

        def recovers() -> str:
            for junk in (b"\xff\xfe not UTF-8", b"}{", b"null", b"", b'{"jsonrpc":"2.0","id":'):
                wire.send_line(junk)
            self.ping(wire, jsonrpc=True)
            return "after five bad lines the next request was answered"

        self.check("errors.method_not_found", method_not_found)
        self.check("errors.invalid_request", invalid_request)
        self.check("errors.parse_error", parse_error)
        self.check("errors.batch_refused", batch_refused)
        self.check("protocol.request_without_jsonrpc", without_jsonrpc)
        self.check("protocol.string_id", string_id)
        self.check("robustness.recovers_after_garbage", recovers)
        self.check(
            "robustness.oversized_line",
            _skip("not sent: it takes a line of several MiB; the limit is the service's to choose"),
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def shutdown(self, wire: Wire) -> str:
        result = _result_of(wire.request("shutdown", {}, timeout=self.options.timeout), "shutdown")
        problems = schema_problems("Empty", result)
        if problems:
            raise Failed("; ".join(problems))
        return "answered {}"

    def exits(self, wire: Wire, when: str) -> str:
        wire.close_stdin()
        started = time.monotonic()
        code = wire.wait_exit(self.options.exit_bound)
        if code is None:
            raise Failed(f"still running {self.options.exit_bound:g} s {when}")
        if code != 0:
            raise Failed(f"exited with status {code} {when}")
        return f"exited 0 {when} in {(time.monotonic() - started) * 1000:.0f} ms"

    def eof_session(self) -> None:
        try:
            wire = self.spawn("eof")
        except OSError as exc:
            self.check(
                "lifecycle.initialize_optional", _fail(f"cannot start {self.command[0]!r} again: {exc.strerror or exc}")
            )
            return
        try:
            self.check(
                "lifecycle.initialize_optional",
                lambda: self.ping(wire, jsonrpc=True).replace("answered", "answered before any initialize:"),
            )

            def exit_on_eof() -> str:
                rid = wire.new_id()
                wire.send({"jsonrpc": "2.0", "id": rid, "method": "ping"}, rid=rid)
                wire.close_stdin()
                started = time.monotonic()
                code = wire.wait_exit(self.options.exit_bound)
                waited = time.monotonic() - started
                try:
                    wire.wait_reply(rid, max(0.1, self.options.exit_bound - waited))
                except KitError as exc:
                    raise Failed(f"the request read before EOF was not answered: {exc}") from exc
                if code is None:
                    raise Failed(f"still running {self.options.exit_bound:g} s after its stdin closed")
                if code != 0:
                    raise Failed(f"exited with status {code} on EOF")
                return f"answered what it read and exited 0 in {waited * 1000:.0f} ms"

            self.check("lifecycle.exit_on_eof", exit_on_eof)
        finally:
            self.retire("eof", wire)

    # -- what the program wrote -----------------------------------------------------------------
    def stream_checks(self) -> None:
        lines = [ln for _, session, _ in self.sessions for ln in session]
        messages = [ln for ln in lines if ln.kind in (LineKind.reply, LineKind.notification, LineKind.request)]

        def one_message_per_line() -> str:
            for label, session, _ in self.sessions:
                bad = [
                    ln for ln in session if ln.kind in (LineKind.not_json, LineKind.not_object, LineKind.not_message)
                ]
                if bad:
                    first = bad[0]
                    what = {
                        LineKind.not_json: "is not JSON",
                        LineKind.not_object: "is JSON but not an object",
                        LineKind.not_message: "is no JSON-RPC message",
                    }[first.kind]
                    raise Failed(
                        f"{len(bad)} of {len(session)} stdout lines of the {label} session are not protocol messages; "
                        f"line {session.index(first) + 1} {what}: {first.preview()!r}"
                    )
            return f"{len(lines)} stdout lines, each one JSON-RPC message"

        def jsonrpc_version() -> str:
            bad = [ln for ln in messages if ln.message.get("jsonrpc") != "2.0"]
            if bad:
                raise Failed(f'{len(bad)} message(s) lack "jsonrpc":"2.0", e.g. {bad[0].preview()!r}')
            return f'all {len(messages)} messages carry "jsonrpc":"2.0"'

        def replies_match() -> str:
            problems: list[str] = []
            count = 0
            for label, session, sent_ids in self.sessions:
                count += _match_replies(label, session, sent_ids, problems)
            if problems:
                raise Failed("; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else ""))
            return f"{count} replies, one per request"

        declared = self.contract.get("notifications") or {}
        notes = [
            ln
            for ln in messages
            if ln.kind in (LineKind.notification, LineKind.request) and ln.message.get("method") is not None
        ]

        def notifications_declared() -> str:
            unknown = sorted({str(ln.message["method"]) for ln in notes if ln.message["method"] not in declared})
            if unknown:
                raise Failed(
                    f"undeclared notification(s): {', '.join(unknown)} (the contract declares {', '.join(declared) or 'none'})"
                )
            return f"{len(notes)} notification(s), all declared" if notes else "none sent"

        def notifications_no_id() -> str:
            with_id = [ln for ln in notes if ln.kind == LineKind.request]
            if with_id:
                raise Failed(
                    f"{len(with_id)} notification(s) carry an id (a service sends no requests), e.g. {with_id[0].preview()!r}"
                )
            return "no notification carries an id"

        def notifications_schema() -> str:
            problems = []
            counted = 0
            for ln in notes:
                spec = declared.get(ln.message["method"])
                if not spec:
                    continue
                counted += 1
                found = schema_problems(spec.get("params", "Empty"), ln.message.get("params"))
                if found:
                    problems.append(f"{ln.message['method']}: " + "; ".join(found))
            if problems:
                raise Failed(" | ".join(problems[:3]))
            return f"{counted} declared notification(s) valid against their schemas" if counted else "none sent"

        self.check("framing.one_message_per_line", one_message_per_line)
        self.check("framing.jsonrpc_version", jsonrpc_version)
        self.check("framing.replies_match_requests", replies_match)
        self.check("notifications.declared", notifications_declared)
        self.check("notifications.no_id", notifications_no_id)
        self.check("notifications.params_schema", notifications_schema)


def _match_replies(label: str, session: list[Line], sent_ids: list[Any], problems: list[str]) -> int:
    """Add to ``problems`` what is wrong with the replies of one session; return how many there were."""
    sent = {json.dumps(r) for r in sent_ids}
    seen: dict[str, int] = {}
    for ln in session:
        if ln.kind != LineKind.reply:
            continue
        msg = ln.message
        if "result" in msg and "error" in msg:
            problems.append(f"reply to id {msg['id']!r} has both result and error")
        rid = msg.get("id")
        if rid is None:
            continue
        key = json.dumps(rid)
        if key not in sent:
            problems.append(f"reply with id {rid!r}, which the kit never sent ({label} session)")
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            problems.append(f"id {rid!r} answered more than once ({label} session)")
    return sum(seen.values())


def _null_reply(line: Line) -> bool:
    return line.kind == LineKind.reply and line.message.get("id") is None


def _reply_to(line: Line, rid: Any) -> bool:
    return line.kind == LineKind.reply and line.message.get("id") == rid


def _fail(detail: str) -> Callable[[], str]:
    def fn() -> str:
        raise Failed(detail)

    return fn


def _skip(reason: str) -> Callable[[], str]:
    def fn() -> str:
        raise Skipped(reason)

    return fn


def run(
    service: str, command: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, env: dict[str, str] | None = None
) -> Report:
    """Run every check of ``service``'s contract against the program ``command``.

    ``timeout`` bounds each request (and, capped at 5 s, each wait for the program to exit).
    The program is started twice, each time in its own process group, which is killed at the end.
    """
    if not command:
        raise ValueError("no command to run")
    return _Run(service, command, Options(timeout=timeout, env=env if env is not None else dict(os.environ))).run()
